"""The probe worker: the probe loop in a process of its own, streaming its samples back.

A drill's process is busy (pollers, a writer thread, database connections, pytest itself), and
a probe loop in one of its threads shares the GIL and the CPU with all of that: its samples
then come late, their latencies are its own queueing, and its timers fire before it reads
answers that have come. So by default :class:`~drdrill.probes.http.ProbeRunner` runs its
:class:`~drdrill.probes.sampler.ProbeLoop` here, in a child process
(``python -m drdrill.probes.worker``), and keeps only the sample store and the outage
derivation in the drill's process.

**Protocol.** The parent writes one length-prefixed pickle of :class:`WorkerConfig` on the
child's stdin and keeps stdin open: its end of file (``stop()``, or the parent's death) tells
the child to stop sampling, wait for its requests in flight, report them and exit. The child
writes frames on its stdout (a byte of kind, then a fixed-size little-endian record):
``S`` a completed sample, ``H`` a heartbeat window, ``T`` a grid tick, and ``P`` a
length-prefixed pickle for what is rare (started, an error, DNS answers, the end).

**Lifetime.** The child asks the kernel to kill it when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``; the "parent" is the thread that spawned it, so the
parent spawns it from the thread that reads its output, which lives exactly as long as the
child), checks that the parent did not die before that, and also stops on end of file on
stdin. It ignores SIGINT: Ctrl-C reaches the whole process group, and the parent stops the
child in order. ``stop()`` waits for the child to exit, and kills it if it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drdrill.errors import DrillError
from drdrill.probes.client import ClientSpec, Endpoint
from drdrill.probes.sampler import HEARTBEAT_S, Batch, ProbeLoop, SampleRecord

if TYPE_CHECKING:
    from drdrill.probes.resolve import TtlResolver

log = logging.getLogger(__name__)

#: how long ``start()`` waits for the worker's first grid point before giving up.
STARTUP_TIMEOUT_S = 30.0
#: how long ``stop()`` waits past the longest request timeout before killing the worker.
STOP_GRACE_S = 5.0

_PR_SET_PDEATHSIG = 1
_PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size by default: seconds of samples, not ms
_F_SETPIPE_SZ = 1031

# not ``-m drdrill.probes.worker``: that would define this module's classes in ``__main__``, and
# the pickles exchanged would name classes the other side does not have
_CHILD_MAIN = "import sys; from drdrill.probes.worker import main; sys.exit(main())"

_LENGTH = struct.Struct("<I")
_SAMPLE = struct.Struct("<HIddddHBd")  # in SampleRecord's field order
_HEARTBEAT = struct.Struct("<dd")
_TICK = struct.Struct("<ddI")
_KIND_SAMPLE = ord("S")
_KIND_HEARTBEAT = ord("H")
_KIND_TICK = ord("T")
_KIND_PICKLE = ord("P")


@dataclass(frozen=True)
class WorkerConfig:
    """What the worker samples, and how; pickled to it on its stdin."""

    endpoints: tuple[Endpoint, ...]
    interval_s: float
    client: ClientSpec
    parent_pid: int
    heartbeat_s: float = HEARTBEAT_S


@dataclass(frozen=True)
class Started:
    """The worker's first grid point is scheduled at ``grid_start_mono``."""

    grid_start_mono: float
    pid: int


@dataclass(frozen=True)
class Failed:
    """The worker could not start (or stopped on an error); ``message`` is one line."""

    message: str


@dataclass(frozen=True)
class Ended:
    """The worker stopped in order: every sample it sent has been reported."""


# -- the wire format ----------------------------------------------------------------------------


def encode_batch(batch: Batch) -> bytes:
    """A batch as frames: samples, heartbeats, ticks, then any DNS answers as a pickle."""
    parts: list[bytes] = []
    for tick in batch.ticks:
        parts.append(bytes((_KIND_TICK,)) + _TICK.pack(*tick))
    for record in batch.samples:
        parts.append(bytes((_KIND_SAMPLE,)) + _SAMPLE.pack(*record))
    for heartbeat in batch.heartbeats:
        parts.append(bytes((_KIND_HEARTBEAT,)) + _HEARTBEAT.pack(*heartbeat))
    if batch.resolutions:
        parts.append(encode_message(list(batch.resolutions)))
    return b"".join(parts)


