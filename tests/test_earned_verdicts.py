"""A drill measures only a stack that was healthy and then really failed, and has something to lose.

Each drill runs with pytester against the local target (the demo app, a real process on
loopback): a fault that has no effect, writes that are never acknowledged, and a stack that is
down before the fault must fail the drill with a one-line reason, not report an RTO of ~0 s or an
RPO of 0 s met.
"""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

RUNBOOK = """# Runbook

## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Total RTO** | 15 minutes | | end to end |

## Recovery Point Objectives

| Data Type | Target RPO | Actual RPO | Notes |
|---|---|---|---|
| **Database** | 1 minute | | lag |
"""

CONFIG = """runbook: runbook.md
target: local
journal: journal.jsonl
report_dir: out
probes: {interval: 50ms, timeout: 500ms, recovery_samples: 3}
writer: {rate_hz: 20, timeout: 500ms}
drills: {effect_timeout: 2s, steady_samples: 5}
targets:
  local:
    demo: {db: demo.sqlite}
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=CONFIG)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makeconftest(
        """
        import pytest
        from drdrill.faults.process import ProcessRef

        @pytest.fixture
        def app_process(target):
            return ProcessRef.of(target.app_process().pid, name="demo-app")
        """
    )
    return pytester


def _tests(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    (report,) = (pytester.path / "out").glob("*/report.json")
    data = json.loads(report.read_text())
    return {t["nodeid"].rsplit("::", 1)[-1]: t for t in data["tests"]}


def test_a_fault_with_no_visible_effect_fails_the_drill(project: pytest.Pytester) -> None:
    # the fault freezes a bystander process, not the app: nothing a client sees changes
    project.makepyfile(
        """
        import subprocess, sys
        from drdrill.faults.process import FreezeProcess, ProcessRef

        def test_wrong_victim(target, probes, inject, measure):
            bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            try:
                probes.start()
                fault = inject(FreezeProcess(ProcessRef.of(bystander.pid, name="bystander")))
                restored = probes.wait_restored("fault_injected", timeout_s=10)
                measure.phase("Total RTO", "fault_injected", restored)
            finally:
                bystander.kill()
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the fault had no effect: no probe failed within 2 s*"])
    phases = json.loads(next((project.path / "out").glob("*/report.json")).read_text())["phases"]
    assert phases == []  # no Total RTO of ~0 s anywhere


