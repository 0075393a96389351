"""Static Assets RPO: how far the DR region's bucket lags the primary's (S3 replication).

The drill writes numbered marker objects, under a prefix of its own run, into the primary bucket
at a steady rate, and looks for each one in the DR bucket (HeadObject) until it is there or its
deadline has passed. Each arrival is bounded like every observed event: after the start of the
last look that did not find the object, before the end of the look that did (a look that errs
proves nothing either way and bounds nothing); each write by the PutObject call that made it. A
marker's lag is the span from its write to its arrival. The drill reports the lags' p50, p95 and
maximum and the markers not in the DR bucket within the deadline, and records the worst lag as
the "Static Assets" RPO: an asset written just before the primary region goes is lost with it
unless it had replicated.

It measures only a stack that replicates: the primary bucket has an enabled rule into the DR
bucket, and a first marker arrives (on AWS, with a ``ReplicationStatus`` S3 gives it at once).
An AWS API emulator replicates nothing (moto stores the rule and copies no object): there the
drill skips once that first marker has not arrived within :data:`EMULATOR_STEADY_S`.

The deadline is the objective plus a margin, so that a marker missing at its deadline surely
misses the objective; a runbook that says "Real-time" (read as 0 s, which no lag meets: the
figure is then missed, with the lag measured) or gives no figure gets :data:`DEFAULT_DEADLINE_S`.
See docs/static-assets.md.

Every marker object is deleted at the end, whatever happened, in both buckets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from drdrill.errors import DrillError, ObjectiveMissed
from drdrill.measure import Measurement, Measurements, Result
from drdrill.objectives import Objectives
from drdrill.observe import NotObserved, Watch
from drdrill.plugin import drill_session
from drdrill.probes.stats import percentile
from drdrill.targets.base import (
    RecoveryLimited,
    ReplicationMetrics,
    StaticAssetsDrill,
    StaticObject,
    Target,
)
from drdrill.timeline import Event, Source, Timeline

#: the runbook row the worst lag is held to
ROW = "Static Assets"
#: how long markers are written, and how many a second
WRITE_S = 5.0
RATE_HZ = 4.0
#: how often each marker not yet seen is looked for in the DR bucket
POLL_S = 0.25
#: the deadline when the objective gives none to wait for ("Real-time", no runbook row):
#: S3 Replication Time Control's threshold, by which it replicates 99.99 % of objects
DEFAULT_DEADLINE_S = 15 * 60.0
#: beyond the objective, so that a marker still missing at its deadline surely misses it: at
#: least this, or a tenth of the objective
DEADLINE_MARGIN_S = 2.0
#: how long the first marker gets to arrive on an emulator, which replicates nothing itself
EMULATOR_STEADY_S = 5.0
#: the folder, under the replicated prefix, that markers go to (then the run id)
MARKER_DIR = "drdrill-static-assets"
#: markers named in a one-line message at most
NAMED_AT_MOST = 5

EMULATOR_REASON = (
    "an AWS API emulator replicates no S3 object (moto stores the replication rule and copies "
    "nothing)"
)


def _lacks(target: Target, capability: str) -> str:
    return f"target '{target.name}' lacks the capability {capability} this drill needs"


def deadline_for(target_s: float | None) -> float:
    """How long a marker may take to arrive before it counts as not replicated."""
    if target_s is None or target_s <= 0:
        return DEFAULT_DEADLINE_S
    return target_s + max(DEADLINE_MARGIN_S, target_s / 10)


def spread(lags: Sequence[Measurement], q: float) -> Measurement:
    """The ``q``-th percentile of lags each known within an interval: the percentile of the
    lower ends and that of the upper ends bound it (a percentile never falls when one value
    rises)."""
    low = percentile([m.value - m.uncertainty for m in lags], q)
    high = percentile([m.value + m.uncertainty for m in lags], q)
    return Measurement((low + high) / 2, (high - low) / 2)


@dataclass
class Marker:
    """One marker object: its write, and what the looks for it in the DR bucket found."""

    id: int
    key: str
    #: the PutObject call: acknowledged at ``mono``, sent ``uncertainty_s`` before
    written: Event
    #: start of the last look that did not find it in the DR bucket (None: no look missed it)
    last_miss: float | None = None
    #: end of the look that found it (None: not found)
    seen_at: float | None = None
    #: what that look found
    seen: StaticObject | None = None
    #: looks that failed, and the last failure
    errors: int = 0
    last_error: str | None = None
    #: the primary bucket's ReplicationStatus of a marker that never arrived
    source_status: str | None = None
    watch: Watch | None = field(default=None, repr=False)

    @property
    def arrived(self) -> bool:
        """Whether a look found it in the DR bucket."""
        return self.seen_at is not None

    @property
    def sent(self) -> float:
        """When its PutObject call was sent (the object exists from some moment after)."""
        return self.written.mono - self.written.uncertainty_s

    def arrival_bounds(self) -> tuple[float, float] | None:
        """(earliest, latest) moment it can have arrived in the DR bucket; None if it did not."""
        if self.seen_at is None:
            return None
        # no look missed it: it may have arrived as soon as it existed
        earliest = self.sent if self.last_miss is None else self.last_miss
        return earliest, self.seen_at

    def lag(self) -> Measurement | None:
        """Write to arrival, as value ± uncertainty; None if it never arrived."""
        bounds = self.arrival_bounds()
        if bounds is None:
            return None
        earliest, latest = bounds
        # the object existed at the latest when PutObject was acknowledged, at the earliest
        # when it was sent; a copy cannot precede its original
        low = max(0.0, earliest - self.written.mono)
        high = latest - self.sent
        return Measurement((low + high) / 2, (high - low) / 2)

    def lag_at_least(self) -> float:
        """A lower bound of the lag of a marker that never arrived: it was still missing when
        the last look that missed it started."""
        if self.last_miss is None:
            return 0.0
        return max(0.0, self.last_miss - self.written.mono)


@dataclass(frozen=True)
class ReplicationSummary:
    """What a run of markers showed."""

    markers: tuple[Marker, ...]
    failed_writes: int
    deadline_s: float
    #: markers acknowledged before the fault (when one was in) that never arrived
    lost_in_fault: tuple[Marker, ...] | None

    @property
    def arrived(self) -> list[Marker]:
        """The markers found in the DR bucket within the deadline."""
        return [m for m in self.markers if m.arrived]

    @property
    def missing(self) -> list[Marker]:
        """The markers not found in the DR bucket within the deadline."""
        return [m for m in self.markers if not m.arrived]

    def lags(self) -> list[Measurement]:
        """Every arrived marker's lag."""
        return [lag for m in self.markers if (lag := m.lag()) is not None]

    def worst(self) -> Marker | None:
        """The arrived marker whose lag can be the largest."""
        arrived = self.arrived
        if not arrived:
            return None

        def high(m: Marker) -> float:
            lag = m.lag()
            return 0.0 if lag is None else lag.value + lag.uncertainty

        return max(arrived, key=high)


