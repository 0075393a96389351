"""Samples, outage windows, latency and lateness figures: pure functions over sample lists.

Nothing here sleeps, reads a clock or does I/O, so every rule (when an outage starts, when it
ends, how each boundary is bounded, which failures the probe itself may have caused) is tested
with synthetic samples. ``drdrill.probes.http`` feeds the same :class:`OutageTracker` live, so
the outages printed while a run goes on and the ones in its summary are derived by one piece of
code.

**Bounds.** A sample is a request sent at ``send_mono`` whose outcome was known at
``done_mono``. A good response proves the service up at *some* moment in between; a failure
proves it down at some moment in between. So a restore (down -> up) lies in
``[send of the last bad sample, completion of the first good one]`` and an outage start
(up -> down) in ``[send of the last good sample, completion of the first bad one]``. Every
boundary here is reported as such a :class:`Bound`; its ``mono`` (the upper end) and
``uncertainty_s`` (its width) are what a timeline event takes: the true time lies in
``[mono - uncertainty_s, mono]``.

**Starved samples.** A probe loop that is off the CPU (or waiting for a lock) while a request
is in flight can make that request time out by itself: the answer came, but the loop's own
timer fired before the loop got round to reading it. Each sample carries ``lag_s``, the worst
lateness of its loop while it was in flight; a failure of a class that lateness can cause
(:data:`LATENESS_ERRORS`) with ``lag_s`` at least :data:`STARVED_LAG_FRACTION` of the request's
timeout is *starved* (:func:`is_starved`). A starved sample counts neither as good nor as bad:
it never starts or extends an outage, never breaks a good run, never bounds a boundary; it is
counted in :attr:`EndpointStats.starved_samples`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

#: error classes a sample can carry; ``None`` means the sample was good.
ERROR_TIMEOUT = "timeout"
ERROR_REFUSED = "refused"
ERROR_RESET = "reset"
ERROR_DNS = "dns"
ERROR_TLS = "tls"
ERROR_CONNECT = "connect"
ERROR_PROTOCOL = "protocol"
ERROR_CHECK_FAILED = "check_failed"
ERROR_OTHER = "error"

#: every error class, in a fixed order: the sample store keeps an index into this tuple.
ERROR_CLASSES: tuple[str, ...] = (
    ERROR_TIMEOUT,
    ERROR_REFUSED,
    ERROR_RESET,
    ERROR_DNS,
    ERROR_TLS,
    ERROR_CONNECT,
    ERROR_PROTOCOL,
    ERROR_CHECK_FAILED,
    ERROR_OTHER,
)

#: error classes that a late probe loop can produce on its own: its request timer (``timeout``)
#: or the resolver's query timer (``dns``) firing before the loop read an answer that had come.
#: A refusal, a reset or a bad status is the server's own answer, whatever the loop's lateness.
LATENESS_ERRORS: frozenset[str] = frozenset({ERROR_TIMEOUT, ERROR_DNS})

#: a lateness-class failure is starved when its loop was late by at least this fraction of the
#: request's timeout while it was in flight. Measured (benchmarks/bench_probe_bounds.py,
#: docs/benchmarks.md): on a loaded 2-core machine every timeout of a healthy server had a loop
#: stall of at least 0.25 of the timeout in its flight (at least 1.1 with timeouts of 0.1 s and
#: more), while most real timeouts (a hanging server) saw less; 0.2 keeps a margin below the
#: false ones at the price of setting aside more real ones (which only widens a bound).
STARVED_LAG_FRACTION = 0.2

#: the default number of consecutive good samples that ends an outage.
DEFAULT_RECOVERY_SAMPLES = 3


def utc_from_epoch(epoch_s: float) -> datetime:
    """A POSIX time (seconds) as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def is_starved(
    error: str | None,
    lag_s: float,
    timeout_s: float,
    fraction: float = STARVED_LAG_FRACTION,
) -> bool:
    """Whether a sample's failure may be the probe loop's own doing.

    True for a failure of a class in :data:`LATENESS_ERRORS` whose loop was late by at least
    ``fraction`` of ``timeout_s`` while it was in flight; never for a good sample.
    """
    return error in LATENESS_ERRORS and lag_s >= fraction * timeout_s


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe request: when it was due, sent and answered, and what came back (no body).

    ``send_epoch`` is the POSIX wall time (UTC) read next to ``send_mono``; ``due_mono`` is the
    point of the sampling grid it was sent for, so ``send_mono - due_mono`` is its lateness.
    ``latency_s`` runs from the send to the full response or to the error (the timeout itself
    for a timeout), so ``done_mono = send_mono + latency_s`` is when its outcome was known.
    ``error`` is one of :data:`ERROR_CLASSES`, or ``None`` for a good sample. ``lag_s`` is the
    worst lateness of the probe loop while the request was in flight; ``starved`` marks a
    failure that lateness may explain (:func:`is_starved`): it is neither good nor bad.
    """

    due_mono: float
    send_mono: float
    send_epoch: float
    status: int | None
    latency_s: float
    error: str | None
    lag_s: float = 0.0
    starved: bool = False

    @property
    def ok(self) -> bool:
        """Whether the sample passed every check (a good sample)."""
        return self.error is None

    @property
    def bad(self) -> bool:
        """Whether the sample failed and its failure counts (it is not starved)."""
        return self.error is not None and not self.starved

    @property
    def counts(self) -> bool:
        """Whether the sample says anything about the service (good or bad, not starved)."""
        return not self.starved

    @property
    def done_mono(self) -> float:
        """When the outcome was known: the response read, or the error raised."""
        return self.send_mono + self.latency_s

    @property
    def lateness_s(self) -> float:
        """How late the sample was sent against its grid point."""
        return self.send_mono - self.due_mono

    @property
    def send_utc(self) -> datetime:
        """The send time as an aware UTC datetime."""
        return utc_from_epoch(self.send_epoch)

    def utc_at(self, mono: float) -> datetime:
        """The UTC time of ``mono``, by this sample's pair of wall and monotonic readings."""
        return utc_from_epoch(self.send_epoch + (mono - self.send_mono))


