"""Real MariaDB instances on loopback: a primary, a GTID read replica, and a safe promotion.

Each :class:`MariaDBServer` is one ``mariadbd`` child process with its own run directory
(config file, data directory, socket, pid file, error log). Data directories are copied from a
template installed once a process (``mariadb-install-db`` takes ~0.5 s, a copy a few ms).
The process, a temporary run directory and the template are tied to the process that made them
(:mod:`drdrill.sandbox.reaper`): should it die without cleaning up (``kill -9``), its reaper
kills the server and removes them.

The helpers here encode what was measured on MariaDB 10.11:

- replication uses GTID (``MASTER_USE_GTID=slave_pos``) with ``MASTER_CONNECT_RETRY=1``: the
  default of 60 s made a replica take a minute to reconnect after a primary restart;
- the application connects as a non-root ``app`` user: ``read_only`` does not stop root, and a
  root write on the replica broke GTID replication;
- promotion stops the IO thread, waits for the SQL thread to apply everything already received,
  and only then resets the replica: a plain ``RESET SLAVE ALL`` threw away relay-log events that
  had arrived (1-9 acknowledged rows lost instead of 0-1).

Nothing here imports pytest: the sandbox supervisor uses it as well as the tests. A server object
is not thread-safe; one owner drives its life cycle.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pymysql
import pymysql.cursors

from drdrill.errors import DrillError
from drdrill.sandbox import reaper
from drdrill.sandbox.children import Child, format_tail
from drdrill.sandbox.dbclient import OFFER_TLS

#: Where Debian and the CI image install the server binaries.
MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"

#: Who may connect: ``root`` over the unix socket, the others over TCP with a password.
User = Literal["root", "app", "repl"]

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,32}$")
#: AF_UNIX paths are limited to 108 bytes on Linux, terminator included.
_MAX_SOCKET_PATH = 107
_ERROR_TAIL_LINES = 8
#: What mariadbd logs when its TCP port is taken.
_PORT_TAKEN = "Address already in use"
#: How often a start that dies from a signal (mariadbd 10.11 segfaults now and then in crash
#: recovery after a kill -9 under writes) is tried again before the start fails.
_START_CRASH_RETRIES = 2


@dataclass(frozen=True)
class StartCrash:
    """A ``mariadbd`` that died from a signal while starting, and was started again."""

    at: float  # wall clock (time.time())
    signal: int
    error_log_tail: str


class MariaDBError(DrillError):
    """A MariaDB instance that could not be installed, started, stopped or queried."""


class MariaDBStartError(MariaDBError):
    """A MariaDB instance that exited or did not become ready while starting."""


class ReplicationError(MariaDBError):
    """Replication that could not be set up, did not catch up, or could not be promoted."""


def unavailable_reason(mariadbd: str = MARIADBD, install_db: str = INSTALL_DB) -> str | None:
    """Why real MariaDB instances cannot be started here, or ``None`` when they can."""
    for path in (mariadbd, install_db):
        if not os.access(path, os.X_OK):
            return f"mariadb binary {path} not found or not executable (install mariadb-server)"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (bind port 0, then release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class MariaDBConfig:
    """How to run one instance; ``port=0`` picks a free port when the server object is made."""

    name: str = "mariadb"
    host: str = "127.0.0.1"
    port: int = 0
    server_id: int = 1
    #: None: a new temporary directory, removed by :meth:`MariaDBServer.cleanup`.
    run_dir: Path | None = None
    #: Initial ``read_only``; :func:`attach_replica` and :func:`promote_replica` change it.
    read_only: bool = False
    buffer_pool_size: str = "64M"
    log_file_size: str = "8M"
    gtid_strict_mode: bool = True
    #: Seconds without data before a replica's IO thread reconnects (server default 60).
    slave_net_timeout_s: int | None = None
    database: str = "app"
    app_user: str = "app"
    app_password: str = "drdrill-app"
    repl_user: str = "repl"
    repl_password: str = "drdrill-repl"
    mariadbd: str = MARIADBD
    install_db: str = INSTALL_DB
    #: More ``key=value`` lines for the ``[mysqld]`` group, written last (they win).
    extra_options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise MariaDBError(f"mariadb name {self.name!r} must be letters, digits, '_.-'")
        if not 0 <= self.port <= 65535:
            raise MariaDBError(f"mariadb '{self.name}': port {self.port} out of range")
        if not 1 <= self.server_id <= 2**32 - 1:
            raise MariaDBError(f"mariadb '{self.name}': server_id {self.server_id} out of range")
        for ident in (self.database, self.app_user, self.repl_user):
            if not _IDENTIFIER.match(ident):
                raise MariaDBError(f"mariadb '{self.name}': bad identifier {ident!r}")


@dataclass(frozen=True)
class ReplicationStatus:
    """What ``SHOW SLAVE STATUS`` says about a replica, the fields a drill uses."""

    io_state: str  # Slave_IO_Running: "Yes", "No" or "Connecting"
    sql_state: str  # Slave_SQL_Running: "Yes" or "No"
    seconds_behind_master: int | None
    gtid_io_pos: str  # received by the IO thread (complete event groups)
    gtid_slave_pos: str  # applied by the SQL thread
    master_host: str
    master_port: int
    connect_retry_s: int
    using_gtid: str
    relay_log_file: str  # where the SQL thread is in the relay log
    relay_log_pos: int
    last_io_error: str
    last_sql_error: str

    @property
    def io_running(self) -> bool:
        """The IO thread is connected to the primary and receiving."""
        return self.io_state == "Yes"

    @property
    def sql_running(self) -> bool:
        """The SQL thread is applying what was received."""
        return self.sql_state == "Yes"


@dataclass(frozen=True)
class PromotionResult:
    """How a replica was promoted: the GTID positions and how long each step took."""

    name: str
    received_gtid: str  # Gtid_IO_Pos when the IO thread stopped: everything that arrived
    applied_gtid: str  # @@gtid_slave_pos after the wait: what the new primary holds
    binlog_gtid: str  # @@gtid_current_pos of the new primary once writable
    caught_up: bool  # False when MASTER_GTID_WAIT timed out (arrived events may be missing)
    started_mono: float
    writable_mono: float
    stop_io_s: float
    catch_up_s: float
    reset_s: float

    @property
    def total_s(self) -> float:
        """From the first statement to ``read_only=0``."""
        return self.writable_mono - self.started_mono

    def to_json(self) -> dict[str, Any]:
        """The result at the JSON edge."""
        return {
            "name": self.name,
            "received_gtid": self.received_gtid,
            "applied_gtid": self.applied_gtid,
            "binlog_gtid": self.binlog_gtid,
            "caught_up": self.caught_up,
            "started_mono": self.started_mono,
            "writable_mono": self.writable_mono,
            "stop_io_s": self.stop_io_s,
            "catch_up_s": self.catch_up_s,
            "reset_s": self.reset_s,
            "total_s": self.total_s,
        }


# --- data directory template -------------------------------------------------------------

_template_lock = threading.Lock()
_templates: dict[tuple[str, str, str], Path] = {}
_template_root: Path | None = None


def _remove_template_root() -> None:
    if _template_root is not None:
        shutil.rmtree(_template_root, ignore_errors=True)


def _run_install_db(config: MariaDBConfig, cnf: Path, name: str) -> None:
    cmd = [
        config.install_db,
        f"--defaults-file={cnf}",  # must come first; it also keeps /etc/mysql out
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MariaDBError(f"mariadb '{name}': mariadb-install-db failed: {exc}") from exc
    if done.returncode != 0:
        tail = format_tail(done.stdout + done.stderr, "error log tail", _ERROR_TAIL_LINES)
        raise MariaDBError(
            f"mariadb '{name}': mariadb-install-db exited with status {done.returncode}{tail}"
        )


def _template_datadir(config: MariaDBConfig) -> Path:
    """An installed, never started data directory, made once a process and copied from."""
    global _template_root
    key = (config.install_db, config.mariadbd, config.log_file_size)
    with _template_lock:
        found = _templates.get(key)
        if found is not None and (found / "mysql").is_dir():
            return found
        if _template_root is None:
            _template_root = Path(tempfile.mkdtemp(prefix="drdrill-mariadb-template-"))
            atexit.register(_remove_template_root)
            reaper.tie_path(_template_root)  # removed by the reaper if we die first
        where = Path(tempfile.mkdtemp(prefix="t", dir=_template_root))
        datadir = where / "data"
        cnf = where / "install.cnf"
        lines = ["[mysqld]"]
        if os.geteuid() == 0:
            lines.append("user=root")  # mariadbd refuses to run as root otherwise
        tmpdir = where / "tmp"
        tmpdir.mkdir()
        lines += [
            f"datadir={datadir}",
            # Private: a starting server deletes every #sql* file in its tmpdir, so a shared
            # /tmp let concurrent installs (and servers) destroy each other's temp tables.
            f"tmpdir={tmpdir}",
            f"innodb_log_file_size={config.log_file_size}",
            "innodb_buffer_pool_size=64M",
            "skip-name-resolve",
            "performance_schema=OFF",
        ]
        cnf.write_text("\n".join(lines) + "\n")
        _run_install_db(config, cnf, config.name)
        _templates[key] = datadir
        return datadir


# --- the server ------------------------------------------------------------------------------

_live_servers: weakref.WeakSet[MariaDBServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """Servers still running when the interpreter exits are killed, not orphaned."""
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.cleanup()


class MariaDBServer:
    """One ``mariadbd`` child process with its own run directory, on ``host:port``."""

    def __init__(self, config: MariaDBConfig) -> None:
        self._auto_port = config.port == 0
        if config.port == 0:
            config = replace(config, port=free_port(config.host))
        self.config = config
        self._owns_dir = config.run_dir is None
        if config.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"drdrill-mariadb-{config.name}-"))
            reaper.tie_path(self.run_dir)  # removed by the reaper if we die first
        else:
            self.run_dir = Path(config.run_dir)
        self.datadir = self.run_dir / "data"
        self.cnf_path = self.run_dir / "my.cnf"
        self.socket_path = self.run_dir / "mysqld.sock"
        self.pid_path = self.run_dir / "mysqld.pid"
        self.error_log = self.run_dir / "error.log"
        self.console_log = self.run_dir / "console.log"
        self.tmp_dir = self.run_dir / "tmp"
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            raise MariaDBError(f"{self.label}: socket path too long: {self.socket_path}")
        self.read_only = config.read_only
        self._ever_ready = False
        self._child = Child(
            lambda: self.label,
            (self.error_log, self.console_log),
            tail_heading="error log tail",
            error=MariaDBError,
            start_error=MariaDBStartError,
        )
        #: starts that died from a signal and were tried again (also in ``start-crashes.log``)
        self.start_crashes: list[StartCrash] = []
        self.start_crash_log = self.run_dir / "start-crashes.log"
        _live_servers.add(self)

    def __repr__(self) -> str:
        return f"<MariaDBServer {self.config.name} {self.address} pid={self.pid}>"

    def __enter__(self) -> MariaDBServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # - identity -

    @property
    def name(self) -> str:
        """The instance's name in messages ("primary", "replica")."""
        return self.config.name

    @property
    def host(self) -> str:
        """The loopback address it listens on."""
        return self.config.host

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return self.config.port

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.config.host}:{self.config.port}"

    @property
    def label(self) -> str:
        """How messages name it: ``mariadb 'primary' on 127.0.0.1:41234``."""
        return f"mariadb '{self.config.name}' on {self.address}"

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        return self._child.pid

    @property
    def is_frozen(self) -> bool:
        """Stopped with SIGSTOP and not yet continued."""
        return self._child.is_frozen

    # - life cycle -

    def is_installed(self) -> bool:
        """The data directory holds an installed system database."""
        return (self.datadir / "mysql").is_dir()

    def install(self) -> None:
        """Create the data directory (a copy of the installed template); no-op when present."""
        if self.is_installed():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        template = _template_datadir(self.config)
        if self.datadir.exists():
            shutil.rmtree(self.datadir)
        shutil.copytree(template, self.datadir, symlinks=True)

    def is_running(self) -> bool:
        """The child process exists and is not a zombie (a stopped, frozen one counts)."""
        return self._child.is_running()

    def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Start the process (no-op while it runs); with ``wait``, until it accepts connections."""
        if self.is_running():
            return
        self._child.reap()
        self.install()
        self._spawn()
        if wait:
            try:
                self.wait_ready(timeout)
            except MariaDBError:
                self.kill()
                raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until a root connection over the socket answers ``SELECT 1``.

        A server whose port was picked automatically and lost to another process before
        ``mariadbd`` bound it (only on its very first start) is moved to a new port once.
        """
        crashes = 0

        def on_exit(returncode: int, tail: str) -> str | None:
            nonlocal crashes
            if self._auto_port and not self._ever_ready and _PORT_TAKEN in tail:
                self._auto_port = False  # once: a second clash is not bad luck
                self.config = replace(self.config, port=free_port(self.config.host))
                self._spawn()
                return None
            if returncode < 0 and crashes < _START_CRASH_RETRIES:
                # Killed by a signal, not refused by its configuration: try again, and
                # keep the record (the error log is appended to, never lost).
                crashes += 1
                self._record_start_crash(-returncode, tail)
                self._spawn()
                return None
            return f" (after {crashes} restart(s) of a crashed start)" if crashes else ""

        self._child.wait_ready(self._answers, timeout=timeout, interval=0.05, on_exit=on_exit)
        self._ever_ready = True

    def kill_orphan(self) -> int | None:
        """Kill a ``mariadbd`` left running on this run directory by an earlier harness process.

        Only a process whose command line names this very config file is killed (the pid file
        alone may be stale and reused). Returns the pid killed, or None.
        """
        return self._child.kill_orphan(self.pid_path, f"--defaults-file={self.cnf_path}")

    def _spawn(self) -> None:
        # A pid or socket file left by a killed process must not block or confuse the start.
        for stale in (self.pid_path, self.socket_path):
            stale.unlink(missing_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._write_cnf()
        # --defaults-file must be the first option; it also skips /etc/mysql.
        self._child.spawn(
            [self.config.mariadbd, f"--defaults-file={self.cnf_path}"], self.console_log
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Clean shutdown (SIGTERM, wait); a server that does not stop in time is killed."""
        # a frozen one is thawed first: a stopped process would keep the SIGTERM pending forever
        if self._child.stop(((signal.SIGTERM, timeout),)):
            return
        self.kill()
        raise MariaDBError(
            f"{self.label} did not shut down within {timeout:.1f} s; killed" + self._log_tail()
        )

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: a crash, no shutdown; returns once the process is gone."""
        self._child.kill(timeout)

    def freeze(self, timeout: float = 5.0) -> None:
        """SIGSTOP: the process hangs with its sockets open, like a stalled host.

        Returns once the kernel reports it stopped (delivery is asynchronous).
        """
        self._child.freeze(timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        """SIGCONT: undo :meth:`freeze`; returns once it runs again."""
        self._child.thaw(timeout)

    def restart(self, timeout: float = 30.0) -> None:
        """Clean stop, then start and wait until ready."""
        self.stop(timeout)
        self.start(wait=True, timeout=timeout)

    def cleanup(self) -> None:
        """Kill the process and remove the run directory if it was a temporary one."""
        try:
            self.kill()
        finally:
            if self._owns_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
                if not os.path.lexists(self.run_dir):
                    reaper.untie_path(self.run_dir)
            _live_servers.discard(self)

    # - connections -

    def connect(
        self,
        user: User = "root",
        *,
        database: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float | None = 30.0,
        write_timeout: float | None = 30.0,
        autocommit: bool = True,
    ) -> Any:
        """A PyMySQL connection: root over the unix socket, ``app``/``repl`` over TCP.

        Keep a ``read_timeout``: PyMySQL reads the server greeting with it, so ``None``
        would hang forever on a frozen server.
        """
        kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "write_timeout": write_timeout,
            "autocommit": autocommit,
            "charset": "utf8mb4",
            "ssl_disabled": not OFFER_TLS,  # it serves none (drdrill.sandbox.dbclient)
        }
        if user == "root":
            return pymysql.connect(
                unix_socket=str(self.socket_path),
                user="root",
                password="",
                database=database,
                **kwargs,
            )
        name, password = (
            (self.config.app_user, self.config.app_password)
            if user == "app"
            else (self.config.repl_user, self.config.repl_password)
        )
        return pymysql.connect(
            host=self.config.host,
            port=self.config.port,
            user=name,
            password=password,
            database=self.config.database if database is None and user == "app" else database,
            **kwargs,
        )

    def error_log_tail(self, lines: int = _ERROR_TAIL_LINES) -> str:
        """The last lines of the error log (or of the console output before the log opened)."""
        return self._child.log_tail(lines)

    # - internals -

    def _record_start_crash(self, signum: int, tail: str) -> None:
        crash = StartCrash(at=time.time(), signal=signum, error_log_tail=tail)
        self.start_crashes.append(crash)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(crash.at))
        with self.start_crash_log.open("a") as log:
            log.write(f"{stamp}Z {self.label} died from signal {signum} while starting; ")
            log.write("started again. Error log tail:\n" + tail + "\n\n")

    def _answers(self) -> str | None:
        """None once a root connection over the socket answers ``SELECT 1``, else why not."""
        try:
            conn = self.connect("root", connect_timeout=1.0, read_timeout=1.0)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            finally:
                conn.close()
        except (pymysql.err.Error, OSError) as exc:
            return _short(exc)
        return None

    def _log_tail(self) -> str:
        return self._child.formatted_tail()

    def _write_cnf(self) -> None:
        c = self.config
        options: list[tuple[str, str | None]] = []
        if os.geteuid() == 0:
            options.append(("user", "root"))  # mariadbd refuses to run as root otherwise
        options += [
            ("datadir", str(self.datadir)),
            # Private: a starting server deletes every #sql* file in its tmpdir, so sharing
            # /tmp would destroy the temp tables of other instances (the system one included).
            ("tmpdir", str(self.tmp_dir)),
            ("port", str(c.port)),
            ("bind-address", c.host),
            ("socket", str(self.socket_path)),
            ("pid-file", str(self.pid_path)),
            ("log-error", str(self.error_log)),
            ("skip-name-resolve", None),
            ("performance_schema", "OFF"),
            ("innodb_buffer_pool_size", c.buffer_pool_size),
            ("innodb_log_file_size", c.log_file_size),
            ("server_id", str(c.server_id)),
            ("log_bin", "binlog"),
            ("relay_log", "relay-bin"),
            ("binlog_format", "ROW"),
            ("log_slave_updates", "ON"),
            ("gtid_strict_mode", "ON" if c.gtid_strict_mode else "OFF"),
            ("read_only", "ON" if self.read_only else "OFF"),
        ]
        if c.slave_net_timeout_s is not None:
            options.append(("slave_net_timeout", str(c.slave_net_timeout_s)))
        options += list(c.extra_options)
        body = "".join(f"{k}={v}\n" if v is not None else f"{k}\n" for k, v in options)
        self.cnf_path.write_text("[mysqld]\n" + body)


# --- replication -------------------------------------------------------------------------------


@contextlib.contextmanager
def _root(server: MariaDBServer, read_timeout: float = 30.0) -> Iterator[Any]:
    conn = server.connect("root", read_timeout=read_timeout)
    try:
        yield conn
    finally:
        conn.close()


def setup_primary(server: MariaDBServer) -> None:
    """Create the ``app`` database, the ``app`` user (all on it) and the ``repl`` user."""
    c = server.config
    try:
        with _root(server) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{c.database}`")
            cur.execute(
                f"CREATE USER IF NOT EXISTS '{c.app_user}'@'%%' IDENTIFIED BY %s",
                (c.app_password,),
            )
            cur.execute(f"GRANT ALL PRIVILEGES ON `{c.database}`.* TO '{c.app_user}'@'%'")
            # SHOW SLAVE STATUS for the lag sampler, which runs as the app.
            cur.execute(f"GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO '{c.app_user}'@'%'")
            cur.execute(
                f"CREATE USER IF NOT EXISTS '{c.repl_user}'@'%%' IDENTIFIED BY %s",
                (c.repl_password,),
            )
            cur.execute(f"GRANT REPLICATION SLAVE ON *.* TO '{c.repl_user}'@'%'")
    except pymysql.err.Error as exc:
        raise MariaDBError(f"{server.label}: setup failed: {_short(exc)}") from exc


def replication_status(replica: MariaDBServer) -> ReplicationStatus | None:
    """The replica's ``SHOW SLAVE STATUS``, or None when it replicates from nobody."""
    try:
        with _root(replica, read_timeout=10.0) as conn:
            return _status(conn)
    except pymysql.err.Error as exc:
        raise ReplicationError(f"{replica.label}: show slave status: {_short(exc)}") from exc


def _status(conn: Any) -> ReplicationStatus | None:
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SHOW SLAVE STATUS")
        row: dict[str, Any] | None = cur.fetchone()
        if row is None:
            return None
        slave_pos = row.get("Gtid_Slave_Pos")
        if slave_pos is None:
            cur.execute("SELECT @@gtid_slave_pos AS pos")
            slave_pos = cur.fetchone()["pos"]
    sbm = row.get("Seconds_Behind_Master")
    return ReplicationStatus(
        io_state=str(row.get("Slave_IO_Running") or ""),
        sql_state=str(row.get("Slave_SQL_Running") or ""),
        seconds_behind_master=None if sbm is None else int(sbm),
        gtid_io_pos=str(row.get("Gtid_IO_Pos") or ""),
        gtid_slave_pos=str(slave_pos or ""),
        master_host=str(row.get("Master_Host") or ""),
        master_port=int(row.get("Master_Port") or 0),
        connect_retry_s=int(row.get("Connect_Retry") or 0),
        using_gtid=str(row.get("Using_Gtid") or ""),
        relay_log_file=str(row.get("Relay_Log_File") or ""),
        relay_log_pos=int(row.get("Relay_Log_Pos") or 0),
        last_io_error=str(row.get("Last_IO_Error") or ""),
        last_sql_error=str(row.get("Last_SQL_Error") or ""),
    )


def attach_replica(
    primary: MariaDBServer,
    replica: MariaDBServer,
    *,
    connect_retry_s: int = 1,
    timeout: float = 30.0,
    via: tuple[str, int] | None = None,
) -> ReplicationStatus:
    """Make ``replica`` a read-only GTID replica of ``primary`` and wait until it caught up.

    ``via``: the address the replica reaches the primary at, when not the primary's own (the
    sandbox's inter-region link)."""
    p = primary.config
    host, port = via or (p.host, p.port)
    try:
        with _root(replica) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute("SET GLOBAL read_only = 1")
            replica.read_only = True  # also on the replica's next start
            cur.execute(
                "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
                "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=%s",
                (host, port, p.repl_user, p.repl_password, connect_retry_s),
            )
            cur.execute("START SLAVE")
    except pymysql.err.Error as exc:
        raise ReplicationError(
            f"{replica.label}: cannot replicate from {primary.label}: {_short(exc)}"
        ) from exc
    wait_for_replica(primary, replica, timeout)
    status = replication_status(replica)
    if status is None:  # pragma: no cover - we just configured it
        raise ReplicationError(f"{replica.label}: replication vanished after attach")
    return status


def wait_for_replica(primary: MariaDBServer, replica: MariaDBServer, timeout: float = 30.0) -> str:
    """Wait until ``replica`` applied everything ``primary`` has logged; return that GTID."""
    try:
        with _root(primary) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_pos")
            pos = str(cur.fetchone()[0])
        with _root(replica, read_timeout=timeout + 10.0) as conn, conn.cursor() as cur:
            cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (pos, timeout))
            waited = cur.fetchone()[0]
    except pymysql.err.Error as exc:
        raise ReplicationError(f"{replica.label}: wait for {pos!r}: {_short(exc)}") from exc
    if waited != 0:
        status = replication_status(replica)
        why = (status.last_io_error or status.last_sql_error or status.io_state) if status else ""
        raise ReplicationError(
            f"{replica.label} did not reach gtid {pos!r} of {primary.label} within "
            f"{timeout:.1f} s" + (f": {why}" if why else "")
        )
    return pos


def promote_replica(replica: MariaDBServer, *, timeout: float = 30.0) -> PromotionResult:
    """Make a replica a writable primary without dropping anything that already arrived.

    Stop the IO thread (nothing more comes in), let the SQL thread apply up to the received
    position (``Gtid_IO_Pos``, complete event groups only), then ``STOP SLAVE; RESET SLAVE ALL``
    and ``read_only=0``. A catch-up that times out is reported in ``caught_up``, not raised:
    the drill still needs a primary, and the markers will show what was lost.

    A paused SQL thread (a fault, or an operator) is the trap: in GTID mode, starting it while
    the IO thread is stopped discards the relay log and re-fetches from the (dead) primary, so
    what had arrived is lost. It is pointed at its own relay-log position in file/pos mode
    first (``CHANGE MASTER ... RELAY_LOG_FILE, RELAY_LOG_POS`` keeps the relay log).
    """
    clock = time.monotonic
    started = clock()
    try:
        with _root(replica, read_timeout=timeout + 10.0) as conn, conn.cursor() as cur:
            if _status(conn) is None:
                raise ReplicationError(f"{replica.label} is not a replica: nothing to promote")
            cur.execute("STOP SLAVE IO_THREAD")
            stopped_io = clock()
            status = _status(conn)
            assert status is not None  # nobody else resets it under us
            received = status.gtid_io_pos
            if not status.sql_running:
                cur.execute(
                    "CHANGE MASTER TO MASTER_USE_GTID=no, RELAY_LOG_FILE=%s, RELAY_LOG_POS=%s",
                    (status.relay_log_file, status.relay_log_pos),
                )
                cur.execute("START SLAVE SQL_THREAD")
            caught_up = True
            if received:
                cur.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (received, timeout))
                caught_up = cur.fetchone()[0] == 0
            cur.execute("SELECT @@gtid_slave_pos")
            applied = str(cur.fetchone()[0])
            waited = clock()
            cur.execute("STOP SLAVE")
            cur.execute("RESET SLAVE ALL")
            cur.execute("SET GLOBAL read_only = 0")
            writable = clock()
            replica.read_only = False
            cur.execute("SELECT @@gtid_current_pos")
            current = str(cur.fetchone()[0])
    except pymysql.err.Error as exc:
        raise ReplicationError(f"{replica.label}: promotion failed: {_short(exc)}") from exc
    return PromotionResult(
        name=replica.name,
        received_gtid=received,
        applied_gtid=applied,
        binlog_gtid=current,
        caught_up=caught_up,
        started_mono=started,
        writable_mono=writable,
        stop_io_s=stopped_io - started,
        catch_up_s=waited - stopped_io,
        reset_s=writable - waited,
    )


def start_pair(
    primary: MariaDBConfig,
    replica: MariaDBConfig,
    *,
    timeout: float = 30.0,
) -> tuple[MariaDBServer, MariaDBServer]:
    """Start a primary (set up) and a GTID replica of it, both at once; clean up on failure."""
    if primary.server_id == replica.server_id:
        raise MariaDBError(f"mariadb '{primary.name}' and '{replica.name}' need distinct server_id")
    servers = (MariaDBServer(primary), MariaDBServer(replica))
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_ready(timeout)
        setup_primary(servers[0])
        attach_replica(servers[0], servers[1], timeout=timeout)
    except BaseException:
        for server in servers:
            server.cleanup()
        raise
    return servers


# --- helpers -----------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    """An error as one short line: ``OperationalError(2003, "Can't connect ...")``."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]
