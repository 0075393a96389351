"""Samples, outage windows and latency figures: pure functions over sample lists.

Nothing here sleeps, reads a clock or does I/O, so every rule (when an outage starts, when it
ends, how uncertain each boundary is) is tested with synthetic samples. ``drdrill.probes.http``
feeds the same :class:`OutageTracker` live, so the outages printed while a run goes on and the
ones in its summary are derived by one piece of code.
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

#: the default number of consecutive good samples that ends an outage.
DEFAULT_RECOVERY_SAMPLES = 3


def utc_from_epoch(epoch_s: float) -> datetime:
    """A POSIX time (seconds) as an aware UTC datetime."""
    return datetime.fromtimestamp(epoch_s, tz=UTC)


@dataclass(frozen=True, slots=True)
class Sample:
    """One probe request: when it was due and sent, and what came back (never the body).

    ``send_epoch`` is the POSIX wall time (UTC) read next to ``send_mono``; ``due_mono`` is the
    point of the sampling grid it was sent for, so ``send_mono - due_mono`` is its lateness.
    ``latency_s`` runs from the send to the full response or to the error (the timeout itself
    for a timeout). ``error`` is one of :data:`ERROR_CLASSES`, or ``None`` for a good sample.
    """

    due_mono: float
    send_mono: float
    send_epoch: float
    status: int | None
    latency_s: float
    error: str | None

    @property
    def ok(self) -> bool:
        """Whether the sample passed every check."""
        return self.error is None

    @property
    def send_utc(self) -> datetime:
        """The send time as an aware UTC datetime."""
        return utc_from_epoch(self.send_epoch)


@dataclass(frozen=True, slots=True)
class Outage:
    """A window of failure seen by one endpoint's probe, timed by the samples' send times.

    It starts at the first failed sample and ends at the first of ``recovery_samples``
    consecutive good ones. ``start_uncertainty_s`` is the gap from the last good sample before
    it to the first failed one (``None`` when probing began during the outage, so nothing is
    known of its start); ``end_uncertainty_s`` the gap from the last failed sample to the first
    good one. An outage still open when the samples end has every ``end*`` field ``None``.
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

    @property
    def is_open(self) -> bool:
        """Whether the outage had not ended when the samples stopped."""
        return self.end_mono is None


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

    ``availability`` is the percentage (0-100) of good samples, ``None`` with no samples. The
    latency percentiles are in milliseconds over the *good* samples only: a timeout's latency is
    the timeout and a refusal's a fraction of a millisecond, so mixing them in would describe the
    probe, not the service; failures are counted by availability and outages instead.
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


