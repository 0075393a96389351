"""Outage windows, bounds, starved samples, availability, percentiles, "all good since" and loop
lateness, from synthetic samples (``drdrill.probes.stats`` is pure).

In these runs sample ``k`` is sent at ``k * 0.1`` s and answered ``k + 1`` ms later, so every
completion time is ``0.1 k + 0.001 (k + 1)``; the expected bounds below are written that way.
"""

from __future__ import annotations

import random

import pytest

from drdrill.probes.stats import (
    ERROR_CHECK_FAILED,
    ERROR_DNS,
    ERROR_REFUSED,
    ERROR_TIMEOUT,
    STARVED_LAG_FRACTION,
    Bound,
    GoodSince,
    OutageTracker,
    Sample,
    all_good_since,
    derive_outages,
    endpoint_stats,
    first_good_run,
    is_starved,
    loop_lateness,
    percentile,
)

EPOCH0 = 1_700_000_000.0  # wall time of mono 0 in these synthetic runs
INTERVAL = 0.1


def samples(pattern: str, interval: float = INTERVAL, start: float = 0.0) -> list[Sample]:
    """One sample an interval: ``.`` good, ``x`` refused, ``t`` timed out, ``s`` a timeout whose
    loop was late by 0.5 s (starved). Latency of sample ``k``: ``k + 1`` ms."""
    out = []
    for k, mark in enumerate(pattern):
        mono = start + k * interval
        error = {".": None, "x": ERROR_REFUSED, "t": ERROR_TIMEOUT, "s": ERROR_TIMEOUT}[mark]
        lag = 0.5 if mark == "s" else 0.0
        out.append(
            Sample(
                due_mono=mono,
                send_mono=mono,
                send_epoch=EPOCH0 + mono,
                status=200 if error is None else None,
                latency_s=(k + 1) / 1000,
                error=error,
                lag_s=lag,
                starved=is_starved(error, lag, timeout_s=1.0),
            )
        )
    return out


def same(bound: Bound | None, low: float, high: float) -> bool:
    """Whether ``bound`` is ``[low, high]`` (to floating-point precision)."""
    return (
        bound is not None
        and bound.low_mono == pytest.approx(low)
        and bound.high_mono == pytest.approx(high)
    )


def done(k: int, start: float = 0.0) -> float:
    """The completion time of sample ``k`` of :func:`samples`."""
    return start + k * INTERVAL + (k + 1) / 1000


# -- outage windows and their bounds ------------------------------------------------------------


def test_one_outage_window_and_its_bounds() -> None:
    run = samples("...xxxx....")
    (outage,) = derive_outages("e", run, recovery_samples=3)
    # start: after the last good send (0.2), by the first bad completion
    assert outage.start_mono == pytest.approx(done(3))
    assert outage.start_uncertainty_s == pytest.approx(done(3) - 0.2)
    # end: after the last bad send (0.6), by the completion of the first of the 3 good samples
    assert outage.end_mono == pytest.approx(done(7))
    assert outage.end_uncertainty_s == pytest.approx(done(7) - 0.6)
    assert same(outage.start_bound, 0.2, done(3))
    assert same(outage.end_bound, 0.6, done(7))
    # the duration runs between the midpoints, right to within the half-widths summed
    assert outage.duration_s == pytest.approx((0.6 + done(7)) / 2 - (0.2 + done(3)) / 2)
    assert outage.duration_uncertainty_s == pytest.approx(((done(3) - 0.2) + (done(7) - 0.6)) / 2)
    assert outage.first_failed_send_mono == pytest.approx(0.3)
    # UTC times follow the upper bounds
    assert outage.start_utc.timestamp() == pytest.approx(EPOCH0 + done(3))
    assert outage.end_utc is not None and outage.end_utc.timestamp() == pytest.approx(
        EPOCH0 + done(7)
    )
    assert outage.start_utc.utcoffset() is not None and not outage.start_utc.utcoffset()
    assert outage.failed_samples == 4
    assert outage.first_error == ERROR_REFUSED
    assert not outage.is_open


