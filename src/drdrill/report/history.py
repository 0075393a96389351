"""The history of runs in SQLite: trends per objective, a chart, and monthly compliance reports.

Every run of drills appends its ``report.json`` (figures, test outcomes) and the sha256 of each
report file it wrote, as evidence that the reports an auditor reads later are the ones the run
wrote. The store is one SQLite file in WAL mode, so several processes (parallel CI jobs, a
scheduled run next to a person's) may append at once: each append is one ``BEGIN IMMEDIATE``
transaction, and SQLite's busy timeout makes the second writer wait instead of failing.

Definitions used by the trend and the compliance report:

- an **objective** is a row of the runbook's RTO or RPO table (``Total RTO``, ``Database``);
  figures measured without one (``client downtime``) are tracked the same way, with no target;
- a run **meets** an objective when every figure it measured for it is within its target (a run
  with three failover drills has three ``Total RTO`` figures: one over the target misses it);
  its status for the objective is the worst of its figures' (invalid, missed, inconclusive,
  met);
- the figure a run contributes to a chart is its worst (largest) for the objective;
- a run's **verdict** is the one its reports wrote (``passed``, ``failed``, ``inconclusive``,
  ``incomplete``, ...), stored with pytest's exit status; a run stored before verdicts were
  kept gets one derived from its tests and figures (never ``passed`` with a failed test or a
  missed or invalid figure);
- a **month is compliant** only when a drill ran in it and every run's verdict (dry runs aside)
  is ``passed`` (``inconclusive`` too when accepted), and every report file still has the
  digest it was stored with.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import re
import sqlite3
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from drdrill import __version__
from drdrill.errors import DrillError, InputError
from drdrill.measure import Measurement, Result, Status
from drdrill.report.figures import STATUS_RANK
from drdrill.report.json_report import run_from_json
from drdrill.report.record import FAILED_OUTCOMES, Verdict, decide_verdict

#: bumped when the tables change; a store written by a newer drdrill is refused, not misread.
#: 2: each run's verdict, exit status, interruption and lost tests; each figure's truth source
#: and note (a store of version 1 is migrated on open, its verdicts derived)
STORE_VERSION = 2
#: the compliance report's JSON schema (``compliance-YYYY-MM.json``); 1.1: verdicts, compliance
COMPLIANCE_SCHEMA_VERSION = "1.1"
#: how long a writer waits for another process's transaction before giving up
BUSY_TIMEOUT_S = 30.0

_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_utc TEXT NOT NULL,
    finished_utc TEXT,
    month TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_name TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    objectives_source TEXT,
    objectives_scale REAL NOT NULL,
    schema_version TEXT NOT NULL,
    drdrill_version TEXT,
    host TEXT,
    appended_utc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_utc);
CREATE INDEX IF NOT EXISTS runs_by_month ON runs (month);
CREATE TABLE IF NOT EXISTS tests (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    nodeid TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_s REAL NOT NULL,
    message TEXT,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    test TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    objective TEXT,
    measured REAL,
    uncertainty REAL,
    unit TEXT NOT NULL,
    target_s REAL,
    status TEXT NOT NULL,
    truth_s REAL,
    error_ms REAL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS objectives (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    target_s REAL,
    PRIMARY KEY (run_id, kind, seq)
);
CREATE TABLE IF NOT EXISTS evidence (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (run_id, path)
);
"""
#: what takes a store from the version before to each version (a new store takes them all, so
#: that new and migrated stores have the same tables)
_MIGRATIONS: dict[int, str] = {
    2: """
ALTER TABLE runs ADD COLUMN verdict TEXT;
ALTER TABLE runs ADD COLUMN exit_status INTEGER;
ALTER TABLE runs ADD COLUMN interruption TEXT;
ALTER TABLE runs ADD COLUMN lost TEXT;
ALTER TABLE results ADD COLUMN truth_source TEXT;
ALTER TABLE results ADD COLUMN note TEXT;
""",
}


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """A report file of a run and its sha256 when the run was appended.

    ``state`` is filled in by :meth:`HistoryStore.compliance`, which reads the file again:
    ``ok`` (same digest), ``changed`` or ``missing``; None where nobody looked.
    """

    path: str
    sha256: str
    size: int
    state: str | None = None


@dataclass(frozen=True)
class TestOutcome:
    """How one test of a run ended, and why in one line when it did not pass."""

    __test__ = False  # a value, not a pytest test class

    nodeid: str
    outcome: str
    duration_s: float
    message: str | None


@dataclass(frozen=True)
class ObjectiveOutcome:
    """How one run stood against one objective: its worst figure and whether all were met."""

    kind: str
    objective: str
    target_s: float | None
    #: every figure the run measured for it, in the order measured
    figures: tuple[float, ...]
    worst_s: float
    worst_uncertainty_s: float
    #: the worst of its figures': invalid | missed | inconclusive | met | no objective
    status: str

    @property
    def measurements(self) -> int:
        """How many figures the run measured for it."""
        return len(self.figures)

    @property
    def label(self) -> str:
        """The objective's display name (RPO objectives say so)."""
        return self.objective if self.kind == "rto" else f"{self.objective} (RPO)"


@dataclass(frozen=True)
class RunbookObjective:
    """A row of the RTO or RPO table a run was held to (target None for "N/A")."""

    kind: str
    name: str
    target_s: float | None

    @property
    def label(self) -> str:
        """The objective's display name (RPO objectives say so)."""
        return self.name if self.kind == "rto" else f"{self.name} (RPO)"


@dataclass(frozen=True)
class RunSummary:
    """One run as the history holds it."""

    run_id: str
    started_utc: datetime
    finished_utc: datetime | None
    target_kind: str
    target_name: str
    dry_run: bool
    objectives_source: str | None
    objectives_scale: float
    tests: tuple[TestOutcome, ...]
    #: what the run measured, objective by objective
    objectives: tuple[ObjectiveOutcome, ...]
    evidence: tuple[Evidence, ...]
    #: the runbook's objectives the run was held to, in the runbook's order
    runbook: tuple[RunbookObjective, ...] = ()
    #: the verdict its reports wrote; for a run stored before verdicts were kept, derived from
    #: its tests and figures when the store was migrated ("" : derive it now)
    stored_verdict: str = ""
    #: pytest's exit status (None: not recorded, a run stored before it was kept)
    exit_status: int | None = None
    #: why the run did not run every test to its end
    interruption: str | None = None
    #: the tests whose result the run lost
    lost: tuple[str, ...] = ()

    @property
    def met(self) -> int:
        """Objectives this run met."""
        return sum(1 for o in self.objectives if o.status == "met")

    @property
    def missed(self) -> int:
        """Objectives this run missed."""
        return sum(1 for o in self.objectives if o.status == "missed")

    @property
    def inconclusive(self) -> int:
        """Objectives this run could not tell it met (a figure's interval straddled its target)."""
        return sum(1 for o in self.objectives if o.status == "inconclusive")

    @property
    def invalid(self) -> int:
        """Objectives with a figure that cannot be right (a phase that ends before it starts)."""
        return sum(1 for o in self.objectives if o.status == "invalid")

    @property
    def verdict(self) -> str:
        """The run's one verdict: ``passed``, ``failed``, ``inconclusive``, ``incomplete``,
        ``dry run``, ``no tests`` or ``skipped``."""
        if self.stored_verdict:
            return self.stored_verdict
        return str(
            decide_verdict(
                (t.outcome for t in self.tests),
                (o.status for o in self.objectives),
                dry_run=self.dry_run,
                exit_status=self.exit_status,
                interrupted=bool(self.interruption or self.lost),
            )
        )

    @property
    def outcome(self) -> str:
        """The run's verdict (its name before verdicts were kept)."""
        return self.verdict

    def test_counts(self) -> dict[str, int]:
        """How many tests ended each way (``{"passed": 2, "failed": 1}``)."""
        counts: dict[str, int] = {}
        for t in self.tests:
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
        return counts

    @property
    def reason(self) -> str:
        """Why the run's verdict is not ``passed``, in one line ("" when it is)."""
        verdict = self.verdict
        if verdict == Verdict.PASSED:
            return ""
        parts: list[str] = []
        if verdict == Verdict.INCOMPLETE:
            parts.append(self.interruption or "interrupted")
            if self.lost:
                names = ", ".join(n.rsplit("::", 1)[-1] for n in self.lost[:3])
                more = f" and {len(self.lost) - 3} more" if len(self.lost) > 3 else ""
                parts.append(f"lost: {names}{more}")
        parts += [
            f"{o.label} {o.worst_s:.3f} s > {o.target_s:g} s"
            for o in self.objectives
            if o.status == "missed" and o.target_s is not None
        ]
        parts += [f"{o.label} invalid" for o in self.objectives if o.status == "invalid"]
        failed = [t for t in self.tests if t.outcome in FAILED_OUTCOMES]
        if failed:
            first = failed[0]
            why = f": {first.message}" if first.message else ""
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            parts.append(f"{first.outcome} {first.nodeid.rsplit('::', 1)[-1]}{why}{more}")
        parts += [
            f"{o.label} inconclusive ({o.worst_s:.3f} ± {o.worst_uncertainty_s:.3f} s vs "
            f"{o.target_s:g} s)"
            for o in self.objectives
            if o.status == "inconclusive" and o.target_s is not None
        ]
        if not parts and self.exit_status not in (None, 0, 5):
            parts.append(f"pytest exit status {self.exit_status}")
        return "; ".join(parts) or verdict


