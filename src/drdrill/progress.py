"""Live progress: each drill's steps printed as they happen, readable under plain ``pytest``.

pytest captures a test's output (fd level) and shows it only after the test, so a drill that
runs for a minute would be silent for that minute. :class:`ProgressTerminal` keeps its own
duplicate of the terminal's file descriptor, taken before any test runs (while pytest's capture
is suspended), and writes whole lines to it under a lock: the probes, the watches and the drill
all add events from their own threads. An xdist worker's stdout is execnet's channel, so a
worker writes to its inherited stderr instead, each line labelled with the worker's id.

:class:`DrillProgress` listens to one drill's :class:`~drdrill.timeline.Timeline`: every event
as it is added (its time since the drill began, and its bound when observed), and every wait
that has gone on for a while (what it waits for, for how long of how long). Progress never
breaks a drill: a write that fails turns the terminal off.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TextIO

from drdrill.redact import redact
from drdrill.timeline import Event, Source

#: events printed once per fault rather than each time (an outage per endpoint per blip)
_ONCE_PER_FAULT = frozenset({"outage_started"})
#: events not printed (their news is told by another line)
_QUIET = frozenset({"outage_ended"})
#: event attributes worth a word on the line, in this order
_SHOWN_ATTRS = ("fault", "endpoint", "error", "reason", "note")
#: at most this many characters of an attribute's value
_ATTR_WIDTH = 48


class ProgressTerminal:
    """Whole lines to the terminal, past pytest's capture, from any thread."""

    def __init__(
        self,
        stream: TextIO,
        prefix: str = "",
        line_open: Callable[[], bool] | None = None,
        after_write: Callable[[], None] | None = None,
    ) -> None:
        """``line_open`` says whether pytest's own writer is in the middle of a line (then a
        newline goes first, so that a drill's lines never run on from pytest's);
        ``after_write`` tells pytest's writer that its line was broken (it writes the test's
        name again before its outcome)."""
        self._stream: TextIO | None = stream
        self._prefix = prefix
        self._line_open = line_open
        self._after_write = after_write
        self._lock = threading.Lock()
        self._last_label: str | None = None

    @classmethod
    def open(
        cls,
        fd: int,
        prefix: str = "",
        line_open: Callable[[], bool] | None = None,
        after_write: Callable[[], None] | None = None,
    ) -> ProgressTerminal | None:
        """A terminal on a duplicate of ``fd`` (taken now), or None when there is none."""
        try:
            stream = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
        except OSError:
            return None
        return cls(stream, prefix, line_open, after_write)

    def write(self, label: str, line: str) -> None:
        """Write one of drill ``label``'s lines, under the drill's name when pytest wrote since
        (its dot, its PASSED) or another drill's line came last."""
        with self._lock:
            if self._stream is None:
                return
            try:
                broke = self._line_open is not None and self._line_open()
                text = "\n" if broke else ""
                if broke or label != self._last_label:
                    text += f"{self._prefix}drill {label}\n"
                self._last_label = label
                self._stream.write(f"{text}{self._prefix}{line}\n")
                self._stream.flush()
                if self._after_write is not None:
                    self._after_write()
            except (OSError, ValueError):
                # the terminal went away (a closed pipe): progress is a courtesy, stop it
                self._stream = None

    def close(self) -> None:
        """Close the duplicate descriptor."""
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _seconds(value: float) -> str:
    return f"{value:6.2f} s"


def _words(name: str) -> str:
    return name.replace("_", " ")


def _attrs(event: Event) -> str:
    shown = []
    for key in _SHOWN_ATTRS:
        value = event.attrs.get(key)
        if value in (None, ""):
            continue
        text = " ".join(str(value).split())
        if len(text) > _ATTR_WIDTH:
            text = text[: _ATTR_WIDTH - 1] + "…"
        shown.append(text)
    return f": {'; '.join(shown)}" if shown else ""


class DrillProgress:
    """One drill's progress lines: a :class:`~drdrill.timeline.TimelineListener`."""

    def __init__(self, terminal: ProgressTerminal, label: str, start_mono: float) -> None:
        """``label`` names the drill on its first line; times are since ``start_mono``."""
        self._terminal = terminal
        self._label = label
        self._start = start_mono
        self._lock = threading.Lock()
        self._seen_once: set[str] = set()

    def _say(self, line: str) -> None:
        self._terminal.write(self._label, redact(f"  {line}"))

    def on_event(self, event: Event) -> None:
        """Print the event (a fault resets the once-per-fault events)."""
        if event.name in _QUIET:
            return
        with self._lock:
            if event.name == "fault_injected":
                self._seen_once.clear()
            elif event.name in _ONCE_PER_FAULT:
                if event.name in self._seen_once:
                    return
                self._seen_once.add(event.name)
        bound = ""
        if event.source is not Source.ACTION or event.uncertainty_s > 0:
            bound = f" (±{event.uncertainty_s:.2f} s, {event.source})"
        name = "first outage seen" if event.name == "outage_started" else _words(event.name)
        self._say(f"{_seconds(event.mono - self._start)}  {name}{_attrs(event)}{bound}")

    def on_note(self, text: str, now_mono: float) -> None:
        """Print a step that is no event (e.g. a fault about to be injected)."""
        self._say(f"{_seconds(now_mono - self._start)}  {text}")

    def on_wait(self, what: str, waited_s: float, timeout_s: float | None, now_mono: float) -> None:
        """Print that a wait goes on: what it waits for, how long so far, of how long."""
        limit = f" of {timeout_s:g} s" if timeout_s is not None else ""
        self._say(
            f"{_seconds(now_mono - self._start)}  waiting for {_words(what)} "
            f"({waited_s:.0f} s{limit})"
        )
