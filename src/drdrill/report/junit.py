"""JUnit XML for CI: each drill's figures as ``<property>`` elements of its ``<testcase>``.

pytest writes the XML itself (``--junitxml``); the plugin only appends these pairs to the test's
``item.user_properties``, which pytest copies into the ``<properties>`` of the test case. CI
systems that read JUnit (GitLab, Jenkins, GitHub annotations) then show every phase's figure
beside its objective without parsing our own report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from drdrill.measure import Result, Status
from drdrill.report.figures import NO_TRUTH

#: the prefix of every property name, so that ours never collide with another plugin's
PREFIX = "drdrill"


def _number(value: float, unit: str) -> str:
    """A figure as CI tools parse it: plain decimal, no unit, no thousands separator."""
    if not math.isfinite(value):
        # a figure that could not be measured (an event never seen): say so, parseably
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    # seconds and milliseconds to the microsecond or better; counts as they are
    return f"{value:.3f}" if unit in ("s", "ms") else f"{value:g}"


def result_properties(result: Result) -> list[tuple[str, str]]:
    """The properties of one measured figure, named ``drdrill.<name>.<field>``."""
    base = f"{PREFIX}.{result.name}"
    unit = result.measured.unit
    props = [
        (f"{base}.measured", _number(result.measured.value, unit)),
        (f"{base}.uncertainty", _number(result.measured.uncertainty, unit)),
        (f"{base}.low", _number(result.low, unit)),
        (f"{base}.high", _number(result.high, unit)),
        (f"{base}.target", "" if result.target_s is None else f"{result.target_s:g}"),
        (f"{base}.status", str(result.status)),
    ]
    if result.status is Status.INVALID and result.note:
        props.append((f"{base}.note", result.note))
    if result.truth_s is None:
        props.append((f"{base}.truth", NO_TRUTH))
        return props
    props.append((f"{base}.truth", _number(result.truth_s, unit)))
    if result.truth_uncertainty_s > 0:
        props.append((f"{base}.truth_uncertainty", _number(result.truth_uncertainty_s, unit)))
    if result.truth_source:
        props.append((f"{base}.truth_source", result.truth_source))
    error_ms = result.error_ms
    if error_ms is not None:
        props.append((f"{base}.truth_error_ms", _number(error_ms, "ms")))
    return props


def phase_properties(results: Iterable[Result]) -> list[tuple[str, str]]:
    """The JUnit properties of a drill's figures, in the order they were measured.

    Per figure ``N``: ``drdrill.N.measured``, ``.uncertainty``, ``.low`` and ``.high`` (the
    interval the figure admits; seconds, 3 decimals, or the figure's own unit), ``.target``
    (seconds, empty without an objective), ``.status`` (``met``, ``missed``, ``inconclusive``,
    ``invalid``, ``no objective``), ``.note`` for an invalid figure (why), ``.truth`` (the
    ground truth, or "no ground truth") and, with one, ``.truth_uncertainty`` (how far the
    truth itself may be off, ±, when it is not exact), ``.truth_source`` (where it came from,
    when known) and ``.truth_error_ms`` (measured minus truth, milliseconds, 3 decimals).
    """
    return [prop for result in results for prop in result_properties(result)]