@dataclass(frozen=True, slots=True)
class Bound:
    """A moment known to lie in ``[low_mono, high_mono]`` (monotonic seconds).

    For a timeline event: ``mono`` (the upper end) and ``uncertainty_s`` (the width), whose
    meaning there is the same, the true time lies in ``[mono - uncertainty_s, mono]``.
    """

    low_mono: float
    high_mono: float

    @property
    def mono(self) -> float:
        """The upper end: the latest the moment can be."""
        return self.high_mono

    @property
    def uncertainty_s(self) -> float:
        """The width of the interval."""
        return self.high_mono - self.low_mono

    @property
    def mid_mono(self) -> float:
        """The middle: the estimate whose error is at most half the width."""
        return (self.low_mono + self.high_mono) / 2

    def contains(self, mono: float, tolerance_s: float = 0.0) -> bool:
        """Whether ``mono`` lies in the interval widened by ``tolerance_s`` on either side."""
        return self.low_mono - tolerance_s <= mono <= self.high_mono + tolerance_s


def restore_bound(
    last_bad: Sample | None, first_good: Sample, run_done_mono: float | None = None
) -> Bound:
    """Where a down -> up transition lies: from the send of the last bad sample before it to
    the completion of the first good one, or of any good one sent after it that completed
    sooner (``run_done_mono``, the earliest completion in the good run: a request sent as the
    database came back can hang a while and still pass, while the next one passes at once;
    either proves the stack served by its completion). Without a bad sample (nothing before the
    run is known) the lower end is the first good sample's own send."""
    low = last_bad.send_mono if last_bad is not None else first_good.send_mono
    high = first_good.done_mono
    if run_done_mono is not None:
        high = max(low, min(high, run_done_mono))
    return Bound(low, high)


def start_bound(last_good: Sample | None, first_bad: Sample) -> Bound | None:
    """Where an up -> down transition lies: from the send of the last good sample before it to
    the completion of the first bad one; ``None`` when no good sample came before (probing
    began during the outage, so nothing is known of its start)."""
    if last_good is None:
        return None
    return Bound(last_good.send_mono, first_bad.done_mono)