@dataclass(frozen=True)
class TrendPoint:
    """One run's worst figure for an objective (a point of the chart)."""

    run_id: str
    started_utc: datetime
    measured_s: float
    uncertainty_s: float
    target_s: float | None
    status: str


@dataclass(frozen=True)
class ObjectiveTrend:
    """One objective over the last runs.

    ``pass_rate`` is runs that met it over runs that measured it (None without a target);
    ``median_s`` and ``worst_s`` are over every figure measured in those runs.
    """

    kind: str
    objective: str
    target_s: float | None
    runs: int
    measurements: int
    met: int
    missed: int
    pass_rate: float | None
    median_s: float
    worst_s: float
    worst_run: str
    last_status: str
    points: tuple[TrendPoint, ...]
    #: runs whose figure's interval straddled the target, and runs with an invalid figure
    inconclusive: int = 0
    invalid: int = 0

    @property
    def label(self) -> str:
        """The objective's display name (RPO objectives say so)."""
        return self.objective if self.kind == "rto" else f"{self.objective} (RPO)"

    @property
    def judged(self) -> int:
        """Runs held to a target for it (met, missed, inconclusive or invalid)."""
        return self.met + self.missed + self.inconclusive + self.invalid

    def to_json(self) -> dict[str, Any]:
        """The trend at the JSON edge."""
        return {
            "kind": self.kind,
            "objective": self.objective,
            "target_s": self.target_s,
            "runs": self.runs,
            "measurements": self.measurements,
            "met": self.met,
            "missed": self.missed,
            "inconclusive": self.inconclusive,
            "invalid": self.invalid,
            "pass_rate": self.pass_rate,
            "median_s": self.median_s,
            "worst_s": self.worst_s,
            "worst_run": self.worst_run,
            "last_status": self.last_status,
            "points": [
                {
                    "run": p.run_id,
                    "started_utc": p.started_utc.isoformat(),
                    "measured_s": p.measured_s,
                    "uncertainty_s": p.uncertainty_s,
                    "target_s": p.target_s,
                    "status": p.status,
                }
                for p in self.points
            ],
        }


@dataclass(frozen=True)
class Trend:
    """The runs a trend covers (oldest first) and each objective over them."""

    runs: tuple[RunSummary, ...]
    objectives: tuple[ObjectiveTrend, ...]


@dataclass(frozen=True)
class MonthObjective:
    """One objective over a month: in how many runs it was met and missed."""

    kind: str
    objective: str
    runs: int
    met: int
    missed: int
    worst_s: float
    inconclusive: int = 0
    invalid: int = 0
    #: the target the month's latest run that measured it was held to (None: no objective)
    target_s: float | None = None

    @property
    def label(self) -> str:
        """The objective's display name (RPO objectives say so)."""
        return self.objective if self.kind == "rto" else f"{self.objective} (RPO)"


