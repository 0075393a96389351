"""``report.md``: the run's verdict first, then the runbook's RTO and RPO tables with this
run's figures in the Actual column, every test with its outcome and reason, the severities of
failed drills, the outages and the write markers.

Outages whose whole duration interval is under ``report.min_outage`` (``drdrill.yaml``) are
blips: a drill's blips of one endpoint make one line with their count, longest and total
(:func:`merge_blips`), so a busy run's table stays readable; report.json lists every one."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drdrill.defaults import DEFAULT_MIN_OUTAGE_S
from drdrill.measure import Result, Status
from drdrill.report.figures import error_text, interval_text, measured_text, worst
from drdrill.report.record import PASSED, OutageRecord, RunRecord, TestRecord
from drdrill.report.verdict import verdict_line

_MARK = {
    Status.MET: "met",
    Status.MISSED: "**MISSED**",
    Status.INCONCLUSIVE: "*inconclusive*",
    Status.INVALID: "**INVALID**",
    Status.NO_OBJECTIVE: "no objective",
}


@dataclass(frozen=True)
class Blips:
    """A drill's blips on one endpoint, shown as one line (:func:`merge_blips`)."""

    endpoint: str
    #: the blips, in the order the drill recorded them (two at least)
    outages: tuple[OutageRecord, ...]
    #: what they are all under: ``report.min_outage``
    min_outage_s: float

    @property
    def longest_s(self) -> float:
        """The longest blip's duration."""
        return max(o.duration_s or 0.0 for o in self.outages)

    @property
    def total_s(self) -> float:
        """The blips' durations summed."""
        return sum(o.duration_s or 0.0 for o in self.outages)

    def text(self) -> str:
        """``12 blips under 0.5 s (longest 0.120 s, total 0.600 s)``."""
        return (
            f"{len(self.outages)} blips under {self.min_outage_s:g} s "
            f"(longest {self.longest_s:.3f} s, total {self.total_s:.3f} s)"
        )


def is_blip(outage: OutageRecord, min_outage_s: float) -> bool:
    """Whether ``outage`` is a blip: it ended, its start is known (a probe saw it begin), and
    even its longest possible duration (the figure plus its uncertainty) is under
    ``min_outage_s``. With ``min_outage_s`` 0 nothing is."""
    if outage.end_utc is None or outage.duration_s is None or outage.start_uncertainty_s <= 0:
        return False
    uncertainty = outage.duration_uncertainty_s
    if uncertainty is None:  # a report before 1.2: the boundaries' half-widths
        uncertainty = (outage.start_uncertainty_s + outage.end_uncertainty_s) / 2
    longest = outage.duration_s + uncertainty
    return math.isfinite(longest) and longest < min_outage_s


def merge_blips(outages: Sequence[OutageRecord], min_outage_s: float) -> list[OutageRecord | Blips]:
    """A drill's outages as its table shows them: every outage that is no blip (:func:`is_blip`)
    as it is, and the blips of each endpoint as one :class:`Blips` where the first of them was
    (a lone blip stays as it is: one line either way, and its own says more)."""
    blips: dict[str, list[OutageRecord]] = {}
    for o in outages:
        if is_blip(o, min_outage_s):
            blips.setdefault(o.endpoint, []).append(o)
    merged = {
        e: Blips(e, tuple(found), min_outage_s) for e, found in blips.items() if len(found) > 1
    }
    rows: list[OutageRecord | Blips] = []
    for o in outages:
        group = merged.get(o.endpoint)
        if group is None or o not in group.outages:
            rows.append(o)
        elif o is group.outages[0]:
            rows.append(group)
    return rows


def _outage_row(nodeid: str, row: OutageRecord | Blips) -> str:
    """A row of the outage table; blips from the first's start to the last's end."""
    if isinstance(row, Blips):
        start = row.outages[0].start_utc.isoformat()
        end = max(o.end_utc or o.start_utc for o in row.outages).isoformat()
        return f"| {_cell(nodeid)} | {_cell(row.endpoint)} | {start} | {end} | {row.text()} | |"
    end = row.end_utc.isoformat() if row.end_utc else "still out"
    duration = "open" if row.duration_s is None else f"{row.duration_s:.3f} s"
    if row.duration_s is not None and row.duration_uncertainty_s is not None:
        duration = f"{row.duration_s:.3f} ± {row.duration_uncertainty_s:.3f} s"
    return (
        f"| {_cell(nodeid)} | {_cell(row.endpoint)} | {row.start_utc.isoformat()} | {end} | "
        f"{duration} | ±{row.start_uncertainty_s:.3f} / ±{row.end_uncertainty_s:.3f} s |"
    )