@dataclass(frozen=True, slots=True)
class Outage:
    """A window of failure seen by one endpoint's probe, each boundary a bounded interval.

    It starts with the first bad sample and ends with the first of ``recovery_samples``
    consecutive good ones (starved samples are skipped over). ``start_mono`` is the *upper*
    bound of the start, the completion of the first bad sample; ``start_uncertainty_s`` its
    width, back to the send of the last good sample before it (``None`` when probing began
    during the outage, so nothing is known of its start). Likewise ``end_mono`` is the
    completion of the first good sample of the recovery run and ``end_uncertainty_s`` the width
    back to the send of the last bad sample. So each boundary is a timeline event as it stands:
    the true time lies in ``[mono - uncertainty_s, mono]``.

    ``duration_s`` runs between the midpoints of the two intervals (as
    :meth:`drdrill.measure.Measurement.between` does) and is right to within
    ``duration_uncertainty_s``, the half-widths summed; where the intervals overlap, it is the
    middle of ``[0, end's high - start's low]`` (never negative); with an unknown start it runs from
    ``start_mono`` and is a lower bound (``duration_uncertainty_s`` ``None``). An outage still
    open when the samples end has every ``end*`` and ``duration*`` field ``None``.
    ``first_failed_send_mono`` is the send time of the first bad sample (before these bounds
    were honest, ``start_mono`` held it).
    """

    endpoint: str
    start_mono: float
    start_utc: datetime
    end_mono: float | None
    end_utc: datetime | None
    duration_s: float | None
    start_uncertainty_s: float | None
    end_uncertainty_s: float | None
    failed_samples: int
    first_error: str
    first_failed_send_mono: float = math.nan
    duration_uncertainty_s: float | None = None

    @property
    def is_open(self) -> bool:
        """Whether the outage had not ended when the samples stopped."""
        return self.end_mono is None

    @property
    def start_bound(self) -> Bound | None:
        """The interval the start lies in; ``None`` when it is unknown."""
        if self.start_uncertainty_s is None:
            return None
        return Bound(self.start_mono - self.start_uncertainty_s, self.start_mono)

    @property
    def end_bound(self) -> Bound | None:
        """The interval the end lies in; ``None`` while the outage is open."""
        if self.end_mono is None or self.end_uncertainty_s is None:
            return None
        return Bound(self.end_mono - self.end_uncertainty_s, self.end_mono)


@dataclass(frozen=True, slots=True)
class OutageEvent:
    """An outage that has just started (its ``end*`` fields ``None``) or just ended.

    An end is only known once ``recovery_samples`` good samples came back, so the event comes
    that much later than the ``end_mono`` it reports.
    """

    kind: Literal["started", "ended"]
    outage: Outage


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """The summary of one endpoint's samples.

    ``samples`` counts every sample with a result, starved ones included; ``starved_samples``
    those whose failure the probe loop's lateness may explain. ``availability`` is the
    percentage (0-100) of good samples among those that count (good + bad), ``None`` with none.
    The latency percentiles are in milliseconds over the *good* samples only: a timeout's
    latency is the timeout and a refusal's a fraction of a millisecond, so mixing them in would
    describe the probe, not the service; failures are counted by availability and outages.
    ``lag_max_ms`` is the worst probe-loop lateness any of its samples saw in flight.
    """

    url: str
    name: str
    samples: int
    good_samples: int
    availability: float | None
    outages: tuple[Outage, ...]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    starved_samples: int = 0
    lag_max_ms: float | None = None


@dataclass(frozen=True, slots=True)
class GoodSince:
    """The first moment from which every endpoint had a run of good samples, as a bound.

    The moment lies in ``[mono - uncertainty_s, mono]``: ``mono`` is the latest completion of
    the first good sample of each endpoint's run (the restore is proven by then), and the lower
    end is the latest send of a sample that still saw a failure (or predates the query).
    ``first_good_send_mono`` is the send time of the first sample of the run of the endpoint
    that recovered last.

    ``send_mono`` and ``send_utc`` are kept for callers written before the bounds were honest:
    they are now aliases of ``mono`` and ``utc`` (they used to be the first good sample's send,
    which is not an upper bound). New code should read ``mono`` / ``utc`` or :attr:`bound`.
    """

    mono: float
    utc: datetime
    uncertainty_s: float
    first_good_send_mono: float = math.nan

    @property
    def bound(self) -> Bound:
        """The interval the moment lies in."""
        return Bound(self.mono - self.uncertainty_s, self.mono)

    @property
    def send_mono(self) -> float:
        """Alias of ``mono`` (the upper bound), for callers of the earlier API."""
        return self.mono

    @property
    def send_utc(self) -> datetime:
        """Alias of ``utc``, for callers of the earlier API."""
        return self.utc