@dataclass(frozen=True)
class ComplianceReport:
    """The runs of one month, what each met and missed, their verdicts, the digests of their
    reports, and whether the month is compliant."""

    month: str
    generated_utc: datetime
    store: str
    runs: tuple[RunSummary, ...]
    #: whether an inconclusive run counts as compliant (``compliance.accept_inconclusive``)
    accept_inconclusive: bool = False

    @property
    def met(self) -> int:
        """Objectives met, summed over the month's runs."""
        return sum(r.met for r in self.runs)

    @property
    def missed(self) -> int:
        """Objectives missed, summed over the month's runs."""
        return sum(r.missed for r in self.runs)

    @property
    def inconclusive(self) -> int:
        """Objectives inconclusive, summed over the month's runs."""
        return sum(r.inconclusive for r in self.runs)

    @property
    def invalid(self) -> int:
        """Objectives with an invalid figure, summed over the month's runs."""
        return sum(r.invalid for r in self.runs)

    def runs_with(self, verdict: str) -> int:
        """How many of the month's runs have this verdict."""
        return sum(1 for r in self.runs if r.verdict == verdict)

    @property
    def runs_passed(self) -> int:
        """Runs whose verdict is ``passed``."""
        return self.runs_with(Verdict.PASSED)

    @property
    def runs_failed(self) -> int:
        """Runs whose verdict is ``failed``."""
        return self.runs_with(Verdict.FAILED)

    def run_compliant(self, run: RunSummary) -> bool:
        """Whether a run counts for compliance: ``passed`` (or ``inconclusive``, accepted)."""
        if run.verdict == Verdict.PASSED:
            return True
        return self.accept_inconclusive and run.verdict == Verdict.INCONCLUSIVE

    @property
    def judged_runs(self) -> list[RunSummary]:
        """The runs compliance is judged on: every run but dry runs (a plan drills nothing)."""
        return [r for r in self.runs if not r.dry_run]

    @property
    def findings(self) -> list[str]:
        """Why the month is not compliant, a line each; empty when it is."""
        found: list[str] = []
        judged = self.judged_runs
        if not judged:
            found.append(f"no drill ran in {self.month}")
        for run in judged:
            if not self.run_compliant(run):
                found.append(f"run {run.run_id} {run.verdict}: {run.reason}")
        for run_id, evidence in self.evidence_problems:
            found.append(f"run {run_id}: report file {evidence.path} {evidence.state}")
        return found

    @property
    def compliant(self) -> bool:
        """Whether the month is compliant (no finding)."""
        return not self.findings

    def verdict_line(self) -> str:
        """``COMPLIANT — 4 runs, all passed`` or ``NOT COMPLIANT — <first finding> (and N
        more)``."""
        findings = self.findings
        if not findings:
            accepted = " or inconclusive (accepted)" if self.accept_inconclusive else ""
            return f"COMPLIANT — {len(self.judged_runs)} runs, all passed{accepted}"
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        return f"NOT COMPLIANT — {findings[0]}{more}"

    @property
    def evidence_problems(self) -> list[tuple[str, Evidence]]:
        """Report files that changed or vanished since their run was appended."""
        return [(r.run_id, e) for r in self.runs for e in r.evidence if e.state != "ok"]

    def runbook(self) -> tuple[RunbookObjective, ...]:
        """The runbook's objectives as the month's latest run held to one lists them: its RTO
        table's rows in their order, then its RPO table's (``report.json`` keeps the order)."""
        for run in reversed(self.runs):
            if run.runbook:
                return run.runbook
        return ()

    def objectives(self) -> list[MonthObjective]:
        """Each objective measured in the month, in the runbook's order (:meth:`runbook`); a
        figure without a row in it (client downtime) after them, in the order first measured."""
        found: dict[tuple[str, str], list[ObjectiveOutcome]] = {}
        for run in self.runs:
            for o in run.objectives:
                found.setdefault((o.kind, o.objective), []).append(o)
        rank = {(o.kind, o.name.lower()): i for i, o in enumerate(self.runbook())}
        ordered = sorted(  # stable: what the runbook does not list keeps the order it came in
            found.items(), key=lambda item: rank.get((item[0][0], item[0][1].lower()), len(rank))
        )
        return [
            MonthObjective(
                kind=kind,
                objective=name,
                runs=len(outs),
                met=sum(1 for o in outs if o.status == "met"),
                missed=sum(1 for o in outs if o.status == "missed"),
                worst_s=max(o.worst_s for o in outs),
                inconclusive=sum(1 for o in outs if o.status == "inconclusive"),
                invalid=sum(1 for o in outs if o.status == "invalid"),
                target_s=outs[-1].target_s,
            )
            for (kind, name), outs in ordered
        ]

    def not_measured(self) -> list[RunbookObjective]:
        """Objectives of the runbook (with a target) that no run of the month measured, in the
        runbook's order (:meth:`runbook`; rows only an older runbook had after)."""
        measured = {(o.kind, o.objective.lower()) for r in self.runs for o in r.objectives}
        missing: dict[tuple[str, str], RunbookObjective] = {}
        for row in (*self.runbook(), *(row for run in self.runs for row in run.runbook)):
            key = (row.kind, row.name.lower())
            if row.target_s is not None and key not in measured:
                missing.setdefault(key, row)
        return list(missing.values())

    def to_json(self) -> dict[str, Any]:
        """The report at the JSON edge (``compliance-YYYY-MM.json``)."""
        return {
            "schema": "drdrill.compliance",
            "schema_version": COMPLIANCE_SCHEMA_VERSION,
            "month": self.month,
            "generated_utc": self.generated_utc.isoformat(),
            "store": self.store,
            "summary": {
                "compliant": self.compliant,
                "accept_inconclusive": self.accept_inconclusive,
                "findings": self.findings,
                "runs": len(self.runs),
                "runs_passed": self.runs_passed,
                "runs_failed": self.runs_failed,
                "runs_inconclusive": self.runs_with(Verdict.INCONCLUSIVE),
                "runs_incomplete": self.runs_with(Verdict.INCOMPLETE),
                "objectives_met": self.met,
                "objectives_missed": self.missed,
                "objectives_inconclusive": self.inconclusive,
                "objectives_invalid": self.invalid,
                "evidence_problems": len(self.evidence_problems),
            },
            "objectives": [
                {
                    "kind": o.kind,
                    "objective": o.objective,
                    "runs": o.runs,
                    "met": o.met,
                    "missed": o.missed,
                    "inconclusive": o.inconclusive,
                    "invalid": o.invalid,
                    "worst_s": o.worst_s,
                }
                for o in self.objectives()
            ],
            "not_measured": [
                {"kind": o.kind, "objective": o.name, "target_s": o.target_s}
                for o in self.not_measured()
            ],
            "runs": [_run_json(r) for r in self.runs],
        }


def run_verdict_json(run: RunSummary) -> dict[str, Any]:
    """A run's verdict at the JSON edge: verdict, exit status, why, and the tests that did not
    pass (each with its one-line reason) or were lost."""
    return {
        "id": run.run_id,
        "started_utc": run.started_utc.isoformat(),
        "verdict": run.verdict,
        "exit_status": run.exit_status,
        "reason": run.reason,
        "interruption": run.interruption,
        "lost": list(run.lost),
        "tests": run.test_counts(),
        "failed_tests": [
            {"nodeid": t.nodeid, "outcome": t.outcome, "message": t.message}
            for t in run.tests
            if t.outcome in FAILED_OUTCOMES
        ],
    }


def _run_json(run: RunSummary) -> dict[str, Any]:
    return {
        **run_verdict_json(run),
        "finished_utc": None if run.finished_utc is None else run.finished_utc.isoformat(),
        "target": {"kind": run.target_kind, "name": run.target_name},
        "dry_run": run.dry_run,
        "objectives_source": run.objectives_source,
        "objectives_scale": run.objectives_scale,
        # the verdict's name before verdicts were kept
        "outcome": run.verdict,
        "objectives_met": run.met,
        "objectives_missed": run.missed,
        "objectives_inconclusive": run.inconclusive,
        "objectives_invalid": run.invalid,
        "objectives": [
            {
                "kind": o.kind,
                "objective": o.objective,
                "target_s": o.target_s,
                "measurements": o.measurements,
                "worst_s": o.worst_s,
                "worst_uncertainty_s": o.worst_uncertainty_s,
                "status": o.status,
            }
            for o in run.objectives
        ],
        "evidence": [
            {"path": e.path, "sha256": e.sha256, "size": e.size, "state": e.state}
            for e in run.evidence
        ],
    }


# --- helpers --------------------------------------------------------------------------------


def parse_month(text: str, where: str = "--month") -> tuple[datetime, datetime]:
    """The UTC bounds ``[start, end)`` of a ``YYYY-MM`` month; InputError naming ``where``."""
    match = _MONTH.fullmatch(text.strip())
    if match is None:
        raise InputError(where, f"{text!r} is not a month: use YYYY-MM, e.g. 2026-11")
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _utc(moment: datetime) -> datetime:
    # a report written without an offset is UTC by the schema
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    # one fixed width, so that text order is time order in SQL
    return _utc(moment).strftime(_TIME_FORMAT)


