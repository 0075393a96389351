"""Allure results: steps beside objectives, attachments, labels; Allure 3 renders them offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drdrill.errors import InputError
from drdrill.measure import Measurement, Result
from drdrill.report.allure import (
    SEVERITIES,
    _truth_step,
    allure_recording,
    drill_json,
    drill_markdown,
    drill_severity,
    module_suite,
    phase_span,
    phase_title,
)
from drdrill.report.json_report import run_from_json
from drdrill.report.record import RunRecord
from drdrill.timeline import Event, Source

from .drill_project import CONFIG, RUNBOOK

pytest_plugins = ["pytester"]

#: a real sandbox run (three region failovers under pytest-xdist, run 20261129T011824Z-0f09e8)
SAMPLE = Path(__file__).parent.parent / "data" / "reports" / "sample-failover.json"
#: where ``npm install --prefix DIR allure@3`` put Allure 3 (the render test skips without it)
ALLURE_PREFIX_ENV = "DRDRILL_ALLURE_PREFIX"


def _sample() -> RunRecord:
    return run_from_json(json.loads(SAMPLE.read_text()), where=str(SAMPLE))


def _result(
    name: str, value: float, target_s: float | None, truth_s: float | None = None
) -> Result:
    return Result(
        name=name,
        kind="rto",
        measured=Measurement(value, 0.001),
        target_s=target_s,
        objective=name,
        start="fault_injected",
        end="service_restored",
        truth_s=truth_s,
    )


# --- without allure running ------------------------------------------------------------------


def test_a_step_title_puts_the_figure_and_its_interval_beside_its_objective() -> None:
    assert (
        phase_title(_result("Total RTO", 2.5981, 18.0)) == "Total RTO: 2.598 ± 0.001 s "
        "[2.597, 2.599] s (objective 18 s): met"
    )
    assert (
        phase_title(_result("Detection", 149.75, 120.0))
        == "Detection: 149.750 ± 0.001 s [149.749, 149.751] s (objective 120 s): missed"
    )
    # 120.000 s reads as met; its interval says it cannot tell
    assert phase_title(_result("Detection", 119.9999, 120.0)) == (
        "Detection: 120.000 ± 0.001 s [119.999, 120.001] s (objective 120 s): inconclusive"
    )
    assert phase_title(_result("downtime", 2.5, None)) == (
        "downtime: 2.500 ± 0.001 s [2.499, 2.501] s: no objective"
    )


def test_a_truth_step_says_how_uncertain_the_truth_is() -> None:
    exact = replace(_result("Total RTO", 2.547, 18.0, truth_s=2.544), truth_source="the log")
    assert _truth_step(exact) == "ground truth 2.544 s from the log (error +3.0 ms)"
    uncertain = replace(exact, truth_s=2.844, truth_uncertainty_s=0.28)
    assert _truth_step(uncertain) == "ground truth 2.844 ± 0.280 s from the log (error -297.0 ms)"


@pytest.mark.parametrize(
    ("nodeid", "requested", "expected"),
    [
        ("suites/test_region_failover.py::test_region_failover[lambda]", None, "critical"),
        ("suites/test_failback.py::test_failback_after_failover", None, "critical"),
        ("suites/test_ecs_task_failure.py::test_stopped_task_replaced", None, "normal"),
        ("suites/test_ecs_task_failure.py::test_stopped_task_replaced", "blocker", "blocker"),
        ("suites/test_region_failover.py::test_region_failover[lambda]", "minor", "minor"),
    ],
)
def test_severity_is_the_markers_else_critical_for_losing_a_region(
    nodeid: str, requested: str | None, expected: str
) -> None:
    assert drill_severity(nodeid, requested) == expected


def test_an_unknown_severity_is_bad_input_naming_the_drill() -> None:
    with pytest.raises(InputError) as caught:
        drill_severity("suites/test_x.py::test_y", "urgent")
    assert caught.value.where == "suites/test_x.py::test_y"
    assert "unknown severity 'urgent'" in caught.value.message
    assert "critical" in caught.value.message


def test_severities_are_the_ones_allure_knows() -> None:
    import allure

    assert set(SEVERITIES) == {level.value for level in allure.severity_level}


def test_the_suite_is_the_test_module() -> None:
    assert module_suite("suites/test_region_failover.py::test_region_failover[x]") == (
        "test_region_failover"
    )
    assert module_suite("test_local.py::TestA::test_b") == "test_local"


def test_the_drill_json_holds_its_whole_timeline() -> None:
    record = _sample().tests[0]
    data = json.loads(drill_json(record))
    assert data["test"] == record.nodeid
    assert [e["name"] for e in data["events"]] == [e.name for e in record.events]
    assert [p["name"] for p in data["phases"]] == [r.name for r in record.results]
    assert len(data["outages"]) == len(record.outages) and len(data["rpo"]) == len(record.rpo)
    assert all(p["test"] == record.nodeid for p in data["phases"])


def test_the_markdown_fills_the_runbook_tables_with_this_drill_alone() -> None:
    run = _sample()
    first, second = run.tests[0], run.tests[1]
    md = drill_markdown(first, run)
    total = next(r for r in first.results if r.name == "Total RTO")
    assert f"| **Total RTO** | 18 s | {total.measured} [2.544, 2.550] s | met |" in md
    assert "(worst of" not in md  # the other drills' figures are not in it
    assert second.nodeid not in md
    rows = drill_markdown(first)  # without the run: the drill's own figures
    assert (
        f"| Total RTO | RTO | Total RTO | 18 s | {total.measured} [2.544, 2.550] s | met | "
        "+3.1 ms, inside the interval |" in rows
    )
    # a figure the stack logs no ground truth for says so, never an empty cell
    assert (
        "| Database | RPO | Database | 1.2 s | 0.000 ± 0.000 s [0.000, 0.000] s | met | "
        "no ground truth |" in rows
    )


def _measured(result: Result, value: float) -> Result:
    """``result`` with another measured value (same uncertainty)."""
    return replace(result, measured=Measurement(value, result.measured.uncertainty))


def _event(name: str, at_s: float, uncertainty_s: float = 0.0) -> Event:
    utc = datetime(2026, 11, 30, 12, 0, tzinfo=UTC) + timedelta(seconds=at_s)
    return Event(name, utc, 1000.0 + at_s, Source.OBSERVED, uncertainty_s)


def test_a_phase_spans_its_real_time_from_its_start_event() -> None:
    epoch_ms = round(datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp() * 1000)
    events = [_event("fault_injected", 10.0), _event("alarm", 160.0, 0.5)]
    detection = Result(
        "Detection", "rto", Measurement(149.75, 0.25), 120.0, "Detection", "fault_injected", "alarm"
    )
    assert phase_span(detection, events) == (epoch_ms + 10_000, epoch_ms + 159_750)
    # an observed start counts from the middle of its interval, as the figure does
    late = [_event("fault_injected", 10.0, 0.2), _event("alarm", 160.0, 0.5)]
    assert phase_span(_measured(detection, 149.85), late) == (
        epoch_ms + 9_900,
        epoch_ms + 159_750,
    )
    # a name the timeline has twice: the start whose span to the end is the figure
    twice = [_event("fault_injected", 10.0), _event("fault_injected", 40.0), events[1]]
    second = _measured(detection, 119.75)
    assert phase_span(second, twice) == (epoch_ms + 40_000, epoch_ms + 159_750)
    # an invalid phase (its end before its start) has no length
    assert phase_span(_measured(detection, -3.0), events) == (
        epoch_ms + 10_000,
        epoch_ms + 10_000,
    )


def test_a_figure_that_is_no_span_of_the_timeline_has_none() -> None:
    events = [_event("fault_injected", 10.0)]
    rpo = Result("Database", "rpo", Measurement(0.5, 0.01), 60.0, "Database")
    assert phase_span(rpo, events) is None
    count = Result("lost writes", "rpo", Measurement(3, 0, "writes"), None, None, "fault_injected")
    assert phase_span(count, events) is None
    unseen = Result("Detection", "rto", Measurement(1.0), 120.0, "Detection", "never", "alarm")
    assert phase_span(unseen, events) is None


# --- fed to allure-pytest in a real pytest run -------------------------------------------------

#: feeds records to allure as the plugin does for a drill: in a teardown wrapper, after the
#: fixtures are torn down, while allure-pytest still has the test open
CONFTEST = """
import json
from pathlib import Path