def _expected_lines(run: RunRecord) -> list[str]:
    """The endpoints down by design (pilot light) before they first came up: not outages."""
    expected = [(t.nodeid, o) for t in run.tests for o in t.outages if o.expected_down]
    if not expected:
        return []
    lines = [
        "Expected down, not outages: endpoints probed as down by design (a pilot-light "
        "region's load balancer) from their first sample until they first came up.",
        "",
    ]
    for nodeid, o in expected:
        until = (
            "never came up"
            if o.end_utc is None or o.duration_s is None
            else f"until {o.end_utc.isoformat()} ({o.duration_s:.3f} s)"
        )
        lines.append(f"- {_cell(nodeid)}: {_cell(o.endpoint)} {until}")
    return [*lines, ""]


def _outages(run: RunRecord, min_outage_s: float) -> list[str]:
    """The client-observed outages, a row each, a drill's blips of an endpoint on one; the
    stretches an endpoint was expected down (:attr:`OutageRecord.expected_down`) are listed
    apart, after them."""
    lines = ["## Outages (client-observed)", ""]
    rows = [
        (t.nodeid, row)
        for t in run.tests
        for row in merge_blips([o for o in t.outages if not o.expected_down], min_outage_s)
    ]
    if not rows:
        return [*lines, "No outage observed.", "", *_expected_lines(run)]
    lines += [
        "| Test | Endpoint | Start (UTC) | End (UTC) | Duration | Boundary uncertainty |",
        "|---|---|---|---|---|---|",
        *(_outage_row(nodeid, row) for nodeid, row in rows),
        "",
    ]
    if any(isinstance(row, Blips) for _, row in rows):
        lines += [
            f"Blips (under {min_outage_s:g} s, uncertainty included: `report.min_outage`) are "
            "one line per test and endpoint, from the first's start to the last's end; "
            "report.json lists each.",
            "",
        ]
    return [*lines, *_expected_lines(run)]


def _target_text(row: Mapping[str, Any]) -> str:
    target = row.get("target_s")
    return "N/A" if target is None else f"{target:g} s"


def _cell(text: str) -> str:
    """Text made safe for a table cell (a pipe would end it, a newline the row)."""
    return " ".join(text.replace("|", "\\|").split())


def _actual(result: Result) -> str:
    return f"{measured_text(result)} {interval_text(result)}"


def _status(result: Result) -> str:
    mark = _MARK[result.status]
    if result.status is Status.INVALID and result.note:
        return f"{mark}: {_cell(result.note)}"
    return mark


def _table(kind: str, title: str, first: str, run: RunRecord) -> list[str]:
    rows: Mapping[str, Mapping[str, Any]] = run.objectives.get(kind, {})
    results = [r for r in run.results if r.kind == kind]
    lines = [
        f"## {title}",
        "",
        f"| {first} | Target | Actual (this run) | Status | Error vs ground truth | "
        "Runbook's actual | Notes |",
        "|---|---|---|---|---|---|---|",
    ]
    named = set()
    for component, row in rows.items():
        mine = [r for r in results if (r.objective or "").lower() == component.lower()]
        named.add(component.lower())
        shown = worst(mine)
        if shown is None:
            actual, status, error = "not measured", "", ""
        else:
            actual = _actual(shown)
            if len(mine) > 1:
                actual += f" (worst of {len(mine)})"
            status, error = _status(shown), error_text(shown)
        lines.append(
            f"| **{component}** | {_target_text(row)} | {actual} | {status} | {error} | "
            f"{row.get('actual') or ''} | {row.get('notes') or ''} |"
        )
    for r in results:
        if (r.objective or "").lower() not in named:
            lines.append(
                f"| {r.name} | N/A | {_actual(r)} | {_status(r)} | {error_text(r)} | | "
                f"{r.test or ''} |"
            )
    return [*lines, ""]


def _worker_lines(target: Mapping[str, Any]) -> list[str]:
    """A line a pytest-xdist worker: what its own target says that the others' do not."""
    workers: Mapping[str, Mapping[str, Any]] = target.get("workers") or {}
    lines = []
    for worker, described in workers.items():
        own = ", ".join(
            f"{key} {value}"
            for key, value in described.items()
            if key not in target and not isinstance(value, Mapping | list)
        )
        lines.append(f"- Worker {worker}: {own or 'same target'}")
    return lines


def _drill_text(test: TestRecord) -> str:
    return f"{test.outcome} {test.nodeid}" + (f" ({test.worker})" if test.worker else "")