def test_bounds_follow_the_real_gaps_and_latencies() -> None:
    run = samples("..x.")
    late = run[3]
    # the first good sample went out late and took 50 ms: the end is less certain by as much
    run[3] = Sample(late.due_mono, 0.45, EPOCH0 + 0.45, 200, 0.05, None)
    (outage,) = derive_outages("e", run, recovery_samples=1)
    assert outage.end_mono == pytest.approx(0.5)
    assert outage.end_uncertainty_s == pytest.approx(0.5 - 0.2)


def test_a_timeout_bounds_the_start_by_its_completion() -> None:
    run = samples("..txxxxxxxxxxxx.")  # down until after the timed-out request completed
    slow = run[2]
    run[2] = Sample(slow.due_mono, 0.2, EPOCH0 + 0.2, None, 1.0, ERROR_TIMEOUT)
    (outage,) = derive_outages("e", run, recovery_samples=1)
    # a request that got no answer within 1 s proves the service down at some moment of that
    # second, not at its send: the service may have hung after the request went out
    assert same(outage.start_bound, 0.1, 1.2)


def test_a_slow_first_failure_never_gives_a_negative_duration() -> None:
    run = samples("..t.")
    slow = run[2]
    run[2] = Sample(slow.due_mono, 0.2, EPOCH0 + 0.2, None, 1.0, ERROR_TIMEOUT)
    (outage,) = derive_outages("e", run, recovery_samples=1)
    # the timeout proves the start by 1.2 s, the good sample the end by 0.304 s: the outage
    # began before it ended, so its start lies in [0.1, 0.304], not [0.1, 1.2], and the outage
    # never reads as starting after it ended (seen in a report: "start .804, end .455")
    assert same(outage.start_bound, 0.1, done(3)) and same(outage.end_bound, 0.2, done(3))
    assert outage.end_mono is not None and outage.start_mono <= outage.end_mono
    assert outage.end_utc is not None and outage.start_utc <= outage.end_utc
    # the duration lies in [0, 0.304 - 0.1]: its middle, not 0.252 - 0.65 = -0.398 s
    assert outage.duration_s == pytest.approx((done(3) - 0.1) / 2)
    assert outage.duration_uncertainty_s == pytest.approx((done(3) - 0.1) / 2)


def test_a_good_sample_that_hung_does_not_hold_the_end_back() -> None:
    """The first good sample after an outage hung 0.5 s (sent as the database came back), the
    next ones passed at once: the end is proven by the earliest completion among the recovery
    run's samples, in the tracker and in "all good since" alike."""
    run = samples("..xx....")
    hung = run[4]
    run[4] = Sample(hung.due_mono, 0.4, EPOCH0 + 0.4, 200, 0.5, None)
    (outage,) = derive_outages("e", run, recovery_samples=3)
    assert same(outage.end_bound, 0.3, done(5))  # not [0.3, 0.9]
    good = all_good_since([run], 0.25, 3)
    assert good is not None and good.mono == pytest.approx(done(5))
    assert good.uncertainty_s == pytest.approx(done(5) - 0.3)
    # only the run's confirming samples count: with one, the end is that sample's completion
    (one,) = derive_outages("e", run, recovery_samples=1)
    assert same(one.end_bound, 0.3, 0.9)


def test_bounds_contain_the_truth_of_simulated_outages() -> None:
    """A service down over [t_down, t_up); each sample's outcome is the service's state at a
    random moment of its flight (which is all a response proves). Every bound must contain the
    truth; each is at most one interval plus the latencies wide."""
    rng = random.Random(7)
    for _ in range(200):
        t_down = rng.uniform(0.5, 1.5)
        t_up = t_down + rng.uniform(0.3, 2.0)
        run = []
        for k in range(50):
            send = k * INTERVAL + rng.uniform(0, 0.02)  # late sends
            latency = rng.uniform(0.0005, 0.08)
            seen = rng.uniform(send, send + latency)
            up = not t_down <= seen < t_up
            error = None if up else ERROR_REFUSED
            run.append(
                Sample(k * INTERVAL, send, EPOCH0 + send, 200 if up else None, latency, error)
            )
        (outage,) = derive_outages("e", run, recovery_samples=3)
        start, end = outage.start_bound, outage.end_bound
        assert start is not None and end is not None
        assert start.contains(t_down), (start, t_down)
        assert end.contains(t_up), (end, t_up)
        assert start.uncertainty_s <= 2 * INTERVAL + 0.08 + 0.02
        assert end.uncertainty_s <= 2 * INTERVAL + 0.08 + 0.02
        since = all_good_since([run], t_down, 3)
        assert since is not None and since.bound.contains(t_up)