class OutageTracker:
    """Derives one endpoint's outages incrementally from its samples, in send order."""

    def __init__(self, endpoint: str, recovery_samples: int = DEFAULT_RECOVERY_SAMPLES) -> None:
        """Track ``endpoint``; an outage ends after ``recovery_samples`` good samples in a row."""
        if recovery_samples < 1:
            raise ValueError(f"recovery_samples must be at least 1, not {recovery_samples}")
        self.endpoint = endpoint
        self.recovery_samples = recovery_samples
        self._closed: list[Outage] = []
        self._last_good: Sample | None = None
        # the open outage, if any: its first and last bad samples, its failure count, and the
        # run of good samples since its last failure (first of the run + its length)
        self._start: Sample | None = None
        self._last_failed: Sample | None = None
        self._failed = 0
        self._run_first: Sample | None = None
        self._run_length = 0
        self._run_done = math.inf  # the earliest completion in the run

    @property
    def outages(self) -> list[Outage]:
        """Every outage so far, the open one (``end*`` fields ``None``) last."""
        current = self._open_outage()
        return [*self._closed, current] if current is not None else list(self._closed)

    def feed(self, sample: Sample) -> OutageEvent | None:
        """Take the next sample in send order; return the event it causes, if any."""
        if sample.starved:
            return None  # it proves nothing either way
        if self._start is None:
            if sample.ok:
                self._last_good = sample
                return None
            self._start = self._last_failed = sample
            self._failed = 1
            self._run_first, self._run_length = None, 0
            opened = self._open_outage()
            assert opened is not None
            return OutageEvent("started", opened)
        if not sample.ok:
            # a failure inside the good run resets it: flapping keeps the outage open
            self._last_failed = sample
            self._failed += 1
            self._run_first, self._run_length = None, 0
            return None
        if self._run_first is None:
            self._run_first = sample
            self._run_done = math.inf
        self._run_length += 1
        self._run_done = min(self._run_done, sample.done_mono)
        if self._run_length < self.recovery_samples:
            return None
        ended = self._close(self._run_first)
        self._last_good = sample
        return OutageEvent("ended", ended)

    def _open_outage(self) -> Outage | None:
        start = self._start
        if start is None:
            return None
        bound = start_bound(self._last_good, start)
        return Outage(
            endpoint=self.endpoint,
            start_mono=start.done_mono,
            start_utc=start.utc_at(start.done_mono),
            end_mono=None,
            end_utc=None,
            duration_s=None,
            start_uncertainty_s=None if bound is None else bound.uncertainty_s,
            end_uncertainty_s=None,
            failed_samples=self._failed,
            first_error=start.error or ERROR_OTHER,
            first_failed_send_mono=start.send_mono,
        )

    def _close(self, first_good: Sample) -> Outage:
        opened = self._open_outage()
        last_failed = self._last_failed
        assert opened is not None and last_failed is not None
        end = restore_bound(last_failed, first_good, self._run_done)
        start = opened.start_bound
        start_mono, start_uncertainty = opened.start_mono, opened.start_uncertainty_s
        start_utc = opened.start_utc
        if start is not None and start.high_mono > end.high_mono:
            # the first bad sample hung past the restore (a timeout completing after later
            # samples passed): the outage began before it ended, so its start is no later
            start = Bound(min(start.low_mono, end.high_mono), end.high_mono)
            start_mono, start_uncertainty = start.high_mono, start.uncertainty_s
            start_utc = first_good.utc_at(start_mono)
        if start is None:
            duration, duration_uncertainty = end.mid_mono - opened.start_mono, None
        else:
            # the duration lies in [end's low - start's high, end's high - start's low], and
            # an outage that was seen lasted >= 0: when a slow first bad sample (a timeout)
            # makes the start's interval reach past the end's, the midpoints would cross and
            # give a negative duration
            low = max(0.0, end.low_mono - start.high_mono)
            high = end.high_mono - start.low_mono
            duration, duration_uncertainty = (low + high) / 2, (high - low) / 2
        ended = Outage(
            endpoint=opened.endpoint,
            start_mono=start_mono,
            start_utc=start_utc,
            end_mono=end.mono,
            end_utc=first_good.utc_at(end.mono),
            duration_s=duration,
            start_uncertainty_s=start_uncertainty,
            end_uncertainty_s=end.uncertainty_s,
            failed_samples=opened.failed_samples,
            first_error=opened.first_error,
            first_failed_send_mono=opened.first_failed_send_mono,
            duration_uncertainty_s=duration_uncertainty,
        )
        self._closed.append(ended)
        self._start = self._last_failed = self._run_first = None
        self._failed = self._run_length = 0
        self._run_done = math.inf
        return ended


