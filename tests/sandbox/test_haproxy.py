"""The HAProxy ALB on a real ``haproxy -db`` process, with real stdlib HTTP backends on loopback:
targets come UP after ``rise`` checks, a killed one is marked DOWN after ``fall`` checks (checked
against the kill time and the ground-truth log), removal, no target -> 503, crash and restart,
freeze and thaw; HAProxy's own log lines (syslog) as ground truth."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from drdrill.sandbox.haproxy import HAProxyError, HAProxyLB, parse_server_state, unavailable_reason
from drdrill.sandbox.mariadb import free_port
from drdrill.sandbox.settings import Timings
from drdrill.sandbox.syslog_receiver import SyslogMessage, SyslogReceiver
from drdrill.sandbox.truth import TruthLog

_REASON = unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

INTERVAL = 0.2
RISE = 2
FALL = 2
TIMINGS = Timings(health_check_interval=INTERVAL, healthy_threshold=RISE, unhealthy_threshold=FALL)
#: HAProxy cannot mark a target DOWN before `fall` failed checks `inter` apart, nor (on a busy
#: 2-core machine) much later than that plus a second.
DOWN_TOLERANCE = FALL * INTERVAL + 1.0
UP_TOLERANCE = RISE * INTERVAL + 1.0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy's checks reset the connection once they have the status line


class Backend:
    """A task stand-in: answers every GET with 200 and its name (HTTP/1.0: one request a
    connection, so a stopped backend refuses at once)."""

    def __init__(self, name: str) -> None:
        self.name = name
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.alive = True

    def kill(self) -> None:
        """Close the listening socket: new connections are refused."""
        if self.alive:
            self._server.shutdown()
            self._server.server_close()
            self.alive = False


@pytest.fixture
def backends() -> Iterator[Callable[[str], Backend]]:
    made: list[Backend] = []

    def make(name: str) -> Backend:
        backend = Backend(name)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.kill()


@pytest.fixture
def truth(tmp_path: Path) -> TruthLog:
    return TruthLog(tmp_path / "truth.jsonl")


@pytest.fixture
def lb(tmp_path: Path, truth: TruthLog) -> Iterator[HAProxyLB]:
    balancer = HAProxyLB(
        "alb-test", "127.0.0.1", free_port(), tmp_path / "run", TIMINGS, truth, max_servers=4
    )
    try:
        balancer.start()
        yield balancer
    finally:
        balancer.kill()


def get(lb: HAProxyLB, timeout: float = 2.0) -> tuple[int, str]:
    """One GET / on a new connection: (status, body)."""
    conn = http.client.HTTPConnection(lb.bind_ip, lb.port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Poll until true; return when it became true (monotonic). Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout:.1f} s")
        time.sleep(step)


def states(lb: HAProxyLB) -> dict[str, str]:
    return {server.server_id: server.state for server in lb.servers()}


def test_config_carries_the_timings_and_alb_like_settings(lb: HAProxyLB) -> None:
    text = lb.config_path.read_text()
    assert "default-server check inter 200ms fall 2 rise 2" in text
    assert "option httpchk GET /health-simple.php" in text
    assert "retries 0" in text
    assert "server-template task 1-4 " in text
    assert lb.is_running() and lb.pid is not None
    assert lb.servers() == [] and lb.healthy_count() == 0


def test_added_targets_come_up_after_rise_checks_and_serve(
    lb: HAProxyLB, backends: Callable[[str], Backend], truth: TruthLog
) -> None:
    a, b = backends("task-a"), backends("task-b")
    added = time.monotonic()
    assert lb.add_server("task-a", "127.0.0.1", a.port) == 1
    assert lb.add_server("task-b", "127.0.0.1", b.port) == 2
    # Like a new ALB target: not in service before passing `rise` checks.
    assert set(states(lb).values()) <= {"DOWN"}
    up = wait_for(lambda: lb.healthy_count() == 2, timeout=UP_TOLERANCE + 2)
    print(f"time to UP after add: {up - added:.3f} s (rise {RISE} x inter {INTERVAL} s)")
    assert up - added <= UP_TOLERANCE
    servers = lb.servers()
    assert [(s.server_id, s.slot, s.addr, s.check_status) for s in servers] == [
        ("task-a", 1, f"127.0.0.1:{a.port}", "L7OK"),
        ("task-b", 2, f"127.0.0.1:{b.port}", "L7OK"),
    ]
    bodies = [get(lb) for _ in range(6)]
    assert {status for status, _ in bodies} == {200}
    assert {body for _, body in bodies} == {"task-a", "task-b"}  # round robin
    # the watcher polls every 50 ms: its events may come just after healthy_count() saw UP
    wait_for(lambda: len(truth.since(added, "lb_target_healthy")) == 2, timeout=1.0)
    healthy = truth.since(added, "lb_target_healthy")
    assert sorted(e.attrs["server"] for e in healthy) == ["task-a", "task-b"]
    for event in healthy:
        assert event.component == "alb-test" and event.attrs["lb"] == "alb-test"
        assert event.mono - added <= UP_TOLERANCE
        # known within one poll period: the previous poll saw it not yet UP
        assert event.attrs["prev_poll_mono"] is None or event.attrs["prev_poll_mono"] < event.mono


def test_killed_target_marked_down_within_fall_checks_traffic_continues(
    lb: HAProxyLB, backends: Callable[[str], Backend], truth: TruthLog
) -> None:
    a, b = backends("task-a"), backends("task-b")
    lb.add_server("task-a", "127.0.0.1", a.port)
    lb.add_server("task-b", "127.0.0.1", b.port)
    wait_for(lambda: lb.healthy_count() == 2, timeout=UP_TOLERANCE + 2)

    killed = time.monotonic()
    a.kill()
    failures = successes = 0
    while states(lb)["task-a"] != "DOWN":
        status, _ = get(lb)
        if status == 200:
            successes += 1
        else:
            assert status in (502, 503)  # retries 0: a dead target in rotation fails fast
            failures += 1
        assert time.monotonic() - killed < DOWN_TOLERANCE + 2, "task-a never marked DOWN"
    down = time.monotonic()
    print(
        f"time to DOWN after kill: {down - killed:.3f} s (fall {FALL} x inter {INTERVAL} s); "
        f"{failures} failed and {successes} good requests meanwhile"
    )
    assert (FALL - 1) * INTERVAL * 0.9 <= down - killed <= DOWN_TOLERANCE
    # once DOWN, every request goes to the survivor
    assert [get(lb) for _ in range(10)] == [(200, "task-b")] * 10
    assert lb.healthy_count() == 1

    wait_for(lambda: bool(truth.since(killed, "lb_target_unhealthy")), timeout=1.0)
    [event] = truth.since(killed, "lb_target_unhealthy")
    assert event.attrs["server"] == "task-a" and event.attrs["addr"] == f"127.0.0.1:{a.port}"
    print(f"truth lb_target_unhealthy at kill + {event.mono - killed:.3f} s")
    assert (FALL - 1) * INTERVAL * 0.9 <= event.mono - killed <= DOWN_TOLERANCE
    assert event.attrs["prev_poll_mono"] is not None
    assert event.mono - event.attrs["prev_poll_mono"] <= 0.5  # the poll period, with slack


def test_remove_drain_and_no_target_gives_503(
    lb: HAProxyLB, backends: Callable[[str], Backend], truth: TruthLog
) -> None:
    a, b = backends("task-a"), backends("task-b")
    lb.add_server("task-a", "127.0.0.1", a.port)
    lb.add_server("task-b", "127.0.0.1", b.port)
    wait_for(lambda: lb.healthy_count() == 2, timeout=UP_TOLERANCE + 2)

    lb.drain("task-a")
    assert states(lb) == {"task-a": "DRAIN", "task-b": "UP"}
    assert lb.healthy_count() == 1
    assert {get(lb)[1] for _ in range(4)} == {"task-b"}

    lb.remove_server("task-b")
    assert [s.server_id for s in lb.servers()] == ["task-a"]
    assert get(lb)[0] == 503  # the only target is draining
    lb.remove_server("task-a")
    assert lb.servers() == []
    assert get(lb)[0] == 503
    with pytest.raises(HAProxyError, match="no target 'task-a'"):
        lb.remove_server("task-a")

    # a freed slot is reused, and the new target starts DOWN again (not UP from its past)
    assert lb.add_server("task-c", "127.0.0.1", b.port) == 1
    assert states(lb) == {"task-c": "DOWN"}
    wait_for(lambda: lb.healthy_count() == 1, timeout=UP_TOLERANCE + 2)
    assert get(lb) == (200, "task-b")
    events = [e.event for e in truth.read() if e.event.startswith("lb_target_")]
    assert events.count("lb_target_removed") == 2 and "lb_target_draining" in events


def test_slot_and_id_errors(lb: HAProxyLB, backends: Callable[[str], Backend]) -> None:
    a = backends("task-a")
    for i in range(4):
        lb.add_server(f"t{i}", "127.0.0.1", a.port)
    with pytest.raises(HAProxyError, match="no free slot"):
        lb.add_server("t4", "127.0.0.1", a.port)
    lb.remove_server("t2")
    with pytest.raises(HAProxyError, match="already registered"):
        lb.add_server("t1", "127.0.0.1", a.port)
    assert lb.add_server("t5", "127.0.0.1", a.port) == 3
    with pytest.raises(HAProxyError, match="failed"):
        lb.command("set server app/task99 state ready")


def test_kill_then_restart_re_adds_targets(
    lb: HAProxyLB, backends: Callable[[str], Backend], truth: TruthLog
) -> None:
    a = backends("task-a")
    lb.add_server("task-a", "127.0.0.1", a.port)
    lb.add_server("task-gone", "127.0.0.1", a.port)
    wait_for(lambda: lb.healthy_count() == 2, timeout=UP_TOLERANCE + 2)
    pid = lb.pid

    lb.kill()
    assert not lb.is_running() and lb.pid is None
    with pytest.raises(ConnectionRefusedError):
        get(lb)
    assert lb.socket_path.exists()  # left behind by the dead process: must not block a start

    with pytest.raises(HAProxyError, match="admin socket"):  # nobody to register with
        lb.add_server("task-x", "127.0.0.1", a.port)
    lb.remove_server("task-gone")  # removing from a dead LB forgets it: not re-added below

    lb.restart()
    assert lb.is_running() and lb.pid != pid
    assert states(lb) == {"task-a": "DOWN"}  # a new LB checks its targets afresh
    wait_for(lambda: lb.healthy_count() == 1, timeout=UP_TOLERANCE + 2)
    assert get(lb) == (200, "task-a")

    lb.stop()
    assert not lb.is_running()
    lb.start()  # a plain start forgets the targets: re-adding is the caller's job
    assert lb.servers() == []
    names = [e.event for e in truth.read() if not e.event.startswith("lb_target_")]
    assert names == ["lb_started", "lb_killed", "lb_started", "lb_stopped", "lb_started"]


def test_freeze_makes_requests_hang_and_thaw_restores(
    lb: HAProxyLB, backends: Callable[[str], Backend]
) -> None:
    a = backends("task-a")
    lb.add_server("task-a", "127.0.0.1", a.port)
    wait_for(lambda: lb.healthy_count() == 1, timeout=UP_TOLERANCE + 2)

    lb.freeze()
    try:
        assert lb.is_frozen and lb.is_running()
        started = time.monotonic()
        with pytest.raises((TimeoutError, socket.timeout)):
            get(lb, timeout=0.5)  # the kernel accepts, nobody answers: a black hole
        assert time.monotonic() - started >= 0.45
        with pytest.raises(HAProxyError):
            lb.command("show info", timeout=0.3)
    finally:
        lb.thaw()
    assert not lb.is_frozen
    assert get(lb) == (200, "task-a")


def test_port_zero_picks_a_port_and_a_busy_port_fails_with_the_log(
    tmp_path: Path, backends: Callable[[str], Backend]
) -> None:
    with HAProxyLB("alb-auto", "127.0.0.1", 0, tmp_path / "a", TIMINGS) as auto:
        auto.start()
        assert auto.port > 0 and get(auto)[0] == 503
        taken = HAProxyLB("alb-clash", "127.0.0.1", auto.port, tmp_path / "b", TIMINGS)
        with pytest.raises(HAProxyError, match="exited with status"):
            taken.start(timeout=5)
        assert not taken.is_running()


# --- HAProxy's own log, received as syslog ------------------------------------------------------

#: HAProxy stamps a line when its event loop handles the check; the poller's window around it is
#: taken on this process's clock. Slack for the wall-to-monotonic conversion and scheduling.
LOG_SLACK_S = 0.005


@pytest.fixture
def logged_lb(tmp_path: Path, truth: TruthLog) -> Iterator[tuple[HAProxyLB, SyslogReceiver]]:
    """A load balancer that sends its own log to a receiver on loopback."""
    holder: list[HAProxyLB] = []

    def on_message(message: SyslogMessage) -> None:
        if holder and message.app == holder[0].name:
            holder[0].record_log(message.message, message.wall, message.received_mono)

    receiver = SyslogReceiver("127.0.0.1", 0, on_message)
    receiver.start()
    balancer = HAProxyLB(
        "alb-logged",
        "127.0.0.1",
        free_port(),
        tmp_path / "logged",
        TIMINGS,
        truth,
        max_servers=4,
        log_to=receiver.address,
    )
    holder.append(balancer)
    try:
        balancer.start()
        yield balancer, receiver
    finally:
        balancer.kill()
        receiver.stop()


def server_states(truth: TruthLog, since: float, slot: int) -> list[tuple[str, str | None, float]]:
    return [
        (e.attrs["state"], e.attrs["server"], e.mono)
        for e in truth.since(since, "haproxy_server_state")
        if e.attrs["slot"] == slot
    ]


def test_haproxy_logs_up_and_down_itself_within_the_pollers_windows(
    logged_lb: tuple[HAProxyLB, SyslogReceiver],
    backends: Callable[[str], Backend],
    truth: TruthLog,
) -> None:
    """A new target's UP and a killed one's DOWN come from HAProxy's own log lines, stamped with
    HAProxy's time, which falls inside the runtime-API poller's window for the same change."""
    lb, receiver = logged_lb
    a = backends("task-a")
    added = time.monotonic()
    slot = lb.add_server("task-a", "127.0.0.1", a.port)
    wait_for(lambda: bool(truth.since(added, "lb_target_healthy")), timeout=UP_TOLERANCE + 2)
    wait_for(lambda: ("UP", "task-a") in [s[:2] for s in server_states(truth, added, slot)], 2.0)
    [healthy] = truth.since(added, "lb_target_healthy")
    [up] = [e for e in truth.since(added, "haproxy_server_state") if e.attrs["state"] == "UP"]
    assert up.attrs["server"] == "task-a" and up.attrs["haproxy_server"] == f"app/task{slot}"
    assert up.attrs["reason"] == "Layer7 check passed"
    assert up.attrs["stamped"] == "haproxy syslog timestamp"
    window = (healthy.attrs["prev_poll_mono"], healthy.mono)
    print(f"HAProxy UP at {up.mono:.4f}, poller window [{window[0]:.4f}, {window[1]:.4f}]")
    assert window[0] - LOG_SLACK_S <= up.mono <= window[1] + LOG_SLACK_S
    # registration passes through DOWN (CLI, leaving drain) before UP, all before the UP
    downs = [s for s in server_states(truth, added, slot) if s[0] == "DOWN"]
    assert downs and all(mono <= up.mono for _, _, mono in downs)

    killed = time.monotonic()
    a.kill()
    wait_for(lambda: bool(truth.since(killed, "lb_target_unhealthy")), DOWN_TOLERANCE + 2)
    wait_for(lambda: any(s[0] == "DOWN" for s in server_states(truth, killed, slot)), 2.0)
    [unhealthy] = truth.since(killed, "lb_target_unhealthy")
    [down] = [e for e in truth.since(killed, "haproxy_server_state") if e.attrs["slot"] == slot]
    assert down.attrs["state"] == "DOWN" and down.attrs["server"] == "task-a"
    assert down.attrs["reason"] == "Layer4 connection problem"
    print(f"HAProxy DOWN at kill + {down.mono - killed:.3f} s")
    assert killed <= down.mono
    assert unhealthy.attrs["prev_poll_mono"] - LOG_SLACK_S <= down.mono
    assert down.mono <= unhealthy.mono + LOG_SLACK_S
    assert receiver.received >= 4


def test_a_deregistered_target_goes_down_for_maintenance(
    logged_lb: tuple[HAProxyLB, SyslogReceiver],
    backends: Callable[[str], Backend],
    truth: TruthLog,
) -> None:
    lb, _ = logged_lb
    a = backends("task-a")
    slot = lb.add_server("task-a", "127.0.0.1", a.port)
    wait_for(lambda: lb.healthy_count() == 1, timeout=UP_TOLERANCE + 2)
    asked = time.monotonic()
    lb.remove_server("task-a")
    removed = time.monotonic()
    wait_for(lambda: bool(server_states(truth, asked, slot)), timeout=2.0)
    [(state, server, mono)] = server_states(truth, asked, slot)
    [event] = truth.since(asked, "haproxy_server_state")
    assert (state, server, event.attrs["reason"]) == ("DOWN", "task-a", "maintenance")
    # HAProxy handled the command while we waited for its answer
    assert asked - LOG_SLACK_S <= mono <= removed + LOG_SLACK_S


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Server app/task3 is UP, reason: Layer7 check passed, code: 200, check duration: 1ms.",
            ("app", 3, "UP", "Layer7 check passed"),
        ),
        (
            'Server app/task1 is DOWN, reason: Layer4 timeout, info: "x", check duration: 501ms.',
            ("app", 1, "DOWN", "Layer4 timeout"),
        ),
        (
            "Server app/task2 is DOWN (leaving forced drain).",
            ("app", 2, "DOWN", "leaving forced drain"),
        ),
        (
            "Server app/task2 is DOWN, changed from CLI. 0 active and 0 backup servers left.",
            ("app", 2, "DOWN", "changed from CLI"),
        ),
        ("Server app/task4 is going DOWN for maintenance.", ("app", 4, "DOWN", "maintenance")),
        ("Server app/task1 is UP/DRAIN (leaving forced maintenance).", None),
        ("Server app/task1 was DOWN and now enters maintenance.", None),
        ("backend app has no server available!", None),
    ],
)
def test_server_state_lines_are_parsed(
    message: str, expected: tuple[str, int, str, str] | None
) -> None:
    line = parse_server_state(message)
    got = None if line is None else (line.backend, line.slot, line.state, line.reason)
    assert got == expected


def test_the_syslog_receiver_takes_a_free_port_when_allowed() -> None:
    got: list[SyslogMessage] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        taken = holder.getsockname()[1]
        with pytest.raises(OSError):
            SyslogReceiver("127.0.0.1", taken, got.append).start()
        receiver = SyslogReceiver("127.0.0.1", taken, got.append)
        receiver.start(any_port_if_taken=True)
        try:
            assert receiver.address[1] != taken
            line = b"<133>1 2026-11-30T00:39:48.196350+00:00 - alb-x 7 - - Server app/task1 is UP."
            holder.sendto(line, receiver.address)
            wait_for(lambda: bool(got), timeout=2.0)
        finally:
            receiver.stop()
    [message] = got
    assert (message.app, message.message) == ("alb-x", "Server app/task1 is UP.")
    assert message.wall == pytest.approx(1795999188.196350)
