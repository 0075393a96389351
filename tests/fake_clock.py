"""A clock for timing tests that moves only when told to (nothing sleeps)."""

from __future__ import annotations

from drdrill.timeline import Clock, Timeline


class FakeClock:
    """Monotonic ``t`` seconds; the wall clock a fixed offset ahead."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def mono(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_800_000_000.0 + self.t

    def timeline(self) -> Timeline:
        """A timeline stamped by this clock."""
        return Timeline(Clock(mono=self.mono, wall=self.wall))