def test_a_drill_whose_writer_never_got_an_ack_fails_its_rpo(project: pytest.Pytester) -> None:
    # the writes go to a port nobody listens on: 0 lost of 0 acknowledged is not an RPO met
    project.makepyfile(
        """
        import socket, time
        from drdrill.faults.process import FreezeProcess
        from drdrill.measure import Measurement
        from drdrill.probes.writes import HttpSink

        def test_writes_never_land(app_process, probes, writer, inject, measure):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                closed = s.getsockname()[1]
            probes.start()
            writer.start(sink=HttpSink(f"http://127.0.0.1:{closed}/w", timeout_s=0.2))
            time.sleep(0.5)
            fault = inject(FreezeProcess(app_process))
            time.sleep(0.5)
            inject.revert(fault)
            probes.wait_restored("fault_injected", timeout_s=20)
            rpo = writer.verify(present=set())
            measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*nothing to lose: the writer never had a write acknowledged*"])
    phases = json.loads(next((project.path / "out").glob("*/report.json")).read_text())["phases"]
    assert not [p for p in phases if p["name"] == "Database"]  # never "0 s met"


def test_a_drill_whose_writer_got_acks_only_after_the_fault_fails_its_rpo(
    project: pytest.Pytester,
) -> None:
    # the writes go to a port nobody listens on until the fault is in, then to the app: every
    # acknowledged write came after the fault, so nothing acknowledged could have been lost by
    # it, and 0 lost is not an RPO met
    project.makepyfile(
        """
        import socket, threading, time
        from drdrill.faults.process import FreezeProcess
        from drdrill.measure import Measurement
        from drdrill.probes.writes import HttpSink

        class RefusedUntilTheFault:
            '''The app's write endpoint, reached only once ``opened`` is set.'''

            def __init__(self, refused, app):
                self.refused, self.app = refused, app
                self.opened = threading.Event()

            def write(self, marker):
                (self.app if self.opened.is_set() else self.refused).write(marker)

            def close(self):
                self.refused.close()
                self.app.close()

        def test_acks_only_after_the_fault(
            target, app_process, probes, writer, inject, measure, timeline
        ):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                closed = s.getsockname()[1]
            probes.start()
            sink = RefusedUntilTheFault(
                HttpSink(f"http://127.0.0.1:{closed}/w", timeout_s=0.2), target.write_sink(0.5)
            )
            writer.start(sink=sink)
            time.sleep(0.5)
            fault = inject(FreezeProcess(app_process))
            sink.opened.set()  # after inject returned: every write the app takes is after it
            time.sleep(0.5)
            inject.revert(fault)
            probes.wait_restored("fault_injected", timeout_s=20)
            writer.first_ack_after(timeline.get("fault_injected"), timeout_s=20)
            rpo = writer.verify()  # the target's markers: every acknowledged one is there
            measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    reason = "nothing to lose: no write acknowledged before 'fault_injected'"
    result.stdout.fnmatch_lines([f"*{reason} (* acknowledged after it)*"])
    assert "never had a write acknowledged" not in result.stdout.str()
    phases = json.loads(next((project.path / "out").glob("*/report.json")).read_text())["phases"]
    assert not [p for p in phases if p["name"] == "Database"]  # never "0 s met"
    assert _tests(project)["test_acks_only_after_the_fault"]["outcome"] == "failed"


def test_a_stack_that_is_down_before_the_fault_is_not_drilled(project: pytest.Pytester) -> None:
    # the probes watch an endpoint that never answers: the stack is not in steady state, so
    # the fault is not injected (the victim is never frozen, the journal stays empty)
    project.makepyfile(
        """
        import socket
        from drdrill.config import EndpointConfig
        from drdrill.faults.process import FreezeProcess

        def test_down_before(app_process, probes, inject):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                closed = s.getsockname()[1]
            probes.start([EndpointConfig(url=f"http://127.0.0.1:{closed}/health-simple.php")])
            inject(FreezeProcess(app_process))
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stack not healthy before the fault*samples failed (refused)*"])
    journal = project.path / "journal.jsonl"
    assert not journal.exists() or "inject" not in journal.read_text()


def test_a_healthy_drill_marks_its_steady_state_and_bounds_its_fault(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        """
        import time
        from drdrill.faults.process import FreezeProcess

        def test_freeze(app_process, probes, inject, timeline, measure):
            probes.start()
            time.sleep(0.5)
            fault = inject(FreezeProcess(app_process))
            time.sleep(1.0)
            inject.revert(fault)
            restored = probes.wait_restored("fault_injected", timeout_s=20)
            measure.phase("Total RTO", "fault_injected", restored)
            steady = timeline.get("steady_state_verified")
            injected = timeline.get("fault_injected")
            assert steady.mono <= injected.mono - injected.uncertainty_s
            assert injected.uncertainty_s > 0  # the call to the fault took some time
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert _tests(project)["test_freeze"]["outcome"] == "passed"


def test_a_restore_that_does_not_hold_is_no_restore(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import time
        import pytest
        from drdrill.errors import DrillError
        from drdrill.faults.process import FreezeProcess

        def outage_then_restore(app_process, probes, inject, down_s):
            probes.start()
            time.sleep(0.5)
            fault = inject(FreezeProcess(app_process))
            time.sleep(down_s)
            inject.revert(fault)
            return probes.wait_restored("fault_injected", timeout_s=20)

        def test_relapse(app_process, probes, inject, timeline, measure):
            first = outage_then_restore(app_process, probes, inject, 1.0)
            time.sleep(0.3)
            again = inject(FreezeProcess(app_process))  # down again after the restore
            time.sleep(1.0)
            inject.revert(again)
            time.sleep(1.0)
            held = probes.restored_for_good(first, timeout_s=20)
            relapse = timeline.get("service_relapsed")
            assert first.mono < relapse.mono < held.mono
            assert held.name == "service_restored_again"
            assert held.mono - first.mono > 1.0  # the second outage lasted a second
            measure.phase("Total RTO", "fault_injected", held)

        def test_still_down(app_process, probes, inject, timeline):
            first = outage_then_restore(app_process, probes, inject, 0.5)
            time.sleep(0.3)
            inject(FreezeProcess(app_process))  # reverted only at teardown
            time.sleep(1.0)
            with pytest.raises(DrillError, match="the service failed again .* not back 1 s later"):
                probes.restored_for_good(first, timeout_s=1)

        def test_held(app_process, probes, inject, timeline):
            first = outage_then_restore(app_process, probes, inject, 0.5)
            time.sleep(1.0)
            assert probes.restored_for_good(first, timeout_s=1) is first
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=3)
