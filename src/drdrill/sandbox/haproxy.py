"""The sandbox's ALB: one HAProxy child process a region, fed through its runtime API.

Each :class:`HAProxyLB` runs ``haproxy -db`` (foreground, one process, one thread) with its own
run directory (config, admin socket, console log). The backend is a ``server-template`` of
``max_servers`` slots that start in maintenance; :meth:`HAProxyLB.add_server` fills a free slot
through the admin socket, like registering a task in a target group.

What was measured on HAProxy 2.6 and is encoded here:

- a server that leaves forced maintenance comes back *UP at once*, with no health check. An ALB
  target starts "initial" and needs ``healthy_threshold`` passing checks. So a slot goes
  maint -> drain (no new traffic) -> ``health down`` -> ready: it is then DOWN and needs ``rise``
  passing checks (``health down`` is ignored while in maintenance);
- with ``retries 0`` and no ``redispatch``, a request sent to a dead target that is still in
  rotation fails at once with 503 (connection refused) or 502, as on an ALB;
- servers in maintenance are not health-checked, so free slots cost nothing;
- SIGTERM leaves the admin socket file behind: it is removed before every start.

Ground truth: a watcher thread polls ``show stat`` every ``poll_interval`` (50 ms) and appends
``lb_target_healthy`` / ``lb_target_unhealthy`` when a target goes UP / DOWN. HAProxy does not
say when, so the change happened between the previous poll (attribute ``prev_poll_mono``) and
the event's ``mono``: the truth time is known within one poll period (plus one admin-socket
round trip, ~1 ms). DRAIN counts as still healthy (it is UP but takes no new traffic);
maintenance is no health change. Life-cycle events: ``lb_started``, ``lb_stopped``,
``lb_killed``, ``lb_frozen``, ``lb_thawed``, ``lb_target_added``, ``lb_target_removed``,
``lb_target_draining``; every event has ``lb=<name>`` and is logged with component ``<name>``.

HAProxy's own record: with ``log_to`` set, HAProxy sends its log to that UDP syslog address in
RFC 5424 format (``log-tag`` is the load balancer's name; traffic is not logged, only the
backend's messages). Its timestamps have microseconds (HAProxy 2.6). A receiver hands each
message to :meth:`HAProxyLB.record_log`, which appends ``haproxy_server_state`` {lb, server,
slot, haproxy_server, state: UP|DOWN, reason, message} for the lines "Server app/taskN is UP"
/ "is DOWN" / "is going DOWN for maintenance", stamped with HAProxy's own time. Measured:
registering a slot logs DOWN (changed from CLI), DOWN (leaving forced drain), then UP once
``rise`` checks pass; a dead target logs DOWN with the check's reason; a deregistered one that
was UP "is going DOWN for maintenance" (reason ``maintenance``).

Nothing here imports pytest: the sandbox supervisor uses it as well as the tests. One owner
drives the life cycle; the runtime-API methods may be called from any thread. The ``haproxy``
process is tied to the process that started it (:mod:`drdrill.sandbox.reaper`): killed by that
process's reaper should it die without stopping it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drdrill.errors import DrillError
from drdrill.sandbox.children import Child
from drdrill.sandbox.mariadb import free_port
from drdrill.sandbox.settings import Timings
from drdrill.sandbox.truth import TruthLog, mono_of_wall

#: Where Debian and the CI image install HAProxy.
HAPROXY = "/usr/sbin/haproxy"
#: The backend's name in the config and in runtime-API commands.
BACKEND = "app"
#: Slots are ``task1`` .. ``task<max_servers>``.
SLOT_PREFIX = "task"
#: What the ALB health check asks for.
HEALTH_PATH = "/health-simple.php"
#: A slot's address while it is free (the discard port; never checked: slots wait in maint).
_PARKED_ADDR = ("127.0.0.1", 9)
#: AF_UNIX paths are limited to 108 bytes on Linux, terminator included.
_MAX_SOCKET_PATH = 107
_LOG_TAIL_LINES = 8
#: the black-hole map's key for "every client" (IPv4; the sandbox is on 127.0.0.0/8)
_EVERY_CLIENT = "0.0.0.0/0"
#: What HAProxy prints when its listening port is taken.
_PORT_TAKEN = "cannot bind socket"
#: Runtime-API replies that mean the command failed (successful ``set`` commands say nothing,
#: or a note such as "no need to change the addr, port changed from ...").
_API_ERROR = re.compile(
    r"^(No such|Unknown command|Require|Invalid|Can't|Cannot|Permission denied|"
    r"Not enough|Failed|Unexpected|'set server)",
    re.IGNORECASE,
)
#: HAProxy's message when a server changes state ("is UP/DRAIN" is a registration's passage
#: through drain, not a state of service: the look-ahead leaves it out)
_SERVER_STATE = re.compile(
    rf"^Server (?P<backend>[^/\s]+)/(?P<slot_name>{SLOT_PREFIX}(?P<slot>\d+)) "
    r"(?P<verb>is going|is) (?P<state>UP|DOWN)(?![/\w])(?P<rest>.*)$"
)
#: slot owners remembered, most recent last
_OWNER_HISTORY = 8


class HAProxyError(DrillError):
    """An HAProxy instance that could not be started, stopped or driven."""


class HAProxyStartError(HAProxyError):
    """An HAProxy instance that exited or did not become ready while starting."""


def unavailable_reason(haproxy: str = HAPROXY) -> str | None:
    """Why an HAProxy load balancer cannot be started here, or ``None`` when it can."""
    if not os.access(haproxy, os.X_OK):
        return f"haproxy binary {haproxy} not found or not executable (install haproxy)"
    return None


@dataclass(frozen=True)
class LbServer:
    """One registered target as HAProxy sees it now."""

    server_id: str
    slot: int
    ip: str
    port: int
    #: ``UP``, ``DOWN``, ``DRAIN``, ``MAINT``, ``NOLB`` (the first word of HAProxy's status)
    state: str
    #: HAProxy's raw status: ``UP 1/2`` is UP with one failed check, ``DOWN 1/2`` the converse
    status: str
    #: the last check's result: ``L7OK``, ``L4CON`` (refused), ``L4TOUT``, ``INI``, ...
    check_status: str

    @property
    def healthy(self) -> bool:
        """In service: UP (a draining target takes no new requests)."""
        return self.state == "UP"

    @property
    def addr(self) -> str:
        """``ip:port``."""
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class _Target:
    server_id: str
    slot: int
    ip: str
    port: int
    drained: bool = False

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServerStateLine:
    """One "Server app/taskN is UP|DOWN ..." message of HAProxy's log."""

    backend: str
    slot: int
    state: str  # "UP" or "DOWN"
    reason: str
    message: str


