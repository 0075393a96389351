"""S3 cross-region replication's copies, carried as bytes over the inter-region link.

S3 copies each new object of the primary's bucket to the DR region's bucket across the network
between the regions: a copy takes that network's latency, waits out a partition and arrives
when it heals. The sandbox's buckets live in moto, in the supervisor's process, so a copy from
one to the other would cross nothing. Here each copy is sent as bytes through the inter-region
link (:mod:`drdrill.sandbox.link`, route :data:`ROUTE`): :func:`send_copy` connects to the
link's end in the primary region and sends the object; the link carries it, with its latency,
jitter, loss and partitions, to :class:`CopyReceiver` in the DR region, which puts it in the DR
bucket when its last byte arrives and answers one byte back; the copy is complete (the source
object ``COMPLETED``) when that answer has crossed back.

A copy sent while the regions are partitioned is held by the link and lands when it heals; the
object stays ``PENDING`` and absent from the DR bucket meanwhile, so the static-assets drill
measures real lag and, across a failover during a partition, real losses.

The wire format, one copy a connection: ``>I`` the key's length, the key (UTF-8), ``>Q`` the
object's length, the object; answered ``K`` once stored.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable

#: the link's route that carries the copies (its counts in ``sandbox status``)
ROUTE = "s3-primary-to-dr"
#: the receiver's answer once the copy is in the DR bucket
STORED = b"K"
#: how long one copy may take before it is abandoned and sent again (S3 retries a copy)
COPY_TIMEOUT_S = 300.0
#: the largest object the receiver takes (the drill's markers are a few hundred bytes)
MAX_OBJECT = 64 * 1024 * 1024


class CopyFailed(Exception):
    """A copy that did not complete (the link closed it, or the receiver refused it)."""


def _read_exactly(sock: socket.socket, count: int, stop: Callable[[], bool]) -> bytes:
    """``count`` bytes from ``sock``; CopyFailed at EOF, on ``stop()`` or past the timeout."""
    chunks: list[bytes] = []
    wanted = count
    deadline = time.monotonic() + COPY_TIMEOUT_S
    while wanted:
        if stop() or time.monotonic() > deadline:
            raise CopyFailed("abandoned")
        try:
            chunk = sock.recv(min(wanted, 65536))
        except TimeoutError:
            continue  # held by a partition, or still crossing: keep waiting
        if not chunk:
            raise CopyFailed("closed before the copy was complete")
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def send_copy(
    address: tuple[str, int],
    key: str,
    data: bytes,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Copy one object across the link: returns once the DR bucket has it and its answer came
    back; CopyFailed (or OSError) when it did not get there, to be sent again."""
    name = key.encode()
    message = struct.pack(">I", len(name)) + name + struct.pack(">Q", len(data)) + data
    with socket.create_connection(address, timeout=10.0) as sock:
        sock.settimeout(0.25)
        sock.sendall(message)
        if _read_exactly(sock, 1, stop) != STORED:
            raise CopyFailed("the receiver refused the copy")


class CopyReceiver:
    """The DR region's end of the copies: stores each object as its last byte arrives.

    ``store(key, data)`` puts the copy in the DR bucket; ``accepting()`` is False while the
    DR region is down (a copy into it is refused, and sent again later).
    """

    def __init__(
        self,
        address: tuple[str, int],
        store: Callable[[str, bytes], None],
        accepting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.address = address
        self._store = store
        self._accepting = accepting
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: copies stored so far (for ``sandbox status`` and the tests)
        self.stored = 0

    def start(self) -> None:
        """Listen (OSError if the address is taken) and serve in a thread of its own."""
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver._receive(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(self.address, Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="s3-copies-dr"
        )
        self._thread.daemon = True
        self._thread.start()

    def _receive(self, sock: socket.socket) -> None:
        sock.settimeout(0.25)
        stop = self._stopping.is_set
        try:
            (length,) = struct.unpack(">I", _read_exactly(sock, 4, stop))
            key = _read_exactly(sock, length, stop).decode()
            (size,) = struct.unpack(">Q", _read_exactly(sock, 8, stop))
            if size > MAX_OBJECT:
                return
            data = _read_exactly(sock, size, stop)
        except (CopyFailed, OSError, UnicodeDecodeError):
            return  # the sender sends it again
        if not self._accepting():
            return  # the DR region is down: closed without an answer
        self._store(key, data)
        self.stored += 1
        # stored; a sender not told (the answer lost) sends it again: the same object
        with contextlib.suppress(OSError):
            sock.sendall(STORED)

    def stop(self) -> None:
        """Stop listening and end every copy being received."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
