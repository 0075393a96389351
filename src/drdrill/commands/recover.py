"""``drdrill recover``: revert the faults that a killed drill left in place."""

from __future__ import annotations

import argparse
import sys
import warnings

from drdrill.defaults import DEFAULT_JOURNAL_PATH
from drdrill.errors import FaultError

DESCRIPTION = (
    "Revert every fault that the journal still has open: a drill killed with SIGKILL, or whose "
    "revert failed, leaves them there. Prints one line a fault; exit status 1 if any is left."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``recover`` and its options."""
    parser = sub.add_parser(
        "recover", help="revert faults a killed drill left in place", description=DESCRIPTION
    )
    parser.add_argument(
        "--journal",
        metavar="PATH",
        default=str(DEFAULT_JOURNAL_PATH),
        help=f"the fault journal (default: {DEFAULT_JOURNAL_PATH})",
    )
    parser.add_argument("--run-id", metavar="ID", help="only the faults of this run")
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be reverted; change nothing"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="also revert faults of a drill process still running on this host",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Revert, print one line a fault; :class:`FaultError` (exit 1) naming any left in place."""
    from drdrill.faults.base import RevertStatus, recover
    from drdrill.faults.journal import Journal, JournalWarning

    journal = Journal(args.journal)
    if not journal.exists():
        print(f"nothing to recover (no journal at {journal.path})")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", JournalWarning)
        outcomes = recover(journal, args.run_id, dry_run=args.dry_run, include_live=args.force)
    for warning in caught:  # one plain line each, not Python's warning format
        print(f"drdrill: warning: {warning.message}", file=sys.stderr)
    if not outcomes:
        print("nothing to recover")
        return 0
    for outcome in outcomes:
        print(outcome.line(), flush=True)
    left = [o for o in outcomes if not o.ok]
    if not left:
        return 0
    names = "; ".join(o.description for o in left)
    noun = "fault" if len(left) == 1 else "faults"
    message = f"{len(left)} {noun} not reverted: {names}"
    if any(o.status is RevertStatus.SKIPPED for o in left):
        message += " (skipped ones belong to a running drill: let it finish, or use --force)"
    raise FaultError(message)
