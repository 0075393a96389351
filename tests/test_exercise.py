"""Tests for drdrill.exercise and ``drdrill exercise``: the quarterly exercise on a real sandbox.

The sandbox runs in its own block (17) and run folder, so a developer's sandbox is left alone.
The runbook's message template and the checkpoint prompt are tested on their own first.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest
import yaml
from tests.fake_clock import FakeClock
from tests.probes.test_http_probe import FlakyServer

from drdrill import cli
from drdrill.config import ProbesConfig, load_config
from drdrill.exercise import (
    DEFAULT_TEMPLATE,
    Communication,
    Exercise,
    ExerciseOptions,
    ExerciseReport,
    ExerciseStopped,
    MessageFacts,
    Metric,
    StepRecord,
    TerminalCheckpoint,
    exercise_run,
    fill_message,
    find_message_template,
    missing_capabilities,
    render_markdown,
    stop_reason,
    summary_lines,
)
from drdrill.faults.base import RevertResult
from drdrill.faults.journal import Journal
from drdrill.measure import Measurement
from drdrill.objectives import parse_runbook
from drdrill.probes.http import Endpoint, ProbeRunner
from drdrill.report.history import HistoryStore
from drdrill.report.record import OutageRecord, ProbeStatsRecord
from drdrill.report.severity import NO_SEVERITY, Severity
from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing
from drdrill.session import write_run_reports
from drdrill.targets import make_target
from drdrill.timeline import Clock

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "data" / "runbooks" / "seed-style.md"
DRDRILL = str(Path(sys.executable).parent / "drdrill")
BLOCK = 17
# Runs ``drdrill`` with "exercise" among its commands whether or not cli.COMMANDS lists it yet.
_CLI = (
    "import sys\n"
    "from drdrill import cli\n"
    "if 'exercise' not in cli.COMMANDS:\n"
    "    cli.COMMANDS = (*cli.COMMANDS, 'exercise')\n"
    "sys.exit(cli.main())\n"
)
PLACEHOLDER = re.compile(r"\[(?!P\d\])[A-Z][A-Z -]*\]")  # [TIMESTAMP], [TIME], ...; not [P1]

needs_sandbox = pytest.mark.skipif(
    bool(mariadb_missing() or haproxy_missing()),
    reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
)

FACTS = MessageFacts(
    severity="P1",
    exercise_id="20261129T010000Z",
    status="DR ACTIVATED (exercise); failed back to the primary region",
    time="2026-11-29 01:00:03 UTC",
    dr_region="eu-central-1",
    resolution="service restored 2026-11-29 01:00:06 UTC (3.95 s after the failure)",
    actions=("01:00:03Z primary region failure confirmed", "01:00:06Z DR region activated"),
    next_steps=("Monitor the primary region for 24 hours",),
    contact="oncall@example",
)


# --- the message template -----------------------------------------------------------------------


def test_template_found_under_internal_communication_only() -> None:
    text = """# Runbook

```
Subject: not this one
```

### Communication Procedures

#### Internal Communication
```
Subject: [P1] DR Activation - Shop
Time: [TIMESTAMP]
```