def encode_message(message: object) -> bytes:
    """One rare message as a pickle frame."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return bytes((_KIND_PICKLE,)) + _LENGTH.pack(len(payload)) + payload


class FrameReader:
    """Turns the worker's byte stream back into batches and messages, whatever the chunking."""

    def __init__(self) -> None:
        """An empty reader."""
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> Iterator[Batch | Started | Failed | Ended]:
        """Parse ``data`` (appended to what was held back); yield each complete item.

        Consecutive binary frames come as one :class:`Batch`; a pickled message ends it.
        """
        buffer = self._buffer
        buffer += data
        view = memoryview(buffer)
        offset = 0
        batch = Batch()
        try:
            while offset < len(buffer):
                kind = buffer[offset]
                body = offset + 1
                if kind == _KIND_SAMPLE:
                    if body + _SAMPLE.size > len(buffer):
                        break
                    batch.samples.append(SampleRecord(*_SAMPLE.unpack_from(view, body)))
                    offset = body + _SAMPLE.size
                elif kind == _KIND_HEARTBEAT:
                    if body + _HEARTBEAT.size > len(buffer):
                        break
                    batch.heartbeats.append(_HEARTBEAT.unpack_from(view, body))
                    offset = body + _HEARTBEAT.size
                elif kind == _KIND_TICK:
                    if body + _TICK.size > len(buffer):
                        break
                    batch.ticks.append(_TICK.unpack_from(view, body))
                    offset = body + _TICK.size
                elif kind == _KIND_PICKLE:
                    if body + _LENGTH.size > len(buffer):
                        break
                    (length,) = _LENGTH.unpack_from(view, body)
                    start = body + _LENGTH.size
                    if start + length > len(buffer):
                        break
                    message = pickle.loads(view[start : start + length])
                    offset = start + length
                    if isinstance(message, list):  # DNS answers belong with the samples
                        batch.resolutions.extend(message)
                        continue
                    if batch:
                        yield batch
                        batch = Batch()
                    yield message
                else:
                    raise DrillError(f"probe worker stream corrupt: frame kind {kind}")
            if batch:
                yield batch
        finally:
            view.release()
            del buffer[:offset]


# -- the child ----------------------------------------------------------------------------------


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that spawned it ends (a no-op
    elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError) as exc:  # the EOF check still stops it
        log.warning("probe worker: prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)


class _Output(asyncio.Protocol):
    """The write end of the pipe to the parent, buffered by asyncio (a write never blocks)."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _serve(config: WorkerConfig, out_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_control() -> None:
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:  # the parent closed our stdin (stop), or is gone
            loop.remove_reader(0)
            stopping.set()

    loop.add_reader(0, on_control)
    transport, output = await loop.connect_write_pipe(_Output, os.fdopen(out_fd, "wb", buffering=0))

    def write(data: bytes) -> None:
        if transport.is_closing():  # the parent is gone: nobody to report to
            stopping.set()
            return
        transport.write(data)

    resolvers: list[TtlResolver | None] = []

    def make_client(limit: int) -> Any:
        client, resolver = config.client.build(limit)
        resolvers.append(resolver)
        return client

    probe = ProbeLoop(
        config.endpoints,
        config.interval_s,
        make_client,
        lambda batch: write(encode_batch(batch)),
        on_started=lambda t0: write(encode_message(Started(t0, os.getpid()))),
        resolver=lambda: resolvers[0] if resolvers else None,
        heartbeat_s=config.heartbeat_s,
    )
    try:
        await probe.run(stopping)
    except Exception as exc:
        write(encode_message(Failed(_one_line(exc))))
    else:
        write(encode_message(Ended()))
    finally:
        transport.close()
        await output.closed


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = os.read(fd, n - len(chunks))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def main() -> int:
    """The worker process: read the config, sample until stdin closes, report, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    # the record stream gets a descriptor of its own; anything printed goes to stderr
    out_fd = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="drdrill probe worker: %(message)s")
    try:
        (length,) = _LENGTH.unpack(_read_exactly(0, _LENGTH.size))
        config = pickle.loads(_read_exactly(0, length))
    except EOFError:
        return 0  # the parent went away before it said what to probe
    if not isinstance(config, WorkerConfig):
        os.write(out_fd, encode_message(Failed("probe worker: bad config")))
        return 2
    if os.getppid() != config.parent_pid:
        return 0  # the parent died before the death signal was armed
    asyncio.run(_serve(config, out_fd))
    return 0


# -- the parent's handle ------------------------------------------------------------------------


def _package_root() -> str:
    # the directory holding the ``drdrill`` package, so that the child imports this very copy
    return str(Path(__file__).resolve().parents[2])


