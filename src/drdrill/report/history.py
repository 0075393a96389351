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
- the figure a run contributes to a chart is its worst (largest) for the objective.
"""

from __future__ import annotations

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

from drdrill.errors import DrillError, InputError
from drdrill.report.json_report import run_from_json

#: bumped when the tables change; a store written by a newer drdrill is refused, not misread
STORE_VERSION = 1
#: the compliance report's JSON schema (``compliance-YYYY-MM.json``)
COMPLIANCE_SCHEMA_VERSION = "1.0"
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
    """How one test of a run ended."""

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
    status: str  # met | missed | no objective

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

    @property
    def met(self) -> int:
        """Objectives this run met."""
        return sum(1 for o in self.objectives if o.status == "met")

    @property
    def missed(self) -> int:
        """Objectives this run missed."""
        return sum(1 for o in self.objectives if o.status == "missed")

    @property
    def outcome(self) -> str:
        """``failed`` (a test failed or errored, or an objective was missed), ``passed``,
        ``skipped`` (every test skipped), ``dry run`` or ``no tests``."""
        outcomes = {t.outcome for t in self.tests}
        if outcomes & {"failed", "error"} or self.missed:
            return "failed"
        if self.dry_run:
            return "dry run"
        if "passed" in outcomes:
            return "passed"
        return "skipped" if outcomes else "no tests"

    def test_counts(self) -> dict[str, int]:
        """How many tests ended each way (``{"passed": 2, "failed": 1}``)."""
        counts: dict[str, int] = {}
        for t in self.tests:
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
        return counts


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

    @property
    def label(self) -> str:
        """The objective's display name (RPO objectives say so)."""
        return self.objective if self.kind == "rto" else f"{self.objective} (RPO)"

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


