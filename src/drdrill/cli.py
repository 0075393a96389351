"""The ``drdrill`` command: one sub-command a module under ``drdrill.commands``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from drdrill import __version__
from drdrill.errors import DrillError, InputError
from drdrill.redact import redact

#: sub-command name -> module in ``drdrill.commands``; each module has ``add_parser`` and ``run``.
#: Every one is imported to build the parser, so each keeps its heavy imports (pytest, aiohttp,
#: pydantic...) inside ``run``: ``--help`` and ``objectives`` then start in a fraction of the time
#: (tests/test_cli_start.py, docs/benchmarks.md "CLI start-up").
COMMANDS: tuple[str, ...] = (
    "objectives",
    "watch",
    "recover",
    "sandbox",
    "history",
    "compliance",
    "exercise",
    "fis",
    "init",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="drdrill", description="Disaster-recovery drills measured against the runbook."
    )
    parser.add_argument("--version", action="version", version=f"drdrill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"drdrill.commands.{name}")
        module.add_parser(sub)
    return parser


#: the exit status of a command whose reader went away (``drdrill ... | head``), as for a
#: process that SIGPIPE ended: 128 + 13
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input gives one line on stderr and exit status 2. Output
    piped into a reader that stops early (``| head``) ends quietly."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # nothing more can be written there, and Python's own flush at exit would fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except InputError as exc:
        print(f"drdrill: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except DrillError as exc:
        print(f"drdrill: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("drdrill: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
