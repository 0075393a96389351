"""Live progress: a drill's steps reach the terminal as they happen, under plain pytest.

Real pytest runs (pytester, in subprocesses, capture on as a user runs it) of a drill on the
local target, and the timeline's listeners and wait notices on a clock that moves when told.
"""

from __future__ import annotations

import os
import re

import pytest
from tests.fake_clock import FakeClock
from tests.report.drill_project import CONFIG, drill_project
from tests.report.test_every_outcome import FREEZE_CONFIG

from drdrill.observe import NotObserved, poll_until
from drdrill.progress import DrillProgress, ProgressTerminal
from drdrill.timeline import WAIT_NOTICE_S, Event

pytest_plugins = ["pytester"]

#: a drill whose steps are spaced in time, with captured output of its own and a secret
DRILL = """
import time


def test_steps(timeline):
    timeline.mark("fault_injected", fault="stop task at http://ops:hunter2@127.0.0.1:9/x")
    print("CAPTURED-BY-PYTEST")
    time.sleep(0.3)
    timeline.observe("replica_writable", timeline.now(), 0.05)
    time.sleep(0.3)
    timeline.observe("service_restored", timeline.now(), 0.02)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    project: pytest.Pytester = drill_project(pytester, test_drill=DRILL)
    return project


def _progress(lines: list[str], prefix: str = "") -> list[str]:
    """The step lines under the drill's first line, without the worker's prefix."""
    start = lines.index(f"{prefix}drill test_steps")
    step = re.compile(re.escape(prefix) + r" +\d+\.\d\d s  ")
    steps = []
    for line in lines[start + 1 :]:
        if not step.match(line):
            break
        steps.append(line[len(prefix) :])
    return steps


def test_steps_print_live_past_the_capture_in_order_with_their_times(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    lines = result.outlines
    steps = _progress(lines)
    assert [s.split(" s  ")[1].split(":")[0].split(" (")[0] for s in steps] == [
        "fault injected",
        "replica writable",
        "service restored",
    ], steps
    times = [float(s.split()[0]) for s in steps]
    assert times == sorted(times) and times[2] - times[0] >= 0.5, times
    assert "(±0.05 s, observed)" in steps[1]
    # the test's own output stays captured (it passed); the progress went past the capture,
    # before the run's summary
    assert "CAPTURED-BY-PYTEST" not in result.stdout.str()
    assert lines.index("drill test_steps") < next(
        i for i, line in enumerate(lines) if line.startswith("drdrill run ")
    )
    # a credential in an event's attribute is masked like everywhere else
    assert "hunter2" not in result.stdout.str() and "stop task at" in steps[0]


def test_verbose_keeps_the_test_and_its_outcome_on_one_line(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-v")
    result.assert_outcomes(passed=1)
    assert len(_progress(result.outlines)) == 3
    assert any(line.startswith("test_drill.py::test_steps PASSED") for line in result.outlines), (
        result.outlines
    )


@pytest.mark.parametrize("args", [("-q",), ("--dr-progress", "off")])
def test_quiet_or_off_prints_no_progress(project: pytest.Pytester, args: tuple[str, ...]) -> None:
    result = project.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    assert "drill test_steps" not in result.stdout.str()
    assert "fault injected" not in result.stdout.str()


def test_on_overrides_quiet(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-q", "--dr-progress", "on")
    result.assert_outcomes(passed=1)
    assert len(_progress(result.outlines)) == 3


def test_an_xdist_worker_prints_its_steps_labelled_with_its_id(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    worker = next(
        line.split("]")[0] + "] " for line in result.errlines if line.endswith("drill test_steps")
    )
    steps = _progress(result.errlines, worker)
    assert len(steps) == 3 and "fault injected" in steps[0], result.errlines


#: a real fault on the local target's demo app, reverted by the drill; the service then restored
FREEZE = """
import time

from drdrill.faults.process import FreezeProcess, ProcessRef


def test_steps(target, probes, inject):
    probes.start()
    time.sleep(0.3)
    fault = inject(FreezeProcess(ProcessRef.of(target.app_process().pid, name="demo-app")))
    time.sleep(0.8)
    inject.revert(fault)
    probes.wait_restored("fault_injected", timeout_s=20)
