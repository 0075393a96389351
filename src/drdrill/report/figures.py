"""A figure in words, the same in every report: its interval, its status, its ground truth.

A figure is value ± uncertainty; the interval ``[low, high]`` is what it admits. ``met`` and
``missed`` hold for the whole interval, ``inconclusive`` names it (it straddles the target),
``invalid`` says why (its ``note``). A figure with no ground truth says "no ground truth", never
an empty cell or an error of 0; where the ground truth came from is said beside its error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from drdrill.measure import Result, Status

#: what a report writes where a figure has no ground truth
NO_TRUTH: Final = "no ground truth"
#: how bad a status is, to pick the figure a runbook row shows among several
STATUS_RANK: Final = {
    Status.NO_OBJECTIVE: 0,
    Status.MET: 1,
    Status.INCONCLUSIVE: 2,
    Status.MISSED: 3,
    Status.INVALID: 4,
}


def _number(value: float, unit: str) -> str:
    return f"{value:.3f}" if unit == "s" else f"{value:g}"


def finite(result: Result) -> bool:
    """Whether the figure and its uncertainty are numbers (not nan, not infinite)."""
    return math.isfinite(result.measured.value) and math.isfinite(result.measured.uncertainty)


def measured_text(result: Result) -> str:
    """``2.547 ± 0.003 s``; a figure that is not finite says so."""
    return str(result.measured) if finite(result) else "not finite"


def interval_text(result: Result) -> str:
    """The values the figure admits: ``[2.544, 2.550] s``."""
    if not finite(result):
        return "no interval"
    unit = result.measured.unit
    low, high = _number(result.low, unit), _number(result.high, unit)
    return f"[{low}, {high}] {unit}".rstrip()


def target_text(result: Result) -> str:
    """The objective's target: ``18 s``, or ``N/A``."""
    return "N/A" if result.target_s is None else f"{result.target_s:g} s"


def status_text(result: Result) -> str:
    """The status with what it needs to be read: ``inconclusive: [17.850, 18.050] s vs 18 s``,
    ``invalid: it ends before it starts: ...``; ``met``, ``missed`` and ``no objective`` alone."""
    status = result.status
    if status is Status.INCONCLUSIVE:
        why = f"; {result.note}" if result.note else ""
        return f"inconclusive: {interval_text(result)} vs {target_text(result)}{why}"
    if status is Status.INVALID:
        return f"invalid: {result.note or 'not a possible figure'}"
    if status is Status.MISSED and result.note:
        return f"missed; {result.note}"
    return str(status)


def error_text(
    result: Result,
    *,
    with_source: bool = True,
    inside: str = ", inside the interval",
    meets: str = ", the intervals meet",
) -> str:
    """Measured minus ground truth (``+3.1 ms``), with its source when known (and
    ``with_source``), or "no ground truth". A truth that the figure's own interval holds says
    so (``+252.1 ms, inside the interval``; ``inside`` is that wording): the figure claimed no
    more than it knew, however far its midpoint is. A truth that is itself uncertain says by how
    much (``-195.0 ms, truth ± 280 ms``); when only its own interval meets the figure's, that
    says so (``meets``)."""
    error = result.error_ms
    if error is None or not math.isfinite(error):
        return NO_TRUTH
    text = f"{round(error, 1) + 0.0:+.1f} ms"  # rounded first: a tiny negative reads +0.0
    truth = result.truth_s
    spread = result.truth_uncertainty_s if math.isfinite(result.truth_uncertainty_s) else 0.0
    if spread >= 0.0005:
        text += f", truth ± {spread * 1000:.0f} ms"
    if truth is not None and finite(result):
        if result.low <= truth <= result.high:
            text += inside
        elif result.low <= truth + spread and truth - spread <= result.high:
            text += meets
    return f"{text} ({result.truth_source})" if with_source and result.truth_source else text


def truth_text(result: Result) -> str:
    """The ground truth (``2.544 s``, ``0.965 ± 0.280 s`` when it is itself uncertain), with
    its source when known, or "no ground truth"."""
    if result.truth_s is None or not math.isfinite(result.truth_s):
        return NO_TRUTH
    spread = result.truth_uncertainty_s
    if math.isfinite(spread) and spread >= 0.0005:
        text = f"{result.truth_s:.3f} ± {spread:.3f} s"
    else:
        text = f"{result.truth_s:.3f} s"
    return f"{text} ({result.truth_source})" if result.truth_source else text


def worst(results: Iterable[Result]) -> Result | None:
    """The figure a runbook row shows among several: the worst status, then the largest value
    the figure admits (a figure that is not finite last)."""
    chosen = list(results)
    if not chosen:
        return None
    return max(
        chosen,
        key=lambda r: (
            STATUS_RANK[r.status],
            finite(r),
            r.high if finite(r) else -math.inf,
        ),
    )


def figure_line(result: Result) -> str:
    """A figure on one line: ``Total RTO 20.100 ± 0.100 s over 18 s``."""
    measured = measured_text(result)
    status = result.status
    if status is Status.MISSED:
        return f"{result.name} {measured} over {target_text(result)}"
    if status is Status.INCONCLUSIVE:
        return f"{result.name} {measured} {interval_text(result)} vs {target_text(result)}"
    if status is Status.INVALID:
        if not finite(result):
            return f"{result.name} not finite"
        return f"{result.name} {measured}: {result.note or 'not a possible figure'}"
    return f"{result.name} {measured} ({status_text(result)})"
