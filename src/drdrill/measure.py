"""Measurements of a drill: value ± uncertainty, compared with the runbook's objectives."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from drdrill.errors import ObjectiveMissed
from drdrill.timeline import Event, Timeline

if TYPE_CHECKING:
    from drdrill.objectives import Objectives

Kind = Literal["rto", "rpo"]


@dataclass(frozen=True)
class Measurement:
    """A measured quantity in seconds (or a count), known to ± ``uncertainty``."""

    value: float
    uncertainty: float = 0.0
    unit: str = "s"

    def __str__(self) -> str:
        if self.unit == "s":
            return f"{self.value:.3f} ± {self.uncertainty:.3f} s"
        return f"{self.value:g} ± {self.uncertainty:g} {self.unit}"

    @classmethod
    def between(cls, start: Event, end: Event) -> Measurement:
        """The span between two events.

        Each event's true time lies in ``[mono - uncertainty, mono]``; we report the span
        between the midpoints of those intervals, so the error is at most the half-widths summed.
        """
        mid_start = start.mono - start.uncertainty_s / 2
        mid_end = end.mono - end.uncertainty_s / 2
        return cls(mid_end - mid_start, (start.uncertainty_s + end.uncertainty_s) / 2)


class Status(StrEnum):
    """How a measurement stands against its objective."""

    MET = "met"
    MISSED = "missed"
    NO_OBJECTIVE = "no objective"


@dataclass(frozen=True)
class Result:
    """One measured figure beside its objective: a phase, a downtime, an RPO."""

    name: str
    kind: Kind
    measured: Measurement
    target_s: float | None
    objective: str | None
    start: str | None = None
    end: str | None = None
    test: str | None = None
    #: what really happened, where the stack logs it (the sandbox's truth.jsonl), in seconds
    truth_s: float | None = None

    @property
    def error_ms(self) -> float | None:
        """Measured minus ground truth, in milliseconds (None without a ground truth)."""
        if self.truth_s is None:
            return None
        return (self.measured.value - self.truth_s) * 1000.0

    @property
    def status(self) -> Status:
        """Met unless the value is over the target; the uncertainty never fails a drill."""
        if self.target_s is None:
            return Status.NO_OBJECTIVE
        return Status.MISSED if self.measured.value > self.target_s else Status.MET

    def describe_miss(self) -> str:
        """The failure message: phase, measured value ± uncertainty, target."""
        what = "phase" if self.kind == "rto" else "data loss"
        return (
            f"{what} '{self.name}' measured {self.measured}, over its objective "
            f"'{self.objective}' of {self.target_s:g} s"
        )

    def to_json(self) -> dict[str, Any]:
        """The result at the JSON edge."""
        return {
            "name": self.name,
            "kind": self.kind,
            "objective": self.objective,
            "measured": _finite(self.measured.value),
            "uncertainty": _finite(self.measured.uncertainty),
            "unit": self.measured.unit,
            "target_s": self.target_s,
            "status": str(self.status),
            "start": self.start,
            "end": self.end,
            "test": self.test,
            "truth_s": self.truth_s,
            "error_ms": self.error_ms,
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Measurements:
    """What one test measured; fails the test for every figure over its objective."""

    def __init__(
        self, timeline: Timeline, objectives: Objectives | None, test: str | None = None
    ) -> None:
        self.timeline = timeline
        self.objectives = objectives
        self.test = test
        self.results: list[Result] = []
        self._asserted: set[int] = set()

    def _target(self, kind: Kind, objective: str | None) -> float | None:
        if objective is None or self.objectives is None:
            return None
        found = self.objectives.get(kind, objective)
        return None if found is None else found.target_s

    def phase(
        self,
        name: str,
        start: str | Event,
        end: str | Event,
        objective: str | None = "",
        truth_s: float | None = None,
    ) -> Result:
        """Measure the span between two timeline events against the RTO row ``objective``.

        ``objective`` defaults to the phase name; ``None`` records the figure with no objective.
        """
        start_event = self.timeline.get(start) if isinstance(start, str) else start
        end_event = self.timeline.get(end) if isinstance(end, str) else end
        return self.record(
            name,
            Measurement.between(start_event, end_event),
            objective=name if objective == "" else objective,
            kind="rto",
            start=start_event.name,
            end=end_event.name,
            truth_s=truth_s,
        )

    def record(
        self,
        name: str,
        measured: Measurement,
        objective: str | None = "",
        kind: Kind = "rto",
        start: str | None = None,
        end: str | None = None,
        truth_s: float | None = None,
    ) -> Result:
        """Record any figure (a downtime, a data-loss window) against an objective row."""
        objective = name if objective == "" else objective
        result = Result(
            name=name,
            kind=kind,
            measured=measured,
            target_s=self._target(kind, objective),
            objective=objective,
            start=start,
            end=end,
            test=self.test,
            truth_s=truth_s,
        )
        self.results.append(result)
        return result

    @property
    def missed(self) -> list[Result]:
        """Every figure over its objective so far."""
        return [r for r in self.results if r.status is Status.MISSED]

    def verify(self, results: Iterable[Result] | None = None) -> None:
        """Raise ObjectiveMissed naming every missed objective among ``results`` (default: all)."""
        chosen = list(self.results if results is None else results)
        self._asserted.update(id(r) for r in chosen)
        missed = [r for r in chosen if r.status is Status.MISSED]
        if missed:
            raise ObjectiveMissed("; ".join(r.describe_miss() for r in missed))

    def unverified_misses(self) -> list[Result]:
        """Missed objectives a test recorded but never verified (the plugin fails the test)."""
        return [r for r in self.missed if id(r) not in self._asserted]