def _unstamp(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --- the store ------------------------------------------------------------------------------


class HistoryStore:
    """The history of runs in one SQLite file (made, with its tables, on open)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise DrillError(f"history {self.path}: cannot open: {exc}") from exc
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._enable_wal()
            self._migrate()
        except sqlite3.OperationalError as exc:
            # locked past the busy timeout, read-only, disk full: the store may be fine
            self._db.close()
            raise DrillError(f"history {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise DrillError(f"history {self.path}: not a drdrill history: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    def _enable_wal(self) -> None:
        # WAL lets readers run beside a writer, and it stays set in the file once set. Switching
        # to it needs a lock that SQLite does not wait for (no busy handler): two processes
        # opening a new store at once can see SQLITE_BUSY here, so retry for a while.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _version(self) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > STORE_VERSION:
            raise DrillError(
                f"history {self.path}: store version {version} is newer than this "
                f"drdrill's ({STORE_VERSION})"
            )
        return version

    def _migrate(self) -> None:
        if self._version() == STORE_VERSION:
            return  # the usual case: no write lock just to open
        with self._write():
            version = self._version()
            if version == STORE_VERSION:
                return  # another process made the tables while we waited for the lock
            if version == 0:
                self._statements(_SCHEMA)
                version = 1
            for step in range(version + 1, STORE_VERSION + 1):
                self._statements(_MIGRATIONS[step])
            self._derive_verdicts()
            self._db.execute(f"PRAGMA user_version = {STORE_VERSION}")

    def _statements(self, script: str) -> None:
        for statement in script.split(";"):
            # executescript() would commit our open transaction; run statement by statement
            if statement.strip():
                self._db.execute(statement)

    def _derive_verdicts(self) -> None:
        """Runs stored before verdicts were kept: each figure's status judged again as figures
        are judged now (a negative span is invalid, an interval across the target inconclusive),
        and the run's verdict derived from its tests and those figures (no exit status)."""
        figures = self._db.execute(
            "SELECT run_id, seq, name, kind, measured, uncertainty, unit, target_s FROM results"
        ).fetchall()
        for run_id, seq, name, kind, value, uncertainty, unit, target in figures:
            measured = Measurement(
                math.nan if value is None else float(value),
                math.nan if uncertainty is None else float(uncertainty),
                str(unit),
            )
            status = Result(str(name), kind, measured, target, None).status
            self._db.execute(
                "UPDATE results SET status = ? WHERE run_id = ? AND seq = ?",
                (str(status), run_id, seq),
            )
        runs = self._db.execute("SELECT run_id, dry_run FROM runs WHERE verdict IS NULL")
        for run_id, dry_run in runs.fetchall():
            outcomes = [
                str(row[0])
                for row in self._db.execute("SELECT outcome FROM tests WHERE run_id = ?", (run_id,))
            ]
            statuses = [
                str(row[0])
                for row in self._db.execute(
                    "SELECT status FROM results WHERE run_id = ?", (run_id,)
                )
            ]
            verdict = decide_verdict(outcomes, statuses, dry_run=bool(dry_run))
            self._db.execute(
                "UPDATE runs SET verdict = ?, lost = ? WHERE run_id = ?",
                (str(verdict), "[]", run_id),
            )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: two appending processes queue on the busy
        # timeout instead of deadlocking on a read lock upgraded late
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[None]:
        # one snapshot for reads spanning several statements, while others append
        with self._errors():
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise DrillError(f"history {self.path}: {exc}") from exc

    # --- appending ----------------------------------------------------------------------

    def append(
        self,
        run_json: Mapping[str, Any],
        report_files: Sequence[Path],
        where: str = "report.json",
    ) -> None:
        """Store a run's ``report.json`` and the sha256 of each report file it wrote.

        Appending a run id again replaces what was stored under it (the same reports give the
        same rows). InputError (naming ``where``) for a document that is not a report, or naming
        the file for a report file that cannot be read.
        """
        run = run_from_json(run_json, where=where)
        meta = run_json.get("run", {})
        evidence = []
        for file in report_files:
            path = Path(file)
            try:
                stored = _relative_to(path.resolve(), self.path.parent.resolve())
                evidence.append((stored, sha256_file(path), path.stat().st_size))
            except OSError as exc:
                raise InputError(str(path), f"cannot read report file: {exc.strerror}") from None
        target_kind = str(run.target.get("kind", run.target.get("name", "unknown")))
        target_name = str(run.target.get("name", target_kind))
        started = _utc(run.started_utc)
        with self._write():
            self._db.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
            self._db.execute(
                "INSERT INTO runs (run_id, started_utc, finished_utc, month, target_kind, "
                "target_name, dry_run, objectives_source, objectives_scale, schema_version, "
                "drdrill_version, host, appended_utc, verdict, exit_status, interruption, lost) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    _stamp(started),
                    None if run.finished_utc is None else _stamp(run.finished_utc),
                    started.strftime("%Y-%m"),
                    target_kind,
                    target_name,
                    int(run.dry_run),
                    run.objectives_source,
                    run.objectives_scale,
                    str(run_json.get("schema_version", "")),
                    meta.get("drdrill_version") if isinstance(meta, Mapping) else None,
                    meta.get("host") if isinstance(meta, Mapping) else None,
                    _stamp(datetime.now(UTC)),
                    # derived from the run as read back, so that it is the report's own
                    str(run.verdict),
                    run.exit_status,
                    run.interruption,
                    json.dumps(list(run.lost)),
                ),
            )
            self._db.executemany(
                "INSERT INTO tests VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run.run_id, i, t.nodeid, t.outcome, t.duration_s, t.message)
                    for i, t in enumerate(run.tests)
                ],
            )
            self._db.executemany(
                "INSERT INTO results (run_id, seq, test, name, kind, objective, measured, "
                "uncertainty, unit, target_s, status, truth_s, error_ms, truth_source, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run.run_id,
                        i,
                        r.test,
                        r.name,
                        r.kind,
                        r.objective,
                        _finite(r.measured.value),
                        _finite(r.measured.uncertainty),
                        r.measured.unit,
                        r.target_s,
                        str(r.status),
                        r.truth_s,
                        _finite(r.error_ms),
                        r.truth_source,
                        r.note,
                    )
                    for i, r in enumerate(run.results)
                ],
            )
            self._db.executemany(
                "INSERT INTO objectives VALUES (?, ?, ?, ?, ?)",
                [(run.run_id, *row) for row in _runbook_rows(run.objectives)],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO evidence VALUES (?, ?, ?, ?)",
                [(run.run_id, *e) for e in evidence],
            )

    # --- reading ------------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        """Every stored run id, oldest first."""
        rows = self._db.execute("SELECT run_id FROM runs ORDER BY started_utc, run_id")
        return [str(r[0]) for r in rows]

    def runs(self, month: str) -> list[RunSummary]:
        """The runs started in a ``YYYY-MM`` month (UTC), oldest first; [] for a month without.

        InputError naming ``--month`` for a malformed month.
        """
        start, end = parse_month(month)
        return self._summaries(
            "WHERE started_utc >= ? AND started_utc < ? ORDER BY started_utc, run_id",
            (_stamp(start), _stamp(end)),
        )

    def recent(self, last_n: int, target_kind: str | None = None) -> list[RunSummary]:
        """The last ``last_n`` runs that drilled (dry runs left out), oldest first."""
        if last_n < 1:
            raise InputError("--last", f"{last_n} runs: must be 1 or more")
        where = "WHERE dry_run = 0" + (" AND target_kind = ?" if target_kind else "")
        params: tuple[Any, ...] = (target_kind,) if target_kind else ()
        newest = self._summaries(
            f"{where} ORDER BY started_utc DESC, run_id DESC LIMIT ?", (*params, last_n)
        )
        return newest[::-1]

    def _summaries(self, clause: str, params: tuple[Any, ...]) -> list[RunSummary]:
        with self._read():
            rows = self._db.execute(
                "SELECT run_id, started_utc, finished_utc, target_kind, target_name, dry_run, "
                "objectives_source, objectives_scale, verdict, exit_status, interruption, lost "
                f"FROM runs {clause}",
                params,
            ).fetchall()
            return [self._summary(row) for row in rows]

    def _summary(self, row: tuple[Any, ...]) -> RunSummary:
        run_id = str(row[0])
        tests = tuple(
            TestOutcome(str(n), str(o), float(d), m)
            for n, o, d, m in self._db.execute(
                "SELECT nodeid, outcome, duration_s, message FROM tests WHERE run_id = ? "
                "ORDER BY seq",
                (run_id,),
            )
        )
        results = self._db.execute(
            "SELECT kind, COALESCE(objective, name), measured, uncertainty, target_s, status "
            "FROM results WHERE run_id = ? AND measured IS NOT NULL ORDER BY seq",
            (run_id,),
        ).fetchall()
        evidence = tuple(
            Evidence(str(p), str(s), int(z))
            for p, s, z in self._db.execute(
                "SELECT path, sha256, size FROM evidence WHERE run_id = ? ORDER BY path",
                (run_id,),
            )
        )
        runbook = tuple(
            RunbookObjective(str(k), str(n), t)
            for k, n, t in self._db.execute(
                "SELECT kind, name, target_s FROM objectives WHERE run_id = ? "
                "ORDER BY kind = 'rpo', seq",
                (run_id,),
            )
        )
        return RunSummary(
            run_id=run_id,
            started_utc=_unstamp(row[1]),
            finished_utc=None if row[2] is None else _unstamp(row[2]),
            target_kind=str(row[3]),
            target_name=str(row[4]),
            dry_run=bool(row[5]),
            objectives_source=row[6],
            objectives_scale=float(row[7]),
            tests=tests,
            objectives=tuple(_objective_outcomes(results)),
            evidence=evidence,
            runbook=runbook,
            stored_verdict=str(row[8] or ""),
            exit_status=None if row[9] is None else int(row[9]),
            interruption=row[10],
            lost=tuple(_lost(row[11])),
        )

    # --- trend --------------------------------------------------------------------------

    def trend(self, last_n: int = 10, target_kind: str | None = None) -> list[ObjectiveTrend]:
        """Each objective over the last ``last_n`` runs (dry runs left out)."""
        return list(self.trend_of(last_n, target_kind).objectives)

    def trend_of(self, last_n: int = 10, target_kind: str | None = None) -> Trend:
        """The runs of the trend and each objective over them (what the chart draws)."""
        runs = self.recent(last_n, target_kind)
        return Trend(tuple(runs), tuple(_in_runbook_order(list(_trends(runs)), runs)))

    def write_trend_html(
        self, path: Path, last_n: int = 10, target_kind: str | None = None
    ) -> Path:
        """A self-contained HTML page: the trend table and an inline SVG chart per objective."""
        trend = self.trend_of(last_n, target_kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_trend_html(trend, str(self.path)), encoding="utf-8")
        return path

    # --- compliance ---------------------------------------------------------------------

    def compliance(
        self, month: str, now: datetime | None = None, accept_inconclusive: bool = False
    ) -> ComplianceReport:
        """The month's runs with their verdicts and what they met and missed, each report file
        checked again; ``accept_inconclusive`` lets an inconclusive run count as compliant."""
        runs = [_verified(run, self.path.parent) for run in self.runs(month)]
        return ComplianceReport(
            month=month.strip(),
            generated_utc=_utc(now or datetime.now(UTC)),
            store=str(self.path),
            runs=tuple(runs),
            accept_inconclusive=accept_inconclusive,
        )


