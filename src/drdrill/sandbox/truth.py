"""Ground truth: what really happened in the sandbox, appended by every component.

Each line of ``truth.jsonl`` is ``{"event", "utc", "mono", "component", ...attrs}``. ``mono`` is
``time.monotonic()``, which on Linux is the system-wide CLOCK_MONOTONIC, so it compares directly
with the drill process's timeline.

Most events are stamped when they are appended. Events harvested from a component's own log
(MariaDB's general log, HAProxy's syslog lines) carry that component's own time instead: a wall
clock time put on the monotonic axis with :func:`mono_of_wall`, and the moment they were written
in the attribute ``logged_mono``. Such lines arrive late, so the file is not in time order:
:meth:`TruthLog.since` sorts by ``mono``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

#: how much of the file's start identifies it (its first line holds a time to the microsecond)
_HEAD_BYTES = 128


@dataclass(frozen=True)
class TruthEvent:
    """One line of the ground truth."""

    event: str
    utc: datetime
    mono: float
    component: str
    attrs: dict[str, Any] = field(default_factory=dict)
    #: the components stamp their lines to the microsecond from the same clock as the drill
    resolution_s: ClassVar[float] = 0.0


def wall_minus_mono() -> float:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC now, in seconds (the midpoint of two wall reads)."""
    before = time.time()
    mono = time.monotonic()
    after = time.time()
    return (before + after) / 2 - mono


def mono_of_wall(wall_s: float, offset: float | None = None) -> float:
    """A wall-clock time (epoch seconds) on the monotonic axis of the truth log.

    ``offset`` is :func:`wall_minus_mono`, read now when not given. Read it close to the event
    (at its harvest): the two clocks drift apart only by NTP's slew (at most 0.5 ms a second),
    but a step of the wall clock between the event and the read would move the event by the
    step.
    """
    return wall_s - (wall_minus_mono() if offset is None else offset)


class TruthLog:
    """Append-only JSON lines, one write a line, safe from several threads and processes.

    Reading is incremental: each read parses only the lines appended since the last one (the
    whole file again if it was replaced or truncated, as a new sandbox does).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._offset = 0
        self._identity: tuple[int, int] | None = None
        self._events: list[TruthEvent] = []
        self._head = b""  # the file's first bytes as last read

    def append(self, event: str, component: str, **attrs: Any) -> TruthEvent:
        """Record ``event`` now."""
        return self.append_at(event, component, time.monotonic(), datetime.now(UTC), **attrs)

    def append_at(
        self, event: str, component: str, mono: float, utc: datetime, **attrs: Any
    ) -> TruthEvent:
        """Record ``event`` at a given time (a component's own stamp of when it happened)."""
        line = json.dumps(
            {"event": event, "utc": utc.isoformat(), "mono": mono, "component": component, **attrs}
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        return TruthEvent(event, utc, mono, component, attrs)

    def read(self) -> list[TruthEvent]:
        """Every event so far, in file order (a torn last line is left for the next read)."""
        return list(self._iter())

    def _iter(self) -> Iterator[TruthEvent]:
        with self._read_lock:
            self._catch_up()
            events = list(self._events)
        yield from events

    def _catch_up(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._reset(None)
            return
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:
            self._reset(identity)
        if stat.st_size == self._offset:
            return
        with self.path.open("rb") as handle:
            # a new file may reuse the old one's inode: its first line tells them apart
            head = handle.read(_HEAD_BYTES)
            if head[: len(self._head)] != self._head:
                self._reset(identity)
            if len(self._head) < _HEAD_BYTES:
                self._head = head
            handle.seek(self._offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += end
        for raw in chunk[:end].decode("utf-8", errors="replace").splitlines():
            parsed = _parse(raw)
            if parsed is not None:
                self._events.append(parsed)

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self._identity = identity
        self._offset = 0
        self._events = []
        self._head = b""

    def since(self, mono: float, event: str | None = None) -> list[TruthEvent]:
        """Events at or after ``mono`` (optionally of one name), in time order."""
        found = [e for e in self._iter() if e.mono >= mono and (event is None or e.event == event)]
        found.sort(key=lambda e: e.mono)
        return found


def _parse(raw: str) -> TruthEvent | None:
    try:
        data = json.loads(raw)
        return TruthEvent(
            event=data.pop("event"),
            utc=datetime.fromisoformat(data.pop("utc")),
            mono=float(data.pop("mono")),
            component=data.pop("component"),
            attrs=data,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
