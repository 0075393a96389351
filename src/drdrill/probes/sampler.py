"""The probe loop itself: an asyncio loop that samples endpoints on a grid and times itself.

:class:`ProbeLoop` is what runs in the probe worker process (:mod:`drdrill.probes.worker`) or,
in thread mode, in a thread of the caller's process. It does three things:

- **Sampling.** Every ``interval_s`` on a grid anchored at the start (``t0 + k * interval_s``
  on the monotonic clock, so lateness never accumulates) it sends one GET to each endpoint.
  Each request has its own timeout and requests overlap: a hanging one holds its own
  connection while the next sample opens or reuses another. If a tick runs more than one
  interval late, the grid points it missed are skipped (and counted).
- **Timing itself.** A heartbeat wakes the loop every ``heartbeat_s`` on a grid of its own; how
  late each wake-up ran (``ran - due``) is how long the loop could not run: off the CPU,
  waiting for the GIL, or busy. Each such *window* ``[due, ran]`` is kept; a sample's
  ``lag_s`` is the worst lateness of the windows that overlap its flight ``(send, done)``
  (and, for a timeout, how late its own timer fired).
- **Reporting.** Completed samples are held until the next heartbeat, because the window that
  covers a completion is only closed then; at each heartbeat the loop hands a
  :class:`Batch` (samples with their lag, the heartbeat window, the ticks, new DNS answers) to
  its ``emit`` callback: the pipe to the parent in a worker, the runner itself in a thread.

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, system-wide on Linux), read in the loop's own
process, so they compare directly with any other process's and cannot be distorted by a busy
parent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from drdrill.probes.client import Endpoint, HttpClient, ProbeFailure
from drdrill.probes.stats import ERROR_CHECK_FAILED, ERROR_CLASSES, ERROR_OTHER, ERROR_TIMEOUT

if TYPE_CHECKING:
    from drdrill.probes.resolve import Resolution, TtlResolver

log = logging.getLogger(__name__)

#: how often the loop checks its own lateness (and hands over completed samples).
HEARTBEAT_S = 0.02

#: error codes on the wire and in the sample store: 0 good, else 1 + index in ERROR_CLASSES.
CODE_GOOD = 0
ERROR_CODES: dict[str, int] = {name: code for code, name in enumerate(ERROR_CLASSES, start=1)}


def error_of(code: int) -> str | None:
    """The error class of a code (``None`` for a good sample)."""
    return None if code == CODE_GOOD else ERROR_CLASSES[code - 1]


class SampleRecord(NamedTuple):
    """One completed sample as the loop reports it: which endpoint (its position in the list)
    and which row (its place in that endpoint's send order)."""

    endpoint_no: int
    row: int
    due: float
    send: float
    epoch: float
    done: float
    status: int
    code: int
    lag: float


@dataclass
class Batch:
    """What the loop hands over at a heartbeat, in the order it happened."""

    samples: list[SampleRecord] = field(default_factory=list)
    #: heartbeat windows ``(due, ran)``: the loop could not run from ``due`` until ``ran``
    heartbeats: list[tuple[float, float]] = field(default_factory=list)
    #: grid ticks ``(due, ran, skipped)``: ``skipped`` grid points jumped over at this tick
    ticks: list[tuple[float, float, int]] = field(default_factory=list)
    #: answers (and failures) the probes' own resolver got from its DNS server
    resolutions: list[Resolution] = field(default_factory=list)

    def __bool__(self) -> bool:
        """Whether there is anything in it."""
        return bool(self.samples or self.heartbeats or self.ticks or self.resolutions)


def connection_limit(endpoints: Sequence[Endpoint], interval_s: float) -> int:
    """How many connections the client must allow so that no sample waits for a slot.

    Each endpoint can have ``ceil(timeout / interval)`` requests hanging at once, plus the new
    one.
    """
    return sum(math.ceil(e.timeout_s / interval_s) + 2 for e in endpoints)


class _Windows:
    """The heartbeat windows of the recent past, for the lag of the samples still in flight."""

    __slots__ = ("due", "late", "ran")

    def __init__(self) -> None:
        self.due = array("d")
        self.ran = array("d")
        self.late = array("d")

    def add(self, due: float, ran: float) -> None:
        self.due.append(due)
        self.ran.append(ran)
        self.late.append(ran - due)

    def worst(self, start: float, end: float) -> float:
        """The worst lateness of a window overlapping ``(start, end)``; 0.0 if none does."""
        # both ``due`` and ``ran`` grow with each window, so the overlapping ones are a slice
        first = bisect_right(self.ran, start)
        last = bisect_left(self.due, end)
        return max(self.late[first:last], default=0.0)

    def forget_before(self, mono: float) -> None:
        """Drop the windows that ended before ``mono`` (no sample in flight can overlap them)."""
        cut = bisect_left(self.ran, mono)
        if cut > 1024:  # in blocks, so that the arrays are not shifted at every heartbeat
            del self.due[:cut], self.ran[:cut], self.late[:cut]


class ProbeLoop:
    """Samples ``endpoints`` every ``interval_s`` and reports in :class:`Batch` es (see module).

    ``make_client`` is called inside the loop with the connection limit needed. ``resolver``,
    when the client has one of drdrill's TTL resolvers, is watched for new answers. ``emit``
    and ``on_started`` run on the loop: they must be quick and never block.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        interval_s: float,
        make_client: Callable[[int], HttpClient],
        emit: Callable[[Batch], None],
        *,
        on_started: Callable[[float], None] | None = None,
        resolver: Callable[[], TtlResolver | None] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        """Prepare the loop; :meth:`run` runs it."""
        self.endpoints = tuple(endpoints)
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self._make_client = make_client
        self._emit = emit
        self._on_started = on_started
        self._resolver_of = resolver
        self._resolver: TtlResolver | None = None
        self._resolutions_sent = 0
        self._rows = [0] * len(self.endpoints)
        self._in_flight: set[asyncio.Task[None]] = set()
        # completed, waiting for the heartbeat that closes the window around their completion
        self._done: list[SampleRecord] = []
        self._windows = _Windows()
        self._batch = Batch()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._heartbeat_handle: asyncio.TimerHandle | None = None
        self._horizon_s = max(e.timeout_s for e in self.endpoints) + 2 * heartbeat_s + 1.0

    async def run(self, stopping: asyncio.Event) -> None:
        """Sample until ``stopping`` is set, then wait for every request in flight and report
        the last samples."""
        loop = asyncio.get_running_loop()
        limit = connection_limit(self.endpoints, self.interval_s)
        soft_files, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft_files != resource.RLIM_INFINITY and limit > soft_files:
            # not raised here: a library should not change process limits behind one's back
            log.warning(
                "up to %d probe connections may hang at once but only %d files may be open "
                "(ulimit -n); samples past that fail as 'connect'",
                limit,
                soft_files,
            )
        client = self._make_client(limit)
        try:
            self._resolver = self._resolver_of() if self._resolver_of is not None else None
            t0 = loop.time()  # asyncio's clock is time.monotonic()
            self._tick_handle = loop.call_at(t0, self._tick, client, t0, 0)
            self._heartbeat_handle = loop.call_at(
                t0 + self.heartbeat_s, self._heartbeat, t0 + self.heartbeat_s, 0
            )
            if self._on_started is not None:
                self._on_started(t0)
            await stopping.wait()
            self._tick_handle.cancel()
            while self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            self._heartbeat_handle.cancel()
            # one last window, so that the last completions have theirs closed too
            due = time.monotonic()
            await asyncio.sleep(0)
            self._report(due, time.monotonic())
        finally:
            await client.aclose()

    # -- the grid ----------------------------------------------------------------------------------

    def _tick(self, client: HttpClient, t0: float, k: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = t0 + k * self.interval_s
        behind = int((now - t0) / self.interval_s) - k
        skipped = 0
        if behind >= 1:
            # more than one interval late: skip the missed grid points rather than bunch up
            skipped = behind
            k += behind
        self._batch.ticks.append((due, now, skipped))
        due = t0 + k * self.interval_s
        for index, endpoint in enumerate(self.endpoints):
            row = self._rows[index]
            self._rows[index] = row + 1
            task = loop.create_task(self._sample(client, index, endpoint, row, due))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        self._tick_handle = loop.call_at(
            t0 + (k + 1) * self.interval_s, self._tick, client, t0, k + 1
        )

    async def _sample(
        self, client: HttpClient, index: int, endpoint: Endpoint, row: int, due: float
    ) -> None:
        send = time.monotonic()
        epoch = time.time()
        status = 0
        error: str | None
        try:
            async with asyncio.timeout(endpoint.timeout_s):
                status, body = await client.get(endpoint.url)
            error = None if endpoint.check.passes(status, body) else ERROR_CHECK_FAILED
        except TimeoutError:
            error = ERROR_TIMEOUT
        except ProbeFailure as exc:
            error = exc.error
        except Exception as exc:  # a client bug must not stop the sampling
            log.warning("probe of %s failed unexpectedly: %r", endpoint.url, exc)
            error = ERROR_OTHER
        done = time.monotonic()
        # a timeout's own timer is a lateness measurement of its own: how late it fired
        own = max(0.0, done - send - endpoint.timeout_s) if error == ERROR_TIMEOUT else 0.0
        code = CODE_GOOD if error is None else ERROR_CODES[error]
        self._done.append(SampleRecord(index, row, due, send, epoch, done, status, code, own))

    # -- the heartbeat -----------------------------------------------------------------------------

    def _heartbeat(self, h0: float, k: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = h0 + k * self.heartbeat_s
        behind = int((now - h0) / self.heartbeat_s) - k
        if behind >= 1:
            k += behind  # the window [due, now] covers the missed beats
        self._report(due, now)
        self._heartbeat_handle = loop.call_at(
            h0 + (k + 1) * self.heartbeat_s, self._heartbeat, h0, k + 1
        )

    def _report(self, due: float, ran: float) -> None:
        """Close the window ``[due, ran]``, give the completed samples their lag, hand over."""
        done, self._done = self._done, []
        windows = self._windows
        # the samples that completed before this window opened did not live through it
        split = next((i for i, record in enumerate(done) if record.done >= due), len(done))
        batch = self._batch
        for i, record in enumerate(done):
            if i == split:
                windows.add(due, ran)
            lag = max(record.lag, windows.worst(record.send, record.done))
            batch.samples.append(record._replace(lag=lag))
        if split == len(done):
            windows.add(due, ran)
        batch.heartbeats.append((due, ran))
        windows.forget_before(ran - self._horizon_s)
        self._collect_resolutions(batch)
        self._batch = Batch()
        try:
            self._emit(batch)
        except Exception:  # the sampling must go on whatever the receiver does
            log.exception("probe batch could not be handed over")

    def _collect_resolutions(self, batch: Batch) -> None:
        resolver = self._resolver
        if resolver is None or resolver.query_count == self._resolutions_sent:
            return
        # every query ends in exactly one history entry (an answer or a failure)
        history = resolver.history()
        batch.resolutions.extend(history[self._resolutions_sent :])
        self._resolutions_sent = len(history)