def _lost(text: str | None) -> list[str]:
    try:
        value = json.loads(text) if text else []
    except json.JSONDecodeError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _relative_to(path: Path, folder: Path) -> str:
    """``path`` relative to the history's folder when it lies under it (the reports do, by
    default): moving the whole folder, or the repository, keeps the evidence found."""
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _verified(run: RunSummary, folder: Path) -> RunSummary:
    """The run with each evidence file checked where it is now: a stored relative path is the
    history folder's (an absolute one, from before, stays itself)."""
    checked = []
    for e in run.evidence:
        path = (folder / e.path).resolve()
        try:
            state = "ok" if sha256_file(path) == e.sha256 else "changed"
        except FileNotFoundError:
            state = "missing"
        except OSError:
            state = "unreadable"
        checked.append(Evidence(str(path), e.sha256, e.size, state))
    return replace(run, evidence=tuple(checked))


def _objective_outcomes(rows: Iterable[tuple[Any, ...]]) -> Iterator[ObjectiveOutcome]:
    grouped: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault((str(row[0]), str(row[1])), []).append(row)
    for (kind, name), figures in grouped.items():
        worst = max(figures, key=lambda f: float(f[2]))
        targets = [float(f[4]) for f in figures if f[4] is not None]
        # the worst status of any figure: one invalid figure makes the objective invalid
        status = max((Status(str(f[5])) for f in figures), key=lambda st: STATUS_RANK[st])
        yield ObjectiveOutcome(
            kind=kind,
            objective=name,
            # the smallest target a figure was held to: the one that binds
            target_s=min(targets) if targets else None,
            figures=tuple(float(f[2]) for f in figures),
            worst_s=float(worst[2]),
            worst_uncertainty_s=float(worst[3] or 0.0),
            status=str(status),
        )


def _runbook_rows(objectives: Mapping[str, Any]) -> Iterator[tuple[str, int, str, float | None]]:
    for kind in ("rto", "rpo"):
        table = objectives.get(kind)
        if not isinstance(table, Mapping):
            continue
        for seq, (name, row) in enumerate(table.items()):
            target = row.get("target_s") if isinstance(row, Mapping) else None
            number = float(target) if isinstance(target, int | float) else None
            yield kind, seq, str(name), number


def _in_runbook_order(
    trends: list[ObjectiveTrend], runs: Sequence[RunSummary]
) -> list[ObjectiveTrend]:
    """RTO before RPO, each in the order of the newest runbook; the rest as first measured."""
    rank: dict[tuple[str, str], int] = {}
    for run in reversed(runs):
        if run.runbook:
            rank = {(o.kind, o.name.lower()): i for i, o in enumerate(run.runbook)}
            break
    unranked = len(rank)
    return sorted(  # stable: figures outside the runbook keep the order they came in
        trends,
        key=lambda t: (t.kind != "rto", rank.get((t.kind, t.objective.lower()), unranked)),
    )


def _trends(runs: Sequence[RunSummary]) -> Iterator[ObjectiveTrend]:
    per: dict[tuple[str, str], list[tuple[RunSummary, ObjectiveOutcome]]] = {}
    for run in runs:
        for o in run.objectives:
            per.setdefault((o.kind, o.objective), []).append((run, o))
    for (kind, name), seen in per.items():
        # the median is over every figure, so it needs the figures, not each run's worst
        figures = [f for _, o in seen for f in o.figures]
        with_target = [o for _, o in seen if o.status != "no objective"]
        met = sum(1 for o in with_target if o.status == "met")
        missed = sum(1 for o in with_target if o.status == "missed")
        # a run meets the objective only when all its figures do: inconclusive is not met
        worst_run, worst = max(seen, key=lambda pair: pair[1].worst_s)
        last = seen[-1][1]
        yield ObjectiveTrend(
            kind=kind,
            objective=name,
            target_s=last.target_s,
            runs=len(seen),
            measurements=sum(o.measurements for _, o in seen),
            met=met,
            missed=missed,
            pass_rate=met / len(with_target) if with_target else None,
            median_s=statistics.median(figures) if figures else worst.worst_s,
            worst_s=worst.worst_s,
            worst_run=worst_run.run_id,
            last_status=last.status,
            inconclusive=sum(1 for o in with_target if o.status == "inconclusive"),
            invalid=sum(1 for o in with_target if o.status == "invalid"),
            points=tuple(
                TrendPoint(
                    run.run_id,
                    run.started_utc,
                    o.worst_s,
                    o.worst_uncertainty_s,
                    o.target_s,
                    o.status,
                )
                for run, o in seen
            ),
        )


# --- the chart ------------------------------------------------------------------------------