def derive_outages(
    endpoint: str,
    samples: Iterable[Sample],
    recovery_samples: int = DEFAULT_RECOVERY_SAMPLES,
) -> list[Outage]:
    """The outage windows in ``samples`` (in send order), an open one last."""
    tracker = OutageTracker(endpoint, recovery_samples)
    for sample in samples:
        tracker.feed(sample)
    return tracker.outages


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated between closest ranks.

    This is numpy's default ("linear") method; ``values`` must not be empty.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def endpoint_stats(
    url: str,
    name: str,
    samples: Sequence[Sample],
    recovery_samples: int = DEFAULT_RECOVERY_SAMPLES,
) -> EndpointStats:
    """Availability, outages, good-sample latency percentiles and starved count of one endpoint."""
    good_latencies_ms = [s.latency_s * 1000 for s in samples if s.ok]
    starved = sum(1 for s in samples if s.starved)
    counted = len(samples) - starved
    has_good = bool(good_latencies_ms)
    return EndpointStats(
        url=url,
        name=name,
        samples=len(samples),
        good_samples=len(good_latencies_ms),
        availability=100 * len(good_latencies_ms) / counted if counted else None,
        outages=tuple(derive_outages(url, samples, recovery_samples)),
        latency_p50_ms=percentile(good_latencies_ms, 50) if has_good else None,
        latency_p95_ms=percentile(good_latencies_ms, 95) if has_good else None,
        latency_p99_ms=percentile(good_latencies_ms, 99) if has_good else None,
        starved_samples=starved,
        lag_max_ms=max(s.lag_s for s in samples) * 1000 if samples else None,
    )


def first_good_run(samples: Sequence[Sample], t_mono: float, n: int) -> Sample | None:
    """The first sample sent at or after ``t_mono`` that starts ``n`` consecutive good ones
    (starved samples in between neither count nor break the run)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    run_first: Sample | None = None
    run_length = 0
    for sample in samples:
        if sample.send_mono < t_mono or sample.starved:
            continue
        if not sample.ok:
            run_first, run_length = None, 0
            continue
        if run_first is None:
            run_first = sample
        run_length += 1
        if run_length >= n:
            return run_first
    return None


@dataclass(frozen=True, slots=True)
class _Healthy:
    """A span in which one endpoint was on a confirmed run of good samples."""

    start: Sample
    before: Sample | None  # the last counting sample before ``start``: it did not show the run
    end_mono: float  # send time of the failure that ended the run; inf if it never ended
    done_mono: float  # the earliest completion among the run's confirming samples

    @property
    def restore(self) -> Bound:
        """Where this endpoint's restore lies (:func:`restore_bound`)."""
        return restore_bound(self.before, self.start, self.done_mono)


def _healthy_spans(samples: Sequence[Sample], t_mono: float, n: int) -> list[_Healthy]:
    spans: list[_Healthy] = []
    previous: Sample | None = None
    run_first: Sample | None = None
    run_before: Sample | None = None
    run_length = 0
    run_done = math.inf
    for sample in samples:
        if sample.starved:
            continue
        if sample.send_mono >= t_mono:
            if sample.ok:
                if run_first is None:
                    run_first, run_before, run_done = sample, previous, math.inf
                run_length += 1
                if run_length <= n:  # the samples that confirm the run
                    run_done = min(run_done, sample.done_mono)
            else:
                if run_first is not None and run_length >= n:
                    spans.append(_Healthy(run_first, run_before, sample.send_mono, run_done))
                run_first, run_before, run_length = None, None, 0
        previous = sample
    if run_first is not None and run_length >= n:
        spans.append(_Healthy(run_first, run_before, math.inf, run_done))
    return spans


