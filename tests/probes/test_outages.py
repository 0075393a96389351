"""Outage windows, availability, percentiles and "all good since" from synthetic samples."""

from __future__ import annotations

import pytest

from drdrill.probes.stats import (
    ERROR_REFUSED,
    ERROR_TIMEOUT,
    OutageTracker,
    Sample,
    all_good_since,
    derive_outages,
    endpoint_stats,
    first_good_run,
    percentile,
)

EPOCH0 = 1_700_000_000.0  # wall time of mono 0 in these synthetic runs
INTERVAL = 0.1


def samples(pattern: str, interval: float = INTERVAL, start: float = 0.0) -> list[Sample]:
    """One sample an interval: ``.`` good, ``x`` refused, ``t`` timed out (latency = index ms)."""
    out = []
    for k, mark in enumerate(pattern):
        mono = start + k * interval
        error = {".": None, "x": ERROR_REFUSED, "t": ERROR_TIMEOUT}[mark]
        out.append(
            Sample(
                due_mono=mono,
                send_mono=mono,
                send_epoch=EPOCH0 + mono,
                status=200 if error is None else None,
                latency_s=(k + 1) / 1000,
                error=error,
            )
        )
    return out


def test_one_outage_window_and_uncertainties() -> None:
    run = samples("...xxxx....")
    (outage,) = derive_outages("e", run, recovery_samples=3)
    assert outage.start_mono == pytest.approx(0.3)
    assert outage.end_mono == pytest.approx(0.7)  # the first of the 3 good samples
    assert outage.duration_s == pytest.approx(0.4)
    assert outage.start_uncertainty_s == pytest.approx(0.1)  # last good 0.2 -> first bad 0.3
    assert outage.end_uncertainty_s == pytest.approx(0.1)  # last bad 0.6 -> first good 0.7
    assert outage.start_utc.timestamp() == pytest.approx(EPOCH0 + 0.3)
    assert outage.end_utc is not None and outage.end_utc.timestamp() == pytest.approx(EPOCH0 + 0.7)
    assert outage.start_utc.utcoffset() is not None and not outage.start_utc.utcoffset()
    assert outage.failed_samples == 4
    assert outage.first_error == ERROR_REFUSED
    assert not outage.is_open


def test_uncertainty_follows_the_real_gaps_not_the_nominal_interval() -> None:
    run = samples("..x.")
    late = run[3]
    # the first good sample went out late: the end is less certain by as much
    run[3] = Sample(late.due_mono, 0.45, EPOCH0 + 0.45, 200, 0.001, None)
    (outage,) = derive_outages("e", run, recovery_samples=1)
    assert outage.end_uncertainty_s == pytest.approx(0.25)
    assert outage.duration_s == pytest.approx(0.25)


def test_outage_still_open_at_the_end() -> None:
    (outage,) = derive_outages("e", samples("..xxx.."), recovery_samples=3)
    assert outage.is_open
    assert outage.end_mono is None and outage.end_utc is None and outage.duration_s is None
    assert outage.end_uncertainty_s is None
    assert outage.start_mono == pytest.approx(0.2)
    assert outage.failed_samples == 3


def test_flapping_shorter_than_the_recovery_run_is_one_outage() -> None:
    # good runs of 1 and 2 inside the window do not end it with recovery_samples=3
    (outage,) = derive_outages("e", samples("..xx.x..x...."), recovery_samples=3)
    assert outage.start_mono == pytest.approx(0.2)
    assert outage.end_mono == pytest.approx(0.9)
    assert outage.end_uncertainty_s == pytest.approx(0.1)  # last bad 0.8
    assert outage.failed_samples == 4


def test_flapping_with_recovery_of_one_is_several_outages() -> None:
    outages = derive_outages("e", samples("..xx.x..x...."), recovery_samples=1)
    assert [o.start_mono for o in outages] == pytest.approx([0.2, 0.5, 0.8])
    assert [o.end_mono for o in outages] == pytest.approx([0.4, 0.6, 0.9])


def test_first_sample_failing_has_unknown_start() -> None:
    (outage,) = derive_outages("e", samples("xx..."), recovery_samples=3)
    assert outage.start_mono == 0.0
    assert outage.start_uncertainty_s is None
    assert outage.end_mono == pytest.approx(0.2)


def test_no_failures_no_outages() -> None:
    assert derive_outages("e", samples("......"), recovery_samples=3) == []
    assert derive_outages("e", [], recovery_samples=3) == []


def test_tracker_events_come_in_order_and_end_only_after_the_recovery_run() -> None:
    tracker = OutageTracker("e", recovery_samples=2)
    events = [tracker.feed(s) for s in samples("..xx..x")]
    assert [e.kind if e else None for e in events] == [
        None,
        None,
        "started",
        None,
        None,
        "ended",
        "started",
    ]
    started, ended = events[2], events[5]
    assert started is not None and started.outage.is_open
    assert ended is not None and ended.outage.end_mono == pytest.approx(0.4)  # known at 0.5
    assert tracker.outages[0] == ended.outage
    assert tracker.outages[1].is_open