@dataclass(frozen=True, slots=True)
class GoodSince:
    """The first moment from which every endpoint had a run of good samples.

    ``send_mono``/``send_utc`` are the send time of the sample that completed the picture (the
    first sample of the run of the endpoint that recovered last); ``uncertainty_s`` is the gap
    back to the latest sample that still saw a failure (or predates the query), so the true
    moment lies in ``[send_mono - uncertainty_s, send_mono]``.
    """

    send_mono: float
    send_utc: datetime
    uncertainty_s: float


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
        # the open outage, if any: its first and last failed samples, its failure count, and
        # the run of good samples since its last failure (first of the run + its length)
        self._start: Sample | None = None
        self._last_failed: Sample | None = None
        self._failed = 0
        self._run_first: Sample | None = None
        self._run_length = 0

    @property
    def outages(self) -> list[Outage]:
        """Every outage so far, the open one (``end*`` fields ``None``) last."""
        current = self._open_outage()
        return [*self._closed, current] if current is not None else list(self._closed)

    def feed(self, sample: Sample) -> OutageEvent | None:
        """Take the next sample in send order; return the event it causes, if any."""
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
        self._run_length += 1
        if self._run_length < self.recovery_samples:
            return None
        ended = self._close(self._run_first)
        self._last_good = sample
        return OutageEvent("ended", ended)

    def _open_outage(self) -> Outage | None:
        start = self._start
        if start is None:
            return None
        return Outage(
            endpoint=self.endpoint,
            start_mono=start.send_mono,
            start_utc=start.send_utc,
            end_mono=None,
            end_utc=None,
            duration_s=None,
            start_uncertainty_s=(
                start.send_mono - self._last_good.send_mono if self._last_good is not None else None
            ),
            end_uncertainty_s=None,
            failed_samples=self._failed,
            first_error=start.error or ERROR_OTHER,
        )

    def _close(self, first_good: Sample) -> Outage:
        opened = self._open_outage()
        last_failed = self._last_failed
        assert opened is not None and last_failed is not None
        ended = Outage(
            endpoint=opened.endpoint,
            start_mono=opened.start_mono,
            start_utc=opened.start_utc,
            end_mono=first_good.send_mono,
            end_utc=first_good.send_utc,
            duration_s=first_good.send_mono - opened.start_mono,
            start_uncertainty_s=opened.start_uncertainty_s,
            end_uncertainty_s=first_good.send_mono - last_failed.send_mono,
            failed_samples=opened.failed_samples,
            first_error=opened.first_error,
        )
        self._closed.append(ended)
        self._start = self._last_failed = self._run_first = None
        self._failed = self._run_length = 0
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
    """Availability, outages and good-sample latency percentiles of one endpoint."""
    good_latencies_ms = [s.latency_s * 1000 for s in samples if s.ok]
    has_good = bool(good_latencies_ms)
    return EndpointStats(
        url=url,
        name=name,
        samples=len(samples),
        good_samples=len(good_latencies_ms),
        availability=100 * len(good_latencies_ms) / len(samples) if samples else None,
        outages=tuple(derive_outages(url, samples, recovery_samples)),
        latency_p50_ms=percentile(good_latencies_ms, 50) if has_good else None,
        latency_p95_ms=percentile(good_latencies_ms, 95) if has_good else None,
        latency_p99_ms=percentile(good_latencies_ms, 99) if has_good else None,
    )


def first_good_run(samples: Sequence[Sample], t_mono: float, n: int) -> Sample | None:
    """The first sample sent at or after ``t_mono`` that starts ``n`` consecutive good ones."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    run_first: Sample | None = None
    run_length = 0
    for sample in samples:
        if sample.send_mono < t_mono:
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
    before: Sample | None  # the sample before ``start``: the last one that did not show it
    end_mono: float  # send time of the failure that ended the run; inf if it never ended


def _healthy_spans(samples: Sequence[Sample], t_mono: float, n: int) -> list[_Healthy]:
    spans: list[_Healthy] = []
    previous: Sample | None = None
    run_first: Sample | None = None
    run_before: Sample | None = None
    run_length = 0
    for sample in samples:
        if sample.send_mono >= t_mono:
            if sample.ok:
                if run_first is None:
                    run_first, run_before = sample, previous
                run_length += 1
            else:
                if run_first is not None and run_length >= n:
                    spans.append(_Healthy(run_first, run_before, sample.send_mono))
                run_first, run_before, run_length = None, None, 0
        previous = sample
    if run_first is not None and run_length >= n:
        spans.append(_Healthy(run_first, run_before, math.inf))
    return spans


def all_good_since(
    samples_by_endpoint: Sequence[Sequence[Sample]], t_mono: float, n_consecutive: int
) -> GoodSince | None:
    """The first moment at or after ``t_mono`` when every endpoint was on a good run.

    An endpoint is on a good run from the first of ``n_consecutive`` good samples until its next
    failure; only samples sent at or after ``t_mono`` count. The answer is the earliest point
    where all those spans overlap, which is the send time of some endpoint's run start.
    ``None`` when there is no such moment yet (or no endpoints).
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
            decider = max(chosen, key=lambda s: s.start.send_mono)
            lower = max(
                (s.before.send_mono for s in chosen if s.before is not None),
                default=decider.start.send_mono,
            )
            return GoodSince(
                send_mono=decider.start.send_mono,
                send_utc=decider.start.send_utc,
                uncertainty_s=decider.start.send_mono - lower,
            )
        moment = latest
