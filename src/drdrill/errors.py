"""The error hierarchy: one root, specific subclasses, a missed objective as an assertion."""

from __future__ import annotations

from typing import Final

#: at most this many characters of a user's input go into an error line
QUOTE_LIMIT: Final = 80


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """The part of ``text`` an error line shows: at most ``limit`` characters, on one line.

    Longer text is cut and ends in "..."; characters that are not printable (a tab, a control
    character, U+2028) are shown escaped (``\\t``), so the error stays one line. The caller adds
    the quote marks it wants: ``f"not a duration: '{quote(text)}'"``. Only the head of ``text``
    is looked at, so quoting a megabyte costs no more than quoting a word.
    """
    pieces: list[str] = []
    size = 0
    for char in text[: limit + 1]:
        piece = char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            break
    else:
        return "".join(pieces)  # all of it fits
    while pieces and size > limit - 3:  # never cut an escape in two
        size -= len(pieces.pop())
    return "".join(pieces) + "..."


class DrillError(Exception):
    """Root of every error drdrill raises on purpose."""


class InputError(DrillError):
    """Bad input from a user: a runbook, a config file, a command-line value.

    ``where`` names the file and line (``runbook.md:42``) or the key
    (``drdrill.yaml: probes.interval``) so that the one-line message points at what to fix.
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class RunbookError(InputError):
    """A runbook that cannot be read into objectives."""


class DurationError(InputError):
    """A duration that does not parse ("3 fortnights")."""


class ConfigError(InputError):
    """A missing, unreadable or invalid stack config."""


class UnknownTargetError(ConfigError):
    """A target name that no target kind answers to."""


class FaultError(DrillError):
    """A fault that could not be injected or reverted."""


class SafetyError(DrillError):
    """A destructive action refused by a safety guard."""


class ObjectiveMissed(DrillError, AssertionError):
    """A measured value over its runbook objective; fails the test rather than erroring it."""
