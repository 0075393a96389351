"""The time within Total RTO that no phase covers: named gaps, overlaps, the threshold."""

from __future__ import annotations

import math

import pytest

from drdrill.report.gaps import MIN_GAP_S, Mark, Span, phase_gaps


def _span(name: str, start: tuple[str, float], end: tuple[str, float], half: float = 0.0) -> Span:
    return Span(name, Mark(start[0], start[1], half), Mark(end[0], end[1], half))


#: fault at 0, everything serving at 10
TOTAL = _span("Total RTO", ("fault_injected", 0.0), ("write_acknowledged", 10.0))


def test_a_gap_between_two_phases_is_named_with_both_events() -> None:
    """RDS Promotion ends at 4, ECS Scale-up starts at 6.3: 2.3 s in no phase, named by the
    promotion's end event and the scale-up's start event."""
    phases = [
        _span("Detection", ("fault_injected", 0.0), ("alarm_raised", 2.0)),
        _span("RDS Promotion", ("alarm_raised", 2.0), ("replica_writable", 4.0), half=0.01),
        _span("ECS Scale-up", ("scale_asked", 6.3), ("write_acknowledged", 10.0), half=0.02),
    ]
    (gap,) = phase_gaps(TOTAL, phases)
    assert (gap.start.event, gap.end.event) == ("replica_writable", "scale_asked")
    assert (gap.after, gap.before) == ("RDS Promotion", "ECS Scale-up")
    assert gap.duration_s == pytest.approx(2.3)
    assert gap.measured.uncertainty == pytest.approx(0.03)  # the two half-widths summed
    assert gap.text() == (
        "not in any phase: 2.300 ± 0.030 s between 'replica_writable' (end of RDS Promotion) "
        "and 'scale_asked' (start of ECS Scale-up)"
    )


def test_overlapping_and_nested_phases_make_no_gap() -> None:
    """Each phase starts before the one before it ends, one lies inside another: covered."""
    phases = [
        _span("Detection", ("fault_injected", 0.0), ("alarm_raised", 3.0)),
        _span("Decision", ("alarm_seen", 2.5), ("failover_started", 6.0)),
        _span("Health Verification", ("a", 4.0), ("b", 5.0)),  # inside Decision
        _span("DNS Update", ("dns_record_changed", 6.0), ("write_acknowledged", 10.0)),
    ]
    assert phase_gaps(TOTAL, phases) == ()


def test_a_gap_under_the_threshold_is_not_shown() -> None:
    """0.15 s between two phases is under 0.2 s; 0.25 s is not; the threshold can be set."""
    phases = [
        _span("Detection", ("fault_injected", 0.0), ("alarm_raised", 3.0)),
        _span("Decision", ("failover_triggered", 3.15), ("failover_started", 6.0)),
        _span("DNS Update", ("dns_record_changed", 6.25), ("write_acknowledged", 10.0)),
    ]
    assert MIN_GAP_S == 0.2
    (gap,) = phase_gaps(TOTAL, phases)
    assert (gap.start.event, gap.end.event) == ("failover_started", "dns_record_changed")
    assert gap.duration_s == pytest.approx(0.25)
    assert len(phase_gaps(TOTAL, phases, min_gap_s=0.1)) == 2
    assert phase_gaps(TOTAL, phases, min_gap_s=0.3) == ()


def test_gaps_at_the_ends_of_the_total_are_named_with_its_events() -> None:
    """Time before the first phase and after the last is named by the total's own events."""
    phases = [_span("DNS Update", ("dns_record_changed", 4.0), ("dns_answers_dr", 7.5))]
    first, last = phase_gaps(TOTAL, phases)
    assert (first.start.event, first.after, first.end.event) == (
        "fault_injected",
        None,
        "dns_record_changed",
    )
    assert (last.start.event, last.end.event, last.before) == (
        "dns_answers_dr",
        "write_acknowledged",
        None,
    )
    assert last.text() == (
        "not in any phase: 2.500 ± 0.000 s between 'dns_answers_dr' (end of DNS Update) and "
        "'write_acknowledged' (end of Total RTO)"
    )
    assert "'fault_injected' (start of Total RTO)" in first.text()


def test_the_phase_that_ends_last_names_the_gap_after_it() -> None:
    """Two phases end before the gap: the later end is where the gap begins."""
    phases = [
        _span("ECS Scale-up", ("scale_asked", 0.0), ("dr_tasks_healthy", 5.0)),
        _span("RDS Promotion", ("promotion_asked", 1.0), ("replica_writable", 4.0)),
        _span("DNS Update", ("dns_record_changed", 6.0), ("write_acknowledged", 10.0)),
    ]
    (gap,) = phase_gaps(TOTAL, phases)
    assert (gap.start.event, gap.after) == ("dr_tasks_healthy", "ECS Scale-up")
    assert gap.duration_s == pytest.approx(1.0)


def test_a_reversed_phase_covers_its_drawn_stretch_and_outside_parts_are_ignored() -> None:
    """A phase whose end event came first covers the time between its events (as its bar is
    drawn); a phase that runs past the total counts only inside it; one wholly outside, not."""
    phases = [
        _span("Detection", ("before", -2.0), ("alarm_raised", 3.0)),
        _span("Health Verification", ("dr_tasks_healthy", 6.0), ("dr_checks_pass", 3.0)),
        _span("DNS Update", ("dns_record_changed", 8.0), ("after", 12.0)),
        _span("failback", ("later", 11.0), ("much_later", 14.0)),
    ]
    (gap,) = phase_gaps(TOTAL, phases)
    assert (gap.start.event, gap.after) == ("dr_tasks_healthy", "Health Verification")
    assert (gap.end.event, gap.before) == ("dns_record_changed", "DNS Update")


def test_nothing_to_compare_gives_no_gap() -> None:
    """No phase, none inside the total, a total that ends first or is not finite: no gap."""
    assert phase_gaps(TOTAL, []) == ()
    assert phase_gaps(TOTAL, [_span("late", ("a", 11.0), ("b", 12.0))]) == ()
    phase = [_span("Detection", ("a", 1.0), ("b", 2.0))]
    assert phase_gaps(_span("Total RTO", ("s", 5.0), ("e", 1.0)), phase) == ()
    assert phase_gaps(_span("Total RTO", ("s", 0.0), ("e", math.nan)), phase) == ()
    nan_phase = [_span("Detection", ("a", math.nan), ("b", 2.0))]
    assert phase_gaps(TOTAL, nan_phase) == ()
