"""Measurements of a drill: value ± uncertainty, compared with the runbook's objectives."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from drdrill.errors import DrillError, ObjectiveMissed
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
    """How a measurement stands against its objective.

    ``met`` and ``missed`` are verdicts that hold for every value the interval admits;
    ``inconclusive`` means the interval straddles the target; ``invalid`` is a figure that cannot
    be right (a phase that ends before it starts, a value that is not finite) and is never met.
    ``no objective`` is a figure measured for information only (the drill said so explicitly).
    """

    MET = "met"
    MISSED = "missed"
    INCONCLUSIVE = "inconclusive"
    INVALID = "invalid"
    NO_OBJECTIVE = "no objective"


#: probe-loop lateness near a phase's events worth a note on the figure (seconds)
APPARATUS_LAG_NOTE_S = 0.05

#: the statuses that fail a drill
FAILING: frozenset[Status] = frozenset({Status.MISSED, Status.INVALID})


class MeasurementError(DrillError):
    """A figure that cannot be right (a phase whose end precedes its start): never met."""


class UnmappedPhase(DrillError):
    """A phase or figure that maps to no row of the runbook's tables."""


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
    #: where the ground truth came from (e.g. "mariadb general log"); None: no ground truth
    truth_source: str | None = None
    #: how far the ground truth itself may be off (seconds, ±): 0 where both of its ends are
    #: logged moments, half the independent observer's bracket where that ends it
    truth_uncertainty_s: float = 0.0
    #: why the figure is what it is, when that needs saying (an invalid span, a starved probe)
    note: str | None = None

    @property
    def error_ms(self) -> float | None:
        """Measured minus ground truth, in milliseconds (None without a ground truth)."""
        if self.truth_s is None:
            return None
        return (self.measured.value - self.truth_s) * 1000.0

    @property
    def low(self) -> float:
        """The smallest value the measurement admits (value - uncertainty)."""
        return self.measured.value - self.measured.uncertainty

    @property
    def high(self) -> float:
        """The largest value the measurement admits (value + uncertainty)."""
        return self.measured.value + self.measured.uncertainty

    @property
    def status(self) -> Status:
        """``met`` only when the whole interval is within the target, ``missed`` only when the
        whole interval is over it, ``inconclusive`` in between; a negative or non-finite figure
        is ``invalid`` whatever its target."""
        value, uncertainty = self.measured.value, self.measured.uncertainty
        if not (math.isfinite(value) and math.isfinite(uncertainty)) or value < 0:
            return Status.INVALID
        if self.target_s is None:
            return Status.NO_OBJECTIVE
        if self.high <= self.target_s:
            return Status.MET
        if self.low > self.target_s:
            return Status.MISSED
        return Status.INCONCLUSIVE

    def describe_miss(self) -> str:
        """The failure message: phase, measured value ± uncertainty, target (or why invalid)."""
        what = "phase" if self.kind == "rto" else "data loss"
        if self.status is Status.INVALID:
            return f"{what} '{self.name}' is invalid: {self.note or f'measured {self.measured}'}"
        if self.status is Status.INCONCLUSIVE:
            return (
                f"{what} '{self.name}' measured {self.measured} "
                f"[{self.low:.3f}, {self.high:.3f}] s: cannot tell whether it meets its "
                f"objective '{self.objective}' of {self.target_s:g} s"
            )
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
            "truth_source": self.truth_source,
            "truth_uncertainty": _finite(self.truth_uncertainty_s),
            "error_ms": self.error_ms,
            "note": self.note,
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Measurements:
    """What one test measured; fails the test for every figure over its objective or invalid.

    ``phase_rows`` maps a drill's phase names to the runbook rows they are held to, for runbooks
    that name their rows differently (the config's ``phases:``, read row -> phase and handed
    here inverted). A figure whose row the runbook does not have is an :class:`UnmappedPhase`
    error, never a silent "no objective": only ``objective=None`` records a figure without one.
    """

    def __init__(
        self,
        timeline: Timeline,
        objectives: Objectives | None,
        test: str | None = None,
        phase_rows: Mapping[str, str] | None = None,
    ) -> None:
        self.timeline = timeline
        self.objectives = objectives
        self.test = test
        self.phase_rows = {_fold(k): v for k, v in (phase_rows or {}).items()}
        self.results: list[Result] = []
        self._asserted: set[int] = set()

    def row_for(self, kind: Kind, name: str) -> str | None:
        """The runbook row a phase (or RPO figure) is held to; UnmappedPhase when there is none.

        None when there are no objectives at all (no runbook, no overrides).
        """
        if self.objectives is None:
            return None
        row = self.phase_rows.get(_fold(name), name)
        found = self.objectives.get(kind, row)
        if found is None:
            table = self.objectives.rto if kind == "rto" else self.objectives.rpo
            rows = ", ".join(table) or "none"
            via = f" (mapped to row '{row}')" if row != name else ""
            raise UnmappedPhase(
                f"{'phase' if kind == 'rto' else 'figure'} '{name}'{via} is not a row of the "
                f"{kind.upper()} table of {self.objectives.source} (rows: {rows}); "
                "map it to one under 'phases:' in the config"
            )
        return found.component

    def _target(self, kind: Kind, row: str | None) -> float | None:
        if row is None or self.objectives is None:
            return None
        found = self.objectives.get(kind, row)
        return None if found is None else found.target_s

    def phase(
        self,
        name: str,
        start: str | Event,
        end: str | Event,
        objective: str | None = "",
        truth_s: float | None = None,
        truth_source: str | None = None,
    ) -> Result:
        """Measure the span between two timeline events against the RTO row ``objective``.

        ``objective`` defaults to the phase name (through the config's ``phases:`` mapping);
        ``None`` records the figure with no objective. A span whose end precedes its start is
        recorded as ``invalid``, naming both events, and fails :meth:`verify`.
        """
        start_event = self.timeline.get(start) if isinstance(start, str) else start
        end_event = self.timeline.get(end) if isinstance(end, str) else end
        measured = Measurement.between(start_event, end_event)
        note = None
        high = measured.value + measured.uncertainty
        if high < 0:
            # the end surely precedes the start: the two events do not measure this phase
            note = (
                f"it ends before it starts: '{end_event.name}' at {_clock(end_event)} precedes "
                f"'{start_event.name}' at {_clock(start_event)} by "
                f"{-measured.value * 1000:.0f} ms"
            )
        elif measured.value - measured.uncertainty < 0:
            # a phase ends after it starts: the part of the interval below 0 is impossible
            measured = Measurement(high / 2, high / 2, measured.unit)
        lag = max(float(e.attrs.get("probe_lag_s", 0.0) or 0.0) for e in (start_event, end_event))
        if note is None and lag > APPARATUS_LAG_NOTE_S:
            # the bounds already widen with it; say why the interval is as wide as it is
            note = (
                f"the probe loop ran up to {lag * 1000:.0f} ms late near these events "
                "(the interval includes it)"
            )
        return self.record(
            name,
            measured,
            objective=objective,
            kind="rto",
            start=start_event.name,
            end=end_event.name,
            truth_s=truth_s,
            truth_source=truth_source,
            note=note,
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
        truth_source: str | None = None,
        note: str | None = None,
    ) -> Result:
        """Record any figure (a downtime, a data-loss window) against an objective row.

        ``objective`` defaults to ``name`` (through the phase mapping); ``None`` means the figure
        is for information only.
        """
        row = (
            None
            if objective is None
            else self.row_for(kind, name if objective == "" else objective)
        )
        result = Result(
            name=name,
            kind=kind,
            measured=measured,
            target_s=self._target(kind, row),
            objective=row,
            start=start,
            end=end,
            test=self.test,
            truth_s=truth_s,
            truth_source=truth_source,
            note=note,
        )
        self.results.append(result)
        return result

    def set_truth(
        self, name: str, truth_s: float | None, source: str | None, uncertainty_s: float = 0.0
    ) -> Result:
        """Put the ground truth beside the figure called ``name`` (the last one of that name);
        ``truth_s`` None says there is none, ``source`` says where it came from and
        ``uncertainty_s`` how far it may be off itself (±)."""
        for i in range(len(self.results) - 1, -1, -1):
            if self.results[i].name == name:
                old = self.results[i]
                self.results[i] = replace(
                    old, truth_s=truth_s, truth_source=source, truth_uncertainty_s=uncertainty_s
                )
                if id(old) in self._asserted:
                    self._asserted.add(id(self.results[i]))
                return self.results[i]
        raise DrillError(f"no figure '{name}' measured to put a ground truth beside")

    @property
    def missed(self) -> list[Result]:
        """Every figure that fails the drill so far: over its objective, or invalid."""
        return [r for r in self.results if r.status in FAILING]

    @property
    def inconclusive(self) -> list[Result]:
        """Every figure whose interval straddles its target."""
        return [r for r in self.results if r.status is Status.INCONCLUSIVE]

    def verify(self, results: Iterable[Result] | None = None) -> None:
        """Raise for every failing figure among ``results`` (default: all): MeasurementError when
        one is invalid, else ObjectiveMissed (an AssertionError) naming every missed objective."""
        chosen = list(self.results if results is None else results)
        self._asserted.update(id(r) for r in chosen)
        raise_for(r for r in chosen if r.status in FAILING)

    def unverified_misses(self) -> list[Result]:
        """Failing figures a test recorded but never verified (the plugin fails the test)."""
        return [r for r in self.missed if id(r) not in self._asserted]


def raise_for(failing: Iterable[Result]) -> None:
    """MeasurementError if any of ``failing`` is invalid, else ObjectiveMissed if any; else
    nothing."""
    chosen = list(failing)
    if not chosen:
        return
    message = "; ".join(r.describe_miss() for r in chosen)
    if any(r.status is Status.INVALID for r in chosen):
        raise MeasurementError(message)
    raise ObjectiveMissed(message)


def _fold(name: str) -> str:
    return " ".join(name.replace("**", "").split()).casefold()


def _clock(event: Event) -> str:
    return event.utc.strftime("%H:%M:%S.") + f"{event.utc.microsecond // 1000:03d}"
