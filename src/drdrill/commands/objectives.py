"""``drdrill objectives RUNBOOK.md``: show the RTO/RPO objectives read from a runbook."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from pathlib import Path

from drdrill.durations import format_seconds
from drdrill.errors import InputError, quote
from drdrill.objectives import (
    MAX_SCALE,
    MIN_SCALE,
    Objective,
    Objectives,
    parse_runbook,
    scale_problem,
)

HELP_JSON = "print the objectives as JSON: {rto: {component: {target_s, actual, notes}}, rpo: ...}"
HELP_SCALE = (
    f"multiply every target by FACTOR ({MIN_SCALE:g} to {MAX_SCALE:g}), as a fast sandbox run would"
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``objectives`` sub-command."""
    parser = sub.add_parser(
        "objectives",
        help="show the RTO/RPO objectives read from a runbook",
        description="Read the recovery time and recovery point objectives tables of a runbook.",
    )
    parser.add_argument("runbook", metavar="RUNBOOK.md", type=Path, help="the DR runbook")
    parser.add_argument("--json", action="store_true", help=HELP_JSON)
    # Kept as text and checked in run(): a bad value then gives the one-line error every other
    # bad input gives, rather than argparse's usage block.
    parser.add_argument("--scale", metavar="FACTOR", default=None, help=HELP_SCALE)
    parser.set_defaults(run=run)


def _scale_factor(text: str) -> float:
    try:
        factor = float(text)
    except ValueError:
        factor = math.nan
    problem = scale_problem(factor)
    if problem is not None:
        raise InputError("--scale", f"{problem}, got '{quote(text)}'")
    return factor


def run(args: argparse.Namespace) -> int:
    """Print the runbook's objectives as a table, or as JSON with ``--json``."""
    scale = None if args.scale is None else _scale_factor(args.scale)
    objectives = parse_runbook(args.runbook)
    if scale is not None:
        objectives = objectives.scaled(scale)
    if args.json:
        print(json.dumps(objectives.to_json(), indent=2))
    else:
        print(render_text(objectives))
    return 0


def render_text(objectives: Objectives) -> str:
    """The objectives as a plain-text table a person reads in a terminal or a log."""
    lines = [f"objectives from {objectives.source}"]
    if objectives.scale != 1.0:
        lines[0] += f" (targets scaled by {objectives.scale:g})"
    for title, table in (
        ("Recovery time objectives (RTO)", objectives.rto),
        ("Recovery point objectives (RPO)", objectives.rpo),
    ):
        lines += ["", title]
        if table:
            lines += _table_lines(table)
        else:
            lines.append("  (none in the runbook)")
    return "\n".join(lines)


def _table_lines(table: Mapping[str, Objective]) -> list[str]:
    header = ("Component", "Target", "Seconds", "Actual", "Notes")
    rows = [
        (
            obj.component,
            obj.target_text,
            format_seconds(obj.target_s),
            obj.actual or "",
            obj.notes,
        )
        for obj in table.values()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
