"""The probe loop in its worker process: honest bounds beside a busy parent, its own lateness,
starved samples, the wire format, DNS through a ClientSpec, and the worker's lifetime.

Ground truth: :class:`ListenSwitch` is a loopback server that refuses connections (its socket is
bound but not listening) or serves, and logs each switch as the monotonic times read just
before and just after the one system call that makes it (``listen()``, or ``shutdown()`` of the
listener). So the true moment lies in ``[before, after]``, a few microseconds wide, and the
assertion is that the probes' bound meets that interval: ``low <= after`` and ``before <= high``
(no other tolerance). Nothing here asserts how fast anything is.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drdrill.errors import DrillError
from drdrill.probes.http import ClientSpec, Endpoint, ProbeMode, ProbeRunner
from drdrill.probes.resolve import Resolution
from drdrill.probes.sampler import Batch, SampleRecord
from drdrill.probes.stats import ERROR_REFUSED, ERROR_TIMEOUT, is_starved
from drdrill.probes.worker import (
    Ended,
    FrameReader,
    Started,
    WorkerConfig,
    WorkerProcess,
    encode_batch,
    encode_message,
)
from drdrill.sandbox.dns import FailoverDns

pytestmark = pytest.mark.slow  # probe workers timed against real loopback servers (~1-4 s each)

_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class ListenSwitch:
    """A loopback HTTP server that refuses or serves; each switch logged as ``(before, after)``."""

    def __init__(self) -> None:
        self._sock = self._bound(0)
        self.port: int = self._sock.getsockname()[1]
        self._thread: threading.Thread | None = None

    @staticmethod
    def _bound(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    @property
    def url(self) -> str:
        """The probed URL."""
        return f"http://127.0.0.1:{self.port}/"

    def serve(self) -> tuple[float, float]:
        """Start accepting: connections are refused before, served after."""
        sock = self._sock
        before = time.monotonic()
        sock.listen(128)
        after = time.monotonic()
        self._thread = threading.Thread(target=self._accept, args=(sock,), daemon=True)
        self._thread.start()
        return before, after

    def refuse(self) -> tuple[float, float]:
        """Stop accepting: connections are served before, refused (or reset) after."""
        sock = self._sock
        before = time.monotonic()
        sock.shutdown(socket.SHUT_RDWR)  # Linux refuses new connections from here
        after = time.monotonic()
        sock.close()
        if self._thread is not None:
            self._thread.join()
        self._sock = self._bound(self.port)  # bound, not listening: refused
        return before, after

    def close(self) -> None:
        """Release the port."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if self._thread is not None:
            self._thread.join()

    @staticmethod
    def _accept(sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # shut down
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                with contextlib.suppress(OSError):
                    conn.sendall(_REPLY)


@pytest.fixture
def switch() -> Iterator[ListenSwitch]:
    server = ListenSwitch()
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def busy_thread() -> Iterator[list[int]]:
    """A pure-Python thread spinning in this process for the duration (it competes for the
    GIL, as a drill's own threads do); yields its loop count so far."""
    stop = threading.Event()
    count = [0]

    def spin() -> None:
        n = 0
        while not stop.is_set():
            for i in range(1000):
                n += i * i % 7
            count[0] += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited; its parent's reaping is another matter


def _wait_gone(pid: int, deadline_s: float = 15.0) -> None:
    # the deadline only keeps a broken worker from hanging the test; no speed is asserted
    end = time.monotonic() + deadline_s
    while not _gone(pid):
        assert time.monotonic() < end, f"probe worker {pid} still running"
        time.sleep(0.05)


# -- honest bounds while the parent is busy -----------------------------------------------------


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_bounds_contain_the_servers_switches_while_the_parent_is_busy(
    switch: ListenSwitch, mode: ProbeMode
) -> None:
    interval = 0.05
    endpoint = Endpoint(switch.url, timeout_s=0.5)
    runner = ProbeRunner([endpoint], interval_s=interval, recovery_samples=3, mode=mode)
    truths: list[tuple[tuple[float, float], tuple[float, float]]] = []
    rng = random.Random(3)
    switch.serve()
    with busy_thread() as spins, runner:
        time.sleep(0.4)
        for _ in range(3):
            time.sleep(rng.uniform(0, interval))  # a random phase against the grid
            down = switch.refuse()
            time.sleep(0.4)
            up = switch.serve()
            time.sleep(0.4)
            truths.append((down, up))
        # the restore as a drill asks for it, while the parent is still busy
        restored = runner.all_good_since(truths[-1][0][1], runner.recovery_samples)
    assert spins[0] > 0  # the parent really was busy
    outages = runner.outages(endpoint.url)
    assert len(outages) == len(truths), [o.first_error for o in outages]
    for (down, up), outage in zip(truths, outages, strict=True):
        start, end = outage.start_bound, outage.end_bound
        assert start is not None and end is not None
        assert start.low_mono <= down[1] and down[0] <= start.high_mono, (start, down)
        assert end.low_mono <= up[1] and up[0] <= end.high_mono, (end, up)
    assert restored is not None
    last_up = truths[-1][1]
    assert restored.bound.low_mono <= last_up[1] and last_up[0] <= restored.bound.high_mono
    assert restored.bound == outages[-1].end_bound
    assert runner.lateness().heartbeats > 0


# -- the loop's own lateness, and starved samples -----------------------------------------------


def test_a_starved_loop_classifies_its_own_timeouts(switch: ListenSwitch) -> None:
    """In thread mode, a busy thread that holds the GIL for 100 ms at a time makes the probe
    loop late by about that much: timeouts it may have caused are starved, refusals never, and
    no healthy endpoint shows a counted failure."""
    switch.serve()
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(512)  # accepts (in the kernel) and never answers
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))  # bound, not listening
    timeout = 0.3
    endpoints = [
        Endpoint(f"http://127.0.0.1:{hang.getsockname()[1]}/", timeout_s=timeout),
        Endpoint(f"http://127.0.0.1:{refused.getsockname()[1]}/", timeout_s=timeout),
        Endpoint(switch.url, timeout_s=timeout),
    ]
    runner = ProbeRunner(endpoints, interval_s=0.05, mode="thread")
    previous = sys.getswitchinterval()
    try:
        with runner:
            time.sleep(0.3)
            sys.setswitchinterval(0.1)
            with busy_thread():
                time.sleep(1.5)
            sys.setswitchinterval(previous)
            time.sleep(0.5)
    finally:
        sys.setswitchinterval(previous)
        hang.close()
        refused.close()
    late = runner.lateness()
    # the loop saw itself held off for most of a 100 ms switch interval (tolerance: 50 ms)
    assert late.max_s is not None and late.max_s >= 0.05, late
    start = runner.grid_start_mono
    assert start is not None
    assert runner.worst_lag(start, time.monotonic()) == pytest.approx(late.max_s)
    hung, refusals, good = (runner.samples(e.url) for e in endpoints)
    for sample in [*hung, *refusals, *good]:
        assert sample.starved == is_starved(sample.error, sample.lag_s, timeout), sample
    assert {s.error for s in hung} == {ERROR_TIMEOUT}
    assert any(s.starved for s in hung), max(s.lag_s for s in hung)
    # a refusal is the server's answer, never starved; but a loop held off long enough turns a
    # refusal it has not read yet into a timeout of its own making: those must all be starved
    assert any(s.error == ERROR_REFUSED for s in refusals)
    assert not any(s.starved for s in refusals if s.error == ERROR_REFUSED)
    false_timeouts = [s for s in refusals if s.error == ERROR_TIMEOUT]
    assert all(s.starved for s in false_timeouts), [s.lag_s for s in false_timeouts]
    assert {s.error for s in refusals} <= {ERROR_REFUSED, ERROR_TIMEOUT}
    assert not any(s.bad for s in good)  # the healthy endpoint: no counted failure at all
    stats = runner.stats()
    assert sum(s.starved_samples for s in stats) == late.starved_samples > 0
    # a starved sample is neither good nor bad: availability counts only the others
    hung_stats = stats[0]
    assert hung_stats.availability == 0.0 or hung_stats.availability is None
    assert stats[0].lag_max_ms is not None and stats[0].lag_max_ms >= 50


