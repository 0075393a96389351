"""HTTP probes against real loopback servers: checks, error classes, outage bounds, overlap.

Bound tolerance: each boundary is a bound ``[low, high]`` (for an outage start, from the send of
the last good sample to the completion of the first bad one; for its end, from the send of the
last bad sample to the completion of the first good one), and the server's true switch must lie
in it. The server reads the monotonic clock (system-wide, the same as the probes') next to the
switch, which itself takes a little time (closing a socket, joining its thread), so we allow
10 ms on either side: ``low - 10 ms <= true <= high + 10 ms``. The widths must stay honest but
useful: at most two intervals plus the sample's latency (its timeout for a hang) plus 50 ms.
"""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import pytest

from drdrill.errors import InputError
from drdrill.probes.http import (
    Bound,
    Check,
    ClientSpec,
    Endpoint,
    HttpClient,
    OutageEvent,
    ProbeMode,
    ProbeRunner,
    _Columns,
)
from drdrill.probes.sampler import SampleRecord
from drdrill.probes.stats import (
    ERROR_CHECK_FAILED,
    ERROR_REFUSED,
    ERROR_RESET,
    ERROR_TIMEOUT,
)

pytestmark = pytest.mark.slow  # probes timed through real outages (~1-3 s each)

SLACK_S = 0.010
BODY = {"data": {"status": "ok", "version": 3, "up": True}, "items": [{"name": "db", "ok": True}]}

Mode = Literal["ok", "refuse", "503", "hang"]


class _Handler(BaseHTTPRequestHandler):
    server: _OwnedServer

    def do_GET(self) -> None:
        owner = self.server.owner
        owner.requests += 1
        path = self.path.split("?", 1)[0]  # queries only make URLs distinct
        if owner.mode == "hang" or path == "/hang":
            # accept and never answer; let go only when the server closes
            owner.release.wait()
            self.close_connection = True
            return
        if owner.mode == "503" or path == "/503":
            self._reply(503, b"unavailable")
        elif path == "/json":
            self._reply(200, json.dumps(BODY).encode())
        elif path == "/notjson":
            self._reply(200, b"status: ok, build 1234")
        else:
            self._reply(200, b"ok")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _OwnedServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connects in a burst: a 1 s SYN retry
    owner: FlakyServer


