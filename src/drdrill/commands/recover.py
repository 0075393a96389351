"""``drdrill recover``: revert the faults that a killed drill left in place."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from drdrill.defaults import DEFAULT_CONFIG, DEFAULT_JOURNAL_PATH
from drdrill.errors import FaultError
from drdrill.redact import redact

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
        default=None,
        help="the fault journal (default: the config's 'journal', found as the plugin finds "
        f"it; without a config, {DEFAULT_JOURNAL_PATH})",
    )
    parser.add_argument(
        "--config",
        "--dr-config",
        dest="config",
        metavar="PATH",
        default=None,
        help=f"the stack config whose journal to read (default: {DEFAULT_CONFIG} if present)",
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


def journal_path(journal: str | None, config: str | None) -> Path:
    """The journal to recover from: ``--journal``; else the config's ``journal`` (resolved
    against the config's folder, as the plugin does), from ``--config`` or ``drdrill.yaml``
    in the current folder; else the default path."""
    if journal is not None:
        return Path(journal)
    path = Path(config) if config is not None else Path(DEFAULT_CONFIG)
    if config is None and not path.is_file():
        return DEFAULT_JOURNAL_PATH
    from drdrill.config import load_config

    loaded = load_config(path)
    return loaded.resolve(loaded.journal)


def run(args: argparse.Namespace) -> int:
    """Revert, print one line a fault; :class:`FaultError` (exit 1) naming any left in place.

    Every line is redacted: the journal holds no secret, but a revert's note or error may
    quote one (the secrets the journal named by their variable are registered as it is read).
    """
    from drdrill.faults.base import RevertStatus, recover
    from drdrill.faults.journal import Journal, JournalWarning

    journal = Journal(journal_path(args.journal, args.config))
    if not journal.exists():
        print(f"nothing to recover (no journal at {journal.path})")
        return _stack_needs(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", JournalWarning)
        outcomes = recover(journal, args.run_id, dry_run=args.dry_run, include_live=args.force)
    for warning in caught:  # one plain line each, not Python's warning format
        print(f"drdrill: warning: {redact(str(warning.message))}", file=sys.stderr)
    if not outcomes:
        print("nothing to recover")
        return _stack_needs(args)
    for outcome in outcomes:
        print(redact(outcome.line()), flush=True)
    left = [o for o in outcomes if not o.ok]
    if not left:
        return _stack_needs(args)
    names = "; ".join(o.description for o in left)
    noun = "fault" if len(left) == 1 else "faults"
    message = f"{len(left)} {noun} not reverted: {names}"
    if any(o.status is RevertStatus.SKIPPED for o in left):
        message += " (skipped ones belong to a running drill: let it finish, or use --force)"
    raise FaultError(message)


def _stack_needs(args: argparse.Namespace) -> int:
    """After the reverts: what the config's stack still needs that no revert can do, said in
    one line (exit 1), else 0. A sandbox in split brain (both regions' databases writable, as
    an interrupted failover can leave it) needs a failback or a reset: a reset throws away what
    the promoted database took, so it is for a person to choose."""
    path = Path(args.config) if args.config is not None else Path(DEFAULT_CONFIG)
    if args.dry_run or not path.is_file():
        return 0
    from drdrill.config import load_config

    config = load_config(path)
    if config.target != "sandbox":
        return 0
    from drdrill.targets.sandbox import SandboxTarget

    target = SandboxTarget(config)
    if not target.client.alive() or not target.status().get("split_brain"):
        return 0
    print(
        "split brain: both regions' databases take writes; failback (`drdrill sandbox "
        "failback`) or reset (`drdrill sandbox down`, then `up`) needed",
        flush=True,
    )
    return 1
