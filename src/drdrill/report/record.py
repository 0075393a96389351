"""What a run recorded, as typed values; the report writers read only this."""

from __future__ import annotations

import getpass
import platform
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from drdrill import __version__
from drdrill.measure import FAILING, Result, Status
from drdrill.probes.stats import EndpointStats
from drdrill.timeline import Event


@dataclass(frozen=True)
class OutageRecord:
    """A client-observed outage of one endpoint (times as UTC; open outages have no end).

    Each boundary's time is an upper bound: the true moment lies in ``[utc - uncertainty, utc]``
    (the outage began before the first failed sample completed, after the last good one was
    sent; it ended likewise). ``duration_s`` runs between the bounds' midpoints, known to
    ``± duration_uncertainty_s``.

    ``expected_down`` marks no outage but the stretch before an endpoint that is down by design
    (probed with ``steady=False``: a pilot-light region's load balancer) first came up: it was
    failing from its first sample on. The reports draw and list it apart from the outages.
    """

    endpoint: str
    start_utc: datetime
    end_utc: datetime | None
    duration_s: float | None
    start_uncertainty_s: float
    end_uncertainty_s: float
    duration_uncertainty_s: float | None = None
    expected_down: bool = False

    def to_json(self) -> dict[str, Any]:
        """The outage at the JSON edge."""
        return {
            "endpoint": self.endpoint,
            "start_utc": self.start_utc.isoformat(),
            "end_utc": None if self.end_utc is None else self.end_utc.isoformat(),
            "duration_s": self.duration_s,
            "start_uncertainty_s": self.start_uncertainty_s,
            "end_uncertainty_s": self.end_uncertainty_s,
            "duration_uncertainty_s": self.duration_uncertainty_s,
            "expected_down": self.expected_down,
        }


@dataclass(frozen=True)
class ProbeStatsRecord:
    """Probe statistics of one endpoint over one drill."""

    endpoint: str
    samples: int
    availability: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    #: failed samples set aside because the probe loop itself was late (never counted as bad)
    starved_samples: int = 0
    #: the worst lateness of the probe loop while this endpoint's samples were in flight
    lag_max_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The statistics at the JSON edge."""
        return {
            "endpoint": self.endpoint,
            "samples": self.samples,
            "availability": self.availability,
            "latency_ms": {"p50": self.p50_ms, "p95": self.p95_ms, "p99": self.p99_ms},
            "starved_samples": self.starved_samples,
            "lag_max_ms": self.lag_max_ms,
        }


@dataclass(frozen=True)
class RpoRecord:
    """Data loss measured by the write markers of one drill."""

    run: str
    sent: int
    acknowledged: int
    lost_acknowledged: int
    lost_ids: tuple[int, ...]
    unacknowledged_landed: int
    data_loss_window_s: float

    def to_json(self) -> dict[str, Any]:
        """The RPO figures at the JSON edge."""
        return {
            "run": self.run,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "lost_acknowledged": self.lost_acknowledged,
            "lost_ids": list(self.lost_ids),
            "unacknowledged_landed": self.unacknowledged_landed,
            "data_loss_window_s": self.data_loss_window_s,
        }


#: how a test ended, as the reports name it (pytest's words, and two for tests that did not end)
PASSED: Final = "passed"
FAILED: Final = "failed"
ERROR: Final = "error"
SKIPPED: Final = "skipped"
XFAILED: Final = "xfailed"
XPASSED: Final = "xpassed"
#: collected but never started (the run stopped first, or its worker crashed before it)
NOT_RUN: Final = "not run"
#: started but never finished (Ctrl-C or SIGTERM in the middle of it)
INTERRUPTED: Final = "interrupted"
#: not known yet: the test has started and not reported its call
UNKNOWN: Final = "unknown"
#: the order outcomes are counted in, in every report
OUTCOMES: Final[tuple[str, ...]] = (
    PASSED,
    FAILED,
    ERROR,
    SKIPPED,
    XFAILED,
    XPASSED,
    NOT_RUN,
    INTERRUPTED,
)
#: outcomes that fail a run
FAILED_OUTCOMES: Final = frozenset({FAILED, ERROR})
#: outcomes of tests whose result the run never learnt: the run is incomplete
LOST_OUTCOMES: Final = frozenset({NOT_RUN, INTERRUPTED, UNKNOWN})

#: pytest's exit statuses (``pytest.ExitCode``) that the verdict reads
EXIT_OK: Final = 0
EXIT_TESTS_FAILED: Final = 1
EXIT_INTERRUPTED: Final = 2
EXIT_INTERNAL_ERROR: Final = 3
EXIT_USAGE_ERROR: Final = 4
EXIT_NO_TESTS: Final = 5


class Verdict(StrEnum):
    """The one verdict of a run, as every report writes it."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    INCOMPLETE = "incomplete"
    DRY_RUN = "dry run"
    NO_TESTS = "no tests"
    #: every test skipped (or xfailed): nothing passed, nothing failed
    SKIPPED = "skipped"


