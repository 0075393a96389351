"""A run that received SIGINT or SIGTERM never ends as if it had not: not when the exception the
signal raised was lost on the way, and not when it came while the reports were being written.

Real pytest runs (pytester, in subprocesses) of a small drill project on the local target; the
signals are real, sent by the run to itself at the moment each test needs.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest
from tests.report.drill_project import drill_project

from drdrill.faults.base import SIGNALS, deferred_signals, handle_signals

pytest_plugins = ["pytester"]

#: a SIGTERM whose DrillInterrupted is lost: CPython's import machinery turned one into a
#: SystemError when it landed there, and an ``except Exception`` in teardown swallowed that
LOST_SIGTERM = """
import os
import signal
import time

import pytest


@pytest.fixture
def swallowing():
    yield
    try:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(2)
        except BaseException as exc:
            raise SystemError("error return without exception set") from exc
    except Exception:
        pass


def test_first(timeline, swallowing):
    timeline.mark("fault_injected")


def test_second(timeline):
    timeline.mark("fault_injected")
"""

#: a SIGINT sent while report.md is being written. The wrapper only times the signal: the real
#: writer runs, after it
SIGINT_IN_REPORTS = """
import os
import signal
import time

import drdrill.report.markdown as markdown

_write = markdown.write_markdown


def _interrupted_write(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.3)  # a KeyboardInterrupt would be raised here, were the signal not deferred
    return _write(*args, **kwargs)


markdown.write_markdown = _interrupted_write
"""

PASSING = """
def test_detection(timeline, measure):
    start = timeline.mark("fault_injected")
    timeline.observe("alarm", start.mono + 30.0, 0.5)
    measure.phase("Detection", "fault_injected", "alarm")
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    project: pytest.Pytester = drill_project(pytester)
    return project


def _report(project: pytest.Pytester) -> dict[str, object]:
    (path,) = project.path.glob("out/*/report.json")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_a_lost_sigterm_stops_the_run_and_it_never_exits_0(project: pytest.Pytester) -> None:
    project.makepyfile(test_lost=LOST_SIGTERM)
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    # the run stopped after the test the signal came in: the second never ran
    run = _report(project)["run"]
    assert isinstance(run, dict)
    assert run["verdict"] == "incomplete" and run["exit_status"] == 2, run
    assert run["interruption"] == "interrupted by SIGTERM"
    assert run["lost"] == ["test_lost.py::test_second"]
    assert "drdrill: the run was interrupted by SIGTERM" in result.stderr.str()


def test_a_sigint_while_the_reports_are_written_lets_them_finish_then_fails_the_run(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_drill=PASSING)
    project.makeconftest(SIGINT_IN_REPORTS)
    result = project.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    (folder,) = project.path.glob("out/*/")
    for name in ("report.json", "report.md", "report.html"):
        assert (folder / name).stat().st_size > 0, name
    assert "## " in (folder / "report.md").read_text()
    with sqlite3.connect(project.path / "out" / "history.sqlite") as db:
        runs = db.execute("select count(*) from runs").fetchone()[0]
    assert runs == 1
    assert "drdrill: the run was interrupted by SIGINT" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_deferred_signals_are_noted_not_raised_and_handlers_come_back() -> None:
    SIGNALS.clear()
    before = signal.getsignal(signal.SIGINT)
    with deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs between bytecodes: no KeyboardInterrupt comes
        finished = True
    assert finished and SIGNALS.received == (signal.SIGINT,)
    assert signal.getsignal(signal.SIGINT) is before
    SIGNALS.clear()


def test_handled_signals_are_noted_before_they_raise() -> None:
    SIGNALS.clear()
    with pytest.raises(KeyboardInterrupt), handle_signals((signal.SIGINT, signal.SIGTERM)):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert SIGNALS.first_name() == "SIGTERM"
    SIGNALS.clear()
