"""The run's verdict in one line, the first line of report.md and report.html and the last of
the console summary:

- ``FAILED — 12 passed, 1 failed, 5 skipped; worst miss: Total RTO 20.100 ± 0.100 s over 18 s
  (test_region_failover[script])``
- ``PASSED — 14 passed, 5 skipped``
- ``INCONCLUSIVE — 14 passed; 1 figure inconclusive: Total RTO 17.950 ± 0.100 s
  [17.850, 18.050] s vs 18 s (test_local_demo)``
- ``INCOMPLETE — worker gw1 crashed; lost: test_freeze; 3 passed, 1 failed``
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from drdrill.measure import Result, Status
from drdrill.report.figures import figure_line
from drdrill.report.record import (
    EXIT_INTERRUPTED,
    EXIT_NO_TESTS,
    EXIT_OK,
    RunRecord,
    TestRecord,
    Verdict,
)

#: how many test names a list in the line shows before "and N more"
NAMES_SHOWN: Final = 3


def short_name(nodeid: str) -> str:
    """A test as the line names it: ``test_region_failover[script]`` (a module as its path)."""
    return nodeid.rsplit("::", 1)[-1]


def names_text(nodeids: Sequence[str], shown: int = NAMES_SHOWN) -> str:
    """``a, b, c and 2 more``."""
    names = [short_name(n) for n in nodeids[:shown]]
    more = len(nodeids) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def counts_text(run: RunRecord) -> str:
    """``12 passed, 1 failed, 2 errors, 5 skipped``; "no tests" for a run without any."""
    parts = []
    for outcome, n in run.counts().items():
        word = ("error" if n == 1 else "errors") if outcome == "error" else outcome
        parts.append(f"{n} {word}")
    return ", ".join(parts) or "no tests"


def _owner(run: RunRecord, result: Result) -> str:
    for test in run.tests:
        if any(r is result for r in test.results):
            return short_name(test.nodeid)
    return short_name(result.test or "?")


def _figure(run: RunRecord, result: Result) -> str:
    return f"{figure_line(result)} ({_owner(run, result)})"


def _unexplained_failures(run: RunRecord) -> list[TestRecord]:
    """Failed tests whose failure neither a failing figure of theirs nor the run's loss (the
    test a worker crashed in) explains: a readiness check, a fixture that failed."""
    failing = (Status.MISSED, Status.INVALID)
    return [
        t
        for t in run.tests
        if t.outcome in ("failed", "error")
        and t.nodeid not in run.lost
        and not any(r.status in failing for r in t.results)
    ]


def verdict_line(run: RunRecord) -> str:
    """The run's verdict and what decided it, on one line (see the module's examples)."""
    verdict = run.verdict
    parts: list[str] = []
    if verdict is Verdict.INCOMPLETE:
        parts.append(run.interruption or "interrupted")
        if run.lost:
            parts.append(f"lost: {names_text(run.lost)}")
    if verdict is Verdict.DRY_RUN:
        parts.append("nothing was injected")
    parts.append(counts_text(run))
    results = run.results
    missed = [r for r in results if r.status is Status.MISSED]
    invalid = [r for r in results if r.status is Status.INVALID]
    inconclusive = [r for r in results if r.status is Status.INCONCLUSIVE]
    if missed:
        worst = max(missed, key=lambda r: r.low - (r.target_s or 0.0))
        more = f" (of {len(missed)} missed)" if len(missed) > 1 else ""
        parts.append(f"worst miss: {_figure(run, worst)}{more}")
    if invalid:
        more = f" (of {len(invalid)} invalid)" if len(invalid) > 1 else ""
        parts.append(f"invalid: {_figure(run, invalid[0])}{more}")
    failures = _unexplained_failures(run)
    if failures:
        first = failures[0]
        label = "first failure" if len(failures) > 1 else first.outcome
        reason = f": {first.message}" if first.message else ""
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        parts.append(f"{label}: {short_name(first.nodeid)}{reason}{more}")
    if inconclusive:
        plural = "figure" if len(inconclusive) == 1 else "figures"
        detail = f": {_figure(run, inconclusive[0])}" if verdict is Verdict.INCONCLUSIVE else ""
        parts.append(f"{len(inconclusive)} {plural} inconclusive{detail}")
    status = run.exit_status
    if (
        verdict is Verdict.FAILED
        and status not in (None, EXIT_OK, EXIT_NO_TESTS, EXIT_INTERRUPTED)
        and not (missed or invalid or failures)
    ):
        parts.append(f"pytest exit status {status}")
    return f"{str(verdict).upper()} — " + "; ".join(parts)