@dataclass(frozen=True)
class ComplianceReport:
    """The runs of one month, what each met and missed, and the digests of their reports."""

    month: str
    generated_utc: datetime
    store: str
    runs: tuple[RunSummary, ...]

    @property
    def met(self) -> int:
        """Objectives met, summed over the month's runs."""
        return sum(r.met for r in self.runs)

    @property
    def missed(self) -> int:
        """Objectives missed, summed over the month's runs."""
        return sum(r.missed for r in self.runs)

    @property
    def runs_passed(self) -> int:
        """Runs whose outcome is ``passed``."""
        return sum(1 for r in self.runs if r.outcome == "passed")

    @property
    def runs_failed(self) -> int:
        """Runs whose outcome is ``failed``."""
        return sum(1 for r in self.runs if r.outcome == "failed")

    @property
    def evidence_problems(self) -> list[tuple[str, Evidence]]:
        """Report files that changed or vanished since their run was appended."""
        return [(r.run_id, e) for r in self.runs for e in r.evidence if e.state != "ok"]

    def objectives(self) -> list[MonthObjective]:
        """Each objective over the month, in the order runs first measured it."""
        found: dict[tuple[str, str], list[ObjectiveOutcome]] = {}
        for run in self.runs:
            for o in run.objectives:
                found.setdefault((o.kind, o.objective), []).append(o)
        return [
            MonthObjective(
                kind=kind,
                objective=name,
                runs=len(outs),
                met=sum(1 for o in outs if o.status == "met"),
                missed=sum(1 for o in outs if o.status == "missed"),
                worst_s=max(o.worst_s for o in outs),
            )
            for (kind, name), outs in found.items()
        ]

    def not_measured(self) -> list[RunbookObjective]:
        """Objectives of the runbook (with a target) that no run of the month measured."""
        measured = {(o.kind, o.objective.lower()) for r in self.runs for o in r.objectives}
        missing: dict[tuple[str, str], RunbookObjective] = {}
        for run in self.runs:
            for row in run.runbook:
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
                "runs": len(self.runs),
                "runs_passed": self.runs_passed,
                "runs_failed": self.runs_failed,
                "objectives_met": self.met,
                "objectives_missed": self.missed,
                "evidence_problems": len(self.evidence_problems),
            },
            "objectives": [
                {
                    "kind": o.kind,
                    "objective": o.objective,
                    "runs": o.runs,
                    "met": o.met,
                    "missed": o.missed,
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


def _run_json(run: RunSummary) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "started_utc": run.started_utc.isoformat(),
        "finished_utc": None if run.finished_utc is None else run.finished_utc.isoformat(),
        "target": {"kind": run.target_kind, "name": run.target_name},
        "dry_run": run.dry_run,
        "objectives_source": run.objectives_source,
        "objectives_scale": run.objectives_scale,
        "outcome": run.outcome,
        "tests": run.test_counts(),
        "objectives_met": run.met,
        "objectives_missed": run.missed,
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
        "failed_tests": [
            {"nodeid": t.nodeid, "outcome": t.outcome, "message": t.message}
            for t in run.tests
            if t.outcome in ("failed", "error")
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
            if self._version() == STORE_VERSION:
                return  # another process made the tables while we waited for the lock
            for statement in _SCHEMA.split(";"):
                # executescript() would commit our open transaction; run statement by statement
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {STORE_VERSION}")

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
                evidence.append((str(path.resolve()), sha256_file(path), path.stat().st_size))
            except OSError as exc:
                raise InputError(str(path), f"cannot read report file: {exc.strerror}") from None
        target_kind = str(run.target.get("kind", run.target.get("name", "unknown")))
        target_name = str(run.target.get("name", target_kind))
        started = _utc(run.started_utc)
        with self._write():
            self._db.execute("DELETE FROM runs WHERE run_id = ?", (run.run_id,))
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                f"objectives_source, objectives_scale FROM runs {clause}",
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

    def compliance(self, month: str, now: datetime | None = None) -> ComplianceReport:
        """The month's runs with what they met and missed, each report file checked again."""
        runs = [_verified(run) for run in self.runs(month)]
        return ComplianceReport(
            month=month.strip(),
            generated_utc=_utc(now or datetime.now(UTC)),
            store=str(self.path),
            runs=tuple(runs),
        )


def _verified(run: RunSummary) -> RunSummary:
    checked = []
    for e in run.evidence:
        path = Path(e.path)
        try:
            state = "ok" if sha256_file(path) == e.sha256 else "changed"
        except FileNotFoundError:
            state = "missing"
        except OSError:
            state = "unreadable"
        checked.append(Evidence(e.path, e.sha256, e.size, state))
    return replace(run, evidence=tuple(checked))


def _objective_outcomes(rows: Iterable[tuple[Any, ...]]) -> Iterator[ObjectiveOutcome]:
    grouped: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault((str(row[0]), str(row[1])), []).append(row)
    for (kind, name), figures in grouped.items():
        worst = max(figures, key=lambda f: float(f[2]))
        statuses = {str(f[5]) for f in figures}
        targets = [float(f[4]) for f in figures if f[4] is not None]
        if "missed" in statuses:
            status = "missed"
        elif "met" in statuses:
            status = "met"
        else:
            status = "no objective"
        yield ObjectiveOutcome(
            kind=kind,
            objective=name,
            # the smallest target a figure was held to: the one that binds
            target_s=min(targets) if targets else None,
            figures=tuple(float(f[2]) for f in figures),
            worst_s=float(worst[2]),
            worst_uncertainty_s=float(worst[3] or 0.0),
            status=status,
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
_COLOR = {"met": "#2e7d32", "missed": "#c62828", "no objective": "#546e7a"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td, th { white-space: nowrap; }
.charts { display: flex; flex-wrap: wrap; gap: 0 2em; }
.legend span { margin-right: 1.5em; }
.met { color: #2e7d32; } .missed { color: #c62828; font-weight: bold; }
.none { color: #546e7a; }
section { margin: 0.5em 0; }
h2 { font-size: 1.1em; margin: 0.8em 0 0.2em; }
svg text { font-size: 11px; fill: #444; }
"""


def _fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f} s"


def _rate_text(trend: ObjectiveTrend) -> str:
    if trend.pass_rate is None:
        return "n/a"
    return f"{trend.pass_rate:.0%} ({trend.met}/{trend.met + trend.missed})"


def _status_class(status: str) -> str:
    return {"met": "met", "missed": "missed"}.get(status, "none")


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
            f"± {p.uncertainty_s:.3f} s, target {_fmt(p.target_s)}, {p.status}"
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
            'style="color:#546e7a">&#9679; no objective</span> (hover a point for its run)</p>'
        )
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


def render_compliance_markdown(report: ComplianceReport) -> str:
    """``compliance-YYYY-MM.md``: the month's runs, objectives and evidence."""
    lines = [
        f"# DR compliance report: {report.month}",
        "",
        f"- Generated: {report.generated_utc:%Y-%m-%d %H:%M:%S} UTC from `{report.store}`",
        f"- Runs: {len(report.runs)} ({report.runs_passed} passed, {report.runs_failed} failed)",
        f"- Objectives met: {report.met}; missed: {report.missed} (summed over the runs)",
        "",
    ]
    if not report.runs:
        return "\n".join([*lines, "No drill ran this month.", ""])
    lines += [
        "## Runs",
        "",
        "| Run | Started (UTC) | Target | Outcome | Tests | Met | Missed | Missed objectives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report.runs:
        tests = ", ".join(f"{n} {o}" for o, n in run.test_counts().items()) or "none"
        missed = "; ".join(
            f"{o.label} {o.worst_s:.3f} s > {o.target_s:g} s"
            for o in run.objectives
            if o.status == "missed" and o.target_s is not None
        )
        outcome = f"**{run.outcome}**" if run.outcome == "failed" else run.outcome
        lines.append(
            f"| {run.run_id} | {run.started_utc:%Y-%m-%d %H:%M:%S} | "
            f"{run.target_name} ({run.target_kind}) | {outcome} | {tests} | {run.met} | "
            f"{run.missed} | {missed} |"
        )
    lines += [
        "",
        "## Objectives over the month",
        "",
        "| Objective | Runs | Met | Missed | Worst |",
        "|---|---|---|---|---|",
    ]
    for o in report.objectives():
        name = o.objective if o.kind == "rto" else f"{o.objective} (RPO)"
        lines.append(f"| {name} | {o.runs} | {o.met} | {o.missed} | {o.worst_s:.3f} s |")
    unmeasured = report.not_measured()
    if unmeasured:
        lines += [
            "",
            "Objectives of the runbook no run measured this month: "
            + ", ".join(f"{o.label} ({o.target_s:g} s)" for o in unmeasured),
        ]
    failures = [(r, t) for r in report.runs for t in r.tests if t.outcome in ("failed", "error")]
    if failures:
        lines += ["", "## Failed tests", ""]
        lines += [f"- {r.run_id} `{t.nodeid}` {t.outcome}: {t.message or ''}" for r, t in failures]
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


def write_compliance(report: ComplianceReport, folder: Path) -> list[Path]:
    """Write ``compliance-YYYY-MM.md`` and ``.json`` in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"compliance-{report.month}.md"
    md.write_text(render_compliance_markdown(report), encoding="utf-8")
    js = folder / f"compliance-{report.month}.json"
    js.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return [md, js]


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
