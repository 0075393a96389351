"""The inter-region link: real TCP on loopback through the relay, against a real echo server.

Lower bounds only for time (a delay can be longer on a busy machine, never shorter); what a
partition holds is checked by what arrives, not by how fast.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from drdrill.errors import DrillError
from drdrill.sandbox.link import RETRANSMIT_S, InterRegionLink, LinkShape, Route

pytestmark = pytest.mark.slow  # real TCP through delays and partitions (~0.5-2.5 s each)

HOST = "127.0.0.1"


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer((HOST, 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


class _Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **attrs: Any) -> None:
        self.seen.append((event, attrs))


def _link(
    echo: tuple[str, int], shape: LinkShape, events: _Events | None = None
) -> InterRegionLink:
    link = InterRegionLink(
        [Route("to-echo", (HOST, _free_port()), echo)], shape, on_event=events, seed=7
    )
    link.start()
    return link


def _connect(link: InterRegionLink) -> socket.socket:
    return socket.create_connection(link.routes[0].listen, timeout=5)


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def test_each_way_is_delayed_by_the_latency(echo: tuple[str, int]) -> None:
    link = _link(echo, LinkShape(latency_s=0.05))
    try:
        with _connect(link) as conn:
            _recv_exactly_after_send(conn, b"warm")  # the connection's own crossing
            sent = time.monotonic()
            assert _recv_exactly_after_send(conn, b"ping") == b"ping"
            round_trip = time.monotonic() - sent
        # there and back: two crossings of 50 ms at least (never less; more on a busy machine)
        assert round_trip >= 0.1 - 0.002, round_trip
        assert link.status()["routes"]["to-echo"]["bytes"] == 16
        assert link.status()["routes"]["to-echo"]["connections"] == 1
    finally:
        link.stop()


def _recv_exactly_after_send(conn: socket.socket, data: bytes) -> bytes:
    conn.sendall(data)
    return _recv_exactly(conn, len(data))


def test_a_partition_holds_everything_until_it_heals(echo: tuple[str, int]) -> None:
    events = _Events()
    link = _link(echo, LinkShape(latency_s=0.0), events)
    try:
        with _connect(link) as conn:
            assert _recv_exactly_after_send(conn, b"before") == b"before"
            assert link.partition() is True
            assert link.partition() is False  # already partitioned: no second event
            conn.sendall(b"during-1")
            conn.sendall(b"during-2")
            conn.settimeout(0.5)
            with pytest.raises(TimeoutError):
                conn.recv(100)  # nothing crossed
            assert not link.at_baseline and link.status()["partitioned"] is True
            assert link.heal() is True
            conn.settimeout(5)
            # held, not lost: delivered in order once the regions are joined again
            assert _recv_exactly(conn, 16) == b"during-1during-2"
        assert [e for e, _ in events.seen] == ["link_partitioned", "link_healed"]
        assert link.at_baseline
    finally:
        link.stop()


def test_a_connection_opened_during_a_partition_waits_for_the_heal(
    echo: tuple[str, int],
) -> None:
    link = _link(echo, LinkShape(latency_s=0.0))
    try:
        link.partition()
        with _connect(link) as conn:  # the relay accepts; nothing reaches the far side
            conn.sendall(b"hello")
            time.sleep(0.3)
            assert link.status()["routes"]["to-echo"]["connections"] == 0
            link.heal()
            assert _recv_exactly(conn, 5) == b"hello"
            assert link.status()["routes"]["to-echo"]["connections"] == 1
    finally:
        link.stop()


def test_a_lossy_link_delivers_everything_in_order_late(echo: tuple[str, int]) -> None:
    link = _link(echo, LinkShape(latency_s=0.0, loss=0.5))
    try:
        with _connect(link) as conn:
            for i in range(8):
                message = f"message-{i:02d};".encode()
                assert _recv_exactly_after_send(conn, message) == message
        lost = link.status()["routes"]["to-echo"]["chunks_lost"]
        # 16 crossings at a 50 % loss: each lost chunk came one retransmission late
        assert lost > 0, link.status()
        assert RETRANSMIT_S > 0
    finally:
        link.stop()


def test_degrade_and_restore_are_recorded_and_change_the_delay(echo: tuple[str, int]) -> None:
    events = _Events()
    link = _link(echo, LinkShape(latency_s=0.0), events)
    try:
        link.degrade(LinkShape(latency_s=0.1))
        assert not link.at_baseline
        with _connect(link) as conn:
            sent = time.monotonic()
            assert _recv_exactly_after_send(conn, b"x") == b"x"
            # the connection's first crossing and the echo's two: 3 x 100 ms at least
            assert time.monotonic() - sent >= 0.3 - 0.002
        link.restore()
        assert link.at_baseline
        assert events.seen == [
            ("link_degraded", {"latency_ms": 100.0, "jitter_ms": 0.0, "loss_pct": 0.0}),
            ("link_degraded", {"latency_ms": 0.0, "jitter_ms": 0.0, "loss_pct": 0.0}),
        ]
    finally:
        link.stop()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"latency_s": -0.1}, "inter-region latency -0.1 s: must be 0-10 s"),
        ({"latency_s": 0.0, "jitter_s": 11.0}, "inter-region jitter 11.0 s: must be 0-10 s"),
        ({"latency_s": 0.0, "loss": 1.0}, "inter-region loss 1.0: must be 0 <= loss < 1"),
    ],
)
def test_a_bad_shape_is_one_line(shape: dict[str, float], message: str) -> None:
    with pytest.raises(DrillError) as raised:
        LinkShape(**shape)
    assert str(raised.value) == message


def test_a_taken_address_is_one_line(echo: tuple[str, int]) -> None:
    link = InterRegionLink([Route("to-echo", echo, echo)], LinkShape(latency_s=0.0))
    with pytest.raises(DrillError, match=r"^inter-region link: cannot listen: "):
        link.start()
