"""A UDP syslog receiver on loopback for the load balancers' own log lines (RFC 5424).

HAProxy sends ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG``; its
timestamp has microseconds and a UTC offset (``2026-11-30T00:39:48.196350+00:00``). Each
datagram is parsed into a :class:`SyslogMessage` (with the receipt time as well) and handed to
the callback on the receiver's thread. Anything that does not parse is handed over with the raw
text as its message and no timestamp.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) (?P<sd>-|\[.*?\]) ?(?P<msg>.*)$",
    re.DOTALL,
)


@dataclass(frozen=True)
class SyslogMessage:
    """One received syslog message."""

    #: the sender's timestamp in epoch seconds, None when it sent none ("-") or it did not parse
    wall: float | None
    app: str
    host: str
    procid: str
    priority: int | None
    message: str
    received_mono: float
    received_wall: float


def parse(data: bytes, received_mono: float, received_wall: float) -> SyslogMessage:
    """One datagram as a message (RFC 5424; anything else keeps its raw text)."""
    text = data.decode("utf-8", errors="replace").rstrip("\r\n\x00")
    match = _RFC5424.match(text)
    if match is None:
        return SyslogMessage(None, "", "", "", None, text, received_mono, received_wall)
    wall: float | None
    try:
        wall = datetime.fromisoformat(match.group("ts").replace("Z", "+00:00")).timestamp()
    except ValueError:
        wall = None
    return SyslogMessage(
        wall,
        match.group("app"),
        match.group("host"),
        match.group("procid"),
        int(match.group("pri")),
        match.group("msg").strip(),
        received_mono,
        received_wall,
    )


class SyslogReceiver:
    """Receives syslog datagrams on ``bind_ip:port`` (UDP) and hands each to ``on_message``."""

    def __init__(
        self, bind_ip: str, port: int, on_message: Callable[[SyslogMessage], None]
    ) -> None:
        self.bind_ip = bind_ip
        self.port = port
        self.on_message = on_message
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.received = 0

    @property
    def address(self) -> tuple[str, int]:
        """Where senders send (the port picked when 0 was asked)."""
        return self.bind_ip, self.port

    def start(self, any_port_if_taken: bool = False) -> None:
        """Bind and receive in a background thread; no-op while running.

        ``any_port_if_taken``: bind a free port when ``port`` is taken (:attr:`address` then
        says which).
        """
        if self._thread is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            try:
                sock.bind((self.bind_ip, self.port))
            except OSError:
                if not any_port_if_taken:
                    raise
                sock.bind((self.bind_ip, 0))
        except OSError:
            sock.close()
            raise
        sock.settimeout(0.1)
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="syslog-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop receiving and close the socket (what is queued is handled first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(65535)
            except TimeoutError:
                if self._stop.is_set():
                    return
                continue
            except OSError:
                return
            message = parse(data, time.monotonic(), time.time())
            self.received += 1
            try:
                self.on_message(message)
            except Exception as exc:  # a bad line must not end the receiver
                with contextlib.suppress(Exception):
                    print(f"syslog receiver: {type(exc).__name__}: {exc}", file=sys.stderr)
