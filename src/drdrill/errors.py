"""The error hierarchy: one root, specific subclasses, a missed objective as an assertion."""

from __future__ import annotations


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
