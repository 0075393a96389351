"""Tests for drdrill.report.severity: the runbook's escalation matrix and the classification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drdrill.errors import DurationError, RunbookError
from drdrill.measure import Measurement, Result
from drdrill.report.record import OutageRecord, ProbeStatsRecord, TestRecord
from drdrill.report.severity import (
    DEFAULT_MATRIX_TEXT,
    EscalationMatrix,
    classify,
    complete_outage_windows,
    default_matrix,
    load_escalation_matrix,
    parse_escalation_matrix,
)

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "tests" / "data" / "runbooks" / "seed-style.md"

RUNBOOK = """\
# Runbook

## Objectives

| Component | Target RTO | Actual RTO | Notes |
|-----------|------------|------------|-------|
| **Total RTO** | 15 minutes | 10-20 minutes | end to end |

```
| Severity | Criteria | Response Time | Action |
|---|---|---|---|
| P1 | in a code block | 1 minute | never read |
```

### 3. Escalation Decision Matrix

| Severity | Criteria | Response Time | Action |
|----------|----------|---------------|---------|
| **P1 - Critical** | Complete service outage | < 5 minutes | Immediate DR activation |
| **P2 - High** | Partial service degradation | < 15 minutes | Investigate, prepare DR |
| **P3 - Medium** | Performance issues | < 30 minutes | Monitor, troubleshoot |
| **P4 - Low** | Minor issues | < 2 hours | Standard troubleshooting |
"""

T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)
HEALTH = "http://app.test/health-simple.php"
HOME = "http://app.test/"
STATS = "http://app.test/api.php?action=stats"
ENDPOINTS = (HEALTH, HOME, STATS)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def outage(endpoint: str, start: float, end: float | None) -> OutageRecord:
    return OutageRecord(
        endpoint=endpoint,
        start_utc=at(start),
        end_utc=None if end is None else at(end),
        duration_s=None if end is None else end - start,
        start_uncertainty_s=0.05,
        end_uncertainty_s=0.05,
    )


def stats(endpoint: str, availability: float = 100.0, p99_ms: float = 30.0) -> ProbeStatsRecord:
    return ProbeStatsRecord(
        endpoint=endpoint,
        samples=200,
        availability=availability,
        p50_ms=5.0,
        p95_ms=20.0,
        p99_ms=p99_ms,
    )


def drill(
    outages: list[OutageRecord],
    probes: list[ProbeStatsRecord] | None = None,
    outcome: str = "passed",
) -> TestRecord:
    record = TestRecord("suites/test_x.py::test_drill", outcome=outcome)
    record.outages.extend(outages)
    record.probes.extend(probes if probes is not None else [stats(e) for e in ENDPOINTS])
    return record


@pytest.fixture
def matrix() -> EscalationMatrix:
    return parse_escalation_matrix(RUNBOOK, "runbook.md")


# --- the matrix ---------------------------------------------------------------------------------


def test_matrix_levels_with_criteria_response_time_and_action(matrix: EscalationMatrix) -> None:
    assert [level.level for level in matrix.levels] == ["P1", "P2", "P3", "P4"]
    p1 = matrix.get("p1")
    assert (p1.name, p1.criteria, p1.action) == (
        "Critical",
        "Complete service outage",
        "Immediate DR activation",
    )
    assert p1.response_time_text == "< 5 minutes"
    assert [level.response_time_s for level in matrix.levels] == [300.0, 900.0, 1800.0, 7200.0]
    # the table in the code block (line 12) is skipped; the real P1 row is line 19
    assert p1.source == "runbook.md:19"


def test_matrix_of_drdrill_runbook_and_of_the_seed_runbook() -> None:
    ours = load_escalation_matrix(ROOT / "docs" / "runbook.md")
    assert ours.get("P1").action == "Activate DR now"
    assert ours.get("P4").response_time_s == 7200.0
    seed = load_escalation_matrix(SEED)
    assert seed.get("P2").criteria == "Partial service degradation"
    assert seed.get("P3").response_time_s == 1800.0
    assert default_matrix().get("P1").criteria == "Complete service outage"


def test_matrix_columns_in_another_order() -> None:
    text = """## Severity levels

