"""Timeline events and measurements against objectives, on a fake clock (nothing sleeps)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.fake_clock import FakeClock

from drdrill.errors import DrillError, ObjectiveMissed
from drdrill.measure import (
    Measurement,
    MeasurementError,
    Measurements,
    Status,
    UnmappedPhase,
)
from drdrill.objectives import parse_runbook_text
from drdrill.targets.aws.rds import RdsEvent
from drdrill.timeline import Source, Timeline

RUNBOOK = """
## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **ECS Scale-up** | 2 minutes | 1-3 minutes | tasks |
| **Total RTO** | 15 minutes | | |

## Recovery Point Objectives

| Data Type | Target RPO | Actual RPO | Notes |
|---|---|---|---|
| Database | 1 minute | | |
| Configuration | N/A | | |
"""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def line(clock: FakeClock) -> Timeline:
    return clock.timeline()


def test_events_keep_wall_and_monotonic_times_in_order(line: Timeline, clock: FakeClock) -> None:
    first = line.mark("fault_injected", fault="stop 1 task")
    clock.t += 2.5
    line.observe("alarm", mono=clock.t - 0.5, uncertainty_s=0.2)
    clock.t += 1
    second = line.mark("scale_asked")
    assert [e.name for e in line.events] == ["fault_injected", "alarm", "scale_asked"]
    assert first.source is Source.ACTION and first.uncertainty_s == 0.0
    assert first.attrs["fault"] == "stop 1 task"
    assert (second.utc - first.utc).total_seconds() == pytest.approx(3.5)
    assert first.utc.timestamp() == pytest.approx(1_800_001_000.0)
    assert line.get("alarm").source is Source.OBSERVED


def test_reported_event_maps_wall_time_onto_the_monotonic_axis(
    line: Timeline, clock: FakeClock
) -> None:
    start = line.mark("fault_injected")
    reported = line.report("alarm_history", start.utc.replace(microsecond=500_000))
    assert reported.mono == pytest.approx(start.mono + 0.5)
    assert reported.source is Source.REPORTED


def test_missing_event_names_what_the_timeline_has(line: Timeline) -> None:
    line.mark("fault_injected")
    with pytest.raises(DrillError, match=r"no event 'alarm'.*fault_injected"):
        line.get("alarm")


def test_span_between_observed_events_uses_interval_midpoints(line: Timeline) -> None:
    start = line.observe("a", mono=10.0, uncertainty_s=0.2)  # true time in [9.8, 10.0]
    end = line.observe("b", mono=15.0, uncertainty_s=0.4)  # true time in [14.6, 15.0]
    span = Measurement.between(start, end)
    assert span.value == pytest.approx(14.8 - 9.9)
    assert span.uncertainty == pytest.approx(0.3)
    # every true span is within value ± uncertainty
    for s, e in ((9.8, 15.0), (10.0, 14.6), (9.8, 14.6), (10.0, 15.0)):
        assert abs((e - s) - span.value) <= span.uncertainty + 1e-9


def test_phase_over_target_misses_and_fails_as_an_assertion(
    line: Timeline, clock: FakeClock
) -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives, "suites/test_x.py::test_y")
    line.mark("scale_asked")
    clock.t += 130.0
    line.observe("tasks_healthy", mono=clock.t, uncertainty_s=1.0)
    result = measure.phase("ECS Scale-up", "scale_asked", "tasks_healthy")
    assert result.target_s == 120.0
    assert result.status is Status.MISSED
    with pytest.raises(ObjectiveMissed) as caught:
        measure.verify()
    assert isinstance(caught.value, AssertionError)
    message = str(caught.value)
    assert "ECS Scale-up" in message and "129.500 ± 0.500 s" in message and "120 s" in message


@pytest.mark.parametrize(
    ("value", "uncertainty", "status"),
    [
        (895.0, 5.0, Status.MET),  # the whole interval [890, 900] is within 900 s
        (899.0, 5.0, Status.INCONCLUSIVE),  # [894, 904] straddles 900 s
        (901.0, 5.0, Status.INCONCLUSIVE),  # [896, 906]: over, but maybe not
        (905.5, 5.0, Status.MISSED),  # [900.5, 910.5] is all over
        (900.5, 0.0, Status.MISSED),
    ],
)
def test_the_uncertainty_counts(value: float, uncertainty: float, status: Status) -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(Timeline(), objectives)
    result = measure.record("Total RTO", Measurement(value, uncertainty))
    assert result.status is status
    assert (result.low, result.high) == (value - uncertainty, value + uncertainty)
    if status is Status.MISSED:
        with pytest.raises(ObjectiveMissed):
            measure.verify()
    else:
        measure.verify()  # an inconclusive figure does not fail the drill; the run says so
    assert measure.inconclusive == ([result] if status is Status.INCONCLUSIVE else [])


def test_a_phase_that_ends_before_it_starts_is_invalid_never_met(
    line: Timeline, clock: FakeClock
) -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives)
    line.mark("tasks_healthy")
    clock.t += 0.2
    line.observe("checks_pass", mono=clock.t - 0.25, uncertainty_s=0.01)  # seen 50 ms before
    result = measure.phase("ECS Scale-up", "tasks_healthy", "checks_pass")
    assert result.measured.value < 0
    assert result.status is Status.INVALID
    assert result.note is not None
    assert "'checks_pass'" in result.note and "'tasks_healthy'" in result.note
    assert measure.missed == [result]
    with pytest.raises(MeasurementError, match=r"'checks_pass'.*precedes 'tasks_healthy'"):
        measure.verify()


def test_a_figure_that_is_not_finite_is_invalid(line: Timeline) -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives)
    result = measure.record("Total RTO", Measurement(float("nan")))
    assert result.status is Status.INVALID
    with pytest.raises(MeasurementError):
        measure.verify()


def test_a_phase_with_no_runbook_row_is_an_error_listing_the_rows(line: Timeline) -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives)
    with pytest.raises(UnmappedPhase, match=r"'RDS Promotion'.*rows: ECS Scale-up, Total RTO"):
        measure.record("RDS Promotion", Measurement(3.0))
    assert measure.results == []


def test_a_renamed_row_is_reached_through_the_phase_mapping(line: Timeline) -> None:
    renamed = RUNBOOK.replace("**ECS Scale-up**", "**Container start**")
    objectives = parse_runbook_text(renamed, "runbook.md")
    with pytest.raises(UnmappedPhase, match="Container start"):
        Measurements(line, objectives).record("ECS Scale-up", Measurement(3.0))
    measure = Measurements(line, objectives, phase_rows={"ECS Scale-up": "Container start"})
    result = measure.record("ECS Scale-up", Measurement(3.0))
    assert result.objective == "Container start"
    assert result.target_s == 120.0 and result.status is Status.MET


def test_rpo_and_figures_without_objective(line: Timeline) -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives)
    loss = measure.record("Database", Measurement(0.4), kind="rpo")
    assert loss.target_s == 60.0 and loss.status is Status.MET
    config = measure.record("Configuration", Measurement(5.0), kind="rpo")
    assert config.status is Status.NO_OBJECTIVE
    free = measure.record("client downtime", Measurement(3.0), objective=None)
    assert free.status is Status.NO_OBJECTIVE and free.target_s is None
    measure.verify()


def test_an_end_whose_interval_reaches_before_the_start_is_clamped_at_zero(
    line: Timeline, clock: FakeClock
) -> None:
    # the checks passed somewhere in [999.95, 1000.03]; the targets were healthy at 1000.0:
    # the span lies in [0, 0.03] (a phase cannot end before it starts), not around -0.01
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives)
    line.mark("tasks_healthy")
    line.observe("checks_pass", mono=1000.03, uncertainty_s=0.08)
    result = measure.phase("ECS Scale-up", "tasks_healthy", "checks_pass")
    assert result.low == pytest.approx(0.0)
    assert result.high == pytest.approx(0.03)
    assert result.status is Status.MET


def test_a_late_probe_loop_is_named_on_the_figure(line: Timeline, clock: FakeClock) -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives)
    line.mark("fault_injected")
    line.observe("service_restored", mono=clock.t + 3.0, uncertainty_s=0.4, probe_lag_s=0.3)
    result = measure.phase("Total RTO", "fault_injected", "service_restored")
    assert result.note is not None and "probe loop ran up to 300 ms late" in result.note
    quiet = measure.phase("Total RTO", "fault_injected", "fault_injected")
    assert quiet.note is None


def test_a_record_stamped_to_the_second_at_the_objective_is_inconclusive_never_met(
    line: Timeline, clock: FakeClock
) -> None:
    """RDS, ECS and Route53 stamp some records to the second: the action lies anywhere in the
    second after the stamp. Before the fix the stamp counted as exact, and a phase ending at a
    stamp equal to its objective read "met" whatever the second held."""
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    measure = Measurements(line, objectives, "suites/test_x.py::test_y")
    fault = line.mark("fault_injected")
    clock.t += 121.0
    stamped = fault.utc + timedelta(seconds=120)  # "12:02:00", no fraction: a second's record
    record = RdsEvent("db", stamped, "Finished DB Instance promotion", ())
    assert record.resolution_s == 1.0

    end = line.report_stamped("promoted", record.utc, record.resolution_s)

    assert end.source is Source.REPORTED and end.uncertainty_s == 1.0
    assert end.mono == pytest.approx(fault.mono + 121.0)  # the end of the second it names
    assert end.attrs["stamped_utc"] == stamped.isoformat()
    result = measure.phase("ECS Scale-up", fault, end)  # 120 s objective
    assert result.measured.value == pytest.approx(120.5)
    assert result.measured.uncertainty == pytest.approx(0.5)
    assert result.status is Status.INCONCLUSIVE


def test_a_millisecond_record_and_a_round_trip_keep_their_own_width(
    line: Timeline, clock: FakeClock
) -> None:
    fault = line.mark("fault_injected")
    stamped = fault.utc + timedelta(seconds=3, milliseconds=250)
    assert RdsEvent("db", stamped, "rebooted", ()).resolution_s == 0.001
    end = line.report_stamped("rebooted", stamped, 0.001)
    assert end.mono == pytest.approx(fault.mono + 3.251)
    assert end.uncertainty_s == pytest.approx(0.001)
    # a request we sent, known between its send and its answer
    asked = line.report_stamped("scale_asked", stamped, 0.180)
    assert asked.mono == pytest.approx(fault.mono + 3.430)
    assert asked.uncertainty_s == pytest.approx(0.180)


def test_the_failover_drill_puts_a_records_resolution_on_its_event(line: Timeline) -> None:
    """The region failover drill's reported events carry their record's resolution."""
    from suites.test_region_failover import _reported

    since = line.mark("fault_injected")

    class Stack:
        def reported_since(self, mono: float, record: str) -> list[RdsEvent]:
            assert (mono, record) == (since.mono, "rds_promotion_requested")
            return [RdsEvent("db-replica", since.utc + timedelta(seconds=2), "promoting", ())]

    event = _reported(Stack(), line, "rds_promotion_requested", "promotion_asked", since.mono, 1.0)  # type: ignore[arg-type]
    assert event.uncertainty_s == 1.0
    assert event.mono == pytest.approx(since.mono + 3.0)