class WorkerProcess:
    """The parent's side of one worker: spawn it, read its stream, stop it.

    ``on_batch`` is called on the reader thread for each batch, in the order the worker sent
    them; it must not raise (errors are logged and the reading goes on).
    """

    def __init__(self, config: WorkerConfig, on_batch: Callable[[Batch], None]) -> None:
        """Prepare a worker for ``config``; :meth:`start` spawns it."""
        self.config = config
        self._on_batch = on_batch
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._started_message: Started | None = None
        self._failure: str | None = None
        self._ended = False
        self._lock = threading.Lock()
        #: seconds from spawning the worker to its first grid point being scheduled
        self.startup_s: float | None = None
        #: the worker's exit status, once it has exited
        self.returncode: int | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id, once spawned."""
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the worker process is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def ended_in_order(self) -> bool:
        """Whether the worker reported all its samples and said so before exiting."""
        return self._ended

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> float:
        """Spawn the worker; return its grid start once scheduled. Raises :class:`DrillError`
        (one line, with the worker's reason) if it cannot start."""
        if self._thread is not None:
            raise RuntimeError("probe worker already started")
        self._thread = threading.Thread(target=self._run, name="drdrill-probe-worker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            self.stop(0.0)
            raise DrillError(f"probe worker did not start within {timeout_s:g} s")
        if self._started_message is None:
            self.stop(0.0)
            raise DrillError(f"probe worker failed to start: {self._failure or 'no reason given'}")
        return self._started_message.grid_start_mono

    def stop(self, wait_s: float) -> None:
        """Tell the worker to stop (end of file on its stdin), wait up to ``wait_s`` + a grace
        period for it to report and exit, and kill it if it has not. Leaves no process."""
        thread = self._thread
        if thread is None:
            return
        self._close_control()
        if thread is threading.current_thread():
            return  # called from an on_event callback: the worker ends once the reader returns
        thread.join(wait_s + STOP_GRACE_S)
        if thread.is_alive():
            process = self._process
            if process is not None:
                log.warning("probe worker %d did not stop; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            thread.join()

    def _close_control(self) -> None:
        with self._lock:
            process = self._process
            if process is not None and process.stdin is not None and not process.stdin.closed:
                with contextlib.suppress(OSError):
                    process.stdin.close()

    def _run(self) -> None:
        spawned = time.monotonic()
        try:
            self._spawn()
        except OSError as exc:
            self._failure = f"cannot spawn {sys.executable}: {exc}"
            self._started.set()
            return
        process = self._process
        assert process is not None and process.stdout is not None
        reader = FrameReader()
        fd = process.stdout.fileno()
        try:
            while chunk := os.read(fd, 1 << 16):
                for item in reader.feed(chunk):
                    self._handle(item, spawned)
        except Exception as exc:  # a corrupt stream: stop the worker, say why
            self._failure = _one_line(exc)
            log.error("probe worker stream: %s", self._failure)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        finally:
            self._close_control()
            process.stdout.close()
            self.returncode = process.wait()
            if self._started_message is None and self._failure is None:
                self._failure = f"exited with status {self.returncode} before its first sample"
            self._started.set()

    def _spawn(self) -> None:
        env = dict(os.environ)
        root = _package_root()
        env["PYTHONPATH"] = os.pathsep.join(
            [root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
        )
        with self._lock:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD_MAIN],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with contextlib.suppress(OSError):  # a bigger pipe rides out a parent slow to read
            import fcntl

            fcntl.fcntl(process.stdout.fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)
        payload = pickle.dumps(self.config, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            process.stdin.write(_LENGTH.pack(len(payload)) + payload)
            process.stdin.flush()
        except BrokenPipeError:
            pass  # it died at once; its exit status says so

    def _handle(self, item: Batch | Started | Failed | Ended, spawned: float) -> None:
        if isinstance(item, Batch):
            try:
                self._on_batch(item)
            except Exception:
                log.exception("probe batch could not be stored")
        elif isinstance(item, Started):
            self.startup_s = time.monotonic() - spawned
            self._started_message = item
            self._started.set()
        elif isinstance(item, Failed):
            self._failure = item.message
            if self._started_message is not None:
                log.error("probe worker stopped: %s", item.message)
            self._started.set()
        else:
            self._ended = True


if __name__ == "__main__":
    from drdrill.probes.worker import main as _main  # the classes of the importable module

    sys.exit(_main())