def all_good_since(
    samples_by_endpoint: Sequence[Sequence[Sample]], t_mono: float, n_consecutive: int
) -> GoodSince | None:
    """The first moment at or after ``t_mono`` when every endpoint was on a good run, bounded.

    An endpoint is on a good run from the first of ``n_consecutive`` good samples until its next
    bad one; only samples sent at or after ``t_mono`` count, starved ones never. The earliest
    point where all those spans overlap is found on the runs' send times; each endpoint's
    restore then lies in ``[send of the sample before its run, the earliest completion among
    the run's confirming samples]`` (:func:`restore_bound`), and the moment all were up in the
    latest of those: from the greatest lower end to the greatest upper end. ``None`` when there
    is no such moment yet
    (or no endpoints).
    """
    if n_consecutive < 1:
        raise ValueError(f"n_consecutive must be at least 1, not {n_consecutive}")
    if not samples_by_endpoint:
        return None
    spans = [_healthy_spans(samples, t_mono, n_consecutive) for samples in samples_by_endpoint]
    moment = t_mono
    while True:
        chosen: list[_Healthy] = []
        for endpoint_spans in spans:
            # the first span still going at ``moment``; spans are in time order
            span = next((s for s in endpoint_spans if s.end_mono > moment), None)
            if span is None:
                return None
            chosen.append(span)
        latest = max(s.start.send_mono for s in chosen)
        if latest <= moment:
            # every chosen span has started by ``moment`` and none has ended: they overlap
            bounds = [s.restore for s in chosen]
            decider = max(chosen, key=lambda s: s.start.send_mono)
            high = max(b.high_mono for b in bounds)
            low = max(b.low_mono for b in bounds)
            return GoodSince(
                mono=high,
                utc=decider.start.utc_at(high),
                uncertainty_s=high - low,
                first_good_send_mono=decider.start.send_mono,
            )
        moment = latest


@dataclass(frozen=True, slots=True)
class LoopLateness:
    """How late the probe loop ran: the apparatus's own health over a run.

    The loop wakes every heartbeat period and on every grid tick; a wake-up's lateness is how
    long after its due time it ran (the loop was off the CPU, waiting for a lock or busy).
    ``max_s`` and ``p99_s`` are over heartbeats (``None`` before the first); ``late_ticks``
    counts grid ticks more than one sampling interval late (their skipped grid points are
    ``skipped_ticks``); ``starved_samples`` the failures set aside as possibly the loop's own
    doing (:func:`is_starved`).
    """

    heartbeats: int
    max_s: float | None
    p99_s: float | None
    ticks: int
    tick_max_s: float | None
    late_ticks: int
    skipped_ticks: int
    starved_samples: int

    def describe(self) -> str:
        """One line for a report: how late the probe loop was, and what that cost."""
        if self.max_s is None:
            return "probe loop lateness not measured"
        p99 = self.p99_s if self.p99_s is not None else self.max_s
        return (
            f"probe loop late by up to {self.max_s * 1000:.0f} ms (p99 {p99 * 1000:.0f} ms); "
            f"{self.late_ticks} ticks more than one interval late; "
            f"{self.starved_samples} starved samples"
        )


def loop_lateness(
    heartbeat_lateness: Sequence[float],
    tick_lateness: Sequence[float],
    interval_s: float,
    skipped_ticks: int,
    starved_samples: int,
) -> LoopLateness:
    """The :class:`LoopLateness` of a run from its heartbeats' and ticks' lateness."""
    return LoopLateness(
        heartbeats=len(heartbeat_lateness),
        max_s=max(heartbeat_lateness) if heartbeat_lateness else None,
        p99_s=percentile(heartbeat_lateness, 99) if heartbeat_lateness else None,
        ticks=len(tick_lateness),
        tick_max_s=max(tick_lateness) if tick_lateness else None,
        late_ticks=sum(1 for late in tick_lateness if late > interval_s),
        skipped_ticks=skipped_ticks,
        starved_samples=starved_samples,
    )
