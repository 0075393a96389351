"""A loopback HTTP server process for the probe benchmarks, with outages whose times are known.

Run as ``python benchmarks/outage_server.py --healthy 20``. It listens on 127.0.0.1 only:

- ``--healthy`` ports that always answer ``200 ok`` (HTTP/1.1 keep-alive);
- one *target* port whose outages the benchmark switches on and off;
- one *hang* port that accepts connections and reads requests but never answers.

It prints one JSON line ``{"healthy": [ports], "target": port, "hang": port}``, then obeys one
command a line on stdin and answers each with one JSON line on stdout:

- ``down refuse``: close the target's listening socket and abort its open connections, so every
  request from then on is refused; ``down hang``: keep accepting but never answer;
  ``down 503``: answer ``503``. Reply ``{"event": "down", "mono": ..., "epoch": ...,
  "before": ..., "after": ...}``.
- ``up``: end the outage (listen again, or answer again). Reply ``{"event": "up", ...}``.
- ``requests``: reply ``{"requests": n}``, the requests received on all ports so far.

``mono`` is ``time.monotonic()`` (system-wide on Linux, so comparable with the probe process's
clock) and ``epoch`` is ``time.time()``, both read at the moment the outage switched: nothing
is answered on the target after a ``down`` time nor refused after an ``up`` time. ``before``
and ``after`` are the monotonic times read just before and just after the switch itself
(closing the listener and aborting its connections, opening it again, or flipping the mode;
no request is handled in between, the server being one asyncio thread), so the true moment of
the switch lies in ``[before, after]``: the ground truth a bound must contain. The server
is a bare asyncio protocol, a few microseconds a request, so that at 1,000 requests a second it
leaves the CPU to the probe process being measured. Requests hung during an outage are never
answered, even after it ends, so no sample sent inside the window is counted good.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["ok", "refuse", "hang", "503"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 11\r\n\r\nunavailable"
)


@dataclass
class PortState:
    """One listening port: its mode, its open connections, its listener."""

    port: int
    mode: Mode
    connections: set[asyncio.Transport] = field(default_factory=set)
    server: asyncio.Server | None = None


class Counter:
    """Requests received on all ports."""

    requests = 0


class HttpProtocol(asyncio.Protocol):
    """Just enough HTTP/1.1 for GETs without a body, keep-alive, no pipelining needed."""

    def __init__(self, state: PortState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.hung = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.state.mode == "refuse":
            # accepted just before the listener closed: the outage has begun, drop it
            transport.abort()
            return
        self.state.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.state.connections.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            Counter.requests += 1
            if self.hung or self.state.mode == "hang":
                # never answer this connection again: the client must time out
                self.hung = True
                continue
            assert self.transport is not None
            self.transport.write(_UNAVAILABLE if self.state.mode == "503" else _OK)


async def listen(state: PortState) -> None:
    """Open (or reopen, on the same port) the listener of ``state``."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", state.port))
    state.port = sock.getsockname()[1]
    state.server = await loop.create_server(lambda: HttpProtocol(state), sock=sock, backlog=1024)


async def down(state: PortState, mode: Mode) -> tuple[float, float, float, float]:
    """Start an outage on ``state``; return its monotonic and epoch start, and the monotonic
    times just before and after the switch."""
    before = time.monotonic()
    if mode == "refuse":
        mono, epoch = time.monotonic(), time.time()
        assert state.server is not None
        state.server.close()
        for transport in list(state.connections):
            transport.abort()
        state.mode = "refuse"
        return mono, epoch, before, time.monotonic()
    mono, epoch = time.monotonic(), time.time()
    state.mode = mode
    return mono, epoch, before, time.monotonic()


async def up(state: PortState) -> tuple[float, float, float, float]:
    """End the outage on ``state``; return its monotonic and epoch end, and the monotonic times
    just before and after the switch."""
    before = time.monotonic()
    if state.mode == "refuse":
        await listen(state)
        mono, epoch = time.monotonic(), time.time()
        state.mode = "ok"
        return mono, epoch, before, mono
    mono, epoch = time.monotonic(), time.time()
    state.mode = "ok"
    return mono, epoch, before, time.monotonic()


def reply(obj: object) -> None:
    """One JSON line on stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(healthy: int) -> None:
    """Serve until stdin closes."""
    loop = asyncio.get_running_loop()
    healthy_states = [PortState(0, "ok") for _ in range(healthy)]
    target = PortState(0, "ok")
    hang = PortState(0, "hang")
    for state in [*healthy_states, target, hang]:
        await listen(state)
    reply({"healthy": [s.port for s in healthy_states], "target": target.port, "hang": hang.port})

    commands: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, None)

    threading.Thread(target=read_stdin, daemon=True).start()
    while (command := await commands.get()) is not None:
        words = command.split()
        if words[:1] == ["down"] and len(words) == 2 and words[1] in ("refuse", "hang", "503"):
            mode: Mode = words[1]  # type: ignore[assignment]
            mono, epoch, before, after = await down(target, mode)
            reply(
                {
                    "event": "down",
                    "mode": mode,
                    "mono": mono,
                    "epoch": epoch,
                    "before": before,
                    "after": after,
                }
            )
        elif words == ["up"]:
            mono, epoch, before, after = await up(target)
            reply({"event": "up", "mono": mono, "epoch": epoch, "before": before, "after": after})
        elif words == ["requests"]:
            reply({"requests": Counter.requests})
        else:
            reply({"error": f"unknown command {command!r}"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy", type=int, default=20, help="healthy ports (default 20)")
    asyncio.run(main(parser.parse_args().healthy))
