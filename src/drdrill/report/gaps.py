"""The time within Total RTO that no phase covers, as named gaps.

Total RTO runs from the fault to everything serving again; the phases (Detection, Decision, RDS
Promotion, ...) each cover a part of it, some overlapping, some with time between them: a
script's own CLI calls between the promotion and the scale-up belong to no phase. A gap is a
stretch of the total that no phase covers, named by the events at its two ends
("not in any phase: 0.689 ± 0.006 s between 'replica_writable' and 'scale_asked'").

Pure: the caller gives each event's time (the middle of its uncertainty interval, as the phases
are measured) on any one clock; nothing here reads a clock or a record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from drdrill.measure import Measurement

#: a gap shorter than this is not shown: below a few probe intervals (the sandbox probes every
#: 0.05 s) it says more about when the events were sampled than about the recovery
MIN_GAP_S: Final = 0.2


@dataclass(frozen=True)
class Mark:
    """A named moment: an event, its time (the middle of its uncertainty interval, in seconds on
    the caller's clock) and half its interval's width (how far off that middle may be)."""

    event: str
    at_s: float
    half_width_s: float = 0.0


@dataclass(frozen=True)
class Span:
    """A phase (or the total) from its start event to its end event."""

    name: str
    start: Mark
    end: Mark


@dataclass(frozen=True)
class Gap:
    """A stretch of the total that no phase covers."""

    #: where it begins: the end of the phase before it (the latest-ending one), or the total's
    #: start
    start: Mark
    #: where it ends: the start of the next phase, or the total's end
    end: Mark
    #: the phase that ends where the gap begins; None where the gap begins with the total
    after: str | None
    #: the phase that starts where the gap ends; None where the gap ends with the total
    before: str | None
    #: the name of the total the gap is in
    total: str = "Total RTO"

    @property
    def duration_s(self) -> float:
        """How long no phase ran, between the middles of its two events."""
        return self.end.at_s - self.start.at_s

    @property
    def measured(self) -> Measurement:
        """The duration ± the half-widths of its two events summed (as a phase is measured)."""
        return Measurement(self.duration_s, self.start.half_width_s + self.end.half_width_s)

    def text(self) -> str:
        """``not in any phase: 0.689 ± 0.006 s between 'replica_writable' (end of RDS
        Promotion) and 'scale_asked' (start of ECS Scale-up)``."""
        after = f"end of {self.after}" if self.after else f"start of {self.total}"
        before = f"start of {self.before}" if self.before else f"end of {self.total}"
        return (
            f"not in any phase: {self.measured} between "
            f"'{self.start.event}' ({after}) and '{self.end.event}' ({before})"
        )


def _finite(span: Span) -> bool:
    return math.isfinite(span.start.at_s) and math.isfinite(span.end.at_s)


def _ordered(span: Span) -> Span:
    """The span from its earlier event to its later one: a phase whose end event came first
    (an invalid, negative span) still covers the stretch its bar is drawn over."""
    if span.end.at_s < span.start.at_s:
        return Span(span.name, span.end, span.start)
    return span


def phase_gaps(
    total: Span, phases: Iterable[Span], min_gap_s: float = MIN_GAP_S
) -> tuple[Gap, ...]:
    """The stretches of ``total`` that none of ``phases`` covers, each at least ``min_gap_s``
    long, in time order.

    A phase covers the time between its two events (either way round); the parts of a phase
    outside the total are ignored; overlapping phases make no gap. Each gap is named by the end
    event of the phase that ended last before it (or the total's start event) and the start
    event of the phase after it (or the total's end event). No phase inside the total, a total
    that is not finite or ends before it starts: no gap (there is nothing to compare it with).
    """
    if not _finite(total) or total.end.at_s <= total.start.at_s:
        return ()
    low, high = total.start.at_s, total.end.at_s
    # the phases with a part inside the total, earliest first
    chosen = sorted(
        (
            span
            for span in (_ordered(p) for p in phases if _finite(p))
            if span.end.at_s > low and span.start.at_s < high
        ),
        key=lambda p: (p.start.at_s, p.end.at_s),
    )
    if not chosen:
        return ()
    found: list[Gap] = []
    # the covered stretch so far ends at `reach`, the end event of the phase `reached_by`
    reach, reached_by = total.start, None
    for phase in chosen:
        if phase.start.at_s > reach.at_s:
            found.append(Gap(reach, phase.start, reached_by, phase.name, total.name))
        if phase.end.at_s > reach.at_s:
            reach, reached_by = phase.end, phase.name
    if total.end.at_s > reach.at_s:
        found.append(Gap(reach, total.end, reached_by, None, total.name))
    return tuple(g for g in found if g.duration_s >= min_gap_s)
