"""Ground truth: what really happened in the sandbox, appended by every component.

Each line of ``truth.jsonl`` is ``{"event", "utc", "mono", "component", ...attrs}``. ``mono`` is
``time.monotonic()``, which on Linux is the system-wide CLOCK_MONOTONIC, so it compares directly
with the drill process's timeline.
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
from typing import Any


@dataclass(frozen=True)
class TruthEvent:
    """One line of the ground truth."""

    event: str
    utc: datetime
    mono: float
    component: str
    attrs: dict[str, Any] = field(default_factory=dict)


class TruthLog:
    """Append-only JSON lines, one write a line, safe from several threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, event: str, component: str, **attrs: Any) -> TruthEvent:
        """Record ``event`` now."""
        mono = time.monotonic()
        utc = datetime.now(UTC)
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
        """Every event so far (a torn last line is skipped)."""
        return list(self._iter())

    def _iter(self) -> Iterator[TruthEvent]:
        if not self.path.exists():
            return
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            yield TruthEvent(
                event=data.pop("event"),
                utc=datetime.fromisoformat(data.pop("utc")),
                mono=float(data.pop("mono")),
                component=data.pop("component"),
                attrs=data,
            )

    def since(self, mono: float, event: str | None = None) -> list[TruthEvent]:
        """Events at or after ``mono`` (optionally of one name)."""
        return [e for e in self._iter() if e.mono >= mono and (event is None or e.event == event)]