# -- the wire format ----------------------------------------------------------------------------


def test_frames_survive_any_chunking() -> None:
    rng = random.Random(5)
    batches = []
    for b in range(20):
        batches.append(
            Batch(
                samples=[
                    SampleRecord(
                        i % 3, b * 10 + i, 1.0 + i, 1.01 + i, 1.7e9, 1.2 + i, 200, 0, 0.003
                    )
                    for i in range(rng.randrange(0, 12))
                ],
                heartbeats=[(2.0 + b, 2.001 + b)],
                ticks=[(3.0 + b, 3.002 + b, b % 2)],
                resolutions=[Resolution(4.0 + b, "app.test", "127.0.0.1", 2)] if b % 5 == 0 else [],
            )
        )
    frames = [encode_batch(b) for b in batches]
    stream = b"".join([encode_message(Started(1.0, 42)), *frames, encode_message(Ended())])
    reader = FrameReader()
    items: list[object] = []
    offset = 0
    while offset < len(stream):
        size = rng.randrange(1, 97)
        items.extend(reader.feed(stream[offset : offset + size]))
        offset += size
    assert reader.pending == 0
    assert items[0] == Started(1.0, 42) and items[-1] == Ended()
    got = [item for item in items if isinstance(item, Batch)]
    for field in ("samples", "heartbeats", "ticks", "resolutions"):
        assert [x for b in got for x in getattr(b, field)] == [
            x for b in batches for x in getattr(b, field)
        ], field


