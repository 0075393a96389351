"""The drill timeline: events with wall and monotonic times, and the phases between them."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from drdrill.errors import DrillError

#: The runbook's RTO components, in the order a failover goes through them.
PHASES: tuple[str, ...] = (
    "Detection",
    "Decision",
    "RDS Promotion",
    "ECS Scale-up",
    "Health Verification",
    "DNS Update",
    "Total RTO",
)


def stamp_resolution(utc: datetime) -> float:
    """How finely an AWS record's time is known: a millisecond when it has a fraction, else a
    second (an API that stamps whole seconds)."""
    return 0.001 if utc.microsecond else 1.0


class Source(StrEnum):
    """Who vouches for an event's time."""

    ACTION = "action"  # we did it: the time is exact
    OBSERVED = "observed"  # seen by polling: known to within the polling gap
    REPORTED = "reported"  # the platform says so (e.g. an alarm's history timestamp)


@dataclass(frozen=True)
class Event:
    """Something that happened during a drill, with when and how sure we are of it.

    ``mono`` is ``time.monotonic()`` of the drill process; ``utc`` the matching wall time.
    For an observed event ``uncertainty_s`` is the gap between the last sample that did not see
    it and the first that did: the true time lies in ``[mono - uncertainty_s, mono]``.
    """

    name: str
    utc: datetime
    mono: float
    source: Source = Source.ACTION
    uncertainty_s: float = 0.0
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The event at the JSON edge."""
        return {
            "name": self.name,
            "utc": self.utc.isoformat(),
            "mono": self.mono,
            "source": str(self.source),
            "uncertainty_s": self.uncertainty_s,
            "attrs": dict(self.attrs),
        }


@dataclass(frozen=True)
class Clock:
    """Where time comes from; injected so that tests never sleep."""

    mono: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    def utc_at(self, mono: float) -> datetime:
        """The UTC wall time that corresponds to a monotonic reading of this clock."""
        offset = self.wall() - self.mono()
        return datetime.fromtimestamp(mono + offset, tz=UTC)


#: a wait tells its listeners what it waits for once it has waited this long, then this often
WAIT_NOTICE_S = 5.0


class TimelineListener(Protocol):
    """Told of each event as it is added, and of waits that go on (live progress)."""

    def on_event(self, event: Event) -> None:
        """An event was just added (from whichever thread added it)."""

    def on_wait(self, what: str, waited_s: float, timeout_s: float | None, now_mono: float) -> None:
        """A wait for ``what`` has gone on for ``waited_s`` (of at most ``timeout_s``)."""

    def on_note(self, text: str, now_mono: float) -> None:
        """A step worth telling that is no event of the timeline."""


class Timeline:
    """An ordered, thread-safe record of a drill's events.

    Probes and observers add events from their own threads; ``mark`` is for our own actions.
    Listeners (:meth:`listen`) hear of each event as it is added; a listener's failure never
    reaches the drill.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or Clock()
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._listeners: list[TimelineListener] = []

    @property
    def clock(self) -> Clock:
        """The clock events are stamped with."""
        return self._clock

    def now(self) -> float:
        """The current monotonic time of this timeline's clock."""
        return self._clock.mono()

    def listen(self, listener: TimelineListener) -> None:
        """Tell ``listener`` of every event added from now on, and of long waits."""
        with self._lock:
            self._listeners.append(listener)

    def notify(self, call: Callable[[TimelineListener], None]) -> None:
        """Call ``call`` with each listener, ignoring their failures."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            # progress is a courtesy: a listener's failure never fails a drill
            with contextlib.suppress(Exception):
                call(listener)

    def add(self, event: Event) -> Event:
        """Record an event made elsewhere."""
        with self._lock:
            self._events.append(event)
        self.notify(lambda listener: listener.on_event(event))
        return event

    def say(self, text: str) -> None:
        """Tell the listeners of a step that is no event (nothing is recorded)."""
        now = self.now()
        self.notify(lambda listener: listener.on_note(text, now))

    def waiting(self, what: str, timeout_s: float | None = None) -> WaitNotices:
        """A wait for ``what`` starting now: call ``tick()`` on the result at each poll and the
        listeners hear of it every :data:`WAIT_NOTICE_S` while it lasts."""
        return WaitNotices(self, what, timeout_s)

    def mark(self, name: str, **attrs: Any) -> Event:
        """Record an action we take now (exact time)."""
        mono = self._clock.mono()
        return self.add(Event(name, self._clock.utc_at(mono), mono, Source.ACTION, 0.0, attrs))

    def observe(
        self,
        name: str,
        mono: float,
        uncertainty_s: float,
        source: Source = Source.OBSERVED,
        **attrs: Any,
    ) -> Event:
        """Record an event seen at ``mono`` whose true time lies up to ``uncertainty_s`` before."""
        return self.add(Event(name, self._clock.utc_at(mono), mono, source, uncertainty_s, attrs))

    def report(self, name: str, utc: datetime, uncertainty_s: float = 0.0, **attrs: Any) -> Event:
        """Record an event whose time the platform reported as a wall time."""
        mono = utc.timestamp() - (self._clock.wall() - self._clock.mono())
        return self.add(Event(name, utc, mono, Source.REPORTED, uncertainty_s, attrs))

    def report_stamped(self, name: str, utc: datetime, resolution_s: float, **attrs: Any) -> Event:
        """Record an event from a platform's record stamped ``utc`` to ``resolution_s`` (a
        second, a millisecond, a request's round trip): the action lies in
        ``[utc, utc + resolution_s]``, so the event is put at the end of that stretch with the
        stretch as its uncertainty. A phase ending at it is met only if met at the stretch's
        end; one starting at it, only if met from its start."""
        resolution_s = max(0.0, resolution_s)
        late = utc + timedelta(seconds=resolution_s)
        return self.report(name, late, resolution_s, stamped_utc=utc.isoformat(), **attrs)

    @property
    def events(self) -> list[Event]:
        """Every event so far, in time order."""
        with self._lock:
            return sorted(self._events, key=lambda e: e.mono)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def find(self, name: str) -> Event | None:
        """The first event of that name, or None."""
        return next((e for e in self.events if e.name == name), None)

    def get(self, name: str) -> Event:
        """The first event of that name; a DrillError naming it when there is none."""
        event = self.find(name)
        if event is None:
            seen = ", ".join(sorted({e.name for e in self.events})) or "none"
            raise DrillError(f"no event '{name}' on the timeline (events: {seen})")
        return event

    def elapsed(self, since: Event) -> timedelta:
        """Time since an event."""
        return timedelta(seconds=self._clock.mono() - since.mono)


class WaitNotices:
    """Tells a timeline's listeners, every :data:`WAIT_NOTICE_S`, that a wait goes on."""

    def __init__(
        self, timeline: Timeline, what: str, timeout_s: float | None, every_s: float = WAIT_NOTICE_S
    ) -> None:
        """A wait for ``what`` (of at most ``timeout_s``) that starts now."""
        self._timeline = timeline
        self._what = what
        self._timeout_s = timeout_s
        self._every_s = every_s
        self._started = timeline.now()
        self._next = self._started + every_s

    def tick(self) -> None:
        """Call at each poll: the listeners hear of the wait when its next notice is due."""
        now = self._timeline.now()
        if now < self._next:
            return
        self._next = now + self._every_s
        waited = now - self._started
        self._timeline.notify(
            lambda listener: listener.on_wait(self._what, waited, self._timeout_s, now)
        )