def test_outage_still_open_at_the_end() -> None:
    (outage,) = derive_outages("e", samples("..xxx.."), recovery_samples=3)
    assert outage.is_open
    assert outage.end_mono is None and outage.end_utc is None and outage.duration_s is None
    assert outage.end_uncertainty_s is None and outage.end_bound is None
    assert outage.duration_uncertainty_s is None
    assert outage.start_mono == pytest.approx(done(2))
    assert outage.failed_samples == 3


def test_flapping_shorter_than_the_recovery_run_is_one_outage() -> None:
    # good runs of 1 and 2 inside the window do not end it with recovery_samples=3
    (outage,) = derive_outages("e", samples("..xx.x..x...."), recovery_samples=3)
    assert outage.start_mono == pytest.approx(done(2))
    assert outage.end_mono == pytest.approx(done(9))
    assert outage.end_uncertainty_s == pytest.approx(done(9) - 0.8)  # last bad sent at 0.8
    assert outage.failed_samples == 4


def test_flapping_with_recovery_of_one_is_several_outages() -> None:
    outages = derive_outages("e", samples("..xx.x..x...."), recovery_samples=1)
    assert [o.start_mono for o in outages] == pytest.approx([done(2), done(5), done(8)])
    assert [o.end_mono for o in outages] == pytest.approx([done(4), done(6), done(9)])


def test_first_sample_failing_has_unknown_start() -> None:
    (outage,) = derive_outages("e", samples("xx..."), recovery_samples=3)
    assert outage.start_mono == pytest.approx(done(0))
    assert outage.start_uncertainty_s is None and outage.start_bound is None
    assert outage.end_mono == pytest.approx(done(2))
    # from the start's upper bound to the end's midpoint: at least that long
    assert outage.duration_s == pytest.approx((0.1 + done(2)) / 2 - done(0))
    assert outage.duration_uncertainty_s is None


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
    assert started.outage.start_mono == pytest.approx(done(2))
    assert ended is not None and ended.outage.end_mono == pytest.approx(done(4))  # known at 0.5
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
    assert [o.start_mono for o in stats_a.outages] == pytest.approx([done(2)])
    assert [o.start_mono for o in stats_b.outages] == pytest.approx([done(6)])
    assert stats_a.outages[0].endpoint == "a" and stats_b.outages[0].endpoint == "b"


# -- starved samples ----------------------------------------------------------------------------


def test_is_starved_only_for_failures_lateness_can_cause() -> None:
    threshold = STARVED_LAG_FRACTION * 1.0
    assert is_starved(ERROR_TIMEOUT, threshold, 1.0)
    assert not is_starved(ERROR_TIMEOUT, threshold * 0.99, 1.0)
    assert is_starved(ERROR_DNS, 0.5, 1.0)  # the resolver's own timer
    # the server's own answers, however late the loop
    assert not is_starved(ERROR_REFUSED, 5.0, 1.0)
    assert not is_starved(ERROR_CHECK_FAILED, 5.0, 1.0)
    assert not is_starved(None, 5.0, 1.0)  # a good sample is good
    assert is_starved(ERROR_TIMEOUT, 0.1, 0.25, fraction=0.4)
    assert not is_starved(ERROR_TIMEOUT, 0.09, 0.25, fraction=0.4)


def test_a_starved_sample_starts_no_outage_and_bounds_nothing() -> None:
    assert derive_outages("e", samples("...s...s.."), recovery_samples=3) == []
    (outage,) = derive_outages("e", samples("..sxx...."), recovery_samples=3)
    # the last good sample before it is k=1, not the starved k=2
    assert same(outage.start_bound, 0.1, done(3))
    assert outage.failed_samples == 2


