"""What a run recorded, as typed values; the report writers read only this."""

from __future__ import annotations

import getpass
import platform
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drdrill import __version__
from drdrill.measure import Result
from drdrill.probes.stats import EndpointStats
from drdrill.timeline import Event


@dataclass(frozen=True)
class OutageRecord:
    """A client-observed outage of one endpoint (times as UTC; open outages have no end)."""

    endpoint: str
    start_utc: datetime
    end_utc: datetime | None
    duration_s: float | None
    start_uncertainty_s: float
    end_uncertainty_s: float

    def to_json(self) -> dict[str, Any]:
        """The outage at the JSON edge."""
        return {
            "endpoint": self.endpoint,
            "start_utc": self.start_utc.isoformat(),
            "end_utc": None if self.end_utc is None else self.end_utc.isoformat(),
            "duration_s": self.duration_s,
            "start_uncertainty_s": self.start_uncertainty_s,
            "end_uncertainty_s": self.end_uncertainty_s,
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

    def to_json(self) -> dict[str, Any]:
        """The statistics at the JSON edge."""
        return {
            "endpoint": self.endpoint,
            "samples": self.samples,
            "availability": self.availability,
            "latency_ms": {"p50": self.p50_ms, "p95": self.p95_ms, "p99": self.p99_ms},
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


@dataclass
class TestRecord:
    """One drill (one pytest test): its outcome and everything it measured."""

    #: not a test class, whatever its name says (pytest would try to collect it where imported)
    __test__ = False

    nodeid: str
    outcome: str = "unknown"
    duration_s: float = 0.0
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
    stats: Iterable[EndpointStats],
) -> tuple[list[ProbeStatsRecord], list[OutageRecord]]:
    """The report's records of what continuous probes saw: statistics and outages per endpoint."""
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
            )
            for o in endpoint.outages
        )
    return probes, outages
