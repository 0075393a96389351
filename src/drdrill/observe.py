"""Observed events: poll a condition and stamp the moment it first held, with honest bounds.

A condition polled at moments we read from the clock is known to have changed somewhere between
the *start* of the last poll that did not see it and the *end* of the first poll that did: a poll
takes time (a database round trip, an HTTP call), and the state it reports held at some moment
inside it. The event is stamped at that end (the upper bound) with the gap back to that start as
its uncertainty, as :class:`drdrill.timeline.Event` expects (true time in
``[mono - uncertainty_s, mono]``).

:class:`Watch` polls one condition in a thread of its own from the moment it starts, so that a
drill watches every phase of a failover at once: an event that happens while the drill waits for
another is still seen when it happens, not when the drill gets round to looking.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from drdrill.errors import DrillError
from drdrill.timeline import Event, Timeline


class NotObserved(DrillError):
    """A condition that did not hold within its time."""


class FaultHadNoEffect(DrillError):
    """A fault whose effect was never observed: the drill measured nothing (no RTO of ~0)."""


def poll_until(
    timeline: Timeline,
    name: str,
    condition: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    since: Event | None = None,
    stop: threading.Event | None = None,
    **attrs: Any,
) -> Event:
    """Poll ``condition`` every ``interval_s``; record ``name`` when it first holds.

    The event's true moment lies in [start of the last poll that did not see it, end of the first
    poll that did]. If the very first poll sees it, it may have happened any time since ``since``
    (its lower bound, when given), else since that poll started. A condition that raises counts
    as not holding (the thing it asks may be down). ``stop`` (set from another thread) ends the
    wait with NotObserved.
    """
    clock = timeline.clock
    started = clock.mono()
    lower = since.mono - since.uncertainty_s if since is not None else started
    notices = timeline.waiting(name, timeout_s)
    while True:
        notices.tick()
        poll_start = clock.mono()
        try:
            held = condition()
        except Exception:
            held = False
        poll_end = clock.mono()
        if held:
            return timeline.observe(name, poll_end, max(0.0, poll_end - lower), **attrs)
        lower = poll_start
        if poll_end - started > timeout_s:
            raise NotObserved(f"'{name}' not observed within {timeout_s:g} s")
        if stop is not None and stop.is_set():
            raise NotObserved(f"'{name}' not observed: the watch was cancelled")
        sleep(max(0.0, interval_s - (clock.mono() - poll_start)))


def expect_effect(
    timeline: Timeline,
    name: str,
    condition: Callable[[], bool],
    timeout_s: float,
    fault: Event,
    interval_s: float = 0.05,
    what: str = "",
) -> Event:
    """Observe a fault's effect; FaultHadNoEffect when it does not show within ``timeout_s``."""
    try:
        return poll_until(timeline, name, condition, timeout_s, interval_s, since=fault)
    except NotObserved:
        detail = f" ({what})" if what else ""
        raise FaultHadNoEffect(
            f"the fault had no effect: '{name}'{detail} not observed within {timeout_s:g} s of "
            f"'{fault.name}'"
        ) from None


class Watch:
    """One condition polled in a background thread until it holds (see :func:`poll_until`).

    Started at once; :meth:`wait` returns the event (raising NotObserved if it timed out), and
    :meth:`cancel` stops the polling.
    """

    def __init__(
        self,
        timeline: Timeline,
        name: str,
        condition: Callable[[], bool],
        timeout_s: float,
        interval_s: float = 0.05,
        since: Event | None = None,
        **attrs: Any,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._event: Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(timeline, name, condition, timeout_s, interval_s, since, attrs),
            name=f"drdrill-watch-{name}",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self,
        timeline: Timeline,
        name: str,
        condition: Callable[[], bool],
        timeout_s: float,
        interval_s: float,
        since: Event | None,
        attrs: dict[str, Any],
    ) -> None:
        try:
            self._event = poll_until(
                timeline,
                name,
                condition,
                timeout_s,
                interval_s,
                sleep=self._sleep,
                since=since,
                stop=self._stop,
                **attrs,
            )
        except BaseException as exc:  # handed to wait(), never lost in the thread
            self._error = exc

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    @property
    def done(self) -> bool:
        """Whether the condition was seen (or the watch gave up)."""
        return not self._thread.is_alive()

    def wait(self) -> Event:
        """The observed event, once seen; NotObserved if the watch timed out or was cancelled."""
        # the thread ends by its own timeout at the latest (plus one poll)
        self._thread.join()
        if self._event is not None:
            return self._event
        error = self._error or NotObserved(f"'{self.name}' not observed")
        raise error

    def cancel(self) -> None:
        """Stop polling (the thread ends after its current poll)."""
        self._stop.set()


@contextmanager
def watching(watches: Iterable[Watch] = ()) -> Iterator[list[Watch]]:
    """A list to add watches to; every one still polling is cancelled on the way out."""
    chosen = list(watches)
    try:
        yield chosen
    finally:
        for watch in chosen:
            watch.cancel()
