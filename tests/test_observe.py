"""Observed events, bounded by the last missed poll's start and the seeing poll's end.

The polls run on a fake clock that each poll advances (a poll takes time: a database round trip),
so the bounds are checked exactly and nothing sleeps. :class:`Watch` runs real threads.
"""

from __future__ import annotations

import threading
import time

import pytest
from tests.fake_clock import FakeClock

from drdrill.observe import FaultHadNoEffect, NotObserved, Watch, expect_effect, poll_until
from drdrill.timeline import Timeline


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def line(clock: FakeClock) -> Timeline:
    return clock.timeline()


def _slow_condition(clock: FakeClock, becomes_true_at: float, poll_s: float) -> object:
    """A condition whose state is read halfway through a poll that lasts ``poll_s``."""

    def condition() -> bool:
        clock.t += poll_s / 2
        state = clock.t >= becomes_true_at
        clock.t += poll_s / 2
        return state

    return condition


def _sleep(clock: FakeClock) -> object:
    def sleep(seconds: float) -> None:
        clock.t += seconds

    return sleep


def test_the_true_moment_lies_between_the_last_missed_poll_start_and_the_seeing_poll_end(
    line: Timeline, clock: FakeClock
) -> None:
    # polls of 0.3 s every 0.5 s: the old code stamped the start of the seeing poll, so a
    # change read late in a slow poll came out early, outside its interval
    truth = 101.62
    event = poll_until(
        line,
        "writable",
        _slow_condition(clock, truth, 0.3),  # type: ignore[arg-type]
        timeout_s=10,
        interval_s=0.5,
        sleep=_sleep(clock),  # type: ignore[arg-type]
    )
    assert event.mono - event.uncertainty_s <= truth <= event.mono
    # polls start at 100.0, 100.5, 101.0, 101.5; the one from 101.5 reads the state at 101.65
    # and ends at 101.8; the last one that missed started at 101.0 (the old stamp, 101.5, was
    # before the truth)
    assert event.mono == pytest.approx(101.8)
    assert event.uncertainty_s == pytest.approx(0.8)


def test_seen_on_the_first_poll_it_may_have_happened_any_time_since(
    line: Timeline, clock: FakeClock
) -> None:
    asked = line.observe("asked", 99.0, 0.5)  # true time in [98.5, 99.0]
    event = poll_until(line, "done", lambda: True, timeout_s=1, since=asked)
    assert event.mono == pytest.approx(100.0)
    assert event.uncertainty_s == pytest.approx(1.5)


def test_a_condition_that_never_holds_times_out(line: Timeline, clock: FakeClock) -> None:
    with pytest.raises(NotObserved, match="'never' not observed within 1 s"):
        poll_until(line, "never", lambda: False, timeout_s=1, sleep=_sleep(clock))  # type: ignore[arg-type]


def test_a_fault_with_no_effect_is_named_as_such(line: Timeline, clock: FakeClock) -> None:
    fault = line.mark("fault_injected")
    with pytest.raises(FaultHadNoEffect, match="the fault had no effect: 'task_stopped_seen'"):
        expect_effect(
            clock.timeline(),
            "task_stopped_seen",
            lambda: clock.__setattr__("t", clock.t + 0.05) or False,
            timeout_s=1,
            fault=fault,
        )


def test_watches_see_events_that_happen_while_the_drill_waits_for_another() -> None:
    # two conditions that become true at different moments: each watch stamps its own, even
    # though the drill waits for the later one first (the old drill polled one after another)
    line = Timeline()
    first, second = threading.Event(), threading.Event()
    early = Watch(line, "early", first.is_set, timeout_s=10, interval_s=0.01)
    late = Watch(line, "late", second.is_set, timeout_s=10, interval_s=0.01)
    time.sleep(0.05)
    first.set()
    set_first = time.monotonic()
    time.sleep(0.3)
    second.set()
    set_second = time.monotonic()
    late_event = late.wait()
    early_event = early.wait()
    assert early_event.mono - early_event.uncertainty_s <= set_first <= early_event.mono + 0.001
    assert late_event.mono - late_event.uncertainty_s <= set_second <= late_event.mono + 0.001
    assert early_event.mono < late_event.mono


def test_a_cancelled_watch_stops_polling() -> None:
    polls: list[float] = []

    def condition() -> bool:
        polls.append(time.monotonic())
        return False

    watch = Watch(Timeline(), "never", condition, timeout_s=60, interval_s=0.01)
    time.sleep(0.05)
    watch.cancel()
    with pytest.raises(NotObserved, match="cancelled"):
        watch.wait()
    count = len(polls)
    time.sleep(0.05)
    assert len(polls) == count