def test_a_starved_false_failure_after_the_restore_does_not_move_it() -> None:
    """The service is back at 0.45; the sample of 0.6 timed out only because the probe loop was
    late. Counted as bad it would push the restore's lower bound past the truth."""
    truth = 0.45
    (outage,) = derive_outages("e", samples("..xxx.s...."), recovery_samples=3)
    end = outage.end_bound
    assert end is not None and end.contains(truth)
    assert same(end, 0.4, done(5))
    assert outage.failed_samples == 3
    (unclassified,) = derive_outages("e", samples("..xxx.t...."), recovery_samples=3)
    wrong = unclassified.end_bound
    assert wrong is not None and not wrong.contains(truth)  # what starved samples prevent


def test_a_starved_sample_never_breaks_a_good_run() -> None:
    run = samples("..x.s..s..")
    # 0.3, 0.5, 0.6 are 3 good in a row: the starved 0.4 between them is skipped over
    first = first_good_run(run, 0.0, 3)
    assert first is not None and first.send_mono == pytest.approx(0.3)
    assert derive_outages("e", run, recovery_samples=3)[0].end_mono == pytest.approx(done(3))
    since = all_good_since([run], 0.25, 3)
    assert since is not None
    assert since.first_good_send_mono == pytest.approx(0.3)
    assert same(since.bound, 0.2, done(3))


def test_stats_count_starved_samples_apart() -> None:
    run = samples("..xs..ts..")
    stats = endpoint_stats("u", "u", run, recovery_samples=1)
    assert stats.samples == 10
    assert stats.starved_samples == 2
    assert stats.good_samples == 6
    assert stats.availability == pytest.approx(100 * 6 / 8)  # of the 8 that count
    assert stats.lag_max_ms == pytest.approx(500)
    assert [o.failed_samples for o in stats.outages] == [1, 1]


def test_all_good_since_skips_a_starved_sample_for_the_lower_bound() -> None:
    # k=4 is starved: the last sample that still saw a failure is k=3
    run = samples("..xxs....")
    since = all_good_since([run], 0.0, 3)
    assert since is not None
    assert same(since.bound, 0.3, done(5))


# -- availability and latency -------------------------------------------------------------------


def test_availability_and_latency_of_good_samples_only() -> None:
    run = samples("..xx......")  # latencies 1..10 ms; samples 3 and 4 (3, 4 ms) failed
    stats = endpoint_stats("u", "name", run, recovery_samples=3)
    assert stats.samples == 10 and stats.good_samples == 8
    assert stats.starved_samples == 0
    assert stats.availability == pytest.approx(80.0)
    good_ms = [1, 2, 5, 6, 7, 8, 9, 10]
    assert stats.latency_p50_ms == pytest.approx(percentile(good_ms, 50))
    assert stats.latency_p50_ms == pytest.approx(6.5)
    assert stats.latency_p99_ms == pytest.approx(9.93)
    assert stats.latency_p95_ms == pytest.approx(9.65)


def test_stats_of_nothing_and_of_only_failures() -> None:
    empty = endpoint_stats("u", "u", [], recovery_samples=3)
    assert empty.availability is None and empty.latency_p50_ms is None and empty.outages == ()
    assert empty.lag_max_ms is None
    down = endpoint_stats("u", "u", samples("xxx"), recovery_samples=3)
    assert down.availability == 0.0 and down.latency_p99_ms is None and len(down.outages) == 1
    starved = endpoint_stats("u", "u", samples("sss"), recovery_samples=3)
    assert starved.availability is None and starved.outages == ()


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


