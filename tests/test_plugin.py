"""The pytest plugin end to end, in pytest subprocesses (pytester), with real victim processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytest_plugins = ["pytester"]

RUNBOOK = """# Runbook

## Escalation

| Severity | Criteria | Response Time |
|---|---|---|
| P1 | outage | < 5 minutes |

## 🚨 Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|:--|--:|---|---|
| **Detection** | 2 minutes | 1-3 minutes | alarms |
| **Total RTO** | **15 minutes** | 10-20 minutes | end to end |

## Recovery Point Objectives

| Data Type | Target RPO | Actual RPO | Notes |
|---|---|---|---|
| **Database** | 1 minute | < 30 seconds | lag |
"""

CONFIG = """runbook: runbook.md
target: local
journal: journal.jsonl
report_dir: out
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=CONFIG)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    return pytester


@pytest.fixture
def victim() -> Iterator[psutil.Process]:
    """A real process to freeze: it sleeps in a loop until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"],
        start_new_session=True,
    )
    yield psutil.Process(proc.pid)
    proc.kill()
    proc.wait()


def _running(proc: psutil.Process) -> bool:
    return proc.status() in (psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING)


def _journal_ops(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["op"] for line in path.read_text().splitlines() if line.strip()]


def test_options_ini_keys_and_marker_are_registered(pytester: pytest.Pytester) -> None:
    help_text = pytester.runpytest_subprocess("--help")
    help_text.stdout.fnmatch_lines(
        [
            "*--dr-config*",
            "*--dr-target*",
            "*--dr-report-dir*",
            "*--dr-dry-run*",
            "*--dr-allow-destructive*",
            "*dr_config (string)*",
            "*dr_dry_run (bool)*",
        ]
    )
    assert "stack config (drdrill.yaml)" in help_text.stdout.str()
    markers = pytester.runpytest_subprocess("--markers")
    markers.stdout.fnmatch_lines(["*@pytest.mark.drill(*disaster-recovery drill*"])


def test_plain_tests_run_without_config(pytester: pytest.Pytester) -> None:
    """Installing drdrill costs a project without drills nothing: no config is looked for."""
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("--dr-config", "does-not-exist.yaml")
    result.assert_outcomes(passed=1)


def test_a_parameter_named_like_a_drill_fixture_is_no_drill(pytester: pytest.Pytester) -> None:
    # ``target`` and ``measure`` are drdrill's fixtures; a test's own parameters of those names
    # make no drill (no config is looked for, no report written)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("target, measure", [("1 ms", 0.001)])
        def test_plain(target, measure):
            assert target == "1 ms"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "drdrill:" not in result.stdout.str() + result.stderr.str()
    assert "drdrill report" not in result.stdout.str()
    assert not (pytester.path / "reports").exists()


def test_missed_objective_fails_the_test_naming_phase_value_and_target(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        """
        def test_slow_detection(timeline, measure):
            start = timeline.mark("fault_injected")
            timeline.observe("alarm", start.mono + 150.0, 0.5)
            measure.phase("Detection", "fault_injected", "alarm")

        def test_fast_detection(timeline, measure):
            start = timeline.mark("fault_injected")
            timeline.observe("alarm", start.mono + 30.0, 0.5)
            measure.phase("Detection", "fault_injected", "alarm")
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*ObjectiveMissed: phase 'Detection' measured 149.750 ± 0.250 s*objective*120 s*"]
    )
    reports = list((project.path / "out").glob("*/report.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["schema_version"] == "1.2"
    assert (report["run"]["verdict"], report["run"]["exit_status"]) == ("failed", 1)
    phases = {(p["test"].rsplit("::", 1)[-1], p["status"]) for p in report["phases"]}
    assert phases == {("test_slow_detection", "missed"), ("test_fast_detection", "met")}
    assert report["objectives"]["rto"]["Total RTO"]["target_s"] == 900.0
    outcomes = {t["nodeid"].rsplit("::", 1)[-1]: t["outcome"] for t in report["tests"]}
    assert outcomes == {"test_slow_detection": "failed", "test_fast_detection": "passed"}
    assert {e["name"] for e in report["events"]} == {"fault_injected", "alarm"}
    md = next((project.path / "out").glob("*/report.md")).read_text()
    assert (
        "| **Detection** | 120 s | 149.750 ± 0.250 s [149.500, 150.000] s (worst of 2) | "
        "**MISSED** |" in md
    )
    result.stdout.fnmatch_lines(["*drdrill run*", "*Detection*149.750*missed*"])


def test_scale_and_override_come_from_the_config(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml",
        drdrill=CONFIG + "objectives:\n  scale: 0.01\n  rto:\n    Detection: 10s\n",
    )
    project.makepyfile(
        """
        def test_targets(objectives):
            assert objectives.get("rto", "Total RTO").target_s == 9.0
            assert objectives.get("rto", "Detection").target_s == 10.0
            assert objectives.get("rpo", "Database").target_s == 0.6
        """
    )
    project.runpytest_subprocess().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("change", "args", "expected"),
    [
        ({"runbook.md": RUNBOOK.replace("2 minutes", "3 fortnights")}, [], "runbook.md:13:"),
        ({"runbook.md": "# nothing here\n"}, [], "runbook.md"),
        ({"drdrill.yaml": CONFIG + "probes:\n  interval: soon\n"}, [], "drdrill.yaml:6:"),
        ({}, ["--dr-target", "nope"], "--dr-target: unknown target 'nope'"),
        ({}, ["--dr-config", "missing.yaml"], "missing.yaml: config file not found"),
    ],
)
def test_bad_input_stops_before_anything_is_injected(
    project: pytest.Pytester,
    victim: psutil.Process,
    change: dict[str, str],
    args: list[str],
    expected: str,
) -> None:
    for name, text in change.items():
        (project.path / name).write_text(text)
    project.makepyfile(
        f"""
        from drdrill.faults.process import FreezeProcess, ProcessRef

        def test_freeze(inject):
            inject(FreezeProcess(ProcessRef.of({victim.pid})))
        """
    )
    result = project.runpytest_subprocess(*args)
    assert result.ret == 2
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    lines = [ln for ln in result.stderr.lines if "drdrill: error:" in ln]
    assert len(lines) == 1 and expected in lines[0], output
    assert not (project.path / "journal.jsonl").exists()
    assert _running(victim)


def test_dry_run_plans_and_injects_nothing(
    project: pytest.Pytester, victim: psutil.Process
) -> None:
    project.makepyfile(
        f"""
        from drdrill.faults.process import FreezeProcess, ProcessRef

        def test_freeze(inject):
            inject(FreezeProcess(ProcessRef.of({victim.pid}, name="victim")))
            raise AssertionError("a dry run must not get here")
        """
    )
    result = project.runpytest_subprocess("--dr-dry-run", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*dry run: would inject: freeze process {victim.pid}*"])
    assert _running(victim)
    assert not (project.path / "journal.jsonl").exists()


def test_fault_is_reverted_when_the_drill_fails(
    project: pytest.Pytester, victim: psutil.Process
) -> None:
    project.makepyfile(
        f"""
        import psutil
        from drdrill.faults.process import FreezeProcess, ProcessRef

        def test_freeze_then_fail(inject):
            inject(FreezeProcess(ProcessRef.of({victim.pid})))
            assert psutil.Process({victim.pid}).status() == psutil.STATUS_STOPPED
            raise AssertionError("drill failed mid-fault")
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*drill failed mid-fault*"])
    assert _running(victim)
    assert _journal_ops(project.path / "journal.jsonl") == ["inject", "reverted"]


def _wait_for(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _drill_that_hangs(project: pytest.Pytester, victim: psutil.Process) -> subprocess.Popen[str]:
    project.makepyfile(
        f"""
        import time
        from pathlib import Path
        from drdrill.faults.process import FreezeProcess, ProcessRef

        def test_freeze_and_hang(inject):
            inject(FreezeProcess(ProcessRef.of({victim.pid})))
            Path("frozen.flag").write_text("1")
            time.sleep(120)
        """
    )
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        cwd=project.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_mid_drill_reverts(
    project: pytest.Pytester, victim: psutil.Process, signum: signal.Signals
) -> None:
    proc = _drill_that_hangs(project, victim)
    try:
        assert _wait_for(lambda: (project.path / "frozen.flag").exists()), "drill never froze"
        assert victim.status() == psutil.STATUS_STOPPED
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert _running(victim), out
    assert _journal_ops(project.path / "journal.jsonl") == ["inject", "reverted"], out
    assert proc.returncode != 0


def test_kill_9_mid_drill_then_recover(project: pytest.Pytester, victim: psutil.Process) -> None:
    proc = _drill_that_hangs(project, victim)
    try:
        assert _wait_for(lambda: (project.path / "frozen.flag").exists()), "drill never froze"
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
    assert victim.status() == psutil.STATUS_STOPPED  # nothing could revert it
    recover = subprocess.run(
        [Path(sys.executable).parent / "drdrill", "recover", "--journal", "journal.jsonl"],
        cwd=project.path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert recover.returncode == 0, recover.stderr
    assert f"freeze process {victim.pid}" in recover.stdout
    assert _running(victim)
    assert _journal_ops(project.path / "journal.jsonl") == ["inject", "reverted"]
