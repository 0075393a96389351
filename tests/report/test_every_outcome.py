"""Every outcome reaches every report, and the run's one verdict is the same in all of them.

Real pytest runs (pytester, in subprocesses) of a small drill project on the local target,
then the real ``drdrill history`` and ``drdrill compliance`` commands on the history they
appended to: a failed readiness check that never used a timeline, a worker that dies mid-test,
an inconclusive figure, a module that fails to import, a run stopped early, a passing drill whose
outage is its design.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from .drill_project import CONFIG, RUNBOOK

pytest_plugins = ["pytester"]

DRDRILL = str(Path(sys.executable).parent / "drdrill")

#: a drill that meets its objective
PASSING_DRILL = """
def test_detection(timeline, measure):
    start = timeline.mark("fault_injected")
    timeline.observe("alarm", start.mono + 30.0, 0.5)
    measure.phase("Detection", "fault_injected", "alarm")
"""

#: a readiness check: a drill that never asks for a timeline
FAILING_READINESS = """
import pytest

@pytest.mark.drill(destructive=False)
def test_replication_running(drill_config):
    assert False, "replication stopped"
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=CONFIG)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    return pytester


def _report(project: pytest.Pytester) -> dict[str, Any]:
    (path,) = (project.path / "out").glob("*/report.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _file(project: pytest.Pytester, name: str) -> str:
    (path,) = (project.path / "out").glob(f"*/{name}")
    return path.read_text()


def _tests(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["nodeid"].rsplit("::", 1)[-1]: t for t in data["tests"]}


class _FirstElement(HTMLParser):
    """The first element inside <body>: its tag, attributes and text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.in_body = False
        self.tag: str | None = None
        self.attrs: dict[str, str] = {}
        self.text = ""
        self._open = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.in_body = True
        elif self.in_body and self.tag is None:
            self.tag, self.attrs, self._open = tag, {k: v or "" for k, v in attrs}, True

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == self.tag:
            self._open = False

    def handle_data(self, data: str) -> None:
        if self._open:
            self.text += data


def _drdrill(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DRDRILL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


# --- (a) a failed readiness check that used no timeline ------------------------------------------


def test_a_failed_readiness_check_reaches_every_report_with_its_reason(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_drill=PASSING_DRILL, test_readiness=FAILING_READINESS)
    result = project.runpytest_subprocess("--junitxml=junit.xml", "--alluredir=allure")
    result.assert_outcomes(passed=1, failed=1)
    reason = "replication stopped"

    data = _report(project)
    assert (data["run"]["verdict"], data["run"]["exit_status"]) == ("failed", 1)
    readiness = _tests(data)["test_replication_running"]
    assert (readiness["outcome"], readiness["message"]) == ("failed", reason)
    assert _tests(data)["test_detection"]["outcome"] == "passed"

    first_line = _file(project, "report.md").splitlines()[0]
    assert first_line.startswith("**FAILED** — 1 passed, 1 failed")
    assert f"test_replication_running: {reason}" in first_line

    first = _FirstElement(_file(project, "report.html"))
    assert (first.tag, first.attrs["id"], first.attrs["class"]) == (
        "p",
        "verdict",
        "verdict failed",
    )
    assert first.text.startswith("FAILED — 1 passed, 1 failed")
    assert f"test_replication_running: {reason}" in first.text

    # the console summary ends with the same line
    lines = result.stdout.lines
    verdict_line = next(ln for ln in lines if ln.startswith("FAILED — "))
    assert verdict_line == first.text
    assert lines[lines.index(verdict_line) - 1].startswith("drdrill report: ")
    assert f"  failed  test_readiness.py::test_replication_running: {reason}" in lines

    # pytest's JUnit and allure-pytest list it too
    cases = {c.attrib["name"]: c for c in ET.parse(project.path / "junit.xml").iter("testcase")}
    assert cases["test_replication_running"].find("failure") is not None
    allure = [json.loads(p.read_text()) for p in (project.path / "allure").glob("*-result.json")]
    assert {r["name"]: r["status"] for r in allure}["test_replication_running"] == "failed"

    db = str(project.path / "out" / "history.sqlite")
    history = _drdrill(project.path, "history", "--db", db, "--json")
    assert history.returncode == 0, history.stderr
    (run,) = json.loads(history.stdout)["verdicts"]
    assert (run["verdict"], run["exit_status"]) == ("failed", 1)
    assert run["failed_tests"] == [
        {
            "nodeid": "test_readiness.py::test_replication_running",
            "outcome": "failed",
            "message": reason,
        }
    ]

    compliance = _drdrill(project.path, "compliance", "--month", _month(), "--db", db)
    assert compliance.returncode == 1, compliance.stdout + compliance.stderr
    assert f"failed test_replication_running: {reason}" in compliance.stdout
    assert compliance.stdout.splitlines()[-1].startswith(
        f"drdrill compliance {_month()}: NOT COMPLIANT — run {data['run']['id']} failed"
    )


def test_a_missed_objective_is_said_in_its_own_words_not_where_it_was_raised(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_slow="""
        def test_slow(timeline, measure):
            start = timeline.mark("fault_injected")
            timeline.observe("restored", start.mono + 950.0, 0.2)
            measure.phase("Total RTO", "fault_injected", "restored")
        """
    )
    project.runpytest_subprocess().assert_outcomes(failed=1)
    message = _tests(_report(project))["test_slow"]["message"]
    assert message == (
        "phase 'Total RTO' measured 949.900 ± 0.100 s, over its objective 'Total RTO' of 900 s"
    )
    assert "measure.py" not in message and "ObjectiveMissed" not in message
    first_line = _file(project, "report.md").splitlines()[0]
    assert first_line == (
        "**FAILED** — 1 failed; worst miss: Total RTO 949.900 ± 0.100 s over 900 s (test_slow)"
    )


# --- every way a test can end ----------------------------------------------------------------


OUTCOMES = """
import pytest

@pytest.fixture
def stack(drill_config):
    pytest.fail("the stack is not at its baseline: DR region serving", pytrace=False)

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("could not scale the DR service back to 0")

def test_needs_stack(stack, timeline):
    timeline.mark("fault_injected")

def test_teardown_fails(broken_teardown, timeline):
    timeline.mark("fault_injected")

def test_skipped(drill_config):
    pytest.skip("no replica on this target")

@pytest.mark.xfail(reason="the alarm is not wired yet")
def test_xfailed(drill_config):
    assert False

@pytest.mark.xfail(reason="flaky DNS")
def test_xpassed(drill_config):
    pass

def test_passes(drill_config):
    pass
"""


def test_setup_and_teardown_errors_skips_and_xfails_are_all_listed(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_outcomes=OUTCOMES)
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=2, errors=2, skipped=1, xfailed=1, xpassed=1)
    tests = _tests(_report(project))
    assert {name: (t["outcome"], t["message"]) for name, t in tests.items()} == {
        "test_needs_stack": ("error", "the stack is not at its baseline: DR region serving"),
        "test_teardown_fails": ("error", "RuntimeError: could not scale the DR service back to 0"),
        "test_skipped": ("skipped", "no replica on this target"),
        "test_xfailed": ("xfailed", "the alarm is not wired yet"),
        "test_xpassed": ("xpassed", "flaky DNS"),
        "test_passes": ("passed", None),
    }
    assert _report(project)["run"]["verdict"] == "failed"
    md = _file(project, "report.md")
    assert "| test_outcomes.py::test_needs_stack | **error** |" in md
    # a test whose teardown failed is an error (pytest counts it passed and errored)
    assert md.splitlines()[0] == (
        "**FAILED** — 1 passed, 2 errors, 1 skipped, 1 xfailed, 1 xpassed; first failure: "
        "test_needs_stack: the stack is not at its baseline: DR region serving (and 1 more)"
    )


# --- (b) a worker killed mid-test --------------------------------------------------------------


def test_a_crashed_worker_makes_the_run_incomplete_naming_what_it_lost(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_drill=PASSING_DRILL,
        test_readiness=FAILING_READINESS,
        test_crash="""
        import os

        def test_worker_dies(drill_config):
            os._exit(1)
        """,
    )
    result = project.runpytest_subprocess("-n", "2")
    data = _report(project)
    run = data["run"]
    assert run["verdict"] == "incomplete"
    assert run["lost"] == ["test_crash.py::test_worker_dies"]
    assert re.fullmatch(r"worker gw[01] crashed", run["interruption"])
    tests = _tests(data)
    # the controller has every test's outcome: the crashed one, and the others' from both workers
    assert tests["test_worker_dies"]["outcome"] == "failed"
    assert (
        "crashed while running 'test_crash.py::test_worker_dies'"
        in (tests["test_worker_dies"]["message"])
    )
    assert tests["test_detection"]["outcome"] == "passed"
    # the reason travelled with the report from the worker that ran the test
    assert tests["test_replication_running"]["message"] == "replication stopped"
    verdict = next(ln for ln in result.stdout.lines if ln.startswith("INCOMPLETE — "))
    assert re.match(r"INCOMPLETE — worker gw[01] crashed; lost: test_worker_dies; ", verdict)
    assert _file(project, "report.md").splitlines()[0].startswith("**INCOMPLETE** — worker gw")


# --- (c) an inconclusive figure ----------------------------------------------------------------


def test_an_inconclusive_figure_makes_the_run_inconclusive_and_fails_compliance_unless_accepted(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_unsure="""
        def test_unsure(timeline, measure):
            start = timeline.mark("fault_injected")
            timeline.observe("restored", start.mono + 900.3, 0.4)
            measure.phase("Total RTO", "fault_injected", "restored")
        """
    )
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    data = _report(project)
    assert (data["run"]["verdict"], data["run"]["exit_status"]) == ("inconclusive", 0)
    (phase,) = data["phases"]
    assert phase["status"] == "inconclusive"
    assert (phase["low"], phase["high"]) == pytest.approx((899.9, 900.3))
    expected = (
        "INCONCLUSIVE — 1 passed; 1 figure inconclusive: Total RTO 900.100 ± 0.200 s "
        "[899.900, 900.300] s vs 900 s (test_unsure)"
    )
    assert expected in result.stdout.lines
    assert _file(project, "report.md").splitlines()[0] == expected.replace(
        "INCONCLUSIVE", "**INCONCLUSIVE**", 1
    )

    db = str(project.path / "out" / "history.sqlite")
    month = ["compliance", "--month", _month(), "--db", db]
    refused = _drdrill(project.path, *month)
    assert refused.returncode == 1
    assert " inconclusive: Total RTO inconclusive" in refused.stdout
    accepted = _drdrill(project.path, *month, "--accept-inconclusive")
    assert accepted.returncode == 0, accepted.stdout
    # the project's drdrill.yaml, read by default, may accept it too
    (project.path / "drdrill.yaml").write_text(
        CONFIG + "compliance:\n  accept_inconclusive: true\n"
    )
    assert _drdrill(project.path, *month).returncode == 0


# --- (d) a module that fails to import ---------------------------------------------------------


def test_a_collection_error_is_an_error_entry_and_the_run_is_not_passed(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_drill=PASSING_DRILL, test_broken="import nope\n")
    result = project.runpytest_subprocess()
    assert result.ret == 2  # pytest's interrupt: "1 error during collection"
    data = _report(project)
    broken = _tests(data)["test_broken.py"]
    assert (broken["outcome"], broken["message"]) == (
        "error",
        "ModuleNotFoundError: No module named 'nope'",
    )
    # nothing ran: the drill is listed as never run, the run incomplete
    assert _tests(data)["test_detection"]["outcome"] == "not run"
    assert data["run"]["verdict"] == "incomplete"
    assert data["run"]["lost"] == ["test_drill.py::test_detection"]
    assert data["run"]["interruption"] == "1 error during collection"

    (project.path / "out").rename(project.path / "first")
    result = project.runpytest_subprocess("--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)
    data = _report(project)
    assert (data["run"]["verdict"], data["run"]["exit_status"]) == ("failed", 1)
    assert _file(project, "report.md").splitlines()[0] == (
        "**FAILED** — 1 passed, 1 error; error: test_broken.py: "
        "ModuleNotFoundError: No module named 'nope'"
    )


# --- stopped early ---------------------------------------------------------------------------


STOPPED = """
def test_first(drill_config):
    assert False, "DR region unreachable"

def test_second(timeline):
    timeline.mark("fault_injected")

def test_third(drill_config):
    pass
"""


def test_a_run_stopped_by_x_lists_what_never_ran(project: pytest.Pytester) -> None:
    project.makepyfile(test_stop=STOPPED)
    project.runpytest_subprocess("-x").assert_outcomes(failed=1)
    data = _report(project)
    assert data["run"]["verdict"] == "incomplete"
    assert data["run"]["lost"] == ["test_stop.py::test_second", "test_stop.py::test_third"]
    assert data["run"]["interruption"] == "stopping after 1 failures"
    tests = _tests(data)
    assert tests["test_second"] == {
        **tests["test_second"],
        "outcome": "not run",
        "message": "never ran: stopping after 1 failures",
    }
    assert (
        _file(project, "report.md")
        .splitlines()[0]
        .startswith(
            "**INCOMPLETE** — stopping after 1 failures; lost: test_second, test_third; "
            "1 failed, 2 not run"
        )
    )


def test_an_interrupted_run_is_incomplete(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_interrupt="""
        def test_first(timeline):
            timeline.mark("fault_injected")
            raise KeyboardInterrupt

        def test_second(drill_config):
            pass
        """
    )
    result = project.runpytest_subprocess()
    assert result.ret == 2
    data = _report(project)
    assert (data["run"]["verdict"], data["run"]["exit_status"]) == ("incomplete", 2)
    tests = _tests(data)
    assert tests["test_first"]["outcome"] == "interrupted"
    assert tests["test_second"]["outcome"] == "not run"
    assert data["run"]["lost"] == [
        "test_interrupt.py::test_first",
        "test_interrupt.py::test_second",
    ]
    assert any(ln.startswith("INCOMPLETE — ") for ln in result.stdout.lines)


# --- (e) a passing drill's outage is its design ----------------------------------------------


FREEZE = """
import time

import pytest

from drdrill.faults.process import FreezeProcess, ProcessRef

@pytest.fixture
def app_process(target):
    return ProcessRef.of(target.app_process().pid, name="demo-app")

def _outage(app_process, probes, inject, measure):
    probes.start()
    time.sleep(0.5)
    fault = inject(FreezeProcess(app_process))
    time.sleep(1.0)
    inject.revert(fault)
    restored = probes.wait_restored("fault_injected", timeout_s=20)
    measure.phase("Total RTO", "fault_injected", restored)

def test_region_failover(app_process, probes, inject, measure):
    _outage(app_process, probes, inject, measure)

def test_region_failover_with_failed_checks(app_process, probes, inject, measure):
    _outage(app_process, probes, inject, measure)
    assert False, "post-failover checks failed"
"""

FREEZE_CONFIG = """probes: {interval: 50ms, timeout: 500ms, recovery_samples: 3}
drills: {effect_timeout: 2s, steady_samples: 5}
targets:
  local:
    demo: {db: demo.sqlite}
"""


def test_a_passing_drill_with_a_complete_outage_has_no_severity_level(
    project: pytest.Pytester,
) -> None:
    project.makefile(".yaml", drdrill=CONFIG + FREEZE_CONFIG)
    project.makepyfile(test_freeze=FREEZE)
    project.runpytest_subprocess("--alluredir=allure").assert_outcomes(passed=1, failed=1)
    data = _report(project)
    outages = {o["test"].rsplit("::", 1)[-1] for o in data["outages"]}
    assert outages == {"test_region_failover", "test_region_failover_with_failed_checks"}

    severity = _file(project, "report.md").split("## Severity", 1)[1].split("\n## ", 1)[0]
    rows = {
        line.split(" | ")[0].rsplit("::", 1)[-1]: line
        for line in severity.splitlines()
        if line.startswith("| test_freeze.py::")
    }
    assert rows["test_region_failover"].startswith(
        "| test_freeze.py::test_region_failover | — | as designed (the drill passed): "
    )
    assert "P1" not in rows["test_region_failover"]
    # the same outage in a drill that failed is an incident: P1
    assert " | P1 - Critical | " in rows["test_region_failover_with_failed_checks"]

    html = _file(project, "report.html")
    overview = html.split('<table class="overview">', 1)[1].split("</table>", 1)[0]
    passing_row, failing_row = (
        next(r for r in overview.split("<tr>") if f"::{name}</a>" in r)
        for name in ("test_region_failover", "test_region_failover_with_failed_checks")
    )
    assert "P1" not in passing_row and "as designed" in passing_row
    assert "P1 - Critical" in failing_row

    allure = {
        r["name"]: [label["value"] for label in r["labels"] if label["name"] == "tag"]
        for r in (
            json.loads(p.read_text()) for p in (project.path / "allure").glob("*-result.json")
        )
    }
    assert not [tag for tag in allure["test_region_failover"] if tag.startswith("P")]
    assert "P1 - Critical" in allure["test_region_failover_with_failed_checks"]


def test_collecting_only_writes_no_report_and_no_history_row(project: pytest.Pytester) -> None:
    project.makepyfile(test_drill=PASSING_DRILL)
    result = project.runpytest_subprocess("--co", "-q")
    assert result.ret == 0, result.stdout.str()
    assert "test_drill.py::test_detection" in result.stdout.str()
    # nothing ran: a report or a history row would be a run that never was (and an
    # "incomplete" month in compliance)
    assert not list(project.path.glob("out/**/report.json"))
    assert not (project.path / "out" / "history.sqlite").exists()