def test_tracker_refuses_a_zero_recovery_run() -> None:
    with pytest.raises(ValueError, match="recovery_samples"):
        OutageTracker("e", recovery_samples=0)


def test_several_endpoints_have_independent_outages() -> None:
    a = samples("..xxx.....")
    b = samples("......xx...")
    stats_a = endpoint_stats("a", "A", a, recovery_samples=3)
    stats_b = endpoint_stats("b", "B", b, recovery_samples=3)
    assert [o.start_mono for o in stats_a.outages] == pytest.approx([0.2])
    assert [o.start_mono for o in stats_b.outages] == pytest.approx([0.6])
    assert stats_a.outages[0].endpoint == "a" and stats_b.outages[0].endpoint == "b"


def test_availability_and_latency_of_good_samples_only() -> None:
    run = samples("..xx......")  # latencies 1..10 ms; samples 3 and 4 (3, 4 ms) failed
    stats = endpoint_stats("u", "name", run, recovery_samples=3)
    assert stats.samples == 10 and stats.good_samples == 8
    assert stats.availability == pytest.approx(80.0)
    good_ms = [1, 2, 5, 6, 7, 8, 9, 10]
    assert stats.latency_p50_ms == pytest.approx(percentile(good_ms, 50))
    assert stats.latency_p50_ms == pytest.approx(6.5)
    assert stats.latency_p99_ms == pytest.approx(9.93)
    assert stats.latency_p95_ms == pytest.approx(9.65)


def test_stats_of_nothing_and_of_only_failures() -> None:
    empty = endpoint_stats("u", "u", [], recovery_samples=3)
    assert empty.availability is None and empty.latency_p50_ms is None and empty.outages == ()
    down = endpoint_stats("u", "u", samples("xxx"), recovery_samples=3)
    assert down.availability == 0.0 and down.latency_p99_ms is None and len(down.outages) == 1


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 99, 5.0),
        ([1.0, 2.0], 50, 1.5),
        ([3.0, 1.0, 2.0], 0, 1.0),
        ([3.0, 1.0, 2.0], 100, 3.0),
        ([float(v) for v in range(1, 101)], 95, 95.05),
    ],
)
def test_percentile_interpolates_like_numpy(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_first_good_run_after_a_time() -> None:
    run = samples("..x.x...x")
    first = first_good_run(run, t_mono=0.15, n=3)
    assert first is not None and first.send_mono == pytest.approx(0.5)
    only = first_good_run(run, t_mono=0.0, n=2)
    assert only is not None and only.send_mono == 0.0
    assert first_good_run(run, t_mono=0.6, n=3) is None  # 0.6, 0.7 good then 0.8 fails


def shifted(pattern: str, offset: float) -> list[Sample]:
    """Samples of ``pattern`` sent ``offset`` seconds after the grid (endpoints are not in step)."""
    return samples(pattern, start=offset)


def test_all_good_since_waits_for_the_last_endpoint_to_recover() -> None:
    a = shifted("..xx......", 0.000)  # good run of 3 from 0.4
    b = shifted("..xxxx....", 0.010)  # good run of 3 from 0.61
    since = all_good_since([a, b], t_mono=0.15, n_consecutive=3)
    assert since is not None
    assert since.send_mono == pytest.approx(0.61)
    # the latest sample that still saw a failure: b's at 0.51
    assert since.uncertainty_s == pytest.approx(0.10)
    assert since.send_utc.timestamp() == pytest.approx(EPOCH0 + 0.61)


def test_all_good_since_skips_a_recovery_that_did_not_last() -> None:
    # a is good over [0.3, 0.6), fails again, and is good from 0.9; b recovers at 0.65,
    # inside a's relapse, so the first moment both are good is a's second recovery
    a = shifted("..x...xxx....", 0.0)
    b = shifted("..xxxx.......", 0.05)
    since = all_good_since([a, b], t_mono=0.1, n_consecutive=3)
    assert since is not None
    assert since.send_mono == pytest.approx(0.9)
    assert since.uncertainty_s == pytest.approx(0.1)  # a's last failure at 0.8


def test_all_good_since_accepts_an_endpoint_still_on_its_earlier_run() -> None:
    a = shifted("..x.......", 0.0)  # good from 0.3 on
    b = shifted("..xxx.....", 0.01)  # good from 0.51 on
    since = all_good_since([a, b], t_mono=0.1, n_consecutive=3)
    assert since is not None and since.send_mono == pytest.approx(0.51)


def test_all_good_since_none_until_every_endpoint_has_its_run() -> None:
    a = shifted("..x......", 0.0)
    b = shifted("..xxxxxx..", 0.0)  # only 2 good at the end
    assert all_good_since([a, b], t_mono=0.0, n_consecutive=3) is None
    assert all_good_since([], t_mono=0.0, n_consecutive=3) is None


def test_all_good_since_counts_only_samples_after_the_time() -> None:
    a = samples("..........")
    since = all_good_since([a], t_mono=0.35, n_consecutive=2)
    assert since is not None
    assert since.send_mono == pytest.approx(0.4)
    assert since.uncertainty_s == pytest.approx(0.1)  # back to the sample at 0.3
