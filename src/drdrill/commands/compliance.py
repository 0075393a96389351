"""``drdrill compliance --month YYYY-MM``: whether the month is compliant, its runs' verdicts,
objectives and report digests, as ``compliance-YYYY-MM.md``, ``.json`` and ``.html``.

A month is compliant only when a drill ran in it and every run (dry runs aside) has the verdict
``passed`` (``inconclusive`` too with ``--accept-inconclusive`` or the config's
``compliance.accept_inconclusive: true``), and every report file still has the digest it was
stored with. The command exits 0 for a compliant month, 1 for one that is not, 2 for bad input.

No secret goes out (:mod:`drdrill.redact`): the files (the HTML page too) and lines are made
from a redacted copy of the month's report (a history an older drdrill wrote may hold one); the
digests are checked against the files before, as they are on disk.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drdrill.commands.history import DEFAULT_CONFIG, add_store_options, existing, locations

HELP_MONTH = "the month to report, as YYYY-MM (UTC)"
HELP_OUT = "the folder for compliance-YYYY-MM.md, .json and .html (default: the report folder)"
HELP_JSON = "print the report as JSON (the content of compliance-YYYY-MM.json) as well"
HELP_ACCEPT = (
    "count an inconclusive run (a figure whose interval straddles its target) as compliant "
    "(default: the config's compliance.accept_inconclusive, else not)"
)
#: exit status of a month that is not compliant
EXIT_NOT_COMPLIANT = 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``compliance`` sub-command."""
    parser = sub.add_parser(
        "compliance",
        help="write the month's compliance report (verdicts, objectives, report digests)",
        description="Whether a month is compliant, from the history: every run started in it "
        "with its verdict, pytest exit status, objectives met and missed, and the sha256 of "
        "each of its reports checked against the files on disk. Writes compliance-YYYY-MM.md, "
        "compliance-YYYY-MM.json and a self-contained compliance-YYYY-MM.html; exits 1 for a "
        "month that is not compliant.",
    )
    parser.add_argument("--month", metavar="YYYY-MM", required=True, help=HELP_MONTH)
    add_store_options(parser, default_config=True)
    parser.add_argument("--out", metavar="DIR", type=Path, default=None, help=HELP_OUT)
    parser.add_argument("--json", action="store_true", help=HELP_JSON)
    parser.add_argument(
        "--accept-inconclusive", action="store_true", default=None, help=HELP_ACCEPT
    )
    parser.set_defaults(run=run)


def _accept_inconclusive(args: argparse.Namespace) -> bool:
    """The flag, else the config's ``compliance.accept_inconclusive`` (default no)."""
    if args.accept_inconclusive:
        return True
    config_path = args.config if args.config is not None else DEFAULT_CONFIG
    if args.config is None and not config_path.is_file():
        return False
    from drdrill.config import load_config

    return load_config(config_path).compliance.accept_inconclusive


def run(args: argparse.Namespace) -> int:
    """Write the month's report, say whether the month is compliant and why; 1 if it is not."""
    from drdrill.redact import redact_fields
    from drdrill.report.history import HistoryStore, parse_month, write_compliance

    parse_month(args.month)  # a bad month is reported before anything is opened
    accept = _accept_inconclusive(args)
    report_dir, db = locations(args)
    with HistoryStore(existing(db)) as store:
        report = redact_fields(store.compliance(args.month, accept_inconclusive=accept))
    written = write_compliance(report, args.out if args.out is not None else report_dir)
    code = 0 if report.compliant else EXIT_NOT_COMPLIANT
    if args.json:
        print(json.dumps({**report.to_json(), "written": [str(p) for p in written]}, indent=2))
        return code
    extra = "".join(
        f", {n} {v}"
        for v, n in (
            ("inconclusive", report.runs_with("inconclusive")),
            ("incomplete", report.runs_with("incomplete")),
        )
        if n
    )
    print(
        f"drdrill compliance {report.month}: {len(report.runs)} runs "
        f"({report.runs_passed} passed, {report.runs_failed} failed{extra}); "
        f"objectives met {report.met}, missed {report.missed}, "
        f"inconclusive {report.inconclusive}, invalid {report.invalid}"
    )
    for r in report.runs:
        exit_status = "-" if r.exit_status is None else str(r.exit_status)
        why = f": {r.reason}" if r.reason else ""
        print(
            f"  {r.run_id}  {r.started_utc:%Y-%m-%d %H:%M} UTC  {r.target_name} ({r.target_kind})"
            f"  {r.verdict} (exit {exit_status})  met {r.met}, missed {r.missed}{why}"
        )
    for run_id, evidence in report.evidence_problems:
        print(f"  warning: {run_id}: {evidence.path} {evidence.state} since the run recorded it")
    # the page first: the markdown and the JSON stay the last two lines before the verdict,
    # where scripts written before the page read them
    for path in sorted(written, key=lambda p: p.suffix != ".html"):
        print(f"drdrill compliance: wrote {path}")
    print(f"drdrill compliance {report.month}: {report.verdict_line()}")
    return code