def parse_server_state(message: str) -> ServerStateLine | None:
    """The server state change a log message reports, or None for any other message."""
    text = message.strip()
    match = _SERVER_STATE.match(text)
    if match is None:
        return None
    rest = match.group("rest").strip().rstrip(".")
    if match.group("verb") == "is going":
        reason = "maintenance"
    elif rest.startswith(", reason:"):
        reason = rest.removeprefix(", reason:").split(",", 1)[0].strip()
    elif rest.startswith(", changed from CLI"):
        reason = "changed from CLI"
    elif rest.startswith("(") and ")" in rest:
        reason = rest[1 : rest.index(")")]
    else:
        reason = ""
    return ServerStateLine(
        match.group("backend"), int(match.group("slot")), match.group("state"), reason, text
    )


@dataclass(frozen=True)
class _StatRow:
    status: str
    check_status: str
    addr: str


_live: weakref.WeakSet[HAProxyLB] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """Load balancers still running when the interpreter exits are killed, not orphaned."""
    for lb in list(_live):
        with contextlib.suppress(Exception):
            lb.kill()


def _state_of(status: str) -> str:
    """``UP 1/2`` -> ``UP``, ``MAINT (resolution)`` -> ``MAINT``, ``no check`` -> ``UP``."""
    if status == "no check":
        return "UP"  # checks off: HAProxy routes to it
    word = status.split(" ", 1)[0]
    return word.split("(", 1)[0] or "UNKNOWN"