class AssetReplication:
    """Marker objects written into the primary bucket, each watched for in the DR bucket.

    Each marker is looked for in a thread of its own (:class:`drdrill.observe.Watch`) from the
    moment its write is acknowledged, so an arrival is seen when it happens, not when the drill
    gets round to it. The markers' own events stay on a timeline of their own (the same clock
    as the drill's): the drill's timeline gets the summary and the worst marker's events.
    A region failover drill can run one beside its fault: :meth:`finish` with the fault's event
    counts the markers written before it that never arrived.
    """

    def __init__(
        self,
        stack: StaticAssetsDrill,
        timeline: Timeline,
        prefix: str,
        deadline_s: float,
        poll_s: float = POLL_S,
        run_id: str = "",
    ) -> None:
        """Markers go under ``prefix`` (which must be the run's own: all of it is deleted)."""
        self.stack = stack
        self.timeline = timeline
        self.prefix = prefix
        self.deadline_s = deadline_s
        self.poll_s = poll_s
        self.run_id = run_id
        self.markers: list[Marker] = []
        self.failed_writes = 0
        self.last_write_error: str | None = None
        self._marks = Timeline(timeline.clock)

    @property
    def clock(self) -> Callable[[], float]:
        """The drill timeline's monotonic clock."""
        return self.timeline.clock.mono

    def write(self, timeout_s: float | None = None) -> Marker:
        """Write the next marker and start looking for it in the DR bucket for ``timeout_s``
        (the deadline by default); the write's error is raised."""
        number = len(self.markers) + self.failed_writes
        key = f"{self.prefix}{number:05d}.json"
        sent = self.clock()
        body = json.dumps(
            {"run": self.run_id, "id": number, "sent_utc": self.timeline.clock.utc_at(sent)},
            default=str,
        ).encode()
        self.stack.put_static_marker(key, body)
        done = self.clock()
        written = self._marks.add(
            Event(
                f"static asset {number} written",
                self.timeline.clock.utc_at(done),
                done,
                Source.ACTION,
                done - sent,
                {"key": key},
            )
        )
        marker = Marker(number, key, written)
        marker.watch = Watch(
            self._marks,
            f"static asset {number} replicated",
            self._look(marker),
            self.deadline_s if timeout_s is None else timeout_s,
            self.poll_s,
            since=written,
        )
        self.markers.append(marker)
        return marker

    def _look(self, marker: Marker) -> Callable[[], bool]:
        def look() -> bool:
            started = self.clock()
            try:
                found = self.stack.static_marker("dr", marker.key)
            except Exception as exc:  # proves neither presence nor absence: bounds nothing
                marker.errors += 1
                marker.last_error = str(exc)
                return False
            ended = self.clock()
            if found is None:
                marker.last_miss = started
                return False
            marker.seen, marker.seen_at = found, ended
            return True

        return look

    def write_steadily(self, duration_s: float, rate_hz: float) -> None:
        """Write markers at ``rate_hz`` for ``duration_s``, on a fixed schedule (a slow write
        delays the next ones; none is skipped). A write that fails is counted, not retried."""
        start = self.clock()
        for i in range(round(duration_s * rate_hz)):
            delay = start + i / rate_hz - self.clock()
            if delay > 0:
                time.sleep(delay)
            try:
                self.write()
            except DrillError as exc:
                self.failed_writes += 1
                self.last_write_error = str(exc)

    def wait(self, marker: Marker) -> bool:
        """Whether the marker arrived before its watch gave up."""
        if marker.watch is None:
            return marker.arrived
        try:
            marker.watch.wait()
        except NotObserved:
            return False
        return marker.arrived

    def source_status(self, marker: Marker) -> str | None:
        """The primary bucket's ReplicationStatus of a marker (``error: ...`` when unreadable)."""
        try:
            head = self.stack.static_marker("primary", marker.key)
        except DrillError as exc:
            return f"error: {exc}"
        if head is None:
            return "not in the primary bucket"
        return head.replication_status

    def finish(self, fault: Event | None = None) -> ReplicationSummary:
        """Wait for every marker (each until it arrives or its deadline passes); what they
        showed. With ``fault``, the markers acknowledged before it that never arrived."""
        for marker in self.markers:
            if not self.wait(marker):
                marker.source_status = self.source_status(marker)
        lost = None
        if fault is not None:
            cutoff = fault.mono - fault.uncertainty_s
            lost = tuple(m for m in self.markers if not m.arrived and m.written.mono < cutoff)
        return ReplicationSummary(
            tuple(self.markers), self.failed_writes, self.deadline_s, lost_in_fault=lost
        )

    def close(self) -> Mapping[str, int]:
        """Stop looking, and delete every version of every object under the prefix in both
        buckets; how many went from each."""
        for marker in self.markers:
            if marker.watch is not None:
                marker.watch.cancel()
        deleted = {str(k): n for k, n in self.stack.delete_static_markers(self.prefix).items()}
        self.timeline.mark("static_assets_markers_deleted", prefix=self.prefix, **deleted)
        return deleted