# -- good runs and "all good since" -------------------------------------------------------------


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
    a = shifted("..xx......", 0.000)  # good run of 3 from 0.4 (last bad 0.3)
    b = shifted("..xxxx....", 0.010)  # good run of 3 from 0.61 (last bad 0.51)
    since = all_good_since([a, b], t_mono=0.15, n_consecutive=3)
    assert since is not None
    # from the latest send that still saw a failure (b's 0.51) to the latest completion of a
    # run's first sample (b's sample 6)
    assert since.mono == pytest.approx(done(6, 0.01))
    assert since.uncertainty_s == pytest.approx(done(6, 0.01) - 0.51)
    assert since.first_good_send_mono == pytest.approx(0.61)
    assert since.utc.timestamp() == pytest.approx(EPOCH0 + done(6, 0.01))


def test_all_good_since_skips_a_recovery_that_did_not_last() -> None:
    # a is good over [0.3, 0.6), fails again, and is good from 0.9; b recovers at 0.65,
    # inside a's relapse, so the first moment both are good is a's second recovery
    a = shifted("..x...xxx....", 0.0)
    b = shifted("..xxxx.......", 0.05)
    since = all_good_since([a, b], t_mono=0.1, n_consecutive=3)
    assert since is not None
    assert since.first_good_send_mono == pytest.approx(0.9)
    assert same(since.bound, 0.8, done(9))  # a's last bad 0.8


def test_all_good_since_accepts_an_endpoint_still_on_its_earlier_run() -> None:
    a = shifted("..x.......", 0.0)  # good from 0.3 on
    b = shifted("..xxx.....", 0.01)  # good from 0.51 on
    since = all_good_since([a, b], t_mono=0.1, n_consecutive=3)
    assert since is not None and since.first_good_send_mono == pytest.approx(0.51)
    assert same(since.bound, 0.41, done(5, 0.01))


def test_all_good_since_none_until_every_endpoint_has_its_run() -> None:
    a = shifted("..x......", 0.0)
    b = shifted("..xxxxxx..", 0.0)  # only 2 good at the end
    assert all_good_since([a, b], t_mono=0.0, n_consecutive=3) is None
    assert all_good_since([], t_mono=0.0, n_consecutive=3) is None


def test_all_good_since_counts_only_samples_after_the_time() -> None:
    a = samples("..........")
    since = all_good_since([a], t_mono=0.35, n_consecutive=2)
    assert since is not None
    assert since.first_good_send_mono == pytest.approx(0.4)
    assert same(since.bound, 0.3, done(4))  # back to 0.3


def test_good_since_keeps_the_old_names_as_aliases_of_the_upper_bound() -> None:
    since = GoodSince(mono=2.0, utc=samples(".")[0].utc_at(2.0), uncertainty_s=0.5)
    assert since.send_mono == since.mono == since.bound.mono == 2.0
    assert since.send_utc == since.utc
    assert since.bound.uncertainty_s == 0.5 and since.bound.low_mono == 1.5


def test_bound_reads_as_a_timeline_interval() -> None:
    bound = Bound(1.0, 1.25)
    assert bound.mono == 1.25 and bound.uncertainty_s == 0.25 and bound.mid_mono == 1.125
    assert bound.contains(1.0) and bound.contains(1.25) and not bound.contains(1.26)
    assert bound.contains(1.26, tolerance_s=0.01)


# -- the probe loop's own lateness --------------------------------------------------------------


def test_loop_lateness_summary() -> None:
    beats = [0.001] * 98 + [0.05, 0.4]
    ticks = [0.002, 0.15, 0.3, 0.001]
    late = loop_lateness(beats, ticks, interval_s=0.2, skipped_ticks=1, starved_samples=3)
    assert late.heartbeats == 100 and late.ticks == 4
    assert late.max_s == pytest.approx(0.4)
    assert late.p99_s == pytest.approx(percentile(beats, 99))
    assert late.tick_max_s == pytest.approx(0.3)
    assert late.late_ticks == 1  # only 0.3 s is more than one 0.2 s interval late
    assert late.skipped_ticks == 1 and late.starved_samples == 3
    assert late.describe().startswith("probe loop late by up to 400 ms")
    assert "3 starved samples" in late.describe()
    nothing = loop_lateness([], [], 0.1, 0, 0)
    assert nothing.max_s is None and nothing.describe() == "probe loop lateness not measured"
