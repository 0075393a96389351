"""A drill session: the state of one pytest run of drills, kept in ``config.stash``.

The plugin hands everything here: loading config, objectives and target (bad input stops the run
before anything is injected), per-test timelines and measurements, probes, writer, faults, and
the reports at the end. Under pytest-xdist each worker has its own session, drilling its own
target under the run id the controller gave it; it hands its part of the report to the
controller (:meth:`DrillSession.part`), which merges the parts (:func:`write_merged_reports`).
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from drdrill.config import DrillConfig, load_config
from drdrill.defaults import DEFAULT_MIN_OUTAGE_S
from drdrill.errors import ConfigError, ObjectiveMissed
from drdrill.measure import Measurements
from drdrill.objectives import Objectives, parse_runbook
from drdrill.report.record import RunRecord
from drdrill.targets import make_target
from drdrill.targets.base import DryRunnable
from drdrill.timeline import Timeline

if TYPE_CHECKING:
    from drdrill.drill_fixtures import Injector, ProbeSession, WriterSession
    from drdrill.targets.base import Target


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by time: ``20261129T001200Z-3fa9c1``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class WorkerPart:
    """What a pytest-xdist worker hands the controller at its end (through ``workeroutput``).

    Its report (``report.json`` of its own tests) and where the run's reports go, or the bad
    input that stopped it before anything ran.
    """

    report: Mapping[str, Any] | None = None
    report_dir: str | None = None
    input_error: str | None = None
    #: the history store the run is appended to (the controller appends, once)
    history: str | None = None
    #: ``report.min_outage`` of the worker's config (report.md merges shorter outages)
    min_outage_s: float | None = None

    def to_wire(self) -> dict[str, Any]:
        """Plain data, as execnet carries it between processes."""
        return {
            "report": None if self.report is None else dict(self.report),
            "report_dir": self.report_dir,
            "input_error": self.input_error,
            "history": self.history,
            "min_outage_s": self.min_outage_s,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> WorkerPart:
        """Back from :meth:`to_wire`."""
        return cls(
            data.get("report"),
            data.get("report_dir"),
            data.get("input_error"),
            data.get("history"),
            data.get("min_outage_s"),
        )


def redacted(run: RunRecord) -> RunRecord:
    """A copy of ``run`` with every secret masked (:mod:`drdrill.redact`): what every
    artefact and the console are made from."""
    from drdrill.redact import redact_data
    from drdrill.report.json_report import run_from_json, run_to_json

    return run_from_json(redact_data(run_to_json(run)), where="the run")


def write_run_reports(
    run: RunRecord,
    report_dir: Path,
    history: Path | None = None,
    min_outage_s: float = DEFAULT_MIN_OUTAGE_S,
) -> list[Path]:
    """``report.json``, ``report.md`` and ``report.html`` of a run in ``<report_dir>/<run-id>/``;
    report.md merges outages under ``min_outage_s`` (``report.min_outage``).

    With ``history``, the run and the sha256 of each report are then appended to that store;
    a history that cannot be written is said on stderr and never fails the run.
    """
    from drdrill.report.html import write_html
    from drdrill.report.json_report import run_to_json, write_json
    from drdrill.report.markdown import write_markdown

    run = redacted(run)  # every artefact and the history from one redacted copy
    folder = report_dir / run.run_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # checked at load (load_config): the file system changed since
        raise ConfigError("report_dir", f"cannot create {folder}: {exc.strerror}") from None
    written = [
        write_json(run, folder / "report.json"),
        write_markdown(run, folder / "report.md", min_outage_s),
        write_html(run, folder / "report.html"),
    ]
    if history is not None:
        from drdrill.report.history import record_run

        warning = record_run(history, run_to_json(run), written)
        if warning:
            print(f"drdrill: history: {warning}", file=sys.stderr)
    return written


def run_summary_lines(run: RunRecord, written: list[Path], width: int) -> list[str]:
    """The console summary of a run: its figures, every test that did not pass with its reason,
    the report paths, and last the verdict line that report.md and report.html open with."""
    from drdrill.report.console import render_summary
    from drdrill.report.verdict import verdict_line

    run = redacted(run)
    lines = ["", *render_summary(run, width=width).rstrip("\n").splitlines()]
    lines += [f"drdrill report: {p}" for p in written]
    return [*lines, verdict_line(run)]


def write_merged_reports(
    parts: Mapping[str, WorkerPart], outcomes: RunRecord | None = None
) -> tuple[RunRecord, list[Path]]:
    """The controller's end of a pytest-xdist run: the workers' parts as one run, written once.

    ``parts`` are keyed by worker id; those without a report are left out. ``outcomes`` is what
    the controller saw itself: every test's outcome from the reports the workers forwarded,
    collection errors, tests lost with a crashed worker or never run, pytest's exit status; it
    overrides the parts' outcomes (see :func:`drdrill.report.merge.with_outcomes`). The run is
    written whenever a worker had a drill session. MergeError for parts of different runs.
    """
    from drdrill.report.merge import merge_runs, part_from_json, with_outcomes

    reports = {w: p for w, p in parts.items() if p.report is not None and p.report_dir}
    run = merge_runs({w: part_from_json(w, p.report or {}) for w, p in reports.items()})
    if outcomes is not None:
        run = with_outcomes(run, outcomes)
    report_dir = Path(next(p.report_dir for p in reports.values() if p.report_dir))
    history = next((Path(p.history) for p in reports.values() if p.history), None)
    min_outage_s = next(
        (p.min_outage_s for p in reports.values() if p.min_outage_s is not None),
        DEFAULT_MIN_OUTAGE_S,
    )
    return run, write_run_reports(run, report_dir, history, min_outage_s)


def write_lost_run(
    options: Mapping[str, Any], outcomes: RunRecord
) -> tuple[RunRecord, list[Path]] | None:
    """The xdist controller's end of a run whose every worker crashed (no part came back): the
    outcomes it saw itself, with the target and objectives of the config, written as the run's
    reports. None when the config cannot be read (then it was no drill run)."""
    from drdrill.errors import InputError
    from drdrill.report.merge import with_outcomes

    try:
        # the target is described, never started
        session = DrillSession.open(**{**options, "run_id": outcomes.run_id, "worker": None})
    except InputError:
        return None
    session.run.finished_utc = datetime.now(UTC)
    run = with_outcomes(session.run, outcomes)
    history = session.config.history_path(session.report_dir)
    return run, write_run_reports(
        run, session.report_dir, history, session.config.report.min_outage
    )


def write_parts(parts: Mapping[str, WorkerPart]) -> list[Path]:
    """Each worker's part as it came, in ``<report_dir>/<run-id>/parts/<worker>.json``.

    For parts that cannot be merged: nothing a worker measured is lost.
    """
    import json

    from drdrill.redact import redact_data
    from drdrill.report.merge import worker_order

    written = []
    for worker, part in sorted(parts.items(), key=lambda item: worker_order(item[0])):
        if part.report is None or not part.report_dir:
            continue
        run = part.report.get("run")
        run_id = run.get("id") if isinstance(run, Mapping) else None
        folder = Path(part.report_dir) / str(run_id or "unknown-run") / "parts"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{worker}.json"
        # an exit like any report's: no secret in it
        path.write_text(json.dumps(redact_data(part.report), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def load_objectives(config: DrillConfig) -> Objectives | None:
    """The runbook's objectives, scaled by the config's factor, then its overrides applied.

    Overrides are absolute figures: they are applied after scaling and are not scaled themselves.
    With a runbook, an override or a ``phases:`` entry naming a row the runbook does not have is
    a ConfigError listing the rows it has ("Total RTOO" is a typo, not a new objective).
    """
    if config.runbook is None:
        base: Objectives | None = None
        if not (config.objectives.rto or config.objectives.rpo):
            if config.phases:
                raise ConfigError(f"{config.path}: phases", "maps rows of no runbook (no runbook)")
            return None
        base = Objectives(rto={}, rpo={}, source=str(config.path))
    else:
        base = parse_runbook(config.resolve(config.runbook))
        for kind, overrides in (("rto", config.objectives.rto), ("rpo", config.objectives.rpo)):
            for row in overrides:
                _check_row(config, base, kind, row, f"objectives.{kind}.{row}")
        if config.objectives.scale != 1.0:
            base = base.scaled(config.objectives.scale)
    rto = {k: v for k, v in config.objectives.rto.items() if v is not None}
    rpo = {k: v for k, v in config.objectives.rpo.items() if v is not None}
    if rto or rpo:
        base = base.with_overrides(rto=rto, rpo=rpo, where=str(config.path))
    for row in config.phases:
        if base.get("rto", row) is None and base.get("rpo", row) is None:
            _check_row(config, base, "rto", row, f"phases.{row}")
    return base


def _check_row(config: DrillConfig, objectives: Objectives, kind: str, row: str, key: str) -> None:
    table = objectives.rto if kind == "rto" else objectives.rpo
    if objectives.get("rto" if kind == "rto" else "rpo", row) is None:
        rows = ", ".join(f"'{r}'" for r in table) or "none"
        raise ConfigError(
            f"{config.path}: {key}",
            f"'{row}' is not a row of the {kind.upper()} table of {objectives.source} "
            f"(rows: {rows})",
        )


def phase_rows(config: DrillConfig) -> dict[str, str]:
    """Drill phase -> runbook row, from the config's ``phases:`` (row -> phase)."""
    return {phase: row for row, phase in config.phases.items()}