def _emulator(stack: StaticAssetsDrill) -> bool:
    return isinstance(stack, RecoveryLimited) and stack.cannot_recover is not None


def _objective_s(measure: Measurements, objectives: Objectives | None) -> float | None:
    row = measure.row_for("rpo", ROW)
    found = objectives.get("rpo", row) if objectives is not None and row else None
    return None if found is None else found.target_s


def _ms(m: Measurement) -> list[float]:
    return [round(m.value - m.uncertainty, 3), round(m.value + m.uncertainty, 3)]


def _named(markers: Sequence[Marker]) -> str:
    shown = ", ".join(
        f"{m.key} (source ReplicationStatus {m.source_status or 'none given'})"
        for m in markers[:NAMED_AT_MOST]
    )
    more = len(markers) - NAMED_AT_MOST
    return shown + (f" and {more} more" if more > 0 else "")


@pytest.fixture
def assets_stack(request: pytest.FixtureRequest) -> StaticAssetsDrill:
    """The stack as one whose bucket replication a drill can time. Asked before the target
    starts, so that a target without it (the sandbox, for now) is never brought up for it."""
    drill = drill_session(request)
    stack = drill.target
    if not isinstance(stack, StaticAssetsDrill):
        pytest.skip(_lacks(stack, "StaticAssetsDrill"))
    drill.started_target()
    return stack


