"""Defaults that the command line's parser needs, in a module that imports nothing heavy.

Building ``drdrill``'s parser must not import pydantic, aiohttp, psutil or pytest (it starts in
a fraction of the time: tests/test_cli_start.py), so the values the parser shows live here and
the modules that use them import them from here: one definition each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

#: the stack config a command reads unless told otherwise
DEFAULT_CONFIG: Final = "drdrill.yaml"
#: where a fault journal lives unless told otherwise (relative to the working directory)
DEFAULT_JOURNAL_PATH: Final = Path(".drdrill/journal.jsonl")
#: the shortest sampling interval a probe accepts (100 Hz an endpoint)
MIN_INTERVAL_S: Final = 0.01
#: seconds before a probe's request counts as failed
DEFAULT_TIMEOUT_S: Final = 1.0

Trigger = Literal["script", "lambda", "automated"]
#: the runbook's three failover options, as ``--trigger`` names them
TRIGGERS: Final[tuple[Trigger, ...]] = ("script", "lambda", "automated")
#: report.md merges a drill's outages shorter than this (uncertainty included) into one line
DEFAULT_MIN_OUTAGE_S: Final = 0.5