class FlakyServer:
    """A stdlib HTTP server in a thread, on 127.0.0.1, whose outages are switched on and off.

    ``down()``/``up()`` return the true monotonic time of the switch: for ``refuse`` the
    listening socket is shut down (the kernel refuses connections from that instant) and
    reopened on the same port; ``503``/``hang`` flip the mode every handler reads. Requests hung
    in an outage are never answered.
    """

    def __init__(self) -> None:
        self.mode: Mode = "ok"
        self.requests = 0
        self.release = threading.Event()
        self.port = 0
        self._server = self._listen()

    def _listen(self) -> _OwnedServer:
        server = _OwnedServer(("127.0.0.1", self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        return server

    def url(self, path: str = "/") -> str:
        """The URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def down(self, mode: Mode) -> float:
        """Start an outage; return its true monotonic start."""
        if mode == "refuse":
            t = time.monotonic()
            # shutdown() on a listening socket makes Linux refuse connections at once
            self._server.socket.shutdown(socket.SHUT_RDWR)
            self._server.shutdown()
            self._server.server_close()
        else:
            t = time.monotonic()
        self.mode = mode
        return t

    def up(self) -> float:
        """End the outage; return its true monotonic end."""
        if self.mode == "refuse":
            self._server = self._listen()
            t = time.monotonic()
        else:
            t = time.monotonic()
        self.mode = "ok"
        return t

    def wait_requests(self, n: int, timeout_s: float = 5.0) -> None:
        """Block until ``n`` requests arrived (the probes are running)."""
        deadline = time.monotonic() + timeout_s
        while self.requests < n:
            assert time.monotonic() < deadline, f"only {self.requests} requests came"
            time.sleep(0.005)

    def close(self) -> None:
        """Stop serving and let the hung handlers go."""
        self.release.set()
        if self.mode != "refuse":
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def server() -> Iterator[FlakyServer]:
    flaky = FlakyServer()
    try:
        yield flaky
    finally:
        flaky.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- checks (pure) ------------------------------------------------------------------------------


def test_check_status_set() -> None:
    check = Check(status=frozenset({200, 204}))
    assert check.passes(204, b"")
    assert not check.passes(503, b"")
    assert Check().passes(200, b"anything") and not Check().passes(201, b"")


def test_check_body_contains_and_regex() -> None:
    assert Check(contains="ok").passes(200, b"all ok")
    assert not Check(contains="ok").passes(200, b"all fine")
    assert Check(regex=r"build \d+").passes(200, b"status ok, build 1234")
    assert not Check(regex=r"^build").passes(200, b"status ok, build 1234")
    # a body check never rescues a bad status
    assert not Check(contains="ok").passes(500, b"ok")


def test_check_json_field() -> None:
    body = json.dumps(BODY).encode()
    assert Check(json_field=("data.status", "ok")).passes(200, body)
    assert Check(json_field=("data.version", 3)).passes(200, body)
    assert Check(json_field=("items.0.name", "db")).passes(200, body)
    assert not Check(json_field=("data.status", "down")).passes(200, body)
    assert not Check(json_field=("data.missing", None)).passes(200, body)
    assert not Check(json_field=("items.5.name", "db")).passes(200, body)
    # JSON true is not the number 1
    assert Check(json_field=("data.up", True)).passes(200, body)
    assert not Check(json_field=("data.up", 1)).passes(200, body)
    assert not Check(json_field=("data.status", "ok")).passes(200, b"<html>not json")


def test_check_rejects_bad_definitions() -> None:
    with pytest.raises(InputError, match="does not compile"):
        Check(regex="(")
    with pytest.raises(InputError, match="not an HTTP status"):
        Check(status=frozenset({200, 999}))
    with pytest.raises(InputError, match="at least one"):
        Check(status=frozenset())


def test_endpoint_and_runner_validation() -> None:
    def factory(limit: int) -> HttpClient:
        raise AssertionError("never built")

    assert Endpoint("http://127.0.0.1:1/").name == "http://127.0.0.1:1/"
    assert Endpoint("https://example.org/h", name="front").name == "front"
    with pytest.raises(InputError, match="not an http"):
        Endpoint("ftp://127.0.0.1/")
    with pytest.raises(InputError, match="has no host"):
        Endpoint("http:///path-only")
    with pytest.raises(InputError, match="timeout"):
        Endpoint("http://127.0.0.1/", timeout_s=0)
    endpoint = Endpoint("http://127.0.0.1:1/")
    with pytest.raises(InputError, match="minimum"):
        ProbeRunner([endpoint], interval_s=0.005)
    with pytest.raises(InputError, match="twice"):
        ProbeRunner([endpoint, endpoint])
    with pytest.raises(InputError, match="recovery_samples"):
        ProbeRunner([endpoint], recovery_samples=0)
    with pytest.raises(InputError, match="no endpoint"):
        ProbeRunner([])
    # a Python callable cannot cross to the worker process: it means thread mode
    assert ProbeRunner([endpoint], client_factory=factory).mode == "thread"
    assert ProbeRunner([endpoint]).mode == "process"
    with pytest.raises(InputError, match="thread mode only"):
        ProbeRunner([endpoint], client_factory=factory, mode="process")
    with pytest.raises(InputError, match="not both"):
        ProbeRunner([endpoint], client=ClientSpec(), client_factory=factory)
    with pytest.raises(InputError, match="without a resolver"):
        ClientSpec(resolver_source_ip="127.0.0.2")


def test_sample_store_is_compact() -> None:
    """20 endpoints x 50 Hz x 10 min = 600,000 samples fit in a few tens of MB."""
    columns = [_Columns() for _ in range(20)]
    for column in columns:
        for k in range(30_000):
            t = k * 0.02
            column.put(SampleRecord(0, k, t, t, 1.7e9 + t, t + 0.002, 200, 0, 0.0), False)
    size = sum(
        sys.getsizeof(getattr(column, name))
        for column in columns
        for name in ("due", "mono", "epoch", "latency", "lag", "status", "error", "starved")
    )
    assert size < 32 * 1024 * 1024, f"{size / 2**20:.1f} MiB for 600,000 samples"


def test_sample_store_fills_rows_out_of_order() -> None:
    """A hanging request completes after later ones: its row stays pending until it does."""
    column = _Columns()
    column.put(SampleRecord(0, 1, 0.1, 0.1, 1.1, 0.102, 200, 0, 0.0), False)
    assert column.ready(1) and not column.ready(0)
    column.put(SampleRecord(0, 0, 0.0, 0.0, 1.0, 0.25, 0, 1, 0.2), True)
    first, second = column.sample(0), column.sample(1)
    assert first.error == ERROR_TIMEOUT and first.starved and first.lag_s == 0.2
    assert first.done_mono == pytest.approx(0.25)
    assert second.ok and second.status == 200 and second.done_mono == pytest.approx(0.102)


# -- against a real server ----------------------------------------------------------------------


def run_for(runner: ProbeRunner, seconds: float) -> None:
    """Run ``runner`` for about ``seconds``, then stop it (waiting for requests in flight)."""
    with runner:
        time.sleep(seconds)


def test_checks_on_real_responses(server: FlakyServer) -> None:
    good = [
        Endpoint(server.url("/json"), check=Check(json_field=("data.status", "ok"))),
        Endpoint(server.url("/notjson"), check=Check(contains="status: ok")),
        Endpoint(server.url("/notjson?re"), check=Check(regex=r"build \d{4}$")),
        Endpoint(server.url("/503"), check=Check(status=frozenset({503}))),
    ]
    bad = [
        Endpoint(server.url("/json?x"), check=Check(json_field=("data.status", "down"))),
        Endpoint(server.url("/notjson?x"), check=Check(contains="status: down")),
        Endpoint(server.url("/notjson?re2"), check=Check(regex=r"^build")),
        Endpoint(server.url("/503?x")),
    ]
    runner = ProbeRunner([*good, *bad], interval_s=0.05)
    run_for(runner, 0.3)
    for endpoint in good:
        got = runner.samples(endpoint.url)
        assert len(got) >= 3
        assert all(s.ok for s in got), endpoint
    for endpoint in bad:
        got = runner.samples(endpoint.url)
        assert len(got) >= 3
        assert {s.error for s in got} == {ERROR_CHECK_FAILED}, endpoint
    assert {s.status for s in runner.samples(server.url("/json?x"))} == {200}
    assert {s.status for s in runner.samples(server.url("/503?x"))} == {503}


def test_error_classes_refused_timeout_reset(server: FlakyServer) -> None:
    resetter = socket.socket()
    resetter.bind(("127.0.0.1", 0))
    resetter.listen(64)
    stop = threading.Event()

    def reset_all() -> None:
        # accept and close with a RST (linger 0) before any answer
        resetter.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = resetter.accept()
            except TimeoutError:
                continue
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.recv(1024)
            conn.close()

    thread = threading.Thread(target=reset_all, daemon=True)
    thread.start()
    refused = Endpoint(f"http://127.0.0.1:{closed_port()}/")
    hanging = Endpoint(server.url("/hang"), timeout_s=0.15)
    reset = Endpoint(f"http://127.0.0.1:{resetter.getsockname()[1]}/")
    runner = ProbeRunner([refused, hanging, reset], interval_s=0.05)
    try:
        run_for(runner, 0.3)
    finally:
        stop.set()
        thread.join()
        resetter.close()
    assert {s.error for s in runner.samples(refused.url)} == {ERROR_REFUSED}
    timeouts = runner.samples(hanging.url)
    assert {s.error for s in timeouts} == {ERROR_TIMEOUT}
    assert all(s.latency_s >= 0.15 for s in timeouts)
    assert {s.error for s in runner.samples(reset.url)} == {ERROR_RESET}
    assert all(s.status is None for s in runner.samples(reset.url))


def assert_contains(bound: Bound | None, true: float, what: str) -> None:
    """``true`` within ``bound`` widened by the slack on either side."""
    assert bound is not None, f"{what}: no bound"
    assert bound.contains(true, SLACK_S), (
        f"{what}: truth {(true - bound.low_mono) * 1000:.1f} ms after the lower end of a "
        f"{bound.uncertainty_s * 1000:.1f} ms bound"
    )


def assert_as_narrow_as_the_loop_allows(
    runner: ProbeRunner, url: str, bound: Bound, grid_s: float, what: str
) -> None:
    """``bound`` is no wider than the probe grid makes it (``grid_s``), but for what the probe
    loop's own records account for.

    A loop kept off the CPU (in thread mode, anything else in this process holding the GIL:
    CI's full run met it three times in a row, and a thread calling ``sum(range(5_500_000))``
    every half second brings it on at will) sets aside the timeouts in flight as starved, and a
    bound then reaches back past them to the last sample that counts. So the bound may widen
    by the stretch of starved samples inside it, and by the loop's lateness there, both as the
    runner recorded them; any other widening fails.
    """
    every = runner.samples(url)
    (closing,) = [s for s in every if s.done_mono == bound.high_mono]
    starved = [
        s.send_mono for s in every if s.starved and bound.low_mono < s.send_mono < closing.send_mono
    ]
    set_aside = max(starved, default=bound.low_mono) - bound.low_mono
    late = runner.worst_lag(bound.low_mono, bound.high_mono)
    assert bound.uncertainty_s <= grid_s + set_aside + late, (
        f"{what}: bound {bound.uncertainty_s * 1000:.0f} ms wide, against {grid_s * 1000:.0f} ms "
        f"of grid, {set_aside * 1000:.0f} ms of {len(starved)} starved samples and "
        f"{late * 1000:.0f} ms of loop lateness"
    )


@pytest.mark.parametrize("probe_mode", ["process", "thread"])
@pytest.mark.parametrize("mode", ["refuse", "503", "hang"])
def test_outage_boundaries_match_the_server(
    server: FlakyServer, mode: Mode, probe_mode: ProbeMode
) -> None:
    interval, timeout = 0.05, 0.25
    endpoint = Endpoint(server.url("/"), timeout_s=timeout)
    events: list[OutageEvent] = []
    runner = ProbeRunner(
        [endpoint],
        interval_s=interval,
        recovery_samples=3,
        on_event=events.append,
        mode=probe_mode,
    )
    with runner:
        server.wait_requests(4)
        true_start = server.down(mode)
        time.sleep(0.6)
        true_end = server.up()
        time.sleep(0.4)
    (outage,) = runner.outages(endpoint.url)
    assert_contains(outage.start_bound, true_start, "start")
    assert_contains(outage.end_bound, true_end, "end")
    assert outage.start_bound is not None and outage.end_bound is not None
    # a hang is only known by its timeout; a refusal or a 503 at once
    start_latency = timeout if mode == "hang" else 0.0
    assert_as_narrow_as_the_loop_allows(
        runner, endpoint.url, outage.start_bound, 2 * interval + start_latency + 0.05, "start"
    )
    assert_as_narrow_as_the_loop_allows(
        runner, endpoint.url, outage.end_bound, 2 * interval + 0.05, "end"
    )
    assert outage.duration_s is not None and outage.duration_uncertainty_s is not None
    assert abs(outage.duration_s - (true_end - true_start)) <= (
        outage.duration_uncertainty_s + 2 * SLACK_S
    )
    expected_error = {"refuse": ERROR_REFUSED, "503": ERROR_CHECK_FAILED, "hang": ERROR_TIMEOUT}
    assert outage.first_error == expected_error[mode]
    # the live events told the same story, start first
    assert [e.kind for e in events] == ["started", "ended"]
    assert events[1].outage == outage
    assert events[0].outage.start_mono == outage.start_mono and events[0].outage.is_open
    # the same window is what stats() and the recovery queries report
    (stats,) = runner.stats()
    assert stats.outages == (outage,)
    assert stats.availability is not None and 0 < stats.availability < 100
    back = runner.first_good_after(endpoint.url, true_start, 3)
    every = runner.samples(endpoint.url)
    assert back is not None
    run = [s for s in every if s.send_mono >= back.send_mono and not s.starved][:3]
    assert run[0] == back and all(s.ok for s in run)
    # the end is the earliest answer among the run's confirming samples: one sent later may
    # answer first (seen with this process's GIL held elsewhere: the first took 55 ms)
    assert outage.end_mono == min(s.done_mono for s in run)
    after_end = runner.samples(endpoint.url, since_mono=true_end)
    assert after_end == every[len(every) - len(after_end) :]
    assert every[len(every) - len(after_end) - 1].send_mono < true_end <= after_end[0].send_mono
    since = runner.all_good_since(true_start, 3)
    assert since is not None and since.bound == outage.end_bound
    # the old names read the upper bound, so that callers building an event stay honest
    assert since.send_mono == since.mono == outage.end_mono
    # every sample carries its completion and its loop's lateness
    assert all(s.done_mono >= s.send_mono >= s.due_mono for s in every)
    assert all(s.lag_s >= 0 for s in every)


def test_a_hanging_endpoint_delays_no_sample(server: FlakyServer) -> None:
    interval = 0.05
    hanging = Endpoint(server.url("/hang"), timeout_s=1.0)
    healthy = Endpoint(server.url("/"))
    runner = ProbeRunner([hanging, healthy], interval_s=interval)
    run_for(runner, 1.3)
    hung = runner.samples(hanging.url)
    good = runner.samples(healthy.url)
    t0 = runner.grid_start_mono
    assert t0 is not None
    # every grid point sent a sample to both endpoints, on the grid, none skipped
    assert runner.skipped_ticks == 0
    assert len(good) == len(hung) >= 20
    assert [round((s.due_mono - t0) / interval) for s in good] == list(range(len(good)))
    assert all(s.ok for s in good)
    for run in (good, hung):
        gaps = [b.send_mono - a.send_mono for a, b in itertools.pairwise(run)]
        assert max(gaps) < 2 * interval, f"a sample waited {max(gaps) * 1000:.0f} ms"
    # the hanging requests really overlapped: each held its own connection for the full timeout,
    # and stop() waited for them rather than cancel them
    assert {s.error for s in hung} == {ERROR_TIMEOUT}
    assert all(s.latency_s >= 1.0 for s in hung)
    first = hung[0]
    overlapping = [s for s in hung if s.send_mono < first.send_mono + first.latency_s]
    assert len(overlapping) >= 15


def test_a_failing_callback_does_not_stop_the_probes(server: FlakyServer) -> None:
    calls: list[str] = []

    def explode(event: OutageEvent) -> None:
        calls.append(event.kind)
        raise RuntimeError("reporter broke")

    endpoint = Endpoint(server.url("/"))
    runner = ProbeRunner([endpoint], interval_s=0.02, recovery_samples=1, on_event=explode)
    with runner:
        server.wait_requests(3)
        server.down("503")
        time.sleep(0.1)
        server.up()
        time.sleep(0.15)
    assert calls == ["started", "ended"]
    assert runner.samples(endpoint.url)[-1].ok


def test_lifecycle_errors() -> None:
    class Broken(Exception):
        pass

    def broken_factory(limit: int) -> HttpClient:
        raise Broken(f"no client for {limit} connections")

    runner = ProbeRunner([Endpoint("http://127.0.0.1:1/")], client_factory=broken_factory)
    with pytest.raises(Broken, match="no client for 12 connections"):
        runner.start()
    assert not runner.running
    runner.stop()  # harmless after a failed start

    for mode in ("process", "thread"):
        ok = ProbeRunner(
            [Endpoint(f"http://127.0.0.1:{closed_port()}/")], interval_s=0.05, mode=mode
        )
        with ok:
            assert ok.running
            with pytest.raises(RuntimeError, match="already started"):
                ok.start()
        assert not ok.running
        ok.stop()  # idempotent
        with pytest.raises(InputError, match="not probed"):
            ok.samples("http://elsewhere/")