def decide_verdict(
    outcomes: Iterable[str],
    statuses: Iterable[Status | str],
    *,
    dry_run: bool = False,
    exit_status: int | None = None,
    interrupted: bool = False,
) -> Verdict:
    """A run's verdict from its tests' outcomes, its figures' statuses and pytest's exit status.

    ``incomplete`` first (a worker crashed, the run was interrupted or stopped early, a test
    never ran or never finished), then ``failed`` (a test failed or errored, a figure missed or
    invalid, exit status 1, 3, 4 or any other non-zero one), then ``dry run`` and ``no tests``,
    ``inconclusive`` (a figure whose interval straddles its target), ``passed`` (at least one
    test passed) and ``skipped``. ``exit_status`` None (a report written before it was kept)
    is judged on the tests and figures alone.
    """
    seen = list(outcomes)
    figures = {Status(s) for s in statuses}
    if interrupted or exit_status == EXIT_INTERRUPTED or any(o in LOST_OUTCOMES for o in seen):
        return Verdict.INCOMPLETE
    if any(o in FAILED_OUTCOMES for o in seen) or figures & FAILING:
        return Verdict.FAILED
    if exit_status not in (None, EXIT_OK, EXIT_NO_TESTS):
        return Verdict.FAILED
    if dry_run:
        return Verdict.DRY_RUN
    if not seen:
        return Verdict.NO_TESTS
    if Status.INCONCLUSIVE in figures:
        return Verdict.INCONCLUSIVE
    if PASSED in seen and exit_status in (None, EXIT_OK):
        return Verdict.PASSED
    return Verdict.SKIPPED