def _duration_ms(seconds: float) -> str:
    return f"{max(10, round(seconds * 1000))}ms"


class HAProxyLB:
    """One region's load balancer: an ``haproxy -db`` child process on ``bind_ip:port``."""

    def __init__(
        self,
        name: str,
        bind_ip: str,
        port: int,
        run_dir: Path,
        timings: Timings,
        truth: TruthLog | None = None,
        max_servers: int = 20,
        *,
        haproxy: str = HAPROXY,
        poll_interval: float = 0.05,
        log_to: tuple[str, int] | None = None,
    ) -> None:
        """Nothing runs until :meth:`start`; ``port=0`` picks a free port on ``bind_ip``;
        ``log_to``: the UDP syslog address HAProxy sends its own log to."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise HAProxyError(f"load balancer name {name!r} must be letters, digits, '_.-'")
        if not 1 <= max_servers <= 1000:
            raise HAProxyError(f"load balancer '{name}': max_servers {max_servers} not in 1..1000")
        if not 0 <= port <= 65535:
            raise HAProxyError(f"load balancer '{name}': port {port} out of range")
        self.name = name
        self.bind_ip = bind_ip
        self._auto_port = port == 0
        self.port = port or free_port(bind_ip)
        self.run_dir = Path(run_dir)
        self.timings = timings
        self.truth = truth
        self.max_servers = max_servers
        self.haproxy = haproxy
        self.poll_interval = poll_interval
        self.log_to = log_to
        self.config_path = self.run_dir / f"{name}.cfg"
        self.socket_path = self.run_dir / f"{name}.sock"
        self.log_path = self.run_dir / f"{name}.log"
        #: client addresses whose connections are silently dropped (a region cut off from its
        #: clients); kept in the file too, so that a restarted balancer stays cut off
        self.blackhole_map = self.run_dir / f"{name}-blackhole.map"
        #: whether its clients are cut off (:meth:`cut_off_clients`): status asks it tens of
        #: times a second, so it is kept here rather than read back from the map
        self.cut_off = False
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise HAProxyError(f"{self.label}: admin socket path too long: {self.socket_path}")
        self._child = Child(
            lambda: self.label,
            (self.log_path,),
            tail_heading="haproxy log tail",
            error=HAProxyError,
            start_error=HAProxyStartError,
        )
        self._ever_ready = False
        # registry: slot -> target; guarded by _lock, as is _health
        self._lock = threading.Lock()
        self._targets: dict[int, _Target] = {}
        self._health: dict[str, bool] = {}  # server_id -> last known healthy (UP)
        # slot -> [(wall time it was given, server_id)]: who a log line about a slot is about
        self._owners: dict[int, list[tuple[float, str]]] = {}
        self._watcher: threading.Thread | None = None
        self._stop_watch = threading.Event()
        _live.add(self)

    def __repr__(self) -> str:
        return f"<HAProxyLB {self.name} {self.address} pid={self.pid}>"

    def __enter__(self) -> HAProxyLB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    # - identity -

    @property
    def address(self) -> str:
        """``bind_ip:port``."""
        return f"{self.bind_ip}:{self.port}"

    @property
    def url(self) -> str:
        """``http://bind_ip:port``."""
        return f"http://{self.address}"

    @property
    def label(self) -> str:
        """How messages name it: ``haproxy 'alb-primary' on 127.0.1.2:28080``."""
        return f"haproxy '{self.name}' on {self.address}"

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        return self._child.pid

    @property
    def is_frozen(self) -> bool:
        """Stopped with SIGSTOP and not yet continued."""
        return self._child.is_frozen

    # - life cycle -

    def is_running(self) -> bool:
        """The child process exists and is not a zombie (a frozen one counts)."""
        return self._child.is_running()

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start HAProxy and wait until its port and admin socket answer.

        No-op while it runs. A fresh HAProxy has every slot free: targets registered before a
        crash are forgotten (:meth:`restart` re-adds them).
        """
        if self.is_running():
            return
        self._child.reap()
        with self._lock:
            self._targets.clear()
            self._health.clear()
        self._spawn()
        try:
            self._child.wait_ready(
                self._answers, timeout=timeout, interval=0.02, on_exit=self._exited_while_starting
            )
        except HAProxyError:
            self._child.kill()
            raise
        self._ever_ready = True
        self._start_watcher()
        self._record("lb_started", pid=self.pid, addr=self.address)

    def stop(self, timeout: float = 5.0, grace: float = 2.0) -> None:
        """Graceful stop (SIGUSR1: finish requests in flight, up to ``grace`` s), then SIGTERM,
        then SIGKILL; returns once the process is reaped."""
        self._stop_watcher()
        if not self.is_running():
            self._child.reap()
            return
        if self._child.frozen:
            self.thaw()  # a stopped process would keep the signal pending forever
        if not self._child.stop(((signal.SIGUSR1, grace), (signal.SIGTERM, timeout))):
            self._child.kill()
            self._record("lb_killed", reason="did not stop")
            raise HAProxyError(f"{self.label} did not stop within {grace + timeout:.1f} s; killed")
        self._record("lb_stopped")

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: the load balancer vanishes (a region outage); returns once it is reaped."""
        self._stop_watcher()
        if self._child.kill(timeout):
            self._record("lb_killed")

    def freeze(self, timeout: float = 5.0) -> None:
        """SIGSTOP: connections are accepted by the kernel and then hang (a black hole).

        Returns once the kernel reports it stopped. The watcher's polls time out meanwhile and
        no target events are logged until :meth:`thaw`.
        """
        self._child.freeze(timeout)
        self._record("lb_frozen")

    def thaw(self, timeout: float = 5.0) -> None:
        """SIGCONT: undo :meth:`freeze`; returns once it runs again."""
        self._child.thaw(timeout)
        self._record("lb_thawed")

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (if running), start, and re-add every target it knew, in the same slots.

        Re-added targets start DOWN and need ``healthy_threshold`` passing checks again, like
        targets of a new load balancer. Works after :meth:`kill` too.
        """
        with self._lock:
            known = sorted(self._targets.values(), key=lambda t: t.slot)
        self.stop(timeout)
        self.start(timeout)
        for target in known:
            self._register(target.server_id, target.ip, target.port, slot=target.slot)
            if target.drained:
                self.drain(target.server_id)

    # - targets -

    def add_server(self, server_id: str, ip: str, port: int) -> int:
        """Register a target in a free slot; it starts DOWN and is checked. Returns the slot."""
        return self._register(server_id, ip, port, slot=None)

    def remove_server(self, server_id: str) -> None:
        """Deregister a target at once (maintenance, slot parked and freed).

        On a load balancer that is not running (killed) the target is only forgotten, so that
        :meth:`restart` does not bring it back; a frozen one raises (the admin socket hangs).
        """
        target = self._target(server_id)
        if self.is_running():
            srv = self._slot_name(target.slot)
            self.command(f"set server {srv} state maint")
            self.command(f"set server {srv} addr {_PARKED_ADDR[0]} port {_PARKED_ADDR[1]}")
        with self._lock:
            self._targets.pop(target.slot, None)
            self._health.pop(server_id, None)
        self._record("lb_target_removed", server=server_id, addr=target.addr, slot=target.slot)

    def drain(self, server_id: str) -> None:
        """Stop sending new requests to a target; requests in flight finish."""
        target = self._target(server_id)
        self.command(f"set server {self._slot_name(target.slot)} state drain")
        with self._lock:
            if self._targets.get(target.slot) == target:
                self._targets[target.slot] = _Target(
                    target.server_id, target.slot, target.ip, target.port, drained=True
                )
        self._record("lb_target_draining", server=server_id, addr=target.addr, slot=target.slot)

    def servers(self) -> list[LbServer]:
        """Every registered target with its current state, by slot."""
        rows = self._stat_rows()
        with self._lock:
            targets = sorted(self._targets.values(), key=lambda t: t.slot)
        result = []
        for target in targets:
            row = rows.get(target.slot)
            status = row.status if row is not None else "UNKNOWN"
            result.append(
                LbServer(
                    server_id=target.server_id,
                    slot=target.slot,
                    ip=target.ip,
                    port=target.port,
                    state=_state_of(status),
                    status=status,
                    check_status=row.check_status if row is not None else "",
                )
            )
        return result

    def healthy_count(self) -> int:
        """How many targets are UP (draining ones are not counted: they take no new traffic)."""
        return sum(1 for server in self.servers() if server.healthy)

    def command(self, line: str, timeout: float = 2.0) -> str:
        """Send one runtime-API command and return the reply; an error reply raises."""
        reply = self._send(line, timeout)
        first = reply.strip().splitlines()[0] if reply.strip() else ""
        if _API_ERROR.match(first):
            raise HAProxyError(f"{self.label}: '{line}' failed: {first}")
        return reply

    def cut_off_clients(self) -> None:
        """Every client's connection is dropped silently from now on (health checks, which the
        balancer sends, go on); the balancer's own state is untouched."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.blackhole_map.write_text(f"{_EVERY_CLIENT} 1\n")
        self.cut_off = True
        if self.is_running() and not self.is_frozen:
            self.command(f"add map {self.blackhole_map} {_EVERY_CLIENT} 1")

    def rejoin_clients(self) -> None:
        """Undo :meth:`cut_off_clients` (idempotent)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.blackhole_map.write_text("")
        self.cut_off = False
        if self.is_running() and not self.is_frozen:
            self.command(f"clear map {self.blackhole_map}")

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of HAProxy's console output (warnings, server state changes)."""
        return self._child.log_tail(lines)

    def owner_at(self, slot: int, wall: float) -> str | None:
        """The target a slot held at a wall-clock time (the last one given it by then)."""
        with self._lock:
            owners = list(self._owners.get(slot, []))
        held = [server_id for since, server_id in owners if since <= wall]
        return held[-1] if held else None

    def record_log(
        self, message: str, wall: float | None, received_mono: float, **attrs: object
    ) -> bool:
        """Append ``haproxy_server_state`` for one of HAProxy's own log messages, stamped with
        HAProxy's time (``wall``, epoch seconds; the receipt when HAProxy gave none), with
        ``attrs`` added (the region). False (nothing appended) for a message that is not a
        server state change."""
        line = parse_server_state(message)
        if line is None or self.truth is None:
            return False
        stamped = "haproxy syslog timestamp" if wall is not None else "syslog receipt"
        mono = mono_of_wall(wall) if wall is not None else received_mono
        at = wall if wall is not None else time.time() - (time.monotonic() - received_mono)
        self.truth.append_at(
            "haproxy_server_state",
            self.name,
            mono,
            datetime.fromtimestamp(at, UTC),
            lb=self.name,
            server=self.owner_at(line.slot, at),
            slot=line.slot,
            haproxy_server=f"{line.backend}/{SLOT_PREFIX}{line.slot}",
            state=line.state,
            reason=line.reason,
            message=line.message,
            stamped=stamped,
            logged_mono=time.monotonic(),
            **attrs,
        )
        return True

    # - internals: targets -

    def _slot_name(self, slot: int) -> str:
        return f"{BACKEND}/{SLOT_PREFIX}{slot}"

    def _target(self, server_id: str) -> _Target:
        with self._lock:
            for target in self._targets.values():
                if target.server_id == server_id:
                    return target
        raise HAProxyError(f"{self.label}: no target '{server_id}'")

    def _register(self, server_id: str, ip: str, port: int, slot: int | None) -> int:
        if not 1 <= port <= 65535:
            raise HAProxyError(f"{self.label}: target '{server_id}' port {port} out of range")
        with self._lock:
            if any(t.server_id == server_id for t in self._targets.values()):
                raise HAProxyError(f"{self.label}: target '{server_id}' already registered")
            if slot is None:
                free = [s for s in range(1, self.max_servers + 1) if s not in self._targets]
                if not free:
                    raise HAProxyError(
                        f"{self.label}: no free slot for '{server_id}' "
                        f"(max_servers {self.max_servers})"
                    )
                slot = free[0]
            # reserved now; the watcher ignores the slot's transient DRAIN until it is DOWN
            target = _Target(server_id, slot, ip, port)
            self._targets[slot] = target
            owners = self._owners.setdefault(slot, [])
            owners.append((time.time(), server_id))
            del owners[:-_OWNER_HISTORY]
        srv = self._slot_name(slot)
        try:
            self.command(f"set server {srv} addr {ip} port {port}")
            # Leaving maintenance straight to ready would be UP unchecked; via drain and a
            # forced "health down" it is DOWN and must pass `rise` checks, like a new target.
            self.command(f"set server {srv} state drain")
            self.command(f"set server {srv} health down")
            self.command(f"set server {srv} state ready")
        except HAProxyError:
            with self._lock:
                self._targets.pop(slot, None)
            with contextlib.suppress(HAProxyError):
                self.command(f"set server {srv} state maint")
            raise
        self._record("lb_target_added", server=server_id, addr=target.addr, slot=slot)
        return slot

    def _stat_rows(self, timeout: float = 2.0) -> dict[int, _StatRow]:
        """``show stat`` of the backend's servers: slot -> row."""
        reply = self._send(f"show stat {BACKEND} 4 -1", timeout)
        lines = reply.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise HAProxyError(f"{self.label}: unexpected 'show stat' reply: {reply[:200]!r}")
        header = lines[0][2:].split(",")
        try:
            i_name = header.index("svname")
            i_status = header.index("status")
            i_check = header.index("check_status")
            i_addr = header.index("addr")
        except ValueError as exc:
            raise HAProxyError(f"{self.label}: 'show stat' lacks a column: {exc}") from exc
        rows: dict[int, _StatRow] = {}
        for line in lines[1:]:
            fields = line.split(",")
            if len(fields) <= max(i_name, i_status, i_check, i_addr):
                continue
            name = fields[i_name]
            if not name.startswith(SLOT_PREFIX) or not name[len(SLOT_PREFIX) :].isdigit():
                continue
            rows[int(name[len(SLOT_PREFIX) :])] = _StatRow(
                fields[i_status], fields[i_check], fields[i_addr]
            )
        return rows

    def _send(self, line: str, timeout: float) -> str:
        """One command a connection: HAProxy answers and closes (non-interactive mode)."""
        if "\n" in line:
            raise HAProxyError(f"{self.label}: one command at a time: {line!r}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:  # refused, missing socket, timeout (frozen)
            raise HAProxyError(f"{self.label}: admin socket: '{line}': {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    # - internals: ground truth -

    def _record(self, event: str, **attrs: object) -> None:
        if self.truth is not None:
            self.truth.append(event, self.name, lb=self.name, **attrs)

    def _start_watcher(self) -> None:
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch, args=(self._stop_watch,), name=f"{self.name}-watch", daemon=True
        )
        self._watcher.start()

    def _stop_watcher(self) -> None:
        self._stop_watch.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(5.0)
        self._watcher = None

    def _watch(self, stop: threading.Event) -> None:
        prev_poll: float | None = None
        while not stop.wait(self.poll_interval):
            try:
                rows = self._stat_rows(timeout=max(0.5, self.poll_interval))
            except HAProxyError:
                continue  # frozen, or dying: nothing observed
            polled = time.monotonic()
            if not stop.is_set():
                self._observe(rows, prev_poll)
            prev_poll = polled

    def _observe(self, rows: dict[int, _StatRow], prev_poll: float | None) -> None:
        events: list[tuple[str, _Target, str]] = []
        with self._lock:
            for slot, target in self._targets.items():
                row = rows.get(slot)
                # a row polled before the slot changed hands describes the previous target
                if row is None or row.addr != target.addr:
                    continue
                state = _state_of(row.status)
                last = self._health.get(target.server_id)
                if state == "UP" and last is not True:
                    self._health[target.server_id] = True
                    events.append(("lb_target_healthy", target, row.status))
                elif state == "DOWN" and last is True:
                    self._health[target.server_id] = False
                    events.append(("lb_target_unhealthy", target, row.status))
        for event, target, status in events:
            self._record(
                event,
                server=target.server_id,
                addr=target.addr,
                slot=target.slot,
                status=status,
                prev_poll_mono=prev_poll,
            )

    # - internals: process -

    def _write_config(self) -> None:
        t = self.timings
        self.blackhole_map.touch()  # HAProxy refuses a missing map; a cut-off one stays cut off
        inter = _duration_ms(t.health_check_interval)
        logging = ""
        if self.log_to is not None:
            # HAProxy's own record of its servers' states (ground truth); RFC 5424 stamps
            # carry microseconds. Traffic is not logged (the frontend says "no log").
            logging = (
                f"    log {self.log_to[0]}:{self.log_to[1]} len 4096 format rfc5424 local0 info\n"
                f"    log-tag {self.name}\n"
            )
        text = f"""\
# written by drdrill: {self.label}
global
{logging}    stats socket {self.socket_path} mode 600 level admin
    stats timeout 10s
    nbthread 1
    maxconn 4096
    # no SO_REUSEPORT: a second balancer (an orphan) on the same port must fail, not share it
    noreuseport
    hard-stop-after 10s

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout http-request 5s
    timeout http-keep-alive 5s
    # like an ALB: a request sent to a dead target still in rotation fails at once
    retries 0
{"    log global" if self.log_to is not None else ""}

frontend fe
    bind {self.bind_ip}:{self.port}
    # cut off from its clients: their connections are accepted by the kernel, then dropped
    # without a word (no RST, no answer), as across a network partition
    tcp-request connection silent-drop if {{ src,map_ip({self.blackhole_map}) -m found }}
{"    no log" if self.log_to is not None else ""}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET {HEALTH_PATH}
    http-check expect status 200
    default-server check inter {inter} fall {t.unhealthy_threshold} rise {t.healthy_threshold}
    server-template {SLOT_PREFIX} 1-{self.max_servers} {_PARKED_ADDR[0]}:{_PARKED_ADDR[1]} disabled
"""
        self.config_path.write_text(text)

    def _spawn(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # A socket file left by a killed process must not block or confuse the start.
        self.socket_path.unlink(missing_ok=True)
        self._write_config()
        self._child.spawn([self.haproxy, "-db", "-f", str(self.config_path)], self.log_path)

    def _exited_while_starting(self, returncode: int, tail: str) -> str | None:
        """A start that lost its auto-picked port (its very first) moves to a new one, once."""
        if self._auto_port and not self._ever_ready and _PORT_TAKEN in tail:
            self._auto_port = False  # once: a second clash is not bad luck
            self.port = free_port(self.bind_ip)
            self._spawn()
            return None
        return ""

    def _answers(self) -> str | None:
        """None once the port accepts connections and the admin socket answers, else why not."""
        try:
            with socket.create_connection((self.bind_ip, self.port), timeout=0.5):
                pass
            self._send("show info", timeout=1.0)
        except (OSError, HAProxyError) as exc:
            return str(exc)
        return None