import pytest

from drdrill.measure import Measurement, Result
from drdrill.report.allure import allure_recording, attach_run_report, record_drill
from drdrill.report.json_report import run_from_json
from drdrill.report.record import TestRecord

RUN = run_from_json(json.loads(Path({sample!r}).read_text()))
MISSED = TestRecord(
    "suites/test_ecs_task_failure.py::test_slow",
    outcome="failed",
    results=[
        Result("Detection", "rto", Measurement(149.75, 0.25), 120.0, "Detection"),
        Result("Database", "rpo", Measurement(0.5, 0.01), 60.0, "Database"),
    ],
)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        if allure_recording(item.config):
            html = Path("report.html").resolve()
            if item.name == "test_sample":
                record_drill(RUN.tests[0], html, target_kind="sandbox", run=RUN)
            else:
                record_drill(MISSED, None, target_kind="aws", severity="blocker")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if allure_recording(session.config):
        attach_run_report(Path("report.html").resolve())
"""

TESTS = "def test_sample():\n    pass\n\n\ndef test_missed():\n    pass\n"
HTML = "<!doctype html><title>drdrill</title><h1>DR drill report</h1>\n"


def _results(folder: Path) -> dict[str, Mapping[str, Any]]:
    """allure-pytest's results, by test name."""
    found = [json.loads(p.read_text()) for p in folder.glob("*-result.json")]
    return {r["name"]: r for r in found}