@dataclass
class DrillSession:
    """Everything one run of drills shares."""

    config: DrillConfig
    objectives: Objectives | None
    target: Target
    run: RunRecord
    report_dir: Path
    dry_run: bool = False
    allow_destructive: bool = False
    worker: str | None = None
    _target_started: bool = False
    _timelines: dict[str, Timeline] = field(default_factory=dict)
    _measurements: dict[str, Measurements] = field(default_factory=dict)
    _probes: dict[str, ProbeSession] = field(default_factory=dict)
    _written: list[Path] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        config_path: Path,
        target: str | None = None,
        report_dir: Path | None = None,
        dry_run: bool = False,
        allow_destructive: bool = False,
        worker: str | None = None,
        run_id: str | None = None,
    ) -> DrillSession:
        """Load and check everything a run needs; InputError on any bad input, before any fault.

        ``run_id`` is the one the pytest-xdist controller gave every worker (else a new one).
        """
        config = load_config(config_path, report_dir=report_dir)
        objectives = load_objectives(config)
        name = target or config.target
        where = "--dr-target" if target else f"{config.path}: target"
        the_target = make_target(name, config, where, worker=worker)
        if dry_run and isinstance(the_target, DryRunnable):
            the_target.set_dry_run(True)  # the target intercepts every changing call
        run = RunRecord(
            run_id=run_id or new_run_id(),
            target=the_target.describe(),
            objectives=objectives.to_json() if objectives else {"rto": {}, "rpo": {}},
            objectives_source=objectives.source if objectives else None,
            objectives_scale=config.objectives.scale,
            dry_run=dry_run,
        )
        return cls(
            config=config,
            objectives=objectives,
            target=the_target,
            run=run,
            report_dir=report_dir or config.resolve(config.report_dir),
            dry_run=dry_run,
            allow_destructive=allow_destructive,
            worker=worker,
        )

    def check_phases(self, nodeid: str, phases: Iterable[str]) -> None:
        """ConfigError (naming the config and listing the rows) for a phase a drill declares
        that maps to no row of the runbook; run at collection, before anything is injected."""
        from drdrill.measure import Measurements, UnmappedPhase

        objectives = self.objectives
        if objectives is None:
            return
        probe = Measurements(Timeline(), objectives, nodeid, phase_rows(self.config))
        for phase in phases:
            try:
                probe.row_for("rto", phase)
                continue
            except UnmappedPhase:
                pass
            try:
                probe.row_for("rpo", phase)
            except UnmappedPhase:
                rto = ", ".join(f"'{r}'" for r in objectives.rto) or "none"
                rpo = ", ".join(f"'{r}'" for r in objectives.rpo) or "none"
                raise ConfigError(
                    f"{self.config.path}: phases",
                    f"drill {nodeid.rsplit('::', 1)[-1]} measures '{phase}', which is no row of "
                    f"{objectives.source} (RTO rows: {rto}; RPO rows: {rpo}); map a row to it "
                    "under 'phases:'",
                ) from None

    @property
    def target_kind(self) -> str:
        """The kind of the target (``local``, ``sandbox``, ``aws``)."""
        return str(self.target.describe().get("kind", self.target.name))

    @property
    def journal_path(self) -> Path:
        """The fault journal of this run."""
        return self.config.resolve(self.config.journal)

    def started_target(self) -> Target:
        """The target, started on first use."""
        if not self._target_started:
            self.target.start()
            self._target_started = True
        return self.target

    # --- per test ------------------------------------------------------------------------

    def timeline_for(self, nodeid: str) -> Timeline:
        """The test's timeline (its events go into the report)."""
        line = self._timelines.get(nodeid)
        if line is None:
            line = self._timelines[nodeid] = Timeline()
        return line

    def measurements_for(self, nodeid: str, timeline: Timeline) -> Measurements:
        """The test's measurements against the objectives."""
        found = self._measurements.get(nodeid)
        if found is None:
            found = self._measurements[nodeid] = Measurements(
                timeline, self.objectives, nodeid, phase_rows(self.config)
            )
        return found

    def verify_test(self, nodeid: str) -> None:
        """Fail the test for a missed objective it recorded but did not assert."""
        measurements = self._measurements.get(nodeid)
        if measurements is None:
            return
        missed = measurements.unverified_misses()
        if missed:
            raise ObjectiveMissed("; ".join(r.describe_miss() for r in missed))

    def record_outcome(self, report: pytest.TestReport) -> None:
        """Fold one phase's report (setup, call, teardown) into the test's record: every test of
        the run, drill or not (a readiness check, a drill whose fixture failed)."""
        from drdrill.report.outcome import fold_report

        fold_report(self.run, report, self.worker)
        if report.when == "teardown" and report.nodeid in self._timelines:
            self._collect(report.nodeid)

    def record_collection(self, report: pytest.CollectReport) -> None:
        """A module that failed to import (or skipped itself) as an entry of the run."""
        from drdrill.report.outcome import fold_collect

        fold_collect(self.run, report)

    def conclude(
        self,
        *,
        collected: Iterable[str],
        exit_status: int | None,
        interruption: str | None = None,
        stopped: str | None = None,
    ) -> None:
        """The run's end as pytest saw it: its exit status, the collected tests that never ran
        or never finished, and why (see :func:`drdrill.report.outcome.conclude`)."""
        from drdrill.report.outcome import conclude

        conclude(
            self.run,
            collected=collected,
            exit_status=exit_status,
            interruption=interruption,
            stopped=stopped,
        )

    def _collect(self, nodeid: str) -> None:
        record = self.run.test(nodeid)
        line = self._timelines.get(nodeid)
        if line is not None:
            record.events = line.events
        measurements = self._measurements.get(nodeid)
        if measurements is not None:
            record.results = list(measurements.results)

    # --- the end -------------------------------------------------------------------------

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGHUP raise in the main thread while drills run, so reverts run; each
        signal (SIGINT too) is noted, so that the run ends as interrupted even if its exception
        was lost on the way."""
        from drdrill.faults.base import RUN_SIGNALS, handle_signals

        with handle_signals(RUN_SIGNALS):
            yield

    def close(self, write: bool = True) -> None:
        """Stop the target and write the reports (unless ``write`` is off: a worker's part).

        The reports are written whenever the session is open, whatever ran or measured.
        """
        try:
            self._sweep_faults()
            if self._target_started:
                self._restore_baseline()
                self.target.stop()
        finally:
            for nodeid in list(self._timelines):
                self._collect(nodeid)
            self.run.finished_utc = datetime.now(UTC)
            if write:
                self.write_reports()

    def _restore_baseline(self) -> None:
        """A stack the run found running is left at its baseline (a run with ``-k`` may have
        left it failed over), said in one line on stderr; a failure to restore is a warning:
        the run's verdict stays its drills'. After an interrupt it is left as it is, said."""
        from drdrill.faults.base import SIGNALS
        from drdrill.targets.base import BaselineRestoring

        if isinstance(self.target, BaselineRestoring):
            # an interrupted run may have stopped mid-failover: a person decides what to keep
            line = self.target.restore_baseline(reset=not SIGNALS.received)
            if line is not None:
                # on a line of its own: pytest's progress line ("[100%]") is still open here
                sys.stderr.write(f"\ndrdrill: {line}\n")
                sys.stderr.flush()

    def part(self) -> WorkerPart:
        """This worker's part of the run for the controller to merge (where the reports go, and
        what its drills measured; the outcomes the controller has from pytest's reports)."""
        from drdrill.report.json_report import run_to_json

        return WorkerPart(
            report=run_to_json(self.run),
            report_dir=str(self.report_dir),
            history=str(self.config.history_path(self.report_dir)),
            min_outage_s=self.config.report.min_outage,
        )

    def _sweep_faults(self) -> None:
        """Revert any fault of this run still open in the journal (a fixture that could not)."""
        from drdrill.faults.base import recover
        from drdrill.faults.journal import Journal

        journal = Journal(self.journal_path)
        if journal.exists():
            recover(journal, run_id=self.run.run_id)

    def write_reports(self) -> list[Path]:
        """The run's reports in ``<report_dir>/<run-id>/``, and the run in the history."""
        self._written = write_run_reports(
            self.run,
            self.report_dir,
            self.config.history_path(self.report_dir),
            self.config.report.min_outage,
        )
        return self._written

    @property
    def written(self) -> list[Path]:
        """The reports :meth:`write_reports` wrote (none before, none for a worker's part)."""
        return list(self._written)

    def report_drill_end(self, item: pytest.Item) -> None:
        """The drill's figures into ``item.user_properties`` (JUnit) and allure-pytest."""
        if item.nodeid not in self._timelines:
            return
        from drdrill.report.allure import allure_recording, record_drill
        from drdrill.report.junit import phase_properties

        self._collect(item.nodeid)
        record = self.run.test(item.nodeid)
        item.user_properties.extend(phase_properties(record.results))
        if allure_recording(item.config):
            marker = item.get_closest_marker("drill")
            record_drill(
                record,
                None,
                target_kind=self.target_kind,
                severity=marker.kwargs.get("severity") if marker else None,
                run=self.run,
            )

    def summary_lines(self, width: int) -> list[str]:
        """The console summary: the figures, a dry run's plan, the report paths, and last the
        run's verdict line."""
        lines = run_summary_lines(self.run, self._written, width)
        if self.dry_run and isinstance(self.target, DryRunnable):
            calls = self.target.plan()
            planned = ["", f"drdrill dry run: {len(calls)} calls to the target's API"]
            planned += [f"  {call}" for call in calls]
            # the verdict stays the last line
            lines[-1:-1] = planned
        return lines

    # --- filled in by drill_fixtures ------------------------------------------------------

    def probes_for(
        self, nodeid: str, timeline: Timeline
    ) -> contextlib.AbstractContextManager[ProbeSession]:
        """Continuous probes of this test, stopped and recorded at teardown."""
        from drdrill.drill_fixtures import ProbeSession

        session = ProbeSession(self, nodeid, timeline)
        self._probes[nodeid] = session  # the stop conditions' availability budget reads it
        # closed on the way out whatever the drill did: stopped, recorded, reverted
        return contextlib.closing(session)

    def steady_problems(self, nodeid: str) -> list[str]:
        """What keeps the stack from steady state before a drill's first fault: its steady
        probes' recent failures and the target's own checks (when it has them)."""
        from drdrill.targets.base import SteadyStateTarget

        session = self._probes.get(nodeid)
        problems = (
            [] if session is None else session.steady_problems(self.config.drills.steady_samples)
        )
        if isinstance(self.target, SteadyStateTarget):
            problems += self.target.steady_state_problems(self._database_rpo())
        return problems

    def _database_rpo(self) -> float | None:
        """The runbook's "Database" RPO (through the phase mapping), None without one."""
        if self.objectives is None:
            return None
        row = phase_rows(self.config).get("Database", "Database")
        found = self.objectives.get("rpo", row)
        return None if found is None else found.target_s

    def availability_of(self, nodeid: str) -> float | None:
        """The worst availability (%) the drill's probes have seen so far, None before any."""
        session = self._probes.get(nodeid)
        return None if session is None else session.worst_availability()

    def writer_for(
        self, nodeid: str, timeline: Timeline
    ) -> contextlib.AbstractContextManager[WriterSession]:
        """RPO markers of this test, stopped and recorded at teardown."""
        from drdrill.drill_fixtures import WriterSession

        # closed on the way out whatever the drill did: stopped, recorded, reverted
        return contextlib.closing(WriterSession(self, nodeid, timeline))

    def injector_for(
        self, nodeid: str, timeline: Timeline
    ) -> contextlib.AbstractContextManager[Injector]:
        """Fault injection with journaled undo, reverted at teardown whatever happens."""
        from drdrill.drill_fixtures import Injector

        # closed on the way out whatever the drill did: stopped, recorded, reverted
        return contextlib.closing(Injector(self, nodeid, timeline))