def test_a_corrupt_config_fails_the_start_with_the_workers_reason() -> None:
    worker = WorkerProcess(object(), lambda batch: None)  # type: ignore[arg-type]
    with pytest.raises(DrillError, match="failed to start: probe worker: bad config"):
        worker.start()
    assert worker.pid is not None
    _wait_gone(worker.pid)
    assert not worker.alive


# -- DNS through the ClientSpec -----------------------------------------------------------------


def test_a_client_spec_resolves_through_its_dns_server_in_the_worker(
    switch: ListenSwitch,
) -> None:
    name = "app.probe-worker.test"
    dns = FailoverDns("127.0.0.1", 0, name, {"primary": "127.0.0.1", "dr": "127.0.2.2"}, ttl=0)
    dns.start()
    switch.serve()
    try:
        spec = ClientSpec(resolver=("127.0.0.1", dns.port), fresh_connections=True)
        endpoint = Endpoint(f"http://{name}:{switch.port}/")
        runner = ProbeRunner([endpoint], interval_s=0.05, client=spec)
        with runner:
            time.sleep(0.5)
    finally:
        dns.stop()
    got = runner.samples(endpoint.url)
    assert got and all(s.ok for s in got), {s.error for s in got}
    answers = runner.resolutions()
    # TTL 0: no sample uses an answer from before it was sent. Each lookup is answered within
    # its sample's flight, by a query of its own or by one still in flight that it shares
    # (samples that resolve at once share a query: with this process's GIL held elsewhere the
    # DNS server answered late, and 11 samples made 10 queries)
    assert all(any(s.send_mono <= a.mono <= s.done_mono for a in answers) for s in got)
    assert {a.ip for a in answers} == {"127.0.0.1"}
    assert [a.mono for a in answers] == sorted(a.mono for a in answers)
    assert [s.ip for s in runner.dns_switches(name)] == ["127.0.0.1"]  # one address, no switch


# -- the worker's lifetime ----------------------------------------------------------------------


def test_stop_leaves_no_process_and_reports_every_sample(switch: ListenSwitch) -> None:
    switch.serve()
    runner = ProbeRunner([Endpoint(switch.url)], interval_s=0.02)
    runner.start()
    pid = runner.worker_pid
    assert pid is not None and not _gone(pid)
    assert runner.startup_s is not None and runner.startup_s > 0
    time.sleep(0.3)
    runner.stop()
    assert _gone(pid)  # stop() waited for it: no process left behind
    samples = runner.samples(switch.url)
    assert samples and all(s.ok for s in samples)
    assert runner.sample_count(switch.url) == len(samples)
    start = runner.grid_start_mono
    assert start is not None
    # every grid point up to the last one sent is there, none left in flight
    assert [round((s.due_mono - start) / 0.02) for s in samples] == list(range(len(samples)))