def _severity(run: RunRecord) -> list[str]:
    """Each failed drill's customer impact classified with the runbook's escalation matrix; a
    drill that passed gets no level (its outage is its design)."""
    from drdrill.report.severity import run_severities

    severities = run_severities(run)
    if not severities:
        return []
    lines = [
        "## Severity (escalation matrix: a level for each failed drill, — for a drill that passed)",
        "",
        "| Drill | Severity | Why | Response time | Action |",
        "|---|---|---|---|---|",
    ]
    for nodeid, severity in severities.items():
        lines.append(
            f"| {nodeid} | {severity.label} | {_cell(severity.reason)} | "
            f"{severity.response_time_text} | {severity.action} |"
        )
    return [*lines, ""]


def _tests(run: RunRecord) -> list[str]:
    """Every test of the run, drill or not, with its outcome and why it did not pass."""
    if not run.tests:
        return ["## Tests", "", "No test ran.", ""]
    lines = [
        "## Tests",
        "",
        "| Test | Outcome | Worker | Duration | Reason |",
        "|---|---|---|---|---|",
    ]
    for t in run.tests:
        outcome = t.outcome if t.outcome == PASSED else f"**{t.outcome}**"
        lines.append(
            f"| {_cell(t.nodeid)} | {outcome} | {t.worker or ''} | {t.duration_s:.2f} s | "
            f"{_cell(t.message or '')} |"
        )
    lines.append("")
    if run.lost:
        lines += [
            f"Lost ({run.interruption or 'the run did not finish'}): "
            + ", ".join(f"`{n}`" for n in run.lost),
            "",
        ]
    return lines


def _apparatus(run: RunRecord) -> list[str]:
    """The probes' own health per drill: how late their loop ran, what it set aside."""
    rows = [(t, t.probes) for t in run.tests if t.probes]
    if not rows:
        return []
    lines = [
        "## Probes (the apparatus)",
        "",
        "| Test | Endpoints | Samples | Probe loop late by up to | "
        "Failures set aside as the loop's own (starved) |",
        "|---|---|---|---|---|",
    ]
    for test, probes in rows:
        lags = [p.lag_max_ms for p in probes if p.lag_max_ms is not None]
        lag = f"{max(lags):.0f} ms" if lags else "not measured"
        lines.append(
            f"| {test.nodeid} | {len(probes)} | {sum(p.samples for p in probes)} | {lag} | "
            f"{sum(p.starved_samples for p in probes)} |"
        )
    return [*lines, ""]


def render_markdown(run: RunRecord, min_outage_s: float = DEFAULT_MIN_OUTAGE_S) -> str:
    """The markdown report of a run; outages under ``min_outage_s`` are merged per drill and
    endpoint (:func:`merge_blips`; 0 lists every one)."""
    verdict, _, rest = verdict_line(run).partition(" — ")
    exit_status = "not recorded" if run.exit_status is None else str(run.exit_status)
    lines = [
        f"**{verdict}** — {rest}",
        "",
        f"# DR drill report: run {run.run_id}",
        "",
        f"- Verdict: {run.verdict} (pytest exit status {exit_status})",
        f"- Target: {run.target.get('name', '?')} ({run.target.get('kind', '?')})",
        *_worker_lines(run.target),
        f"- Started: {run.started_utc.isoformat()}",
        f"- Finished: {run.finished_utc.isoformat() if run.finished_utc else 'unfinished'}",
        f"- Objectives: {run.objectives_source or 'none'} (scaled by {run.objectives_scale:g})",
        f"- Drills: {len(run.drills)}; "
        + ", ".join(_drill_text(t) for t in run.tests if t.measured_anything),
        "",
    ]
    if run.dry_run:
        lines += ["**Dry run**: nothing was injected.", ""]
    lines += _table("rto", "Recovery Time Objectives", "Component", run)
    lines += _table("rpo", "Recovery Point Objectives", "Data Type", run)
    lines += _tests(run)
    lines += _severity(run)
    lines += _outages(run, min_outage_s)
    lines += _apparatus(run)
    rpo = [(t.nodeid, r) for t in run.tests for r in t.rpo]
    if rpo:
        lines += [
            "## Write markers (RPO)",
            "",
            "| Test | Sent | Acknowledged | Lost acknowledged | Unacknowledged that landed | "
            "Loss window |",
            "|---|---|---|---|---|---|",
        ]
        for nodeid, r in rpo:
            lines.append(
                f"| {nodeid} | {r.sent} | {r.acknowledged} | {r.lost_acknowledged} | "
                f"{r.unacknowledged_landed} | {r.data_loss_window_s:.3f} s |"
            )
        lines.append("")
    return "\n".join(lines)


def write_markdown(run: RunRecord, path: Path, min_outage_s: float = DEFAULT_MIN_OUTAGE_S) -> Path:
    """Write ``report.md`` (outages under ``min_outage_s`` merged); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(run, min_outage_s), encoding="utf-8")
    return path