def _labels(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(label["name"], label["value"]) for label in result["labels"]]


def _attachment(folder: Path, result: Mapping[str, Any], name: str) -> tuple[str, str]:
    """The type and text of a result's attachment."""
    (found,) = [a for a in result["attachments"] if a["name"] == name]
    return found["type"], (folder / found["source"]).read_text(encoding="utf-8")


def _run_fed(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST.format(sample=str(SAMPLE)))
    pytester.makepyfile(test_feed=TESTS)
    (pytester.path / "report.html").write_text(HTML)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_each_figure_is_a_step_with_the_drill_attached_and_labelled(
    pytester: pytest.Pytester,
) -> None:
    result = _run_fed(pytester, "--alluredir=results")
    result.assert_outcomes(passed=2)
    folder = pytester.path / "results"
    found = _results(folder)
    run = _sample()
    record = run.tests[0]

    sample = found["test_sample"]
    assert sample["status"] == "passed"
    steps = sample["steps"]
    assert [s["name"] for s in steps] == [phase_title(r) for r in record.results]
    assert "Total RTO: 2.547 ± 0.003 s [2.544, 2.550] s (objective 18 s): met" in [
        s["name"] for s in steps
    ]
    # the sample's Health Verification ends before it starts: invalid, a failed step
    status = {s["name"].split(":")[0]: s["status"] for s in steps}
    assert status.pop("Health Verification") == "failed"
    assert set(status.values()) == {"passed"}
    total = next(s for s in steps if s["name"].startswith("Total RTO"))
    assert [s["name"] for s in total["steps"]] == [
        "from fault_injected to write_acknowledged",
        "ground truth 2.544 s (error +3.1 ms)",
    ]
    database = next(s for s in steps if s["name"].startswith("Database"))
    assert [s["name"] for s in database["steps"]] == ["no ground truth"]
    labels = _labels(sample)
    assert ("suite", "test_region_failover") in labels
    assert ("severity", "critical") in labels
    assert ("tag", "sandbox") in labels
    # an invalid figure fails the drill: it gets its level of the escalation matrix
    assert ("tag", "P1 - Critical") in labels
    # ours replace allure-pytest's default suite (the module it ran in), not added beside it
    assert [value for name, value in labels if name == "suite"] == ["test_region_failover"]

    kind, text = _attachment(folder, sample, "drdrill drill.json")
    assert kind == "application/json"
    assert json.loads(text) == json.loads(drill_json(record))
    kind, text = _attachment(folder, sample, "drdrill runbook tables.md")
    assert kind == "text/markdown"
    assert "| **Total RTO** | 18 s | 2.547 ± 0.003 s [2.544, 2.550] s | met |" in text
    kind, text = _attachment(folder, sample, "drdrill report.html")
    assert (kind, text) == ("text/html", HTML)

    globals_ = [json.loads(p.read_text()) for p in folder.glob("*-globals.json")]
    assert [a["name"] for g in globals_ for a in g.get("attachments", [])] == [
        "drdrill report.html"
    ]