@pytest.fixture
def asset_replication(
    assets_stack: StaticAssetsDrill,
    timeline: Timeline,
    measure: Measurements,
    objectives: Objectives | None,
    request: pytest.FixtureRequest,
) -> Iterator[AssetReplication]:
    """Markers under a prefix of this run's own; every one deleted at the end, in both buckets."""
    drill = drill_session(request)
    buckets = assets_stack.static_assets_buckets()
    if drill.dry_run:
        pytest.skip(
            f"dry run: would write {round(WRITE_S * RATE_HZ) + 1} marker objects into "
            f"s3://{buckets['primary']} and time their arrival in s3://{buckets['dr']}"
        )
    root = assets_stack.static_marker_root()
    # the run id, and a test's own part: pytest-xdist workers share the run id
    prefix = f"{root}{MARKER_DIR}/{drill.run.run_id}/{uuid.uuid4().hex[:8]}/"
    run = AssetReplication(
        assets_stack,
        timeline,
        prefix,
        deadline_for(_objective_s(measure, objectives)),
        run_id=drill.run.run_id,
    )
    try:
        yield run
    finally:
        run.close()


def _steady_state(run: AssetReplication, stack: StaticAssetsDrill) -> None:
    """The stack replicates: a rule, and a first marker that arrives (else skip on an emulator,
    which replicates nothing itself, and fail elsewhere)."""
    buckets = stack.static_assets_buckets()
    where = f"s3://{buckets['primary']} -> s3://{buckets['dr']}"
    if not stack.static_assets_replicated():
        pytest.fail(
            f"stack not healthy before the drill: no enabled replication rule {where}",
            pytrace=False,
        )
    emulator = _emulator(stack)
    first = run.write(timeout_s=min(run.deadline_s, EMULATOR_STEADY_S) if emulator else None)
    if not emulator:
        # S3 gives an object a rule covers its ReplicationStatus (PENDING) when it is written
        status = run.source_status(first)
        if status is None:
            pytest.fail(
                f"stack not healthy before the drill: s3://{buckets['primary']}/{first.key} "
                "has no ReplicationStatus: no replication rule covers it",
                pytrace=False,
            )
    if run.wait(first):
        return
    if emulator:
        pytest.skip(
            f"{EMULATOR_REASON}: {first.key} not in s3://{buckets['dr']} within "
            f"{EMULATOR_STEADY_S:g} s"
        )
    first.source_status = run.source_status(first)
    pytest.fail(
        f"stack not healthy before the drill: {where} replicated nothing: "
        f"{_named([first])} not in the DR bucket within {run.deadline_s:g} s",
        pytrace=False,
    )


def record_replication(
    measure: Measurements,
    timeline: Timeline,
    summary: ReplicationSummary,
    where: str,
    target_s: float | None,
) -> Result | None:
    """Put the summary on the timeline and the figures into ``measure``: p50 and p95 for
    information, the worst lag against the "Static Assets" row (its objective ``target_s``), and
    the markers not replicated. None when the worst lag is not known well enough to record: a
    marker still missing at its deadline, and a lower bound of its lag that could still be
    within the objective."""
    lags = summary.lags()
    missing = summary.missing
    attrs: dict[str, object] = {
        "buckets": where,
        "written": len(summary.markers),
        "failed_writes": summary.failed_writes,
        "replicated": len(lags),
        "deadline_s": summary.deadline_s,
        "not_replicated": {m.key: m.source_status for m in missing},
        # each marker's lag interval [low, high] in seconds, by id
        "lags": {str(m.id): _ms(lag) for m in summary.markers if (lag := m.lag()) is not None},
        "dr_replication_status": sorted(
            {str(m.seen.replication_status) for m in summary.markers if m.seen is not None}
        ),
        "failed_looks": sum(m.errors for m in summary.markers),
    }
    if summary.lost_in_fault is not None:
        attrs["lost_in_fault"] = [m.key for m in summary.lost_in_fault]
    timeline.mark("static_assets_replication", **attrs)
    measure.record(
        "static assets not replicated",
        Measurement(len(missing), 0.0, "objects"),
        objective=None,
        kind="rpo",
        note=f"within {summary.deadline_s:g} s; {where}",
    )
    if summary.lost_in_fault is not None:
        measure.record(
            "static assets lost in the fault",
            Measurement(len(summary.lost_in_fault), 0.0, "objects"),
            objective=None,
            kind="rpo",
            note="written before the fault, never in the DR bucket",
        )
    if not lags:
        return None
    p50, p95, worst = spread(lags, 50), spread(lags, 95), spread(lags, 100)
    measure.record("static assets lag p50", p50, objective=None, kind="rpo")
    measure.record("static assets lag p95", p95, objective=None, kind="rpo")
    note = (
        f"worst of {len(lags)} markers ({where}); p50 {p50}, p95 {p95}; "
        f"{len(missing)} not replicated within {summary.deadline_s:g} s"
    )
    if missing:
        # the worst lag is at least the longest a missing marker was seen missing
        at_least = max(m.lag_at_least() for m in missing)
        if target_s is None or at_least <= target_s:
            return None  # a lower bound within the objective says nothing about it
        # surely missed whatever the real lag: the bound is the figure (like a replica lag
        # known only from below in the readiness drill)
        return measure.record(ROW, Measurement(at_least), kind="rpo", note=f"at least: {note}")
    marker = summary.worst()
    assert marker is not None and marker.seen_at is not None
    start = timeline.add(marker.written)
    bounds = marker.arrival_bounds()
    assert bounds is not None
    end = timeline.observe(
        f"static asset {marker.id} replicated",
        bounds[1],
        bounds[1] - bounds[0],
        key=marker.key,
    )
    return measure.record(ROW, worst, kind="rpo", start=start.name, end=end.name, note=note)


