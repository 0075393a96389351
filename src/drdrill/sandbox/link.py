"""The network between the sandbox's two regions: a TCP relay with latency, loss and partitions.

Every connection from one region to the other (today: a replica reading its primary's binary
log, in either direction after a failback) goes through :class:`InterRegionLink`, which relays
it with the link's one-way latency, optional jitter and loss, and can partition the regions.

Why a relay and not network namespaces with ``tc netem``: the drills talk only to loopback
(127.0.0.0/8), and the kernels of our runners have no ``netem`` queueing discipline. A relay in
user space gives the dynamics the drills measure:

- **latency**: each chunk read on one side is written on the other ``latency`` (+ jitter) later,
  in order, in each direction, so a write the primary acknowledged reaches the replica at least
  one latency later; a failover in that window loses it.
- **loss**: TCP does not lose bytes, it retransmits them. A lost chunk is delivered one
  retransmission timeout (:data:`RETRANSMIT_S`) late, and the chunks after it wait behind it
  (head-of-line blocking), as on a lossy link.
- **partition**: nothing crosses. Chunks in flight are held, nothing more is read (so TCP's
  flow control stops the sender), and a connection opened meanwhile waits. Connections are not
  closed: like a real partition, the two sides find out only by their own timeouts
  (``slave_net_timeout`` on the replica). The old primary keeps running and taking writes: a
  failover now is a split brain. Healing delivers what was held, in order.

Each change of the link is a truth event (``link_partitioned``, ``link_healed``,
``link_degraded``) stamped when it takes effect, and :meth:`InterRegionLink.status` counts what
crossed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drdrill.errors import DrillError

#: how late a lost chunk arrives: TCP's minimum retransmission timeout (Linux: 200 ms)
RETRANSMIT_S = 0.2
#: how many bytes one read takes at most
CHUNK = 65536
#: chunks in flight on one direction of one connection before reading waits (flow control)
MAX_IN_FLIGHT = 256


@dataclass(frozen=True)
class Route:
    """One relay: connections to ``listen`` are carried to ``upstream`` across the link."""

    name: str
    listen: tuple[str, int]
    upstream: tuple[str, int]


@dataclass(frozen=True)
class LinkShape:
    """The link's dynamics: one-way latency and jitter in seconds, loss as a fraction."""

    latency_s: float
    jitter_s: float = 0.0
    loss: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("latency", self.latency_s), ("jitter", self.jitter_s)):
            if not 0.0 <= value <= 10.0:
                raise DrillError(f"inter-region {name} {value!r} s: must be 0-10 s")
        if not 0.0 <= self.loss < 1.0:
            raise DrillError(f"inter-region loss {self.loss!r}: must be 0 <= loss < 1")

    def as_dict(self) -> dict[str, float]:
        """For the status and the truth log, in milliseconds and percent."""
        return {
            "latency_ms": round(self.latency_s * 1000.0, 3),
            "jitter_ms": round(self.jitter_s * 1000.0, 3),
            "loss_pct": round(self.loss * 100.0, 3),
        }