| Action | Response time | Level | When |
|---|---|---|---|
| page | 10 min | P1 | all down |
| ticket | 1 h | P2 | some down |
| watch | 2 h | P3 | slow |
| log | 1 day | P4 | other |
"""
    matrix = parse_escalation_matrix(text, "r.md")
    p1 = matrix.get("P1")
    assert (p1.criteria, p1.response_time_s, p1.action, p1.name) == (
        "all down",
        600.0,
        "page",
        "P1",
    )


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("# Runbook\n\nNo tables.\n", "r.md", "no escalation matrix"),
        (
            "## Escalation\n\n| Severity | Criteria | Action |\n|---|---|---|\n| P1 | x | y |\n",
            "r.md:3",
            "no response time column",
        ),
        (
            DEFAULT_MATRIX_TEXT.replace("| **P3 - Medium** | Performance issues", "| Medium | x"),
            "r.md:7",
            "names no level",
        ),
        (
            DEFAULT_MATRIX_TEXT.replace("**P3 - Medium**", "**P2 - again**"),
            "r.md:7",
            "level P2 given twice (first at line 6)",
        ),
        (
            DEFAULT_MATRIX_TEXT.replace(
                "| **P4 - Low** | Minor issues | < 2 hours | Normal troubleshooting |\n", ""
            ),
            "r.md:3",
            "escalation matrix lacks P4",
        ),
        (
            DEFAULT_MATRIX_TEXT.replace("| Activate DR now |", "|"),
            "r.md:5",
            "row has 3 cells, header has 4",
        ),
    ],
)
def test_bad_matrix_names_file_and_line(text: str, where: str, message: str) -> None:
    with pytest.raises(RunbookError) as info:
        parse_escalation_matrix(text, "r.md")
    assert info.value.where == where
    assert message in info.value.message


def test_bad_response_time_is_a_duration_error() -> None:
    text = DEFAULT_MATRIX_TEXT.replace("< 15 minutes", "3 fortnights")
    with pytest.raises(DurationError) as info:
        parse_escalation_matrix(text, "r.md")
    assert info.value.where == "r.md:6"


# --- classification -----------------------------------------------------------------------------


def test_every_endpoint_down_at_once_is_p1(matrix: EscalationMatrix) -> None:
    record = drill(
        [outage(HEALTH, 10.0, 14.0), outage(HOME, 10.2, 14.1), outage(STATS, 11.0, 13.5)],
        [stats(e, availability=60.0) for e in ENDPOINTS],
    )
    severity = classify(record, matrix)
    assert severity.level == "P1"
    assert severity.criteria == "Complete service outage"
    assert severity.response_time_s == 300.0
    assert severity.action == "Immediate DR activation"
    assert severity.source == "runbook.md:19"
    # together from 11.0 (the last to fail) to 13.5 (the first back)
    assert "all 3 probed endpoints down together for 2.50 s from 01:00:11.00Z" in severity.reason
    assert complete_outage_windows(record.outages, ENDPOINTS) == [(at(11.0), at(13.5))]


def test_outages_that_never_overlap_are_p2(matrix: EscalationMatrix) -> None:
    # each endpoint down, but never all at the same time
    record = drill(
        [outage(HEALTH, 1.0, 3.0), outage(HOME, 2.0, 4.0), outage(STATS, 3.5, 5.0)],
        [stats(e, availability=95.0) for e in ENDPOINTS],
    )
    severity = classify(record, matrix)
    assert severity.level == "P2"
    assert severity.criteria == "Partial service degradation"
    assert "3 of 3 endpoints down" in severity.reason and "never all at once" in severity.reason


def test_one_endpoint_down_is_p2(matrix: EscalationMatrix) -> None:
    severity = classify(drill([outage(STATS, 1.0, 2.0)]), matrix)
    assert severity.level == "P2"
    assert "1 of 3 endpoints down (/api.php?action=stats)" in severity.reason


def test_availability_below_100_without_outage_is_p2(matrix: EscalationMatrix) -> None:
    record = drill([], [stats(HEALTH), stats(HOME, availability=99.5), stats(STATS)])
    severity = classify(record, matrix)
    assert severity.level == "P2"
    assert "availability 99.50% on /" in severity.reason


def test_slow_but_no_failure_is_p3_with_a_configurable_threshold(matrix: EscalationMatrix) -> None:
    record = drill([], [stats(HEALTH), stats(HOME, p99_ms=1500.0), stats(STATS, p99_ms=1200.0)])
    severity = classify(record, matrix)
    assert severity.level == "P3"
    assert severity.criteria == "Performance issues" and severity.response_time_s == 1800.0
    assert "p99 1.500 s on /" in severity.reason and "1 s threshold" in severity.reason
    assert classify(record, matrix, latency_threshold_s=2.0).level == "none"
    assert classify(record, matrix, latency_threshold_s=1.3).level == "P3"
    with pytest.raises(ValueError):
        classify(record, matrix, latency_threshold_s=0.0)


def test_failed_drill_without_impact_is_p4_else_none(matrix: EscalationMatrix) -> None:
    clean = drill([])
    assert classify(clean, matrix).level == "none"
    assert classify(clean, matrix).label == "none"
    failed = drill([], outcome="failed")
    failed.message = "the DR service is not at its scaled count"
    severity = classify(failed, matrix)
    assert (severity.level, severity.criteria) == ("P4", "Minor issues")
    assert "the DR service is not at its scaled count" in severity.reason
    missed = drill([])
    missed.results.append(
        Result("Detection", "rto", Measurement(3.0), target_s=2.4, objective="Detection")
    )
    assert classify(missed, matrix).level == "P4"


def test_an_outage_still_open_at_the_end_is_p1(matrix: EscalationMatrix) -> None:
    record = drill([outage(e, 5.0, None) for e in ENDPOINTS])
    severity = classify(record, matrix)
    assert severity.level == "P1"
    assert "still down at the end" in severity.reason


def test_a_second_outage_of_one_endpoint_counts(matrix: EscalationMatrix) -> None:
    # HEALTH recovers at 3 and fails again at 6: the complete outage is 7-8
    record = drill(
        [
            outage(HEALTH, 1.0, 3.0),
            outage(HEALTH, 6.0, 9.0),
            outage(HOME, 7.0, 8.0),
            outage(STATS, 2.0, 10.0),
        ]
    )
    assert complete_outage_windows(record.outages, ENDPOINTS) == [(at(7.0), at(8.0))]
    assert classify(record, matrix).level == "P1"


def test_outages_alone_and_a_chosen_endpoint_set(matrix: EscalationMatrix) -> None:
    single = outage(HEALTH, 1.0, 2.0)
    assert classify(single, matrix).level == "P1"  # the only endpoint it knows of
    both = [outage(HEALTH, 1.0, 2.0), outage(HOME, 1.5, 3.0)]
    assert classify(both, matrix).level == "P1"
    assert classify(both, matrix, endpoints=ENDPOINTS).level == "P2"
    # without a matrix, drdrill's own
    assert classify(both).action == "Activate DR now"


def test_an_endpoint_down_by_design_is_no_customers(matrix: EscalationMatrix) -> None:
    """The DR load balancer probed directly in a region failover is down by design until DR is
    scaled (pilot light). Before the fix its stretch counted as an outage: the complete outage
    was cut short where DR came up (11.0 to 13.0), not where customers got the site back
    (14.0), and its samples' availability made a healthy run P2."""
    dr = "http://dr-lb.test/health.php"
    pilot = OutageRecord(
        endpoint=dr,
        start_utc=at(0.0),
        end_utc=at(13.0),
        duration_s=13.0,
        start_uncertainty_s=0.0,
        end_uncertainty_s=0.05,
        expected_down=True,
    )
    record = drill(
        [pilot, outage(HEALTH, 10.0, 14.0), outage(HOME, 10.2, 14.1), outage(STATS, 11.0, 14.0)],
        [*(stats(e, availability=70.0) for e in ENDPOINTS), stats(dr, availability=40.0)],
    )
    severity = classify(record, matrix)
    assert severity.level == "P1"
    assert "all 3 probed endpoints down together for 3.00 s from 01:00:11.00Z" in severity.reason

    quiet = drill([pilot], [*(stats(e) for e in ENDPOINTS), stats(dr, availability=40.0)])
    assert classify(quiet, matrix).level not in ("P1", "P2")