def test_a_missed_objective_is_a_failed_step_naming_the_miss(pytester: pytest.Pytester) -> None:
    _run_fed(pytester, "--alluredir=results").assert_outcomes(passed=2)
    folder = pytester.path / "results"
    missed = _results(folder)["test_missed"]
    # the step fails; the test's outcome stays pytest's (the plugin fails the drill itself)
    assert missed["status"] == "passed"
    detection, database = missed["steps"]
    assert detection["name"] == (
        "Detection: 149.750 ± 0.250 s [149.500, 150.000] s (objective 120 s): missed"
    )
    assert detection["status"] == "failed"
    assert "over its objective 'Detection' of 120 s" in detection["statusDetails"]["message"]
    assert database["name"] == "Database: 0.500 ± 0.010 s [0.490, 0.510] s (objective 60 s): met"
    assert database["status"] == "passed"
    labels = _labels(missed)
    assert ("severity", "blocker") in labels and ("tag", "aws") in labels
    assert ("tag", "P4 - Low") in labels  # failed, no customer impact seen
    assert ("suite", "test_ecs_task_failure") in labels
    names = [a["name"] for a in missed["attachments"]]
    assert names == ["drdrill drill.json", "drdrill runbook tables.md"]  # no HTML given
    _, rows = _attachment(folder, missed, "drdrill runbook tables.md")
    assert (
        "| Detection | RTO | Detection | 120 s | 149.750 ± 0.250 s [149.500, 150.000] s | "
        "missed | no ground truth |" in rows
    )


def test_nothing_is_fed_without_alluredir(pytester: pytest.Pytester) -> None:
    _run_fed(pytester).assert_outcomes(passed=2)
    assert not list(pytester.path.glob("**/*-result.json"))
    assert not allure_recording(pytester.parseconfig())
    assert allure_recording(pytester.parseconfig("--alluredir", str(pytester.path / "r")))
    assert not allure_recording(
        pytester.parseconfig("-p", "no:allure_pytest", "--dr-target", "local")
    )


DRILL = """
def test_region_failover_drill(timeline, measure):
    start = timeline.mark("fault_injected")
    timeline.observe("service_restored", start.mono + 2.5, 0.002)
    measure.phase("Total RTO", "fault_injected", "service_restored", truth_s=2.49)


def test_slow_detection(timeline, measure):
    start = timeline.mark("fault_injected")
    timeline.observe("alarm", start.mono + 150.0, 0.5)
    measure.phase("Detection", "fault_injected", "alarm")
"""