class InterRegionLink:
    """Relays every cross-region connection through one shared link state (module docstring).

    ``on_event(event, **attrs)`` records each change (the supervisor's truth log). The relay
    runs an asyncio loop in a thread of its own; every public method may be called from any
    thread.
    """

    def __init__(
        self,
        routes: list[Route],
        shape: LinkShape,
        on_event: Callable[..., Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.routes = routes
        self.configured = shape
        self.shape = shape
        self._on_event = on_event
        self._random = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._open: asyncio.Event | None = None  # set while the regions are not partitioned
        self._stopping: asyncio.Event | None = None
        self._servers: list[asyncio.Server] = []
        self._conns: set[asyncio.StreamWriter] = set()
        self.counts: dict[str, dict[str, int]] = {
            r.name: {"connections": 0, "bytes": 0, "chunks_lost": 0} for r in routes
        }

    # --- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Listen on every route's address; returns once all listen (DrillError if one cannot)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready, failure))
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=run, name="inter-region-link", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise DrillError(f"inter-region link: not listening within {timeout:g} s")
        if failure:
            self._thread.join(timeout)
            raise DrillError(f"inter-region link: cannot listen: {failure[0]}")

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        """Listen, serve until :meth:`stop`, then close every listener and connection."""
        self._open = asyncio.Event()
        self._open.set()
        self._stopping = asyncio.Event()
        try:
            for route in self.routes:
                server = await asyncio.start_server(
                    functools.partial(self._carry, route),
                    host=route.listen[0],
                    port=route.listen[1],
                    reuse_address=True,
                )
                self._servers.append(server)
        except OSError as exc:
            failure.append(exc)
        else:
            ready.set()
            await self._stopping.wait()
        for server in self._servers:
            server.close()
        for writer in list(self._conns):
            writer.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self) -> None:
        """Close every listener and connection; the thread ends."""
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is None or thread is None or stopping is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)

    # --- the link's state ------------------------------------------------------------------------

    def partition(self) -> bool:
        """Nothing crosses from now on. False when the regions were already partitioned."""
        return self._set_open(False, "link_partitioned")

    def heal(self) -> bool:
        """Undo :meth:`partition`: what was held is delivered, in order. False when not cut."""
        return self._set_open(True, "link_healed")

    def _set_open(self, open_: bool, event: str) -> bool:
        if self._loop is None or self._open is None:
            raise DrillError("inter-region link: not started")
        if self.partitioned == (not open_):
            return False
        done = threading.Event()

        def flip() -> None:
            assert self._open is not None
            if open_:
                self._open.set()
            else:
                self._open.clear()
            done.set()

        self._loop.call_soon_threadsafe(flip)
        done.wait(5)
        self._event(event, **self.shape.as_dict())
        return True

    def degrade(self, shape: LinkShape) -> None:
        """Change latency, jitter and loss (for chunks read from now on)."""
        self.shape = shape
        self._event("link_degraded", **shape.as_dict())

    def restore(self) -> None:
        """Back to the configured shape (not a heal: a partition stays)."""
        if self.shape != self.configured:
            self.degrade(self.configured)

    @property
    def partitioned(self) -> bool:
        """Whether nothing crosses the link now."""
        return self._open is not None and not self._open.is_set()

    @property
    def at_baseline(self) -> bool:
        """Not partitioned, and shaped as configured."""
        return not self.partitioned and self.shape == self.configured

    def status(self) -> dict[str, Any]:
        """The link's state, its shape as configured and as now, and what crossed each route."""
        return {
            "partitioned": self.partitioned,
            "at_baseline": self.at_baseline,
            **self.shape.as_dict(),
            "configured": self.configured.as_dict(),
            "routes": {
                r.name: {
                    "listen": f"{r.listen[0]}:{r.listen[1]}",
                    "upstream": f"{r.upstream[0]}:{r.upstream[1]}",
                    **self.counts[r.name],
                }
                for r in self.routes
            },
        }

    def _event(self, event: str, **attrs: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, **attrs)

    # --- relaying --------------------------------------------------------------------------------

    async def _carry(
        self, route: Route, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        """One connection: wait out a partition and one latency, connect, pump both ways."""
        assert self._open is not None
        self._conns.add(client_w)
        try:
            await self._open.wait()
            await asyncio.sleep(self.shape.latency_s)  # the connection's first packet crossing
            await self._open.wait()
            try:
                up_r, up_w = await asyncio.open_connection(*route.upstream)
            except OSError:
                return  # refused on the far side: the client sees its connection close
            self.counts[route.name]["connections"] += 1
            self._conns.add(up_w)
            try:
                await asyncio.gather(
                    self._pump(route, client_r, up_w), self._pump(route, up_r, client_w)
                )
            finally:
                self._conns.discard(up_w)
                up_w.close()
        except asyncio.CancelledError:
            # the link is stopping. The task ends quietly: asyncio's server callback asks a
            # connection's task for its exception, and a cancelled one would be logged as one
            return
        finally:
            self._conns.discard(client_w)
            client_w.close()

    def _delay(self, route: Route) -> float:
        shape = self.shape
        delay = shape.latency_s
        if shape.jitter_s:
            delay = max(0.0, delay + self._random.uniform(-shape.jitter_s, shape.jitter_s))
        if shape.loss and self._random.random() < shape.loss:
            self.counts[route.name]["chunks_lost"] += 1
            delay += RETRANSMIT_S
        return delay

    async def _pump(
        self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One direction: read, hold each chunk for its delay (in order), write."""
        assert self._open is not None
        opened = self._open
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(MAX_IN_FLIGHT)

        async def read() -> None:
            due_last = 0.0
            try:
                while True:
                    await opened.wait()  # partitioned: read nothing, TCP stops the sender
                    data = await reader.read(CHUNK)
                    if not data:
                        break
                    # in order: a chunk never overtakes the one before it
                    due_last = max(due_last, time.monotonic() + self._delay(route))
                    await queue.put((due_last, data))
            except (ConnectionError, OSError):
                pass
            finally:
                await queue.put(None)

        async def write() -> None:
            try:
                while (item := await queue.get()) is not None:
                    due, data = item
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await opened.wait()  # held while partitioned
                    self.counts[route.name]["bytes"] += len(data)
                    writer.write(data)
                    await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
            except (ConnectionError, OSError):
                pass

        reading = asyncio.ensure_future(read())
        try:
            await write()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