def test_the_worker_outlives_the_thread_that_started_the_runner(switch: ListenSwitch) -> None:
    """The kernel's parent-death signal follows the *thread* that spawned a child: a runner
    started from a short-lived thread must not lose its worker when that thread ends."""
    switch.serve()
    runner = ProbeRunner([Endpoint(switch.url)], interval_s=0.02)
    starter = threading.Thread(target=runner.start)
    starter.start()
    starter.join()
    try:
        before = runner.sample_count(switch.url)
        time.sleep(0.4)
        assert runner.running
        assert runner.sample_count(switch.url) > before
    finally:
        runner.stop()


def test_the_worker_dies_with_its_parent(tmp_path: Path, switch: ListenSwitch) -> None:
    switch.serve()
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys, time\n"
        "from drdrill.probes.http import Endpoint, ProbeRunner\n"
        f"runner = ProbeRunner([Endpoint({switch.url!r})], interval_s=0.05)\n"
        "runner.start()\n"
        "print(runner.worker_pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert not _gone(pid)
        os.kill(parent.pid, signal.SIGKILL)  # no stop(), no atexit: only the kernel is left
        parent.wait()
        _wait_gone(pid)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_stop_from_an_outage_callback(switch: ListenSwitch, mode: ProbeMode) -> None:
    """A callback may stop its own runner (it runs on the loop's or the reader's thread)."""
    runners: list[ProbeRunner] = []
    dead = Endpoint(switch.url)  # bound, never listening: refused
    runner = ProbeRunner(
        [dead], interval_s=0.02, mode=mode, on_event=lambda event: runners[0].stop()
    )
    runners.append(runner)
    runner.start()
    pid = runner.worker_pid
    deadline = time.monotonic() + 15  # only so that a broken stop cannot hang the test
    while runner.running:
        assert time.monotonic() < deadline, "the callback's stop() did not stop the loop"
        time.sleep(0.02)
    runner.stop()
    assert runner.outages(dead.url)[0].first_error == ERROR_REFUSED
    if pid is not None:
        _wait_gone(pid)


def test_the_death_signal_is_armed() -> None:
    """What the worker does first: ask for SIGKILL when its parent goes (read back with
    PR_GET_PDEATHSIG in a process of its own, so as not to arm it in the test runner)."""
    code = (
        "import ctypes\n"
        "from drdrill.probes.worker import die_with_parent\n"
        "die_with_parent()\n"
        "sig = ctypes.c_int(0)\n"
        "ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)\n"
        "print(sig.value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == signal.SIGKILL


def test_closing_the_control_pipe_stops_the_worker_in_order(switch: ListenSwitch) -> None:
    switch.serve()
    batches: list[Batch] = []
    config = WorkerConfig((Endpoint(switch.url),), 0.02, ClientSpec(), os.getpid())
    worker = WorkerProcess(config, batches.append)
    grid_start = worker.start()
    assert worker.startup_s is not None
    time.sleep(0.2)
    worker.stop(1.0)
    assert worker.ended_in_order and worker.returncode == 0 and not worker.alive
    records = [r for b in batches for r in b.samples]
    assert sorted(r.row for r in records) == list(range(len(records)))  # none lost
    ticks = [t for b in batches for t in b.ticks]
    assert ticks[0][0] == grid_start and len(ticks) == len(records)
    assert [b for b in batches if b.heartbeats]


def test_worker_config_round_trips_through_pickle() -> None:
    import pickle

    config = WorkerConfig(
        (Endpoint("http://127.0.0.1:1/x", name="x", timeout_s=0.3),),
        0.05,
        ClientSpec(resolver=("127.0.0.1", 53), resolver_source_ip="127.0.0.9"),
        os.getpid(),
    )
    back = pickle.loads(pickle.dumps(config))
    assert back == config
    assert back.endpoints[0].check.passes(200, b"")