"""


def test_a_real_fault_says_it_is_being_injected_before_it_acts(project: pytest.Pytester) -> None:
    project.makefile(".yaml", drdrill=CONFIG + FREEZE_CONFIG)
    project.makepyfile(test_drill=FREEZE)
    result = project.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    steps = [s.split(" s  ", 1)[1] for s in _progress(result.outlines)]
    names = [s.split(":")[0].split(" (")[0] for s in steps]
    assert names[:3] == ["steady state verified", "injecting", "fault injected"], steps
    assert steps[1] == f"injecting{steps[2].rsplit(' (±', 1)[0].removeprefix('fault injected')}"
    assert "first outage seen" in names and names[-1] == "service restored", steps
    assert names.index("fault reverted") > names.index("first outage seen")


def test_a_drill_is_named_again_when_pytest_wrote_between_its_lines() -> None:
    read, write = os.pipe()
    pytest_wrote = iter([False, True, False])
    terminal = ProgressTerminal(os.fdopen(write, "w"), line_open=lambda: next(pytest_wrote))
    terminal.write("test_x", "  0.10 s  fault injected")
    terminal.write("test_x", "  2.00 s  fault reverted")  # after pytest's "." for test_x
    terminal.write("test_y", "  0.20 s  fault injected")
    terminal.close()
    with os.fdopen(read) as pipe:
        text = pipe.read()
    assert text == (
        "drill test_x\n  0.10 s  fault injected\n"
        "\ndrill test_x\n  2.00 s  fault reverted\n"
        "drill test_y\n  0.20 s  fault injected\n"
    )


class _Recorder:
    """A listener that keeps what it heard (and can be told to fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[Event] = []
        self.waits: list[tuple[str, float, float | None]] = []
        self.notes: list[str] = []
        self.fail = fail

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("listener broke")

    def on_wait(self, what: str, waited_s: float, timeout_s: float | None, now_mono: float) -> None:
        self.waits.append((what, waited_s, timeout_s))

    def on_note(self, text: str, now_mono: float) -> None:
        self.notes.append(text)


def test_a_long_poll_tells_what_it_waits_for_every_notice_period() -> None:
    clock = FakeClock()
    timeline = clock.timeline()
    heard = _Recorder()
    timeline.listen(heard)

    def advance(seconds: float) -> None:
        clock.t += seconds

    with pytest.raises(NotObserved):
        poll_until(timeline, "replica_writable", lambda: False, 3 * WAIT_NOTICE_S + 1, 1.0, advance)
    assert [w[0] for w in heard.waits] == ["replica_writable"] * 3
    assert [round(w[1]) for w in heard.waits] == [round(WAIT_NOTICE_S * k) for k in (1, 2, 3)], (
        heard.waits
    )
    assert heard.waits[0][2] == 3 * WAIT_NOTICE_S + 1


def test_a_short_poll_says_nothing_of_waiting() -> None:
    clock = FakeClock()
    timeline = clock.timeline()
    heard = _Recorder()
    timeline.listen(heard)
    polls = iter([False, False, True])

    def advance(seconds: float) -> None:
        clock.t += seconds

    event = poll_until(timeline, "alarm_seen", lambda: next(polls), 30.0, 1.0, advance)
    assert heard.waits == [] and heard.events == [event]


def test_a_failing_listener_never_reaches_the_drill() -> None:
    timeline = FakeClock().timeline()
    broken, kept = _Recorder(fail=True), _Recorder()
    timeline.listen(broken)
    timeline.listen(kept)
    event = timeline.mark("fault_injected")
    assert timeline.events == [event] and kept.events == [event]


def test_outages_print_once_per_fault_and_a_wait_says_of_how_long() -> None:
    read, write = os.pipe()
    terminal = ProgressTerminal(os.fdopen(write, "w"), prefix="")
    clock = FakeClock()
    timeline = clock.timeline()
    timeline.listen(DrillProgress(terminal, "test_x", clock.t))
    timeline.mark("fault_injected", fault="f1")
    for _ in range(3):
        timeline.observe("outage_started", clock.t, 0.1, endpoint="http://127.0.0.1:1/")
        timeline.observe("outage_ended", clock.t, 0.1, endpoint="http://127.0.0.1:1/")
    clock.t += 12
    timeline.mark("fault_injected", fault="f2")
    timeline.observe("outage_started", clock.t, 0.1, endpoint="http://127.0.0.1:1/")
    DrillProgress(terminal, "test_y", clock.t - 7).on_wait("service_restored", 7.0, 60.0, clock.t)
    terminal.close()
    with os.fdopen(read) as pipe:
        text = pipe.read().splitlines()
    assert text[0] == "drill test_x"
    assert sum("first outage seen" in line for line in text) == 2, text
    assert not any("outage ended" in line for line in text)
    assert text[-1].endswith("waiting for service restored (7 s of 60 s)"), text
    assert text[-1].split()[0] == "7.00"


def test_a_closed_terminal_turns_progress_off_without_an_error() -> None:
    read, write = os.pipe()
    terminal = ProgressTerminal(os.fdopen(write, "w"))
    os.close(read)
    terminal.write("test_x", "first")  # EPIPE: the reader went away
    terminal.write("test_x", "second")  # nothing more is tried
    terminal.close()