#: the figure the platform published itself, beside the markers' worst lag
PLATFORM_LATENCY = "S3 ReplicationLatency (CloudWatch max)"


def _platform_latency(
    stack: ReplicationMetrics, measure: Measurements, timeline: Timeline, run: AssetReplication
) -> None:
    """S3's own ``ReplicationLatency`` over the drill's minutes, for information beside the
    markers' lags; where it has none yet, the timeline says so (replication metrics are off,
    or CloudWatch has not published them: it does minutes late)."""
    if not run.markers:
        return
    start = run.markers[0].written.utc
    latency = stack.replication_latency(start, datetime.now(UTC))
    if latency is None:
        timeline.mark(
            "replication_latency_not_published",
            note="no ReplicationLatency datapoint: replication metrics off, or not yet published",
        )
        return
    measure.record(
        PLATFORM_LATENCY,
        Measurement(latency),
        objective=None,
        kind="rpo",
        note="S3's own figure: the largest minute since the first marker",
    )


def _real_time_hint(result: Result, objectives: Objectives | None) -> str:
    if result.target_s != 0:
        return ""
    found = objectives.get("rpo", result.objective) if objectives and result.objective else None
    text = found.target_text if found is not None else "0 s"
    return (
        f" (the runbook's '{text}' reads as 0 s, which no replication lag meets; hold it to a "
        f'figure with objectives.rpo: {{"{ROW}": 15 minutes}}, S3 Replication Time '
        "Control's threshold, in the config)"
    )


@pytest.mark.drill(destructive=False, phases=[ROW])
def test_static_assets_replication_lag(
    asset_replication: AssetReplication,
    assets_stack: StaticAssetsDrill,
    measure: Measurements,
    objectives: Objectives | None,
    timeline: Timeline,
) -> None:
    """Markers written at a steady rate; each one's lag into the DR bucket; the worst is the
    Static Assets RPO, and a marker not there within the deadline fails the drill."""
    run = asset_replication
    buckets = assets_stack.static_assets_buckets()
    where = f"s3://{buckets['primary']} -> s3://{buckets['dr']}"
    _steady_state(run, assets_stack)
    timeline.mark("static_assets_writes_started", prefix=run.prefix, rate_hz=RATE_HZ)
    run.write_steadily(WRITE_S, RATE_HZ)
    timeline.mark("static_assets_writes_ended", written=len(run.markers))
    summary = run.finish(fault=timeline.find("fault_injected"))
    target_s = _objective_s(measure, objectives)
    result = record_replication(measure, timeline, summary, where, target_s)
    if isinstance(assets_stack, ReplicationMetrics):
        _platform_latency(assets_stack, measure, timeline, run)
    missing = summary.missing
    lost = (
        f"{len(missing)} of {len(summary.markers)} marker objects not in s3://{buckets['dr']} "
        f"within {summary.deadline_s:g} s: {_named(missing)}"
    )
    try:
        measure.verify()
    except ObjectiveMissed as exc:
        hint = _real_time_hint(result, objectives) if result is not None else ""
        raise ObjectiveMissed(f"{exc}{hint}" + (f"; {lost}" if missing else "")) from None
    if missing:
        pytest.fail(lost + "; the Static Assets RPO is not measured", pytrace=False)
    if summary.failed_writes:
        pytest.fail(
            f"{summary.failed_writes} marker writes failed, the last: {run.last_write_error}",
            pytrace=False,
        )
