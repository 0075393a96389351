"""Every test's outcome, from pytest's reports, into the run's record.

One folding for both sides of a run: the drill session of a run without workers, and the
pytest-xdist controller, which takes every test's outcome from the reports the workers forward
(so that a crashed worker's tests are not lost with its part of the report). A failure's reason
is one line: the exception's message (the ``ObjectiveMissed`` text, the assertion's message),
never the location pytest puts last (``measure.py:192: ObjectiveMissed``) nor a traceback.

Only the standard library and pytest are imported here: the plugin calls it for every test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import pytest

from drdrill.report.record import (
    ERROR,
    FAILED,
    INTERRUPTED,
    LOST_OUTCOMES,
    NOT_RUN,
    PASSED,
    SKIPPED,
    UNKNOWN,
    XFAILED,
    XPASSED,
    RunRecord,
    TestRecord,
)

#: the attribute of a TestReport that carries its one-line reason: set where the test ran, from
#: the exception itself, it travels with the report to the xdist controller (pytest serializes a
#: report's extra attributes)
REASON_ATTR: Final = "drdrill_reason"
#: how long a reason may be (characters); longer ones are cut with an ellipsis
REASON_LIMIT: Final = 300
#: the entry of a collection error that names no module (a conftest of the root folder)
COLLECTION_NODE: Final = "<collection>"
#: xdist's ``when`` of the report it makes for the test a crashed worker was running
CRASH_WHEN: Final = "???"

# "drdrill.errors.ObjectiveMissed: ..." or "AssertionError: ...": a class name before the message
_TYPE_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*): ")
_ASSERTION_PREFIXES = ("AssertionError", "ObjectiveMissed", "NothingToLose")


def one_line(text: str, limit: int = REASON_LIMIT) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def reason_from_exception(exc: BaseException) -> str:
    """One line saying why a test failed, from the exception it raised.

    An assertion (``ObjectiveMissed`` included) and a drdrill error say it in their message;
    any other exception is named before its message (``KeyError: 'x'`` says more than ``'x'``).
    """
    from drdrill.errors import DrillError

    if isinstance(exc, pytest.skip.Exception | pytest.fail.Exception):
        return one_line(exc.msg or type(exc).__name__)
    message = one_line(str(exc))
    if isinstance(exc, AssertionError | DrillError):
        return message or type(exc).__name__
    name = type(exc).__name__
    return one_line(f"{name}: {message}") if message else name


def _from_crash(message: str) -> str:
    """A reason from the exception line pytest kept (``reprcrash``): the first line, without the
    class name of an assertion (which says nothing the message does not)."""
    line = one_line(message)
    match = _TYPE_PREFIX.match(line)
    if match and match.group(1) in _ASSERTION_PREFIXES:
        line = line[match.end() :] or match.group(1)
    return line


def _from_text(text: str) -> str:
    """A reason from a report's text: the last ``E`` line of a traceback (a module that fails
    to import), else its first line."""
    errors = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    return one_line(errors[-1] if errors else text)


def reason_of(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """One line saying why a report did not pass (a skip's reason, a failure's message)."""
    given = report.__dict__.get(REASON_ATTR)
    if isinstance(given, str) and given:
        return given
    wasxfail = getattr(report, "wasxfail", None)
    if isinstance(wasxfail, str) and wasxfail and not report.failed:
        return one_line(wasxfail)  # xfailed or xpassed: the marker's reason
    longrepr: Any = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        return one_line(str(longrepr[2]).removeprefix("Skipped: ")) or None
    if longrepr is None:
        return None
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        return _from_crash(str(crash.message))
    return _from_text(str(longrepr)) or None


def attach_reason(report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """Give a report that did not pass its one-line reason, from the exception itself."""
    excinfo = call.excinfo
    if excinfo is None or report.passed:
        return
    wasxfail = getattr(report, "wasxfail", None)
    if report.skipped and isinstance(wasxfail, str) and wasxfail:
        reason = one_line(wasxfail)
    else:
        reason = reason_from_exception(excinfo.value)
    # a plain attribute: pytest serializes a report's extra attributes for the xdist controller
    report.__dict__[REASON_ATTR] = reason


def fold_report(run: RunRecord, report: pytest.TestReport, worker: str | None) -> TestRecord:
    """Fold one phase's report (setup, call, teardown; xdist's crash report) into the test's
    record: outcome, duration, reason, worker. Returns the record."""
    record = run.test(report.nodeid)
    record.duration_s += report.duration
    if worker is not None:
        record.worker = worker
    xfail = hasattr(report, "wasxfail")
    # xdist's crash report says "???", which pytest's type for ``when`` does not allow
    when: str = report.when
    if report.failed:
        if when == CRASH_WHEN:
            # the worker died with it: whatever it did is lost with the worker
            record.outcome = FAILED
            if report.nodeid not in run.lost:
                run.lost.append(report.nodeid)
        elif when == "call":
            record.outcome = FAILED
        elif record.outcome != FAILED:
            # setup or teardown: an error (a teardown's error after a passed call too)
            if record.outcome != ERROR:
                record.message = None
            record.outcome = ERROR
        record.message = record.message or reason_of(report)
    elif report.skipped:
        record.outcome = XFAILED if xfail else SKIPPED
        record.message = record.message or reason_of(report)
    elif when == "call":
        record.outcome = XPASSED if xfail else PASSED
        if xfail:
            record.message = reason_of(report)
    return record


def fold_collect(run: RunRecord, report: pytest.CollectReport) -> TestRecord | None:
    """A module that failed to collect (or skipped itself) as an entry of its own, named after
    the module: an error with its one-line reason. None for a collection that went well."""
    if report.passed:
        return None
    record = run.test(report.nodeid or COLLECTION_NODE)
    record.outcome = ERROR if report.failed else SKIPPED
    record.message = reason_of(report)
    return record


def conclude(
    run: RunRecord,
    *,
    collected: Iterable[str],
    exit_status: int | None,
    interruption: str | None = None,
    stopped: str | None = None,
    crashed: Mapping[str, str] | None = None,
) -> None:
    """The run's end: pytest's exit status, the tests that never ran or never finished, and why.

    ``collected`` are the node ids pytest collected (a test among them with no report never
    ran); ``interruption`` a Ctrl-C or SIGTERM; ``stopped`` why pytest stopped early on its own
    (``-x``, ``--maxfail``: it counts only when a test was left unrun); ``crashed`` the
    pytest-xdist workers that died, each with what xdist said.
    """
    run.exit_status = exit_status
    crashed = dict(crashed or {})
    why: list[str] = []
    if crashed:
        names = ", ".join(crashed)
        why.append(f"worker {names} crashed" if len(crashed) == 1 else f"workers {names} crashed")
    if interruption:
        why.append(interruption)
    reported = {t.nodeid for t in run.tests}
    never = [nodeid for nodeid in dict.fromkeys(collected) if nodeid not in reported]
    cause = "; ".join(why) or stopped or "the run ended first"
    for nodeid in never:
        record = run.test(nodeid)
        record.outcome = NOT_RUN
        record.message = f"never ran: {cause}"
    for record in run.tests:
        if record.outcome == UNKNOWN:
            record.outcome = INTERRUPTED
            record.message = record.message or f"did not finish: {cause}"
    for record in run.tests:
        if record.outcome in LOST_OUTCOMES and record.nodeid not in run.lost:
            run.lost.append(record.nodeid)
    if not why and run.lost and stopped:
        why.append(stopped)
    if not why and run.lost:
        why.append(cause)
    run.interruption = "; ".join(why) or None
