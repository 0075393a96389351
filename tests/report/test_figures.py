"""How a figure's error against its ground truth reads in every report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drdrill.measure import Measurement, Result
from drdrill.report.figures import error_text, truth_text


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


def test_a_truth_that_is_itself_uncertain_says_by_how_much() -> None:
    """A crash reboot's truth ends at the observer's return to pass, whose bracket was 0.56 s
    wide while requests hung on the restarting database: 1.113 ± 0.280 s. The figure's
    interval [0.624, 1.012] misses the truth's midpoint but meets its interval: the reports
    say both, rather than an error as if the truth were exact."""
    reboot = replace(_result(0.818, 0.194, 1.113), name="Total RTO", truth_uncertainty_s=0.28)
    assert truth_text(reboot) == "1.113 ± 0.280 s (the observer)"
    assert error_text(reboot) == "-295.0 ms, truth ± 280 ms, the intervals meet (the observer)"
    assert error_text(reboot, with_source=False, meets=" (meets)") == (
        "-295.0 ms, truth ± 280 ms (meets)"
    )
    # the same error against an exact truth is outside
    exact = replace(reboot, truth_uncertainty_s=0.0)
    assert truth_text(exact) == "1.113 s (the observer)"
    assert error_text(exact) == "-295.0 ms (the observer)"
    # intervals that do not meet
    far = replace(reboot, truth_s=1.6)
    assert error_text(far) == "-782.0 ms, truth ± 280 ms (the observer)"
