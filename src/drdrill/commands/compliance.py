"""``drdrill compliance --month YYYY-MM``: the month's drills, objectives and report digests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drdrill.commands.history import add_store_options, existing, locations

HELP_MONTH = "the month to report, as YYYY-MM (UTC)"
HELP_OUT = "the folder for compliance-YYYY-MM.md and .json (default: the report folder)"
HELP_JSON = "print the report as JSON (the content of compliance-YYYY-MM.json) as well"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``compliance`` sub-command."""
    parser = sub.add_parser(
        "compliance",
        help="write the month's compliance report (runs, objectives met/missed, report digests)",
        description="List the drills run in a month from the history: start, target, outcome, "
        "objectives met and missed, and the sha256 of each run's reports, checked against the "
        "files on disk. Writes compliance-YYYY-MM.md and compliance-YYYY-MM.json.",
    )
    parser.add_argument("--month", metavar="YYYY-MM", required=True, help=HELP_MONTH)
    add_store_options(parser)
    parser.add_argument("--out", metavar="DIR", type=Path, default=None, help=HELP_OUT)
    parser.add_argument("--json", action="store_true", help=HELP_JSON)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the month's report and say where (or print it as JSON)."""
    from drdrill.report.history import HistoryStore, parse_month, write_compliance

    parse_month(args.month)  # a bad month is reported before anything is opened
    report_dir, db = locations(args)
    with HistoryStore(existing(db)) as store:
        report = store.compliance(args.month)
    written = write_compliance(report, args.out if args.out is not None else report_dir)
    if args.json:
        print(json.dumps({**report.to_json(), "written": [str(p) for p in written]}, indent=2))
        return 0
    print(
        f"drdrill compliance {report.month}: {len(report.runs)} runs "
        f"({report.runs_passed} passed, {report.runs_failed} failed); "
        f"objectives met {report.met}, missed {report.missed}"
    )
    for r in report.runs:
        print(
            f"  {r.run_id}  {r.started_utc:%Y-%m-%d %H:%M} UTC  {r.target_name} ({r.target_kind})"
            f"  {r.outcome}  met {r.met}, missed {r.missed}"
        )
    for run_id, evidence in report.evidence_problems:
        print(f"  warning: {run_id}: {evidence.path} {evidence.state} since the run recorded it")
    for path in written:
        print(f"drdrill compliance: wrote {path}")
    return 0
