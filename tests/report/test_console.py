"""The console summary on an 80-column terminal: names whole, every line within the width."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from drdrill.measure import Measurement, Result
from drdrill.report.console import render_summary
from drdrill.report.record import OutageRecord, RunRecord, TestRecord


def _result(name: str, value: float, uncertainty: float, truth: float) -> Result:
    return Result(
        name,
        "rto",
        Measurement(value, uncertainty),
        2.4,
        name,
        truth_s=truth,
        truth_source="HAProxy's log (targets UP), the independent observer (dr-lb passes)",
    )


def test_the_summary_fits_80_columns_with_every_name_whole() -> None:
    test = TestRecord(
        "suites/test_region_failover.py::test_region_failover[lambda]", outcome="passed"
    )
    test.results = [
        _result("Health Verification", 0.048, 0.048, 0.09),
        _result("ECS Scale-up", 0.794, 0.026, 0.811),
        _result("client downtime", 2.5, 0.03, 2.52),
    ]
    test.outages = []
    run = RunRecord("20261130T105628Z-ffe2e5", {}, {}, None, 0.02, tests=[test])
    text = render_summary(run, width=80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    rows = {line.split("  ")[0].strip(): line for line in lines if line.startswith(" ")}
    assert "Health Verification" in rows  # on one line, not "Health" / "Verification"
    assert "-42.0 ms" in rows["Health Verification"] and "(inside)" in text
    assert "ECS Scale-up" in rows and "client downtime" in rows
    # the truth's source is left to report.md and report.html
    assert "observer" not in text


def test_no_ground_truth_reads_whole_at_80_columns_beside_the_widest_status() -> None:
    test = TestRecord(
        "suites/test_region_failover.py::test_region_failover[script]", outcome="passed"
    )
    without_truth = Result("Database", "rpo", Measurement(0.0, 0.0), 1.2, "Database", truth_s=None)
    info = Result("client downtime", "rto", Measurement(3.645, 0.048), None, None, truth_s=3.6)
    test.results = [_result("Health Verification", 0.046, 0.046, 0.09), info, without_truth]
    test.outages = []
    run = RunRecord("20261130T125201Z-b2a9bc", {}, {}, None, 0.02, tests=[test])
    lines = render_summary(run, width=80).splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    database = next(line for line in lines if line.startswith(" Database"))
    assert database.rstrip().endswith("no ground truth"), lines
    assert any("no objective" in line for line in lines)


def test_a_drill_without_figures_gets_a_line_not_an_empty_table() -> None:
    test = TestRecord("suites/test_x.py::test_steps", outcome="passed")
    test.results = []
    start = datetime(2026, 11, 30, 12, 54, 50, tzinfo=UTC)
    test.outages = [
        OutageRecord("http://127.0.0.1:9/x", start, start + timedelta(seconds=0.6), 0.6, 0.05, 0.05)
    ]
    run = RunRecord("20261130T125450Z-eae06b", {}, {}, None, 0.02, tests=[test])
    text = render_summary(run, width=80)
    assert "test_steps (passed): no figure measured" in text
    assert "Figure" not in text
    assert "outages seen by the probes: 1; the longest 0.600 s on /x" in text


def test_an_endpoint_down_by_design_is_no_outage_in_the_summary() -> None:
    test = TestRecord("suites/test_x.py::test_failover", outcome="passed")
    test.results = []
    start = datetime(2026, 11, 30, 12, 54, 50, tzinfo=UTC)
    pilot_light = OutageRecord(
        "http://127.0.2.2:28080/", start, start + timedelta(seconds=5.0), 5.0, 0.05, 0.05
    )
    pilot_light = replace(pilot_light, expected_down=True)
    real = OutageRecord("http://app/x", start, start + timedelta(seconds=0.6), 0.6, 0.05, 0.05)
    test.outages = [pilot_light, real]
    text = render_summary(RunRecord("r", {}, {}, None, 0.02, tests=[test]), width=80)
    assert "outages seen by the probes: 1; the longest 0.600 s on /x" in text
