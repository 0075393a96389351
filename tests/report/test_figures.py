"""How a figure's error against its ground truth reads in every report."""

from __future__ import annotations

import pytest

from drdrill.measure import Measurement, Result
from drdrill.report.figures import error_text


def _result(value: float, uncertainty: float, truth: float | None) -> Result:
    return Result(
        "Health Verification",
        "rto",
        Measurement(value, uncertainty),
        2.4,
        "Health Verification",
        truth_s=truth,
        truth_source="the observer",
    )


@pytest.mark.parametrize(
    ("value", "uncertainty", "truth", "text"),
    [
        # a phase shorter than the probes resolve: [0, 0.504] holds a truth of 0
        (0.252, 0.252, 0.0, "+252.0 ms, inside the interval (the observer)"),
        # the same error with a narrow interval: the figure claimed more than it knew
        (0.252, 0.020, 0.0, "+252.0 ms (the observer)"),
        (1.000, 0.010, 1.020, "-20.0 ms (the observer)"),
        (1.000, 0.010, 1.010, "-10.0 ms, inside the interval (the observer)"),
        (1.000, 0.010, None, "no ground truth"),
    ],
)
def test_the_error_says_when_the_figures_interval_holds_the_truth(
    value: float, uncertainty: float, truth: float | None, text: str
) -> None:
    assert error_text(_result(value, uncertainty, truth)) == text