#### External Communication
```
Subject: Service Maintenance
```
"""
    assert find_message_template(text) == "Subject: [P1] DR Activation - Shop\nTime: [TIMESTAMP]\n"
    assert find_message_template(text.replace("Internal", "Other")) is None
    assert find_message_template((ROOT / "docs" / "runbook.md").read_text()) is None


def test_seed_template_filled_with_no_placeholder_left() -> None:
    template = find_message_template(SEED.read_text(encoding="utf-8"))
    assert template is not None and "[TIMESTAMP]" in template and "[TIME]" in template
    text = fill_message(template, FACTS)
    assert PLACEHOLDER.search(text) is None, text
    lines = text.splitlines()
    assert lines[0] == (
        "Subject: [P1] DR Activation - LAMP Visitor Analytics (DR exercise 20261129T010000Z)"
    )
    assert "Time: 2026-11-29 01:00:03 UTC" in lines
    assert "DR Region: eu-central-1" in lines
    assert "Affected Service: Visitor Analytics Application" in lines  # kept as written
    assert "Contact: oncall@example" in lines
    actions = lines.index("Actions Taken:")
    assert lines[actions + 1 : actions + 4] == [
        "- 01:00:03Z primary region failure confirmed",
        "- 01:00:06Z DR region activated",
        "",
    ]
    # the template's own generic bullets are replaced, not kept beside ours
    assert "- Database replica promoted" not in lines
    steps = lines.index("Next Steps:")
    assert lines[steps + 1 : steps + 3] == ["- Monitor the primary region for 24 hours", ""]


def test_default_template_filled_and_severity_in_subject() -> None:
    text = fill_message(DEFAULT_TEMPLATE, MessageFacts(**{**FACTS.__dict__, "severity": "P2"}))
    assert text.startswith("Subject: [P2] DR Activation - Visitor Analytics (DR exercise ")
    assert PLACEHOLDER.search(text) is None, text


# --- the checkpoint ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "go_on"),
    [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False), ("", False), ("ok\n", False)],
)
def test_checkpoint_asks_and_only_yes_goes_on(answer: str, go_on: bool) -> None:
    out = io.StringIO()
    assert TerminalCheckpoint(io.StringIO(answer), out)("take the primary region down") is go_on
    assert out.getvalue().startswith("next: take the primary region down. go on? [y/N] ")


def test_a_target_without_the_capabilities_is_refused() -> None:
    # capabilities are protocols, named when missing (not method names looked up with getattr)
    assert missing_capabilities(object(), "script") == ["FailoverStack", "ScriptedStack"]
    assert missing_capabilities(object(), "lambda") == ["FailoverStack", "ScriptedStack"]


def test_local_target_refused_with_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "drdrill.yaml"
    config.write_text(f"target: local\njournal: {tmp_path / 'j.jsonl'}\n")
    result = _exercise(tmp_path, "--config", str(config), "--yes")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "cannot run the exercise" in result.stderr and "FailoverStack" in result.stderr
    assert not (tmp_path / "j.jsonl").exists()


# --- the exit status, and whose objectives each row is held to -----------------------------------

RUNBOOK = ROOT / "docs" / "runbook.md"
T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
NO_IMPACT = Severity(NO_SEVERITY, "", "", None, "", "", "no outage", None)


def _metric(
    name: str = "Detection Time",
    measured: float | None = 1.0,
    uncertainty: float = 0.02,
    target_s: float | None = 2.4,
    objective: str | None = "Detection",
    held_by: Any = "stack",
    scale: float = 0.02,
) -> Metric:
    value = None if measured is None else Measurement(measured, uncertainty)
    return Metric(name, "?", "a", "b", value, objective, target_s, held_by, scale)


def _made_report(*metrics: Metric, **changes: Any) -> ExerciseReport:
    """A report as the exercise makes it, completed unless ``changes`` say otherwise."""
    report = ExerciseReport(
        exercise_id="20261129T010000Z",
        started_utc=T0,
        finished_utc=T0 + timedelta(seconds=30),
        outcome="completed",
        trigger="script",
        target={"name": "sandbox", "regions": {"primary": "eu-west-1", "dr": "eu-central-1"}},
        steps=(),
        events=(),
        metrics=metrics or (_metric(),),
        severity=NO_IMPACT,
        message=Communication("s", "Subject: s\n", "drdrill default"),
        outages=(),
        probes=(),
        reverts=(),
        objectives_source="docs/runbook.md",
        objectives_scale=0.02,
    )
    return replace(report, **changes)


def test_rows_say_whose_time_they_are_and_the_scale_of_their_objective() -> None:
    assert _metric(held_by="people", scale=1.0).label == "people (runbook, unscaled)"
    assert _metric().label == "stack (scaled by 0.02)"
    assert _metric(held_by="people and stack", scale=1.0).label == (
        "people and stack (runbook, unscaled)"
    )
    # a figure's status as a drill's: met or missed over the whole interval, else inconclusive
    assert _metric(measured=2.3, uncertainty=0.05).status == "met"
    assert _metric(measured=2.5, uncertainty=0.05).status == "missed"
    assert _metric(measured=2.38, uncertainty=0.05).status == "inconclusive"
    assert _metric(measured=-1.0).status == "invalid"
    assert _metric(measured=None).status == "not measured"
    assert _metric(objective=None, target_s=None).status == "no objective"
    assert _metric(measured=3.0).describe() == (
        "Detection Time 3.000 ± 0.020 s; objective Detection 2.4 s, stack (scaled by 0.02): missed"
    )


MISSED = _metric(measured=3.0)
INCONCLUSIVE = _metric(measured=2.38, uncertainty=0.05)


@pytest.mark.parametrize(
    ("report", "status", "failures"),
    [
        (_made_report(), 0, []),
        (_made_report(_metric(), _metric("Response Time", measured=None)), 0, []),
        (_made_report(_metric(objective=None, target_s=None)), 0, []),
        (_made_report(MISSED), 1, [f"missed: {MISSED.describe()}"]),
        (
            _made_report(INCONCLUSIVE),
            1,
            [
                "inconclusive, not accepted (compliance.accept_inconclusive is off): "
                + INCONCLUSIVE.describe()
            ],
        ),
        (_made_report(INCONCLUSIVE, accept_inconclusive=True), 0, []),
        (
            _made_report(
                outcome="failed", failed_reverts=("take region primary down (kill): refused",)
            ),
            1,
            ["revert failed: take region primary down (kill): refused"],
        ),
        (
            _made_report(outcome="stopped", stopped_at="take the primary region down"),
            1,
            ["stopped before: take the primary region down (not confirmed)"],
        ),
        (
            _made_report(outcome="failed", error="the alarm never\nfired"),
            1,
            ["failed: the alarm never fired"],
        ),
        (_made_report(outcome="interrupted", error="SIGTERM"), 130, ["interrupted: SIGTERM"]),
    ],
    ids=[
        "all-met",
        "not-measured",
        "no-objective",
        "missed",
        "inconclusive",
        "inconclusive-accepted",
        "revert-failed",
        "stopped",
        "failed",
        "interrupted",
    ],
)
def test_exit_status_is_0_only_when_completed_met_and_reverted(
    report: ExerciseReport, status: int, failures: list[str]
) -> None:
    assert report.failures() == failures
    assert report.exit_status == status
    assert report.to_json()["exit_status"] == status
    assert report.to_json()["failures"] == failures


def test_summary_report_and_error_line_name_each_failure() -> None:
    report = _made_report(
        MISSED,
        _metric("Response Time", 90.0, 0.02, 180.0, "Decision", held_by="people", scale=1.0),
        outcome="failed",
        failed_reverts=("take region primary down (kill): port in use",),
        reverts=("failed: take region primary down (kill): port in use",),
    )
    lines = summary_lines(report)
    assert lines[:2] == [
        "Detection Time: 3.000 ± 0.020 s; objective Detection 2.4 s, stack (scaled by 0.02): "
        "missed",
        "Response Time: 90.000 ± 0.020 s; objective Decision 180 s, people (runbook, unscaled): "
        "met",
    ]
    assert lines[-3:] == [
        "not passed (exit status 1):",
        f"  missed: {MISSED.describe()}",
        "  revert failed: take region primary down (kill): port in use",
    ]
    markdown = render_markdown(report)
    assert "- **Exit status**: 1; an inconclusive metric is not accepted" in markdown
    result = markdown.split("## Result\n\n", 1)[1].split("\n\n", 1)[0]
    assert result.splitlines() == [
        f"- missed: {MISSED.describe()}",
        "- revert failed: take region primary down (kill): port in use",
    ]
    assert "| stack (scaled by 0.02) | missed |" in markdown
    assert "| people (runbook, unscaled) | met |" in markdown
    assert "Still in place (the revert failed):" in markdown
    reason = stop_reason(report)
    assert "\n" not in reason
    assert reason == (
        "exercise failed; 1 objective not met (Detection Time missed); 1 revert FAILED "
        "(take region primary down (kill): port in use); drdrill recover puts back a journaled "
        "fault"
    )
    assert summary_lines(_made_report())[-1] == (
        "passed: the exercise completed, every objective measured was met, every revert succeeded"
    )
    accepted = summary_lines(_made_report(INCONCLUSIVE, accept_inconclusive=True))
    assert (
        f"inconclusive, accepted (compliance.accept_inconclusive): {INCONCLUSIVE.describe()}"
        in (accepted)
    )


class _Described:
    """A target the report can describe; the metrics read the timeline only."""

    name = "fake"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "regions": {"primary": "eu-west-1", "dr": "eu-central-1"}}


def _timed_exercise(
    tmp_path: Path, trigger: Any, decision_s: float, scale: float = 0.02
) -> Exercise:
    """An exercise whose timeline has a failover's events: the alarm 1.5 s after the fault,
    the failover triggered ``decision_s`` later, the service back 6 s after that."""
    clock = FakeClock()
    runbook = parse_runbook(RUNBOOK)
    exercise = Exercise(
        _Described(),  # type: ignore[arg-type]
        journal=Journal(tmp_path / "journal.jsonl"),
        probes=ProbesConfig(),
        confirm=lambda step: True,
        options=ExerciseOptions(trigger=trigger),
        objectives=runbook.scaled(scale) if scale != 1 else runbook,
        people_objectives=runbook,
        clock=Clock(mono=clock.mono, wall=clock.wall),
    )
    timeline = exercise.timeline
    timeline.observe("fault_injected", clock.t, 0.02)
    clock.t += 1.5
    timeline.observe("alarm_raised", clock.t, 0.0)
    clock.t += decision_s
    timeline.mark("failover_triggered")
    clock.t += 6.0
    timeline.observe("service_restored", clock.t, 0.04)
    return exercise


class _Lagging(_Described):
    """A stack whose replica lags over the RPO, as its own steady-state check says; otherwise
    ready (alarm OK, DNS on the primary, replication running, DR at pilot light)."""

    def __init__(self) -> None:
        self.asked_rpo: list[float | None] = []

    def start(self) -> None:
        """Nothing to connect to."""

    def steady_state_problems(self, rpo_s: float | None) -> list[str]:
        self.asked_rpo.append(rpo_s)
        return [f"replica lag 5.000 ± 0.500 s over the RPO of {rpo_s:g} s"]

    def alarm_state(self) -> str:
        return "OK"

    def dns_answer(self) -> str:
        return "127.0.1.2"

    def region_of(self, address: str | None) -> str:
        return "primary"

    def replication_running(self) -> bool:
        return True

    def desired(self, region: str) -> int:
        return 0

    def endpoints(self) -> list[Any]:
        return []


def test_readiness_is_the_drills_steady_state_a_lagging_replica_included(tmp_path: Path) -> None:
    """Before the fix the exercise asked only whether the replica replicated, not how far
    behind: it went ahead on a replica lagging over the RPO, which the drills refuse."""
    target = _Lagging()
    exercise = Exercise(
        target,  # type: ignore[arg-type]
        journal=Journal(tmp_path / "journal.jsonl"),
        probes=ProbesConfig(),
        confirm=lambda step: True,
        options=ExerciseOptions(trigger="script"),
        objectives=parse_runbook(RUNBOOK).scaled(0.02),
        people_objectives=parse_runbook(RUNBOOK),
    )
    with pytest.raises(ExerciseStopped) as stopped:
        exercise._readiness()
    lag = "replica lag 5.000 ± 0.500 s over the RPO of 1.2 s"
    assert str(stopped.value) == f"stack not ready: {lag}"
    assert target.asked_rpo == [pytest.approx(1.2)]  # the stack's (scaled) Database RPO


@pytest.mark.slow
def test_the_service_is_restored_only_after_the_outage_the_fault_made(tmp_path: Path) -> None:
    """Real probes of a real HTTP server that keeps serving for 0.6 s after the fault (a region
    down takes a while to reach the clients), then fails for 0.6 s, then serves again. Before
    the fix the exercise took the good samples right after the fault for the restore: a
    Resolution Time of a few samples, met whatever the real outage."""
    server = FlakyServer()
    exercise = Exercise(
        _Described(),  # type: ignore[arg-type]
        journal=Journal(tmp_path / "journal.jsonl"),
        probes=ProbesConfig(),
        confirm=lambda step: True,
        options=ExerciseOptions(trigger="script", timeout_s=30.0),
        objectives=parse_runbook(RUNBOOK),
        people_objectives=parse_runbook(RUNBOOK),
    )
    runner = ProbeRunner([Endpoint(server.url("/health"))], interval_s=0.05, recovery_samples=3)
    exercise._runner = runner
    runner.start()
    try:
        time.sleep(0.3)
        fault = exercise.timeline.mark("fault_injected")
        time.sleep(0.6)
        went_down = server.down("503")
        time.sleep(0.6)
        came_back = server.up()
        exercise._wait_restored(fault)
    finally:
        runner.stop()
        server.close()
    restored = exercise.timeline.get("service_restored")
    # the restore's interval holds the moment the server came back, after the outage
    assert restored.mono - restored.uncertainty_s <= came_back <= restored.mono, (
        restored,
        went_down,
        came_back,
    )
    assert restored.mono - fault.mono > 1.2


def test_a_persons_decision_is_held_to_the_runbook_the_stack_to_the_scaled(
    tmp_path: Path,
) -> None:
    # a person took 90 s to decide: the runbook's 3 minutes, not the scaled 3.6 s
    detection, response, resolution = _timed_exercise(tmp_path, "script", 90.0).metrics()
    assert (detection.held_by, detection.target_s, detection.status) == (
        "stack",
        pytest.approx(2.4),
        "met",
    )
    assert detection.label == "stack (scaled by 0.02)"
    assert (response.held_by, response.target_s, response.status) == ("people", 180.0, "met")
    assert response.label == "people (runbook, unscaled)"
    assert response.measured is not None and response.measured.value == pytest.approx(90.0)
    # the resolution less the person's 90 s: the stack's 7.5 s against the scaled 18 s
    assert resolution.held_by == "stack" and resolution.target_s == pytest.approx(18.0)
    assert resolution.measured is not None
    assert resolution.measured.value == pytest.approx(7.5, abs=0.05)
    assert resolution.note == (
        "fault to service restored 97.49 s, less the people's Response Time 90.00 s"
    )
    assert resolution.status == "met"


def test_the_alarms_automation_is_the_stacks_and_unscaled_rows_are_not_split(
    tmp_path: Path,
) -> None:
    _, response, resolution = _timed_exercise(tmp_path, "automated", 5.0).metrics()
    assert response.held_by == "stack" and response.target_s == pytest.approx(3.6)
    assert response.status == "missed"  # the automation took 5 s against the scaled 3.6 s
    assert resolution.held_by == "stack" and resolution.note is None
    # unscaled objectives for both: nothing to take apart, the row is both people's and stack's
    _, response, resolution = _timed_exercise(tmp_path, "script", 90.0, scale=1).metrics()
    assert response.label == "people (runbook, unscaled)"
    assert resolution.label == "people and stack (runbook, unscaled)" and resolution.note is None
    assert resolution.measured is not None
    assert resolution.measured.value == pytest.approx(97.5, abs=0.05)
    assert resolution.target_s == 900.0


class _StuckFault:
    """A fault whose revert fails (its stack no longer answers)."""

    kind: ClassVar[str] = "test.stuck"

    def describe(self) -> str:
        return "take region primary down (kill)"

    def inject(self) -> None:
        pass

    def revert(self) -> RevertResult:
        raise RuntimeError("control port refused:\nconnection reset")

    def to_record(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls()


def test_a_revert_that_fails_is_a_failure_of_the_exercise(tmp_path: Path) -> None:
    """The revert's own failure as the exercise records it (the sandbox test below makes one
    fail for real)."""
    exercise = _timed_exercise(tmp_path, "script", 1.0)
    exercise.say = lambda line: None
    exercise.injector.inject(_StuckFault())
    lines = exercise._finish()
    assert lines == [
        "failed: take region primary down (kill): control port refused:\nconnection reset"
    ]
    assert exercise.failed_reverts == [
        "take region primary down (kill): control port refused: connection reset"
    ]
    report = exercise._report("stopped", "trigger the failover", None, lines)
    assert report.outcome == "failed"  # not merely stopped: something is still in place
    assert report.exit_status == 1
    assert report.failures()[-1] == (
        "revert failed: take region primary down (kill): control port refused: connection reset"
    )


# --- the exercise as a run: its reports, the history, compliance ---------------------------------

NODEID = "drdrill exercise::exercise[script]"
OUTAGE = OutageRecord(
    "http://app.example/health",
    datetime(2027, 1, 15, 8, 0, 1, tzinfo=UTC),
    datetime(2027, 1, 15, 8, 0, 8, tzinfo=UTC),
    7.0,
    0.05,
    0.05,
    0.05,
)
PROBE = ProbeStatsRecord("http://app.example/health", 200, 96.5, 4.0, 9.0, 12.0)


def _completed_exercise(tmp_path: Path) -> tuple[Exercise, ExerciseReport]:
    """A completed exercise's report as the exercise makes it: a person took 90 s to decide
    (held to the runbook's 3 minutes), the stack's rows held to the objectives scaled by 0.02;
    its probes saw one outage."""
    exercise = _timed_exercise(tmp_path, "script", 90.0)
    exercise.say = lambda line: None
    report = exercise._report("completed", None, None, [])
    return exercise, replace(report, outages=(OUTAGE,), probes=(PROBE,))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_exercise_is_a_run_in_the_reports_the_history_and_compliance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no drdrill.yaml of the repository read by the commands
    exercise, report = _completed_exercise(tmp_path)
    assert report.exit_status == 0
    run = exercise_run(report, exercise.objectives)
    reports, history = tmp_path / "reports", tmp_path / "reports" / "history.sqlite"
    written = write_run_reports(run, reports, history, min_outage_s=0.5)
    assert written == [
        reports / run.run_id / name for name in ("report.json", "report.md", "report.html")
    ]
    assert all(p.is_file() for p in written)
    assert run.run_id.startswith(report.started_utc.strftime("%Y%m%dT%H%M%SZ-"))

    data = json.loads(written[0].read_text())
    assert data["run"]["verdict"] == "passed" and data["run"]["exit_status"] == 0
    assert data["run"]["started_utc"] == report.started_utc.isoformat()
    (test,) = data["tests"]
    assert (test["nodeid"], test["outcome"], test["message"]) == (NODEID, "passed", None)
    # each measured row as a figure, held to the objective it was held to, whose it is in its note
    phases = [
        (p["name"], p["objective"], p["measured"], p["target_s"], p["status"], p["note"])
        for p in data["phases"]
    ]
    assert phases == [
        (
            m.name,
            m.objective,
            m.measured.value if m.measured else None,
            m.target_s,
            m.status,
            m.label + (f"; {m.note}" if m.note else ""),
        )
        for m in report.metrics
    ]
    assert [p["note"] for p in data["phases"]] == [
        "stack (scaled by 0.02)",
        "people (runbook, unscaled)",
        "stack (scaled by 0.02); fault to service restored 97.49 s, less the people's "
        "Response Time 90.00 s",
    ]
    assert {p["test"] for p in data["phases"]} == {NODEID}
    # the table the run was held to: the people's Decision at the runbook's own 3 minutes
    rto = data["objectives"]["rto"]
    assert rto["Decision"]["target_s"] == 180.0
    assert "the exercise's Response Time: people (runbook, unscaled)" in rto["Decision"]["notes"]
    assert rto["Detection"]["target_s"] == pytest.approx(2.4)
    assert data["objectives"]["scale"] == 0.02
    assert [e["name"] for e in data["events"]] == [e.name for e in report.events]
    assert [o["endpoint"] for o in data["outages"]] == [OUTAGE.endpoint]
    assert [(p["endpoint"], p["samples"]) for p in data["probes"]] == [(PROBE.endpoint, 200)]
    markdown = written[1].read_text()
    assert markdown.startswith("**PASSED** — 1 passed")
    assert "| **Decision** | 180 s | 90.000 ± " in markdown
    assert NODEID in written[2].read_text()

    code, out, err = _cli(
        capsys, "history", "--db", str(history), "--json", "--html", str(tmp_path / "h.html")
    )
    assert (code, err) == (0, "")
    listed = json.loads(out)
    assert listed["runs"] == [run.run_id]
    assert listed["verdicts"][0]["verdict"] == "passed"
    assert listed["verdicts"][0]["tests"] == {"passed": 1}
    objectives = {t["objective"]: t for t in listed["objectives"]}
    assert set(objectives) == {"Detection", "Decision", "Total RTO"}
    code, out, err = _cli(
        capsys, "history", "--db", str(history), "--html", str(tmp_path / "h.html")
    )
    assert code == 0 and run.run_id in out

    month = report.started_utc.strftime("%Y-%m")
    code, out, err = _cli(
        capsys, "compliance", "--month", month, "--db", str(history), "--out", str(tmp_path)
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    (row,) = [line for line in lines if run.run_id in line]
    assert "passed (exit 0)" in row and "met 3, missed 0" in row
    assert lines[-1] == f"drdrill compliance {month}: COMPLIANT — 1 runs, all passed"
    page = json.loads((tmp_path / f"compliance-{month}.json").read_text())
    assert [r["id"] for r in page["runs"]] == [run.run_id]


READY_FAILED = StepRecord(
    "readiness", "readiness check", False, T0, T0, "failed", "stack not ready: alarm is ALARM"
)


@pytest.mark.parametrize(
    ("report", "outcome", "verdict", "exit_status"),
    [
        (_made_report(), "passed", "passed", 0),
        # accepted as the exercise accepted it: compliance judges an inconclusive run likewise
        (_made_report(INCONCLUSIVE, accept_inconclusive=True), "passed", "inconclusive", 0),
        (_made_report(INCONCLUSIVE), "failed", "failed", 1),
        (_made_report(MISSED), "failed", "failed", 1),
        (_made_report(outcome="failed", error="the alarm never fired"), "failed", "failed", 1),
        (
            _made_report(outcome="failed", error=READY_FAILED.detail, steps=(READY_FAILED,)),
            "error",
            "failed",
            1,
        ),
        (_made_report(outcome="failed", failed_reverts=("x: refused",)), "failed", "failed", 1),
        (
            _made_report(outcome="stopped", stopped_at="take the primary region down"),
            "skipped",
            "incomplete",
            1,
        ),
        (
            _made_report(outcome="interrupted", error="interrupted by SIGTERM"),
            "interrupted",
            "incomplete",
            2,
        ),
    ],
    ids=[
        "passed",
        "inconclusive-accepted",
        "inconclusive",
        "missed",
        "step-failed",
        "not-ready",
        "revert-failed",
        "stopped",
        "interrupted",
    ],
)
def test_the_exercises_end_is_its_tests_outcome_and_its_runs_verdict(
    report: ExerciseReport, outcome: str, verdict: str, exit_status: int
) -> None:
    run = exercise_run(report, parse_runbook(RUNBOOK).scaled(0.02), run_id="r1")
    (test,) = run.tests
    assert (test.nodeid, test.outcome) == (NODEID, outcome)
    assert (str(run.verdict), run.exit_status) == (verdict, exit_status)
    # the reason is the exercise's own one line
    assert test.message == (None if report.exit_status == 0 else stop_reason(report))
    assert [r.name for r in test.results] == [m.name for m in report.metrics]
    if report.outcome == "stopped":
        assert run.interruption == "stopped before 'take the primary region down' (not confirmed)"
        assert run.lost == []
    elif report.outcome == "interrupted":
        assert run.interruption == "interrupted by SIGTERM" and run.lost == [NODEID]
    else:
        assert run.interruption is None and run.lost == []


def test_a_stopped_exercise_is_an_incomplete_run_the_month_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    history = tmp_path / "history.sqlite"
    stopped = _made_report(outcome="stopped", stopped_at="fail back to the primary region")
    missed = _made_report(MISSED, started_utc=T0 + timedelta(hours=1))
    for report in (stopped, missed):
        write_run_reports(exercise_run(report), tmp_path, history)
    with HistoryStore(history) as store:
        runs = store.runs("2026-11")
    assert [(r.verdict, r.exit_status) for r in runs] == [("incomplete", 1), ("failed", 1)]
    assert runs[0].reason == "stopped before 'fail back to the primary region' (not confirmed)"
    assert runs[1].reason.startswith("Detection 3.000 s > 2.4 s; failed exercise[script]: ")
    code, out, err = _cli(capsys, "compliance", "--month", "2026-11", "--db", str(history))
    assert code == 1, out + err
    assert out.splitlines()[-1].startswith(
        f"drdrill compliance 2026-11: NOT COMPLIANT — run {runs[0].run_id} incomplete: stopped "
        "before 'fail back to the primary region' (not confirmed) (and 1 more)"
    )


# --- the examples: a cron line and a CI workflow --------------------------------------------------


def _bash_syntax_ok(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, timeout=30)


def test_cron_line_runs_the_drills_and_compliance_on_the_first_sunday() -> None:
    text = (ROOT / "examples" / "cron" / "monthly-compliance.cron").read_text()
    entries = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^\w+=", line)
    ]
    (entry,) = entries
    minute, hour, day, month, weekday, command = entry.split(None, 5)
    # days 1-7, and the command itself checks the weekday: cron would OR a restricted weekday
    assert (minute, hour, day, month, weekday) == ("0", "2", "1-7", "*", "*")
    assert re.search(r"(?<!\\)%", command) is None, "an unescaped % ends a crontab command"
    shell = command.replace("\\%", "%")  # what cron hands to the shell
    assert shell.startswith('[ "$(date +%u)" = 7 ] && ')
    assert "./dev.sh drill" in shell and "drdrill compliance --month" in shell
    checked = _bash_syntax_ok(shell)
    assert checked.returncode == 0, checked.stderr


def test_ci_workflow_is_valid_yaml_with_schedule_and_per_change_jobs() -> None:
    data = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on:` key as true
    assert "push" in triggers and "pull_request" in triggers
    assert triggers["schedule"] == [{"cron": "0 2 1-7 * *"}]
    jobs = data["jobs"]
    assert set(jobs) == {"test", "emulator", "compliance"}
    runs: dict[str, str] = {}
    for name, job in jobs.items():
        assert job["runs-on"] and job["steps"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (name, step)
            if "run" in step:
                # ${{ ... }} is filled in by Actions before the shell sees it
                script = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])
                checked = _bash_syntax_ok(script)
                assert checked.returncode == 0, (name, step["run"], checked.stderr)
        runs[name] = "\n".join(step.get("run", "") for step in job["steps"])
    assert "./dev.sh test" in runs["test"]
    assert "pytest tests/targets/aws" in runs["emulator"]
    assert "./dev.sh drill" in runs["compliance"]
    assert "drdrill compliance --month" in runs["compliance"]
    assert "schedule" in jobs["compliance"]["if"] and "push" in jobs["test"]["if"]


# --- on the sandbox ------------------------------------------------------------------------------


def _command() -> list[str]:
    from drdrill import cli

    return [DRDRILL] if "exercise" in cli.COMMANDS else [sys.executable, "-c", _CLI]


def _exercise(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), "exercise", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
    )


def _status(config: Path) -> dict[str, Any]:
    result = subprocess.run(
        [DRDRILL, "sandbox", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _journal_ops(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["op"] for line in path.read_text().splitlines() if line.strip()]


def _journal_kinds(path: Path) -> list[tuple[str, str]]:
    """Each journal line's op with the kind of change it is about (lines joined by id)."""
    kinds: dict[str, str] = {}
    found: list[tuple[str, str]] = []
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        if entry["op"] == "inject":
            kinds[entry["id"]] = entry["kind"]
        found.append((entry["op"], kinds.get(entry["id"], "?")))
    return found


#: the exercise's journal: the alarm's mode set for the trigger (journaled like a drill's, so
#: that `drdrill recover` puts it back after a kill), then the region down; reverted newest first
MODE, REGION = "sandbox.set_mode", "sandbox.region_down"
JOURNALED = [("inject", MODE), ("inject", REGION), ("reverted", REGION), ("reverted", MODE)]


def _report(out: Path) -> dict[str, Any]:
    (found,) = sorted(out.glob("exercise-*.json"))
    assert found.with_suffix(".md").exists()
    report: dict[str, Any] = json.loads(found.read_text())
    return report


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A sandbox of its own (block 17), up for the module, taken down at its end."""
    tmp = tmp_path_factory.mktemp("exercise")
    config = tmp / "drdrill.yaml"
    config.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
probes: {{interval: 0.05, timeout: 0.5, recovery_samples: 3}}
journal: {tmp / "journal.jsonl"}
report_dir: {tmp / "reports"}
targets:
  sandbox:
    run_dir: {tmp / "sandbox"}
    block: {BLOCK}
"""
    )
    up = subprocess.run(
        [DRDRILL, "sandbox", "up", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield config
    finally:
        subprocess.run(
            [DRDRILL, "sandbox", "down", "--config", str(config)],
            capture_output=True,
            timeout=120,
        )


@needs_sandbox
def test_no_at_the_first_checkpoint_injects_nothing(sandbox: Path, tmp_path: Path) -> None:
    journal = sandbox.parent / "journal.jsonl"
    before = _journal_ops(journal)
    result = _exercise(tmp_path, "--config", str(sandbox), "--out", str(tmp_path), stdin="n\n")
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "drdrill: error: exercise stopped before 'take the primary region down' (not confirmed)"
    )
    assert "nothing was injected" in line
    assert "next: take the primary region down. go on? [y/N] " in result.stdout
    assert _journal_ops(journal) == before  # not even a journal line
    status = _status(sandbox)
    assert status["regions"]["primary"]["state"] == "up" and status["dns"]["active"] == "primary"
    report = _report(tmp_path)
    assert report["outcome"] == "stopped"
    assert [(s["name"], s["outcome"]) for s in report["steps"]] == [
        ("readiness", "ok"),
        ("region_down", "declined"),
    ]
    assert report["severity"]["level"] == "none"
    message = report["message"]["text"]
    assert message.startswith("Subject: [no impact] DR Activation")
    assert "stopped before: take the primary region down (not confirmed)" in message
    assert "Status: DR EXERCISE STOPPED before: take the primary region down" in message


@needs_sandbox
def test_unattended_exercise_measures_and_fills_the_message(sandbox: Path, tmp_path: Path) -> None:
    journal = sandbox.parent / "journal.jsonl"
    before = len(_journal_ops(journal))
    result = _exercise(tmp_path, "--config", str(sandbox), "--yes", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "go on?" not in result.stdout
    report = _report(tmp_path)
    assert report["outcome"] == "completed" and report["trigger"] == "script"
    steps = report["steps"]
    assert [s["name"] for s in steps] == [
        "readiness",
        "region_down",
        "detection",
        "failover",
        "service_restored",
        "post_failover_checks",
        "data_loss",
        "restore_primary",
        "failback",
        "post_failback_checks",
    ]
    assert all(s["outcome"] == "ok" for s in steps), steps
    times = [
        (datetime.fromisoformat(s["started_utc"]), datetime.fromisoformat(s["ended_utc"]))
        for s in steps
    ]
    assert all(start <= end for start, end in times)
    assert all(times[i][1] <= times[i + 1][0] for i in range(len(times) - 1))  # in order

    metrics = {m["name"]: m for m in report["metrics"]}
    for name, objective in (
        ("Detection Time", "Detection"),
        ("Response Time", "Decision"),
        ("Resolution Time", "Total RTO"),
    ):
        assert metrics[name]["measured_s"] > 0, metrics[name]
        assert metrics[name]["objective"] == objective and metrics[name]["target_s"] > 0
    # the writes the failover lost, as a drill counts them, against the Database RPO
    loss = metrics["Data Loss"]
    assert (loss["objective"], loss["target_s"]) == ("Database", pytest.approx(60 * 0.02))
    assert loss["measured_s"] is not None and loss["status"] in ("met", "missed"), loss
    assert re.fullmatch(r"\d+ of \d+ acknowledged writes lost", loss["note"]), loss
    (counted,) = [s for s in steps if s["name"] == "data_loss"]
    assert "acknowledged writes lost (data loss window " in counted["detail"], counted
    # detection and response lie within the resolution: fault -> alarm -> trigger -> restored
    assert (
        metrics["Detection Time"]["measured_s"] + metrics["Response Time"]["measured_s"]
        < metrics["Resolution Time"]["measured_s"]
    )
    # the whole public service was down: every endpoint at once
    assert report["severity"]["level"] == "P1"
    assert report["severity"]["criteria"] == "Complete service outage"
    # the checks passed at the end: no outage left open, none "still down at the end"
    assert "still down" not in report["severity"]["reason"], report["severity"]
    assert all(o["end_utc"] is not None for o in report["outages"]), report["outages"]
    assert steps[-1]["detail"].endswith("; the continuous probes agree"), steps[-1]
    assert report["outages"] and {o["endpoint"] for o in report["outages"]} == {
        p["endpoint"] for p in report["probes"]
    }

    message = report["message"]["text"]
    assert PLACEHOLDER.search(message) is None, message
    assert "[TIMESTAMP]" not in message
    assert message.startswith("Subject: [P1] DR Activation")
    assert "DR Region: eu-central-1" in message
    failover_at = datetime.fromisoformat(steps[3]["started_utc"]).strftime("%Y-%m-%d %H:%M")
    assert f"Time: {failover_at}" in message
    assert "DR region activated: scripts/failover.sh --yes" in message
    assert "failed back to the primary region" in message

    markdown = next(tmp_path.glob("exercise-*.md")).read_text()
    assert "## Metrics to track" in markdown and "| Resolution Time |" in markdown

    # the exercise as a run: its reports beside the exercise's own, the run in the history
    (folder,) = [path.parent for path in tmp_path.glob("*/report.json")]
    for name in ("report.json", "report.md", "report.html"):
        assert f"wrote {folder / name}" in result.stdout.splitlines()
        assert (folder / name).is_file()
    run = json.loads((folder / "report.json").read_text())
    assert (run["run"]["id"], run["run"]["verdict"], run["run"]["exit_status"]) == (
        folder.name,
        "passed",
        0,
    )
    (test,) = run["tests"]
    assert (test["nodeid"], test["outcome"]) == ("drdrill exercise::exercise[script]", "passed")
    assert [(p["name"], p["measured"], p["status"]) for p in run["phases"]] == [
        (m["name"], m["measured_s"], m["status"]) for m in report["metrics"]
    ]
    assert [e["name"] for e in run["events"]] == [e["name"] for e in report["events"]]
    assert len(run["outages"]) == len(report["outages"]) and run["probes"]
    with HistoryStore(tmp_path / "history.sqlite") as store:
        (stored,) = store.runs(run["run"]["started_utc"][:7])
    assert (stored.run_id, stored.verdict) == (folder.name, "passed")
    assert [t.nodeid for t in stored.tests] == ["drdrill exercise::exercise[script]"]
    # the fault was journaled, then reverted: nothing left for drdrill recover
    assert _journal_kinds(journal)[before:] == JOURNALED
    status = _status(sandbox)
    assert status["dns"]["active"] == "primary" and status["regions"]["primary"]["state"] == "up"
    assert status["regions"]["dr"]["ecs"]["desired"] == 0


@needs_sandbox
def test_no_at_failback_reverts_the_fault_and_stays_on_dr(sandbox: Path, tmp_path: Path) -> None:
    """Lambda trigger; yes to the region and the failover, no to the failback."""
    journal = sandbox.parent / "journal.jsonl"
    before = len(_journal_ops(journal))
    result = _exercise(
        tmp_path,
        "--config",
        str(sandbox),
        "--trigger",
        "lambda",
        "--out",
        str(tmp_path),
        stdin="y\ny\nn\n",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert "stopped before 'fail back to the primary region" in line
    report = _report(tmp_path)
    assert report["outcome"] == "stopped"
    assert report["steps"][-1]["name"] == "failback"
    assert report["steps"][-1]["outcome"] == "declined"
    assert "service stays on the DR region" in report["message"]["text"]
    assert "scripts/failback.sh" in report["message"]["text"]
    assert _journal_kinds(journal)[before:] == JOURNALED
    status = _status(sandbox)
    assert status["regions"]["primary"]["state"] == "up"  # the fault is reverted
    assert status["dns"]["active"] == "dr"  # the failover is not undone


class _Attended:
    """``drdrill exercise`` with a person at the terminal: each answer given when they choose,
    after what they wait for shows on its output."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [*_command(), "exercise", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
        )
        self.out = b""
        self._seen = 0

    def wait_for(self, text: str, timeout_s: float = 120.0) -> None:
        """Read the output until ``text`` shows (after what the last wait found)."""
        assert self.process.stdout is not None
        wanted = text.encode()
        deadline = time.monotonic() + timeout_s
        while (found := self.out.find(wanted, self._seen)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} within {timeout_s:g} s: {self.out.decode()}"
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                assert chunk, f"the exercise ended before {text!r}: {self.out.decode()}"
                self.out += chunk
        self._seen = found + len(wanted)

    def answer(self, text: str) -> None:
        """Type ``text`` at the terminal."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def finish(self, timeout_s: float = 240.0) -> subprocess.CompletedProcess[str]:
        """No more answers: the exit status and the whole output."""
        try:
            rest, err = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, err = self.process.communicate()
        stdout = (self.out + rest).decode()
        return subprocess.CompletedProcess(
            self.process.args, self.process.returncode, stdout, err.decode()
        )


def _recover(sandbox: Path) -> subprocess.CompletedProcess[str]:
    """``drdrill recover`` on the module's sandbox."""
    return subprocess.run(
        [DRDRILL, "recover", "--config", str(sandbox)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _back_on_primary(sandbox: Path) -> None:
    """The module's sandbox failed back if a test left it on the DR region (a no at the
    failback does): the exercise's readiness refuses a split brain."""
    if _status(sandbox)["dns"]["active"] == "primary":
        return
    back = subprocess.run(
        [DRDRILL, "sandbox", "failback", "--config", str(sandbox)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert back.returncode == 0, back.stdout + back.stderr
    assert _status(sandbox)["dns"]["active"] == "primary"


def _config_with(sandbox: Path, tmp_path: Path, objectives: str) -> Path:
    """The module's sandbox config with its ``objectives:`` line replaced."""
    text = sandbox.read_text().replace("objectives: {scale: 0.02}", objectives)
    assert objectives in text
    config = tmp_path / "drdrill.yaml"
    config.write_text(text)
    return config


@needs_sandbox
def test_a_missed_objective_exits_1_naming_it(sandbox: Path, tmp_path: Path) -> None:
    """Detection held to 1 ms (the stack's alarm takes seconds): the exercise completes, misses
    that one objective, and says so in the summary, the report and its error line."""
    _back_on_primary(sandbox)
    config = _config_with(sandbox, tmp_path, "objectives: {scale: 0.02, rto: {Detection: 0.001}}")
    result = _exercise(tmp_path, "--config", str(config), "--yes", "--out", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "drdrill: error: exercise completed; 1 objective not met (Detection Time missed); report: "
    ), line
    report = _report(tmp_path)
    assert report["outcome"] == "completed" and report["exit_status"] == 1
    (failure,) = report["failures"]
    assert failure.startswith("missed: Detection Time ")
    assert failure.endswith("; objective Detection 0.001 s, stack (scaled by 0.02): missed")
    assert f"  {failure}" in result.stdout.splitlines()
    assert "not passed (exit status 1):" in result.stdout
    assert f"- {failure}" in next(tmp_path.glob("exercise-*.md")).read_text()
    # the others met, each held to its own objectives
    metrics = {m["name"]: m for m in report["metrics"]}
    assert metrics["Response Time"]["status"] == "met"
    assert metrics["Resolution Time"]["status"] == "met"
    status = _status(sandbox)
    assert status["dns"]["active"] == "primary" and status["regions"]["primary"]["state"] == "up"


#: how long the person takes to decide: over the scaled Decision (3 minutes x 0.02 = 3.6 s)
DECISION_S = 4.5


@needs_sandbox
def test_a_persons_decision_is_held_to_the_runbooks_own_objective(
    sandbox: Path, tmp_path: Path
) -> None:
    """A person answers the failover's checkpoint after 4.5 s: met against the runbook's
    3 minutes (the scaled 3.6 s would have missed it); the stack's rows stay scaled."""
    _back_on_primary(sandbox)
    session = _Attended(tmp_path, "--config", str(sandbox), "--out", str(tmp_path))
    session.wait_for("next: take the primary region down. go on? [y/N] ")
    session.answer("y\n")
    session.wait_for("next: trigger the failover: run scripts/failover.sh --yes. go on? [y/N] ")
    time.sleep(DECISION_S)
    session.answer("y\n")
    session.wait_for("next: fail back to the primary region: run scripts/failback.sh. go on?")
    session.answer("y\n")
    result = session.finish()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    report = _report(tmp_path)
    assert report["outcome"] == "completed" and report["failures"] == []
    metrics = {m["name"]: m for m in report["metrics"]}
    response = metrics["Response Time"]
    assert response["measured_s"] >= DECISION_S > 3 * 60 * 0.02
    assert (response["objective"], response["target_s"], response["status"]) == (
        "Decision",
        180.0,
        "met",
    )
    assert response["held_by"] == "people" and response["label"] == "people (runbook, unscaled)"
    detection = metrics["Detection Time"]
    assert detection["held_by"] == "stack" and detection["label"] == "stack (scaled by 0.02)"
    assert detection["target_s"] == pytest.approx(2 * 60 * 0.02)
    # the resolution less the person's decision, against the scaled Total RTO
    resolution = metrics["Resolution Time"]
    assert resolution["label"] == "stack (scaled by 0.02)"
    assert resolution["target_s"] == pytest.approx(15 * 60 * 0.02)
    whole, people = map(
        float,
        re.fullmatch(
            r"fault to service restored ([\d.]+) s, less the people's Response Time ([\d.]+) s",
            resolution["note"],
        ).groups(),  # type: ignore[union-attr]
    )
    assert people == pytest.approx(response["measured_s"], abs=0.01)
    assert resolution["measured_s"] == pytest.approx(whole - people, abs=0.01)
    assert resolution["status"] == "met"
    lines = result.stdout.splitlines()
    (summary,) = [line for line in lines if line.startswith("Response Time: ")]
    assert summary.endswith("; objective Decision 180 s, people (runbook, unscaled): met")
    (summary,) = [line for line in lines if line.startswith("Detection Time: ")]
    assert summary.endswith("stack (scaled by 0.02): met")
    assert lines[-1] == (
        "passed: the exercise completed, every objective measured was met, every revert succeeded"
    )
    markdown = next(tmp_path.glob("exercise-*.md")).read_text()
    assert "| people (runbook, unscaled) | met |" in markdown
    assert "| stack (scaled by 0.02) | met |" in markdown


def _db_address(config: Path) -> tuple[str, int]:
    target = make_target("sandbox", load_config(config), "test")
    address: tuple[str, int] = target.db_address("primary")  # type: ignore[attr-defined]
    return address


def _hold_port(address: tuple[str, int], timeout_s: float = 15.0) -> socket.socket:
    """Listen on ``address`` once the killed database has let go of it."""
    deadline = time.monotonic() + timeout_s
    while True:
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(address)
            held.listen(1)
            return held
        except OSError:
            held.close()
            assert time.monotonic() < deadline, f"{address} still taken"
            time.sleep(0.05)


@needs_sandbox
def test_a_revert_that_fails_exits_1_and_fails_the_exercise(sandbox: Path, tmp_path: Path) -> None:
    """The primary database's port taken while its region is down: bringing the region back
    fails. A no at the failover is then no mere stop: the outcome is failed, exit status 1,
    the revert named; drdrill recover puts the region back once the port is free."""
    _back_on_primary(sandbox)
    journal = sandbox.parent / "journal.jsonl"
    before = len(_journal_ops(journal))
    address = _db_address(sandbox)
    session = _Attended(tmp_path, "--config", str(sandbox), "--out", str(tmp_path))
    held: socket.socket | None = None
    try:
        session.wait_for("next: take the primary region down. go on? [y/N] ")
        session.answer("y\n")
        session.wait_for("take the primary region down: ok")
        held = _hold_port(address)
        session.wait_for("next: trigger the failover")
        session.answer("n\n")
        result = session.finish()
    finally:
        if held is not None:
            held.close()
        if session.process.poll() is None:
            session.process.kill()
            session.process.wait()
    try:
        assert result.returncode == 1, result.stdout + result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(
            "drdrill: error: exercise failed: stopped before 'trigger the failover: "
        ), line
        assert "; 1 revert FAILED (take region primary down (kill): " in line
        report = _report(tmp_path)
        assert report["outcome"] == "failed" and report["exit_status"] == 1
        (still,) = report["failed_reverts"]
        assert still.startswith("take region primary down (kill): ")
        assert report["failures"][-1] == f"revert failed: {still}"
        assert f"  revert failed: {still}" in result.stdout.splitlines()
        assert "NOT REVERTED: take region primary down (kill)" in report["message"]["text"]
        assert _journal_kinds(journal)[before:] == [
            ("inject", MODE),
            ("inject", REGION),
            ("revert_failed", REGION),
            ("reverted", MODE),
        ]
    finally:
        recovered = _recover(sandbox)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert _journal_kinds(journal)[before:] == [
        ("inject", MODE),
        ("inject", REGION),
        ("revert_failed", REGION),
        ("reverted", MODE),
        ("reverted", REGION),
    ]
    status = _status(sandbox)
    assert status["regions"]["primary"]["state"] == "up" and status["dns"]["active"] == "primary"


@needs_sandbox
def test_a_killed_exercise_leaves_nothing_recover_does_not_put_back(
    sandbox: Path, tmp_path: Path
) -> None:
    """SIGKILL at the failover's checkpoint, the primary region down: the journal holds the
    alarm's mode (set for the trigger) and the region down, both open, and ``drdrill recover``
    puts both back. Before the fix the exercise set the mode outside the journal: a killed
    exercise left whatever mode it had set, and recover did not know of it."""
    _back_on_primary(sandbox)
    journal = sandbox.parent / "journal.jsonl"
    before = len(_journal_ops(journal))
    session = _Attended(tmp_path, "--config", str(sandbox), "--out", str(tmp_path))
    try:
        session.wait_for("next: take the primary region down. go on? [y/N] ")
        session.answer("y\n")
        session.wait_for("next: trigger the failover")
        session.process.kill()
        session.process.wait()
        assert _journal_kinds(journal)[before:] == [("inject", MODE), ("inject", REGION)]
        assert _status(sandbox)["regions"]["primary"]["state"].startswith("down")
        recovered = _recover(sandbox)
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert "reverted: failover mode manual (was manual)" in recovered.stdout, recovered.stdout
        assert _journal_kinds(journal)[before:] == JOURNALED
        status = _status(sandbox)
        assert status["mode"] == "manual" and status["regions"]["primary"]["state"] == "up"
        assert status["dns"]["active"] == "primary"
    finally:
        if session.process.poll() is None:
            session.process.kill()
            session.process.wait()