def _drill_project(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A real run of the drills in DRILL on the local target, allure recording."""
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=CONFIG)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(test_drills=DRILL)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--alluredir=results", *args)


def test_a_drill_reaches_allure_through_the_plugin(pytester: pytest.Pytester) -> None:
    result = _drill_project(pytester)
    result.assert_outcomes(passed=1, failed=1)
    found = _results(pytester.path / "results")
    met, missed = found["test_region_failover_drill"], found["test_slow_detection"]
    assert [s["name"] for s in met["steps"]] == [
        "Total RTO: 2.499 ± 0.001 s [2.498, 2.500] s (objective 900 s): met"
    ]
    assert ("severity", "critical") in _labels(met) and ("tag", "local") in _labels(met)
    assert [(s["name"], s["status"]) for s in missed["steps"]] == [
        ("Detection: 149.750 ± 0.250 s [149.500, 150.000] s (objective 120 s): missed", "failed")
    ]
    assert missed["status"] == "failed" and ("severity", "normal") in _labels(missed)
    # only the drill that failed has a level of the escalation matrix
    assert ("tag", "P4 - Low") in _labels(missed)
    assert not [v for k, v in _labels(met) if k == "tag" and v.startswith("P")]
    _, md = _attachment(pytester.path / "results", met, "drdrill runbook tables.md")
    assert "| **Total RTO** | 900 s | 2.499 ± 0.001 s [2.498, 2.500] s | met |" in md


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one process", "xdist"])
def test_a_real_run_attaches_its_report_html_and_times_each_phase(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    _drill_project(pytester, *workers).assert_outcomes(passed=1, failed=1)
    folder = pytester.path / "results"
    (html,) = (pytester.path / "out").glob("*/report.html")
    (report,) = (pytester.path / "out").glob("*/report.json")

    # the run's report.html, written at the session's end, is the run's global attachment
    globals_ = [json.loads(p.read_text()) for p in folder.glob("*-globals.json")]
    (attached,) = [a for g in globals_ for a in g.get("attachments", [])]
    assert (attached["name"], attached["type"]) == ("drdrill report.html", "text/html")
    assert (folder / attached["source"]).read_bytes() == html.read_bytes()

    # each phase step spans the phase: from its start event, for as long as it measured
    data = json.loads(report.read_text())
    events = {(e["test"], e["name"]): e for e in data["events"]}
    found = _results(folder)
    for phase in data["phases"]:
        (step,) = [s for s in found[phase["test"].rsplit("::", 1)[-1]]["steps"]]
        assert step["name"].startswith(f"{phase['name']}: ")
        assert abs(step["stop"] - step["start"] - phase["measured"] * 1000) <= 1
        start = events[(phase["test"], phase["start"])]
        begin = datetime.fromisoformat(start["utc"]).timestamp() - start["uncertainty_s"] / 2
        assert abs(step["start"] - begin * 1000) <= 1
        (span,) = [s for s in step["steps"] if s["name"].startswith("from ")]
        assert (span["start"], span["stop"]) == (step["start"], step["stop"])
    assert {p["name"] for p in data["phases"]} == {"Total RTO", "Detection"}


# --- Allure 3 renders them offline ---------------------------------------------------------------


def _allure_prefix() -> Path:
    """The npm prefix holding Allure 3, or skip saying how to install it."""
    if shutil.which("npx") is None:
        pytest.skip("npx not installed (Allure 3 needs node >= 20 and npm)")
    prefix = os.environ.get(ALLURE_PREFIX_ENV)
    if not prefix:
        pytest.skip(
            f"{ALLURE_PREFIX_ENV} not set: `npm install --prefix DIR allure@3`, "
            f"then {ALLURE_PREFIX_ENV}=DIR"
        )
    if not (Path(prefix) / "node_modules" / ".bin" / "allure").exists():
        pytest.skip(f"no Allure 3 in {prefix}: `npm install --prefix {prefix} allure@3`")
    return Path(prefix)


def _offline(command: list[str]) -> list[str]:
    """The command in a network namespace of its own (no network at all) where we may make one."""
    unshare = shutil.which("unshare")
    if unshare is not None:
        probe = subprocess.run([unshare, "--net", "--", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [unshare, "--net", "--", *command]
    return command


def _allure(prefix: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # --no: never download; offline: npm may not ask the registry anything
    command = _offline(["npx", "--prefix", str(prefix), "--no", "allure", *args])
    env = {**os.environ, "npm_config_offline": "true", "npm_config_update_notifier": "false"}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_allure3_renders_the_results_offline(pytester: pytest.Pytester) -> None:
    prefix = _allure_prefix()
    _run_fed(pytester, "--alluredir=results").assert_outcomes(passed=2)

    done = _allure(prefix, "generate", "results", "-o", "site", cwd=pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    site = pytester.path / "site"
    assert (site / "index.html").is_file()
    summary = json.loads((site / "summary.json").read_text())
    assert summary["stats"] == {"total": 2, "passed": 2}
    # Allure 3 keeps steps and attachments in one list, in the order they were made
    entries = [
        entry
        for p in (site / "data" / "test-results").glob("*.json")
        for entry in json.loads(p.read_text())["steps"]
    ]
    rendered = {e["name"]: e["status"] for e in entries if e["type"] == "step"}
    assert rendered["Total RTO: 2.547 ± 0.003 s [2.544, 2.550] s (objective 18 s): met"] == (
        "passed"
    )
    detection = "Detection: 149.750 ± 0.250 s [149.500, 150.000] s (objective 120 s): missed"
    assert rendered[detection] == "failed"
    links = [e["link"] for e in entries if e["type"] == "attachment"]
    assert sorted((a["name"], a["contentType"]) for a in links) == [
        ("drdrill drill.json", "application/json"),
        ("drdrill drill.json", "application/json"),
        ("drdrill report.html", "text/html"),
        ("drdrill runbook tables.md", "text/markdown"),
        ("drdrill runbook tables.md", "text/markdown"),
    ]
    assert all(a["used"] and not a["missed"] for a in links)
    for a in links:
        assert (site / "data" / "attachments" / f"{a['id']}{a['ext']}").is_file()
    shown = json.loads((site / "widgets" / "globals.json").read_text())
    assert [a["name"] for a in shown["attachments"]] == ["drdrill report.html"]

    # one self-contained file, for opening from disk with no server
    done = _allure(prefix, "awesome", "--single-file", "results", "-o", "one", cwd=pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p.name for p in (pytester.path / "one").glob("*.html")] == ["index.html"]
    assert json.loads((pytester.path / "one" / "summary.json").read_text())["meta"]["singleFile"]
