"""``report.md``: the runbook's RTO and RPO tables with this run's figures in the Actual column."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from drdrill.measure import Result, Status
from drdrill.report.record import RunRecord, TestRecord

_MARK = {
    Status.MET: "met",
    Status.MISSED: "**MISSED**",
    Status.INCONCLUSIVE: "*inconclusive*",
    Status.INVALID: "**INVALID**",
    Status.NO_OBJECTIVE: "no objective",
}


def _target_text(row: Mapping[str, Any]) -> str:
    target = row.get("target_s")
    return "N/A" if target is None else f"{target:g} s"


def _worst(results: Iterable[Result]) -> Result | None:
    chosen = list(results)
    return max(chosen, key=lambda r: r.measured.value) if chosen else None


def _table(kind: str, title: str, first: str, run: RunRecord) -> list[str]:
    rows: Mapping[str, Mapping[str, Any]] = run.objectives.get(kind, {})
    results = [r for r in run.results if r.kind == kind]
    lines = [
        f"## {title}",
        "",
        f"| {first} | Target | Actual (this run) | Status | Runbook's actual | Notes |",
        "|---|---|---|---|---|---|",
    ]
    named = set()
    for component, row in rows.items():
        mine = [r for r in results if (r.objective or "").lower() == component.lower()]
        named.add(component.lower())
        worst = _worst(mine)
        if worst is None:
            actual, status = "not measured", ""
        else:
            actual = str(worst.measured)
            if len(mine) > 1:
                actual += f" (worst of {len(mine)})"
            status = _MARK[worst.status]
        lines.append(
            f"| **{component}** | {_target_text(row)} | {actual} | {status} | "
            f"{row.get('actual') or ''} | {row.get('notes') or ''} |"
        )
    for r in results:
        if (r.objective or "").lower() not in named:
            lines.append(
                f"| {r.name} | N/A | {r.measured} | {_MARK[r.status]} | | {r.test or ''} |"
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
    """Each drill's customer impact classified with the runbook's escalation matrix."""
    from drdrill.report.severity import run_severities

    severities = run_severities(run)
    if not severities:
        return []
    lines = [
        "## Severity (escalation matrix)",
        "",
        "| Drill | Severity | Why | Response time | Action |",
        "|---|---|---|---|---|",
    ]
    for nodeid, severity in severities.items():
        lines.append(
            f"| {nodeid} | {severity.label} | {severity.reason} | "
            f"{severity.response_time_text} | {severity.action} |"
        )
    return [*lines, ""]


def render_markdown(run: RunRecord) -> str:
    """The markdown report of a run."""
    lines = [
        f"# DR drill report: run {run.run_id}",
        "",
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
    lines += _severity(run)
    lines += ["## Outages (client-observed)", ""]
    outages = [(t.nodeid, o) for t in run.tests for o in t.outages]
    if not outages:
        lines += ["No outage observed.", ""]
    else:
        lines += [
            "| Test | Endpoint | Start (UTC) | End (UTC) | Duration | Boundary uncertainty |",
            "|---|---|---|---|---|---|",
        ]
        for nodeid, o in outages:
            end = o.end_utc.isoformat() if o.end_utc else "still out"
            duration = "open" if o.duration_s is None else f"{o.duration_s:.3f} s"
            lines.append(
                f"| {nodeid} | {o.endpoint} | {o.start_utc.isoformat()} | {end} | {duration} | "
                f"±{o.start_uncertainty_s:.3f} / ±{o.end_uncertainty_s:.3f} s |"
            )
        lines.append("")
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


def write_markdown(run: RunRecord, path: Path) -> Path:
    """Write ``report.md``; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(run), encoding="utf-8")
    return path
