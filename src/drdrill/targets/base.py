"""The ``Target`` protocol: what suites may ask of a stack, whatever runs it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from drdrill.config import DrillConfig, EndpointConfig
    from drdrill.measure import Measurements


@runtime_checkable
class Target(Protocol):
    """A stack under drill.

    Suites talk to a target only through this protocol (and the capability protocols that
    concrete targets add), never to its internals, so one suite drills the sandbox and AWS alike.
    """

    #: the name users pick it by (``--dr-target``)
    name: str
    #: whether destructive faults need ``--dr-allow-destructive`` (real accounts: yes)
    needs_destructive_flag: bool

    def start(self) -> None:
        """Connect to the stack (or bring up an embedded one); idempotent."""

    def stop(self) -> None:
        """Release what ``start`` took; idempotent."""

    def endpoints(self) -> list[EndpointConfig]:
        """The endpoints probes sample by default (the runbook's post-failover checks)."""

    def describe(self) -> Mapping[str, Any]:
        """What the report says about the target: kind, addresses, regions."""


class TargetFactory(Protocol):
    """Builds a target from the stack config."""

    def __call__(self, config: DrillConfig) -> Target:
        """A target for ``config``; ConfigError on bad settings."""


@runtime_checkable
class SteadyStateTarget(Protocol):
    """A target that can tell whether the stack is healthy before a fault (beyond the probes)."""

    def steady_state_problems(self, rpo_s: float | None) -> list[str]:
        """What is wrong now (replication stopped, the replica's lag over ``rpo_s``, an alarm
        not OK); empty when the stack is in steady state."""


@runtime_checkable
class GroundTruthTarget(Protocol):
    """A target that logs what really happened (the sandbox): it can put a ground truth from
    its own components' records beside a drill's figures. Optional: without it, reports say
    "no ground truth"."""

    def attach_truth(
        self, measure: Measurements, trigger: str = ..., drill: Any = ...
    ) -> Mapping[str, Any]:
        """Attach the truth of each figure ``measure`` holds; what was attached."""