def count_outcomes(outcomes: Iterable[str]) -> dict[str, int]:
    """How many tests ended each way, in :data:`OUTCOMES` order (others after), none at 0."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    known = {o: counts[o] for o in OUTCOMES if o in counts}
    return {**known, **{o: n for o, n in counts.items() if o not in known}}


@dataclass
class TestRecord:
    """One test of the run (a drill or any other): its outcome and everything it measured."""

    #: not a test class, whatever its name says (pytest would try to collect it where imported)
    __test__ = False

    nodeid: str
    outcome: str = UNKNOWN
    duration_s: float = 0.0
    #: why it did not pass, in one line (the exception's message, the skip's reason)
    message: str | None = None
    #: the pytest-xdist worker that ran it (``gw0``, ...); None in a run without workers
    worker: str | None = None
    events: list[Event] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    outages: list[OutageRecord] = field(default_factory=list)
    probes: list[ProbeStatsRecord] = field(default_factory=list)
    rpo: list[RpoRecord] = field(default_factory=list)

    @property
    def measured_anything(self) -> bool:
        """Whether the test is a drill (it used the drill fixtures), not just any test."""
        return bool(self.events or self.results or self.outages or self.probes or self.rpo)

    @property
    def failed(self) -> bool:
        """Whether it failed the run: failed or errored, or a figure of it missed or invalid."""
        return self.outcome in FAILED_OUTCOMES or any(r.status in FAILING for r in self.results)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunRecord:
    """A whole run: metadata, target, objectives and its drills."""

    run_id: str
    target: Mapping[str, Any]
    objectives: Mapping[str, Any]
    objectives_source: str | None
    objectives_scale: float
    dry_run: bool = False
    started_utc: datetime = field(default_factory=_now)
    finished_utc: datetime | None = None
    tests: list[TestRecord] = field(default_factory=list)
    #: pytest's exit status (None: not known, a report written before it was kept)
    exit_status: int | None = None
    #: why the run did not run every test to its end (a worker crashed, Ctrl-C, ``-x``)
    interruption: str | None = None
    #: the tests whose result the run lost: never run, interrupted, on a crashed worker
    lost: list[str] = field(default_factory=list)

    def test(self, nodeid: str) -> TestRecord:
        """The record of a test, made on first use."""
        for record in self.tests:
            if record.nodeid == nodeid:
                return record
        record = TestRecord(nodeid)
        self.tests.append(record)
        return record

    @property
    def drills(self) -> list[TestRecord]:
        """The tests that measured something."""
        return [t for t in self.tests if t.measured_anything]

    @property
    def results(self) -> list[Result]:
        """Every measured figure of the run, in test order."""
        return [r for t in self.tests for r in t.results]

    @property
    def verdict(self) -> Verdict:
        """The run's one verdict (see :func:`decide_verdict`), which every report writes."""
        return decide_verdict(
            (t.outcome for t in self.tests),
            (r.status for r in self.results),
            dry_run=self.dry_run,
            exit_status=self.exit_status,
            interrupted=bool(self.interruption or self.lost),
        )

    def counts(self) -> dict[str, int]:
        """How many tests ended each way (``{"passed": 12, "failed": 1}``)."""
        return count_outcomes(t.outcome for t in self.tests)


def run_metadata() -> dict[str, Any]:
    """Where and with what the run ran."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {
        "drdrill_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "user": user,
    }


def probe_records(
    stats: Iterable[EndpointStats], *, expected_down: bool = False
) -> tuple[list[ProbeStatsRecord], list[OutageRecord]]:
    """The report's records of what continuous probes saw: statistics and outages per endpoint.

    ``expected_down``: the endpoints are down by design until the drill brings them up (probed
    with ``steady=False``); an outage that was open from the first sample (no good sample came
    before it, so its start is unknown) is the stretch before the endpoint first came up and is
    marked :attr:`OutageRecord.expected_down`. Every later outage is an outage.
    """
    probes: list[ProbeStatsRecord] = []
    outages: list[OutageRecord] = []
    for endpoint in stats:
        probes.append(
            ProbeStatsRecord(
                endpoint=endpoint.url,
                samples=endpoint.samples,
                availability=endpoint.availability or 0.0,
                p50_ms=endpoint.latency_p50_ms,
                p95_ms=endpoint.latency_p95_ms,
                p99_ms=endpoint.latency_p99_ms,
                starved_samples=endpoint.starved_samples,
                lag_max_ms=endpoint.lag_max_ms,
            )
        )
        outages.extend(
            OutageRecord(
                endpoint=o.endpoint,
                start_utc=o.start_utc,
                end_utc=o.end_utc,
                duration_s=o.duration_s,
                start_uncertainty_s=o.start_uncertainty_s or 0.0,
                end_uncertainty_s=o.end_uncertainty_s or 0.0,
                duration_uncertainty_s=o.duration_uncertainty_s,
                expected_down=expected_down and o.start_uncertainty_s is None,
            )
            for o in endpoint.outages
        )
    return probes, outages
