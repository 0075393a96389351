"""A drill session: the state of one pytest run of drills, kept in ``config.stash``.

The plugin hands everything here: loading config, objectives and target (bad input stops the run
before anything is injected), per-test timelines and measurements, probes, writer, faults, and
the reports at the end.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drdrill.config import DrillConfig, load_config
from drdrill.errors import ObjectiveMissed
from drdrill.measure import Measurements
from drdrill.objectives import Objectives, parse_runbook
from drdrill.report.record import RunRecord
from drdrill.targets import make_target
from drdrill.timeline import Timeline

if TYPE_CHECKING:
    from drdrill.drill_fixtures import Injector, ProbeSession, WriterSession
    from drdrill.targets.base import Target


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by time: ``20261129T001200Z-3fa9c1``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def load_objectives(config: DrillConfig) -> Objectives | None:
    """The runbook's objectives, scaled by the config's factor, then its overrides applied.

    Overrides are absolute figures: they are applied after scaling and are not scaled themselves.
    """
    if config.runbook is None:
        base: Objectives | None = None
        if not (config.objectives.rto or config.objectives.rpo):
            return None
        base = Objectives(rto={}, rpo={}, source=str(config.path))
    else:
        base = parse_runbook(config.resolve(config.runbook))
        if config.objectives.scale != 1.0:
            base = base.scaled(config.objectives.scale)
    rto = {k: v for k, v in config.objectives.rto.items() if v is not None}
    rpo = {k: v for k, v in config.objectives.rpo.items() if v is not None}
    if rto or rpo:
        base = base.with_overrides(rto=rto, rpo=rpo, where=str(config.path))
    return base


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
    ) -> DrillSession:
        """Load and check everything a run needs; InputError on any bad input, before any fault."""
        config = load_config(config_path)
        objectives = load_objectives(config)
        name = target or config.target
        where = "--dr-target" if target else f"{config.path}: target"
        the_target = make_target(name, config, where)
        run = RunRecord(
            run_id=new_run_id(),
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
            found = self._measurements[nodeid] = Measurements(timeline, self.objectives, nodeid)
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
        """Fold one phase's report (setup, call, teardown) into the test's record."""
        if report.nodeid not in self._timelines:
            return  # not a drill: it never asked for a timeline
        record = self.run.test(report.nodeid)
        record.duration_s += report.duration
        if report.failed:
            record.outcome = "failed" if report.when == "call" else "error"
            record.message = record.message or _short(report.longreprtext)
        elif report.skipped:
            record.outcome = "skipped"
            record.message = record.message or _short(report.longreprtext)
        elif report.when == "call" and record.outcome == "unknown":
            record.outcome = "passed"
        if report.when == "teardown":
            self._collect(report.nodeid)

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
        """SIGTERM and SIGHUP raise in the main thread while drills run, so reverts run."""
        from drdrill.faults.base import handle_signals

        with handle_signals():
            yield

    def close(self) -> None:
        """Stop the target and write the reports."""
        try:
            self._sweep_faults()
            if self._target_started:
                self.target.stop()
        finally:
            for nodeid in list(self._timelines):
                self._collect(nodeid)
            self.run.finished_utc = datetime.now(UTC)
            if self.run.drills:
                self.write_reports()

    def _sweep_faults(self) -> None:
        """Revert any fault of this run still open in the journal (a fixture that could not)."""
        from drdrill.faults.base import recover
        from drdrill.faults.journal import Journal

        journal = Journal(self.journal_path)
        if journal.exists():
            recover(journal, run_id=self.run.run_id)

    def write_reports(self) -> list[Path]:
        """``report.json`` and ``report.md`` in ``<report_dir>/<run-id>/``."""
        from drdrill.report.json_report import write_json
        from drdrill.report.markdown import write_markdown

        folder = self.report_dir / self.run.run_id
        self._written = [
            write_json(self.run, folder / "report.json"),
            write_markdown(self.run, folder / "report.md"),
        ]
        return self._written

    def summary_lines(self, width: int) -> list[str]:
        """The console summary: a table of figures and the report paths."""
        from drdrill.report.console import render_summary

        if not self.run.drills:
            return []
        lines = ["", *render_summary(self.run, width=width).rstrip("\n").splitlines()]
        lines += [f"drdrill report: {p}" for p in self._written]
        return lines

    # --- filled in by drill_fixtures ------------------------------------------------------

    def probes_for(
        self, nodeid: str, timeline: Timeline
    ) -> contextlib.AbstractContextManager[ProbeSession]:
        """Continuous probes of this test, stopped and recorded at teardown."""
        from drdrill.drill_fixtures import probe_session

        return probe_session(self, nodeid, timeline)

    def writer_for(
        self, nodeid: str, timeline: Timeline
    ) -> contextlib.AbstractContextManager[WriterSession]:
        """RPO markers of this test, stopped and recorded at teardown."""
        from drdrill.drill_fixtures import writer_session

        return writer_session(self, nodeid, timeline)

    def injector_for(
        self, nodeid: str, timeline: Timeline
    ) -> contextlib.AbstractContextManager[Injector]:
        """Fault injection with journaled undo, reverted at teardown whatever happens."""
        from drdrill.drill_fixtures import injector_session

        return injector_session(self, nodeid, timeline)


def _short(text: str, limit: int = 500) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return last[:limit]