_CHART_W, _CHART_H = 520, 200
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 16, 14, 40
_COLOR = {
    "met": "#2e7d32",
    "missed": "#c62828",
    "inconclusive": "#b26a00",
    "invalid": "#6a1b9a",
    "no objective": "#546e7a",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td, th { white-space: nowrap; }
.charts { display: flex; flex-wrap: wrap; gap: 0 2em; }
.legend span { margin-right: 1.5em; }
.met { color: #2e7d32; } .missed { color: #c62828; font-weight: bold; }
.inconclusive { color: #b26a00; font-weight: bold; } .invalid { color: #6a1b9a; font-weight: bold; }
.none { color: #546e7a; }
.passed { color: #2e7d32; } .failed, .incomplete { color: #c62828; font-weight: bold; }
td.why { white-space: normal; max-width: 60em; }
section { margin: 0.5em 0; }
h2 { font-size: 1.1em; margin: 0.8em 0 0.2em; }
svg text { font-size: 11px; fill: #444; }
"""


def _fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f} s"


def _rate_text(trend: ObjectiveTrend) -> str:
    if trend.pass_rate is None:
        return "n/a"
    return f"{trend.pass_rate:.0%} ({trend.met}/{trend.judged})"


def _status_class(status: str) -> str:
    known = ("met", "missed", "inconclusive", "invalid")
    return status if status in known else "none"


def _verdict_class(verdict: str) -> str:
    known = ("passed", "failed", "inconclusive", "incomplete")
    return verdict.replace(" ", "-") if verdict in known else "none"


def render_chart(trend: ObjectiveTrend, runs: Sequence[RunSummary]) -> str:
    """An inline SVG line chart: the objective's worst figure a run, the target as a line.

    The x axis has a slot for every run of the window (so charts of different objectives line
    up); a run that did not measure this objective leaves a gap in the line.
    """
    e = html.escape
    slots = {run.run_id: i for i, run in enumerate(runs)}
    plot_w = _CHART_W - _PAD_L - _PAD_R
    plot_h = _CHART_H - _PAD_T - _PAD_B
    step = plot_w / max(len(runs), 1)
    values = [p.measured_s for p in trend.points] + [
        p.target_s for p in trend.points if p.target_s is not None
    ]
    low = min(0.0, *values)
    high = max(values) if max(values) > low else low + 1.0
    high += (high - low) * 0.1  # headroom, so a point on the top edge stays visible

    def x(run_id: str) -> float:
        return _PAD_L + step * (slots[run_id] + 0.5)

    def y(value: float) -> float:
        return _PAD_T + plot_h * (1 - (value - low) / (high - low))

    parts = [
        f'<svg role="img" width="{_CHART_W}" height="{_CHART_H}" '
        f'viewBox="0 0 {_CHART_W} {_CHART_H}" aria-label="{e(trend.label)} per run">',
        f"<title>{e(trend.label)}: worst figure per run, target as a dashed line</title>",
        f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{plot_w}" height="{plot_h}" '
        'fill="#fafafa" stroke="#ccc"/>',
    ]
    for tick in (low, (low + high) / 2, high):
        parts.append(
            f'<text x="{_PAD_L - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f} s</text>'
        )
    if low < 0:
        parts.append(
            f'<line x1="{_PAD_L}" x2="{_PAD_L + plot_w}" y1="{y(0):.1f}" y2="{y(0):.1f}" '
            'stroke="#bbb"/>'
        )
    # the target as a step line: each run is held to its own target (the scale may change)
    target_path: list[str] = []
    for p in trend.points:
        if p.target_s is None:
            continue
        x0, x1 = x(p.run_id) - step / 2, x(p.run_id) + step / 2
        move = "L" if target_path else "M"
        target_path.append(f"{move}{x0:.1f},{y(p.target_s):.1f} L{x1:.1f},{y(p.target_s):.1f}")
    if target_path:
        parts.append(
            f'<path d="{" ".join(target_path)}" fill="none" stroke="#c62828" '
            'stroke-dasharray="6 4" stroke-width="1.5"><title>target</title></path>'
        )
    segments: list[list[TrendPoint]] = []
    for p in trend.points:
        if segments and slots[p.run_id] == slots[segments[-1][-1].run_id] + 1:
            segments[-1].append(p)
        else:
            segments.append([p])  # a run in between did not measure it: break the line
    for segment in segments:
        line = " ".join(f"{x(p.run_id):.1f},{y(p.measured_s):.1f}" for p in segment)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    for p in trend.points:
        tip = (
            f"{p.run_id} ({p.started_utc:%Y-%m-%d %H:%M} UTC): {p.measured_s:.3f} "
            f"± {p.uncertainty_s:.3f} s [{p.measured_s - p.uncertainty_s:.3f}, "
            f"{p.measured_s + p.uncertainty_s:.3f}], target {_fmt(p.target_s)}, {p.status}"
        )
        parts.append(
            f'<circle cx="{x(p.run_id):.1f}" cy="{y(p.measured_s):.1f}" r="4" '
            f'fill="{_COLOR.get(p.status, "#546e7a")}"><title>{e(tip)}</title></circle>'
        )
    every = max(1, math.ceil(len(runs) / 8))  # at most 8 labels, so they do not overlap
    for i, run in enumerate(runs):
        if i % every == 0 or i == len(runs) - 1:
            parts.append(
                f'<text x="{_PAD_L + step * (i + 0.5):.1f}" y="{_CHART_H - _PAD_B + 16}" '
                f'text-anchor="middle">{run.started_utc:%m-%d %H:%M}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def render_trend_html(trend: Trend, store: str) -> str:
    """The history page: a table of each objective's trend and its chart. No external files."""
    e = html.escape
    runs = trend.runs
    if runs:
        window = (
            f"{len(runs)} runs from {runs[0].started_utc:%Y-%m-%d %H:%M} "
            f"to {runs[-1].started_utc:%Y-%m-%d %H:%M} UTC"
        )
    else:
        window = "no runs yet"
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>drdrill history</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>DR drill history</h1>",
        f"<p>{e(window)}; store <code>{e(store)}</code>. A run meets an objective when every "
        "figure it measured is within the target; each point is the run's worst figure.</p>",
    ]
    if trend.objectives:
        lines += [
            "<table><thead><tr><th>Objective</th><th>Target</th><th>Runs</th><th>Pass rate</th>"
            "<th>Median</th><th>Worst</th><th>Worst run</th><th>Last</th></tr></thead><tbody>",
        ]
        for t in trend.objectives:
            lines.append(
                f"<tr><td>{e(t.label)}</td><td class=num>{_fmt(t.target_s)}</td>"
                f"<td class=num>{t.runs}</td><td class=num>{_rate_text(t)}</td>"
                f"<td class=num>{_fmt(t.median_s)}</td>"
                f"<td class=num>{_fmt(t.worst_s)}</td><td>{e(t.worst_run)}</td>"
                f'<td class="{_status_class(t.last_status)}">{e(t.last_status)}</td></tr>'
            )
        lines.append("</tbody></table>")
    if trend.objectives:
        lines.append(
            '<p class="legend"><span style="color:#1565c0">&#9472;&#9472; worst figure of a run'
            '</span><span style="color:#c62828">- - - target</span><span style="color:#2e7d32">'
            '&#9679; met</span><span style="color:#c62828">&#9679; missed</span><span '
            'style="color:#b26a00">&#9679; inconclusive</span><span style="color:#6a1b9a">'
            '&#9679; invalid</span><span style="color:#546e7a">&#9679; no objective</span> '
            "(hover a point for its run and interval)</p>"
        )
    if runs:
        lines += [
            "<h2>Runs</h2>",
            "<table><thead><tr><th>Run</th><th>Started (UTC)</th><th>Target</th>"
            "<th>Verdict</th><th>Exit status</th><th>Tests</th><th>Why</th></tr></thead><tbody>",
        ]
        for run in runs:
            tests = ", ".join(f"{n} {o}" for o, n in run.test_counts().items()) or "none"
            exit_status = "not recorded" if run.exit_status is None else str(run.exit_status)
            lines.append(
                f"<tr><td>{e(run.run_id)}</td><td>{run.started_utc:%Y-%m-%d %H:%M}</td>"
                f"<td>{e(run.target_name)} ({e(run.target_kind)})</td>"
                f'<td class="{_verdict_class(run.verdict)}">{e(run.verdict)}</td>'
                f"<td class=num>{exit_status}</td><td>{e(tests)}</td>"
                f'<td class="why">{e(run.reason)}</td></tr>'
            )
        lines.append("</tbody></table>")
    lines.append('<div class="charts">')
    for t in trend.objectives:
        lines += [
            "<section>",
            f"<h2>{e(t.label)}</h2>",
            render_chart(t, runs),
            "</section>",
        ]
    lines.append("</div></body></html>")
    return "\n".join(lines) + "\n"


# --- the compliance report ------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def render_compliance_markdown(report: ComplianceReport) -> str:
    """``compliance-YYYY-MM.md``: whether the month is compliant and why, then its runs with
    their verdicts, its objectives (in the runbook's order) and the evidence."""
    verdict, _, rest = report.verdict_line().partition(" — ")
    counts = ", ".join(
        f"{report.runs_with(v)} {v}" for v in Verdict if report.runs_with(v) or v in ("passed",)
    )
    accepted = "accepted" if report.accept_inconclusive else "not accepted"
    lines = [
        f"**{verdict}** — {rest}",
        "",
        f"# DR compliance report: {report.month}",
        "",
        f"- Generated: {report.generated_utc:%Y-%m-%d %H:%M:%S} UTC from `{report.store}`",
        f"- Runs: {len(report.runs)} ({counts})",
        f"- Objectives met: {report.met}; missed: {report.missed}; inconclusive: "
        f"{report.inconclusive}; invalid: {report.invalid} (summed over the runs)",
        f"- Compliant only when a drill ran and every run (dry runs aside) passed; an "
        f"inconclusive run is {accepted}; every report file must still have its digest",
        "",
    ]
    if report.findings:
        lines += ["## Why the month is not compliant", ""]
        lines += [f"- {_md_cell(f)}" for f in report.findings]
        lines.append("")
    if not report.runs:
        return "\n".join([*lines, "No drill ran this month.", ""])
    lines += [
        "## Runs",
        "",
        "| Run | Started (UTC) | Target | Verdict | Exit status | Tests | Met | Missed | "
        "Inconclusive | Invalid | Why |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report.runs:
        tests = ", ".join(f"{n} {o}" for o, n in run.test_counts().items()) or "none"
        verdict_text = run.verdict if report.run_compliant(run) else f"**{run.verdict}**"
        exit_status = "not recorded" if run.exit_status is None else str(run.exit_status)
        lines.append(
            f"| {run.run_id} | {run.started_utc:%Y-%m-%d %H:%M:%S} | "
            f"{run.target_name} ({run.target_kind}) | {verdict_text} | {exit_status} | {tests} | "
            f"{run.met} | {run.missed} | {run.inconclusive} | {run.invalid} | "
            f"{_md_cell(run.reason)} |"
        )
    lines += [
        "",
        "## Objectives over the month",
        "",
        "| Objective | Runs | Met | Missed | Inconclusive | Invalid | Worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in report.objectives():
        lines.append(
            f"| {o.label} | {o.runs} | {o.met} | {o.missed} | {o.inconclusive} | {o.invalid} | "
            f"{o.worst_s:.3f} s |"
        )
    unmeasured = report.not_measured()
    if unmeasured:
        lines += [
            "",
            "Objectives of the runbook no run measured this month: "
            + ", ".join(f"{o.label} ({o.target_s:g} s)" for o in unmeasured),
        ]
    failures = [(r, t) for r in report.runs for t in r.tests if t.outcome != "passed"]
    if failures:
        lines += ["", "## Tests that did not pass", ""]
        lines += [
            f"- {r.run_id} `{t.nodeid}` {t.outcome}: {_md_cell(t.message or '')}"
            for r, t in failures
        ]
    lines += [
        "",
        "## Evidence",
        "",
        "The sha256 of each report file when its run was appended, and whether the file on disk "
        "still has it.",
        "",
        "| Run | File | sha256 | Bytes | Now |",
        "|---|---|---|---|---|",
    ]
    for run in report.runs:
        for ev in run.evidence:
            state = ev.state or "not checked"
            state = state if state == "ok" else f"**{state}**"
            lines.append(f"| {run.run_id} | `{ev.path}` | `{ev.sha256}` | {ev.size} | {state} |")
    return "\n".join([*lines, ""])


#: the compliance page's template, beside report.html's (shipped as package data)
COMPLIANCE_TEMPLATE = "compliance.html.j2"


@dataclass(frozen=True)
class ComplianceCell:
    """One run against one objective on the compliance page: its worst figure and status."""

    #: ``6.623 s``, or ``—`` where the run measured nothing for it
    text: str
    #: met | missed | inconclusive | invalid | no objective | not measured
    status: str
    #: the CSS class of the status
    css: str
    #: every figure of the run for it, the worst's interval and the target (a tooltip)
    title: str


@dataclass(frozen=True)
class ComplianceObjectiveRow:
    """An objective over the month on the compliance page, with each run's cell."""

    label: str
    target: str
    runs: int
    met: int
    missed: int
    inconclusive: int
    invalid: int
    worst: str
    #: one a run, in the order of :attr:`CompliancePage.runs`
    cells: tuple[ComplianceCell, ...]
    #: False for a runbook row with a target that no run of the month measured
    measured: bool = True


@dataclass(frozen=True)
class ComplianceRunRow:
    """A run of the month on the compliance page."""

    run_id: str
    started: str
    target: str
    verdict: str
    #: the CSS class of the verdict
    css: str
    #: how the verdict counts: ``""`` (passed), ``accepted``, ``not judged`` (a dry run) or
    #: ``fails the month``
    standing: str
    exit_status: str
    tests: str
    met: int
    missed: int
    inconclusive: int
    invalid: int
    why: str


@dataclass(frozen=True)
class ComplianceTestRow:
    """A test of a run (a drill or a readiness check) and how it ended."""

    run_id: str
    nodeid: str
    outcome: str
    css: str
    message: str


@dataclass(frozen=True)
class ComplianceEvidenceRow:
    """A report file of a run, its stored sha256 and whether the file still has it."""

    run_id: str
    #: relative to the history's folder when the file lies under it
    path: str
    sha256: str
    size: int
    state: str
    css: str


@dataclass(frozen=True)
class CompliancePage:
    """What ``compliance-YYYY-MM.html`` draws, every value as text (the template escapes it)."""

    month: str
    compliant: bool
    #: ``COMPLIANT`` or ``NOT COMPLIANT``
    verdict: str
    #: the rest of the verdict line: ``4 runs, all passed``, or the first finding
    verdict_rest: str
    findings: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    #: what the month does with an inconclusive run, as the config or the flag says
    inconclusive_rule: str
    runs: tuple[ComplianceRunRow, ...]
    objectives: tuple[ComplianceObjectiveRow, ...]
    tests: tuple[ComplianceTestRow, ...]
    evidence: tuple[ComplianceEvidenceRow, ...]
    #: the folder the evidence paths are relative to
    evidence_folder: str
    version: str


def _target_text(target_s: float | None) -> str:
    return "N/A" if target_s is None else f"{target_s:g} s"


def _outcome_class(outcome: str) -> str:
    known = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    return outcome if outcome in known else "other"


def _evidence_path(path: str, folder: Path) -> str:
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return path


def _cell(outcome: ObjectiveOutcome | None) -> ComplianceCell:
    if outcome is None:
        return ComplianceCell("—", "not measured", "unmeasured", "not measured in this run")
    figures = ", ".join(f"{f:.3f}" for f in outcome.figures)
    many = (
        f"{outcome.measurements} figures: {figures} s; worst " if outcome.measurements > 1 else ""
    )
    target = "no objective" if outcome.target_s is None else f"target {outcome.target_s:g} s"
    title = (
        f"{many}{outcome.worst_s:.3f} ± {outcome.worst_uncertainty_s:.3f} s "
        f"[{outcome.worst_s - outcome.worst_uncertainty_s:.3f}, "
        f"{outcome.worst_s + outcome.worst_uncertainty_s:.3f}]; {target}: {outcome.status}"
    )
    return ComplianceCell(
        f"{outcome.worst_s:.3f} s", outcome.status, _status_class(outcome.status), title
    )


def _standing(report: ComplianceReport, run: RunSummary) -> str:
    if run.dry_run:
        return "not judged"
    if run.verdict == Verdict.PASSED:
        return ""
    return "accepted" if report.run_compliant(run) else "fails the month"


def compliance_page(report: ComplianceReport) -> CompliancePage:
    """The compliance page's values, worked out from the (redacted) report: what the markdown
    says, with each run's figure for each objective beside it."""
    verdict, _, rest = report.verdict_line().partition(" — ")
    counts = ", ".join(
        f"{report.runs_with(v)} {v}" for v in Verdict if report.runs_with(v) or v == "passed"
    )
    facts = (
        ("Generated", f"{report.generated_utc:%Y-%m-%d %H:%M:%S} UTC"),
        ("History", report.store),
        ("Runs", f"{len(report.runs)} ({counts})"),
        (
            "Objectives",
            f"met {report.met}; missed {report.missed}; inconclusive {report.inconclusive}; "
            f"invalid {report.invalid} (summed over the runs)",
        ),
    )
    if report.accept_inconclusive:
        rule = (
            "An inconclusive run (a figure whose interval straddles its target) is accepted: "
            "it counts as compliant (compliance.accept_inconclusive or --accept-inconclusive)."
        )
    else:
        rule = (
            "An inconclusive run (a figure whose interval straddles its target) is not "
            "accepted: it fails the month (compliance.accept_inconclusive is off)."
        )
    runs = tuple(
        ComplianceRunRow(
            run_id=run.run_id,
            started=f"{run.started_utc:%Y-%m-%d %H:%M:%S}",
            target=f"{run.target_name} ({run.target_kind})",
            verdict=run.verdict,
            css=_verdict_class(run.verdict),
            standing=_standing(report, run),
            exit_status="not recorded" if run.exit_status is None else str(run.exit_status),
            tests=", ".join(f"{n} {o}" for o, n in run.test_counts().items()) or "none",
            met=run.met,
            missed=run.missed,
            inconclusive=run.inconclusive,
            invalid=run.invalid,
            why=run.reason,
        )
        for run in report.runs
    )
    per_run = [{(o.kind, o.objective): o for o in run.objectives} for run in report.runs]
    rows = [
        (
            (o.kind, o.objective),
            ComplianceObjectiveRow(
                label=o.label,
                target=_target_text(o.target_s),
                runs=o.runs,
                met=o.met,
                missed=o.missed,
                inconclusive=o.inconclusive,
                invalid=o.invalid,
                worst=_fmt(o.worst_s),
                cells=tuple(_cell(outcomes.get((o.kind, o.objective))) for outcomes in per_run),
            ),
        )
        for o in report.objectives()
    ]
    rows += [
        (
            (o.kind, o.name),
            ComplianceObjectiveRow(
                label=o.label,
                target=_target_text(o.target_s),
                runs=0,
                met=0,
                missed=0,
                inconclusive=0,
                invalid=0,
                worst="—",
                cells=tuple(_cell(None) for _ in report.runs),
                measured=False,
            ),
        )
        for o in report.not_measured()
    ]
    # the runbook's rows no run measured take their place in its order, the rest stay after
    rank = {(o.kind, o.name.lower()): i for i, o in enumerate(report.runbook())}
    rows.sort(key=lambda item: rank.get((item[0][0], item[0][1].lower()), len(rank)))
    folder = Path(report.store).parent.resolve()
    return CompliancePage(
        month=report.month,
        compliant=report.compliant,
        verdict=verdict,
        verdict_rest=rest,
        findings=tuple(report.findings),
        facts=facts,
        inconclusive_rule=rule,
        runs=runs,
        objectives=tuple(row for _, row in rows),
        tests=tuple(
            ComplianceTestRow(
                run.run_id, t.nodeid, t.outcome, _outcome_class(t.outcome), t.message or ""
            )
            for run in report.runs
            for t in run.tests
        ),
        evidence=tuple(
            ComplianceEvidenceRow(
                run_id=run.run_id,
                path=_evidence_path(e.path, folder),
                sha256=e.sha256,
                size=e.size,
                state=e.state or "not checked",
                css="ok" if e.state == "ok" else "bad",
            )
            for run in report.runs
            for e in run.evidence
        ),
        evidence_folder=str(folder),
        version=__version__,
    )


@functools.cache
def _environment() -> jinja2.Environment:
    # as report.html's: autoescape on (the name .html.j2 is not one select_autoescape matches)
    return jinja2.Environment(
        loader=jinja2.PackageLoader("drdrill.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_compliance_html(report: ComplianceReport) -> str:
    """``compliance-YYYY-MM.html``: the markdown's content as one self-contained page (inline
    CSS; no script, font or image fetched), every value escaped by the template."""
    return _environment().get_template(COMPLIANCE_TEMPLATE).render(page=compliance_page(report))


def write_compliance(report: ComplianceReport, folder: Path) -> list[Path]:
    """Write ``compliance-YYYY-MM.md``, ``.json`` and ``.html`` in ``folder``; returns their
    paths, in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"compliance-{report.month}.md"
    md.write_text(render_compliance_markdown(report), encoding="utf-8")
    js = folder / f"compliance-{report.month}.json"
    js.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    page = folder / f"compliance-{report.month}.html"
    page.write_text(render_compliance_html(report), encoding="utf-8")
    return [md, js, page]


# --- for the plugin -------------------------------------------------------------------------


def record_run(path: Path, run_json: Mapping[str, Any], report_files: Sequence[Path]) -> str | None:
    """Append a finished run to the history at ``path``; a warning line instead of raising.

    For the end of a pytest session: a history that cannot be written must not fail the drills
    whose reports are already on disk.
    """
    try:
        with HistoryStore(path) as store:
            store.append(run_json, report_files)
    except (DrillError, sqlite3.Error, OSError) as exc:
        return f"drdrill history: run not recorded in {path}: {exc}"
    return None


@dataclass(frozen=True)
class Imported:
    """What :func:`import_reports` appended, and the reports found in folders it skipped."""

    appended: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, why)


def import_reports(store: HistoryStore, paths: Iterable[Path]) -> Imported:
    """Append runs from ``report.json`` files, or folders searched recursively for them.

    Every file beside a ``report.json`` whose name starts with ``report`` is its evidence. A
    report found in a folder that cannot be read (an older schema, a torn file) is skipped and
    listed; a file named explicitly must be a report (InputError naming it).
    """
    found: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            found += [(p, False) for p in sorted(path.rglob("report.json"))]
        elif path.is_file():
            found.append((path, True))
        else:
            raise InputError(str(path), "no such file or folder")
    appended: list[str] = []
    skipped: list[tuple[str, str]] = []
    for report, named in found:
        try:
            appended.append(_import_one(store, report))
        except InputError as exc:
            if named:
                raise
            skipped.append((str(report), exc.message))
    return Imported(tuple(appended), tuple(skipped))


def _import_one(store: HistoryStore, report: Path) -> str:
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(str(report), f"not a readable report.json: {exc}") from None
    if not isinstance(data, Mapping):
        raise InputError(str(report), "not a drdrill report")
    files = sorted(p for p in report.parent.glob("report*") if p.is_file())
    store.append(data, files, where=str(report))
    return str(data["run"]["id"])  # append checked that it is there
