"""Observed events: poll a condition and stamp the moment it first held, with its uncertainty."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from drdrill.errors import DrillError
from drdrill.timeline import Event, Timeline


class NotObserved(DrillError):
    """A condition that did not hold within its time."""


def poll_until(
    timeline: Timeline,
    name: str,
    condition: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    since: Event | None = None,
    **attrs: Any,
) -> Event:
    """Poll ``condition`` every ``interval_s``; record ``name`` when it first holds.

    The event is stamped at the start of the first poll that saw it; its uncertainty is the gap
    back to the start of the last poll that did not (the true moment lies between). If the very
    first poll sees it, it may have happened any time since ``since`` (when given): that whole
    gap is the uncertainty. A condition that raises counts as not holding (the thing it asks
    may be down).
    """
    clock = timeline.clock
    started = clock.mono()
    last_false = since.mono if since is not None else started
    while True:
        at = clock.mono()
        try:
            held = condition()
        except Exception:
            held = False
        if held:
            return timeline.observe(name, at, max(0.0, at - last_false), **attrs)
        last_false = at
        if at - started > timeout_s:
            raise NotObserved(f"'{name}' not observed within {timeout_s:g} s")
        sleep(max(0.0, interval_s - (clock.mono() - at)))
