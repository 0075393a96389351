"""Reading the independent observer's log (``observer.jsonl``; see :mod:`drdrill.sandbox.observer`).

The observer itself imports nothing of drdrill; this is drdrill's side, which reads what it
wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

#: the observer's targets in the sandbox: each region's load balancer
ObserverTarget = Literal["primary-lb", "dr-lb"]
ObserverState = Literal["pass", "fail"]


@dataclass(frozen=True)
class ObserverTransition:
    """A target's state as the observer saw it change: between ``lo`` and ``hi``.

    ``lo`` is the send of the last sample in the old state, ``hi`` the earliest completion
    among the first samples in the new one (up to the observer's ``CONFIRM``). The first sample
    of a target is a transition from ``None``, with ``lo`` = ``hi`` = its completion.
    """

    target: str
    old: ObserverState | None
    new: ObserverState
    lo_mono: float
    hi_mono: float
    lo_utc: datetime
    hi_utc: datetime
    #: why the new state's first sample failed (None when it passed)
    detail: str | None

    @property
    def mid_mono(self) -> float:
        """The middle of the interval."""
        return (self.lo_mono + self.hi_mono) / 2

    @property
    def uncertainty_s(self) -> float:
        """The interval's width."""
        return self.hi_mono - self.lo_mono


def read_transitions(
    path: Path, since_mono: float = float("-inf"), target: str | None = None
) -> list[ObserverTransition]:
    """The transitions (and first states) logged whose ``hi`` is at or after ``since_mono``,
    in the order the observer logged them: a target's changes in the order its samples were
    sent, which is the order its states followed one another.

    Not in the order of ``hi``: a change seen by one sample that hung until its timeout (a
    database restarting) completes after the changes of the samples sent after it, and sorted
    by completion a target that ended passing read as failing (a crash reboot's truth was lost:
    "the observer sees the primary failing again" with the last change a return to pass)."""
    found: list[ObserverTransition] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return found
    for raw in text.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # a line being written
        if record.get("event") == "initial":
            item = ObserverTransition(
                target=str(record["target"]),
                old=None,
                new=record["state"],
                lo_mono=float(record["mono"]),
                hi_mono=float(record["mono"]),
                lo_utc=datetime.fromisoformat(record["utc"]),
                hi_utc=datetime.fromisoformat(record["utc"]),
                detail=record.get("detail"),
            )
        elif record.get("event") == "transition":
            item = ObserverTransition(
                target=str(record["target"]),
                old=record["from"],
                new=record["to"],
                lo_mono=float(record["lo_mono"]),
                hi_mono=float(record["hi_mono"]),
                lo_utc=datetime.fromisoformat(record["lo_utc"]),
                hi_utc=datetime.fromisoformat(record["hi_utc"]),
                detail=record.get("detail"),
            )
        else:
            continue
        if item.hi_mono >= since_mono and (target is None or item.target == target):
            found.append(item)
    return found


def judged_until(path: Path, target: str) -> float | None:
    """The send time up to which the observer has judged every sample of ``target`` (its
    latest ``judged`` line), or None when it has not said yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    for raw in reversed(text.splitlines()):
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # a line being written
        if record.get("event") == "judged" and record.get("target") == target:
            return float(record["sent_mono"])
    return None
