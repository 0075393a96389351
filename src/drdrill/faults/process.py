"""Faults on local processes: freeze (SIGSTOP), stop (SIGTERM, then SIGKILL) and kill (SIGKILL).

A victim is named by a :class:`ProcessRef`: its pid *and* start time, so that a revert run much
later (by ``drdrill recover``) never signals a process that merely inherited the pid. A stopped
or killed victim is restarted from the command line, working directory and environment
additions recorded before the fault, detached in a session of its own.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import psutil

from drdrill.errors import FaultError
from drdrill.faults.base import CREATE_TIME_TOLERANCE, RevertResult, wait_until

#: Seconds to wait for a signal to show (stopped, resumed, gone) before calling it a failure.
SETTLE_TIMEOUT: Final = 5.0
#: Seconds :class:`StopProcess` waits after SIGTERM before it sends SIGKILL.
DEFAULT_GRACE: Final = 10.0

_STOPPED: Final = frozenset({psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP})

# Run by a short-lived interpreter so that the restarted process is not our child: it is
# reparented at once, is never left a zombie in a long-lived drill, and has its own session.
_LAUNCHER: Final = """
import json, subprocess, sys
spec = json.load(sys.stdin)
try:
    log = open(spec["log"], "ab")
    child = subprocess.Popen(spec["argv"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
except OSError as exc:
    sys.stderr.write(str(exc))
    sys.exit(127)
sys.stdout.write(str(child.pid))
"""


def _started(create_time: float) -> str:
    return datetime.fromtimestamp(create_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Located:
    """A :class:`ProcessRef` looked up now: the live process, or (``absent``) why there is none."""

    process: psutil.Process | None
    absent: str = ""


@dataclass(frozen=True)
class ProcessRef:
    """A local process as it was when a fault was planned: enough to find it again or restart it.

    ``env`` holds only the environment *additions* a restart needs (the victim's whole
    environment may carry secrets and is never written to the journal).
    """

    pid: int
    create_time: float
    name: str
    host: str
    argv: tuple[str, ...] = ()
    cwd: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, pid: int, *, name: str | None = None, env: Mapping[str, str] | None = None) -> Self:
        """Look up the running process ``pid`` now; ``name`` overrides the one the OS reports."""
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                status = proc.status()
                create_time = proc.create_time()
                os_name = proc.name()
                try:
                    argv: Sequence[str] = proc.cmdline()
                    cwd: str | None = proc.cwd()
                except psutil.AccessDenied:  # another user's process: no restart possible
                    argv, cwd = (), None
        except psutil.NoSuchProcess as exc:
            raise FaultError(f"no process {pid}") from exc
        if status == psutil.STATUS_ZOMBIE:
            raise FaultError(f"process {pid} ({os_name}) has exited")
        return cls(
            pid=pid,
            create_time=create_time,
            name=name or os_name,
            host=socket.gethostname(),
            argv=tuple(argv),
            cwd=cwd,
            env=tuple(sorted((env or {}).items())),
        )

    def label(self) -> str:
        """How messages name it: "process 1234 (demo-app)"."""
        return f"process {self.pid} ({self.name})"

    def to_record(self) -> dict[str, Any]:
        """JSON form for the journal."""
        return {
            "pid": self.pid,
            "create_time": self.create_time,
            "name": self.name,
            "host": self.host,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "env": dict(self.env),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_record`; :class:`FaultError` on a malformed record."""
        pid = record.get("pid")
        create_time = record.get("create_time")
        argv = record.get("argv", [])
        cwd = record.get("cwd")
        env = record.get("env", {})
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise FaultError(f"process record has no valid pid: {pid!r}")
        if not isinstance(create_time, int | float) or isinstance(create_time, bool):
            raise FaultError(f"process record for pid {pid} has no create_time")
        if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
            raise FaultError(f"process record for pid {pid}: argv is not a list of strings")
        if cwd is not None and not isinstance(cwd, str):
            raise FaultError(f"process record for pid {pid}: cwd is not a string")
        if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
            raise FaultError(f"process record for pid {pid}: env is not an object of strings")
        return cls(
            pid=pid,
            create_time=float(create_time),
            name=str(record.get("name", "?")),
            host=str(record.get("host", "")),
            argv=tuple(argv),
            cwd=cwd,
            env=tuple(sorted((str(k), v) for k, v in env.items())),
        )

    def locate(self) -> Located:
        """The process now, if it is still this one; else why not. Refuses another host's pid."""
        here = socket.gethostname()
        if self.host and self.host != here:
            raise FaultError(f"{self.label()} runs on host {self.host!r}, not {here!r}: act there")
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                create_time = proc.create_time()
                status = proc.status()
                name = proc.name()
        except psutil.NoSuchProcess:
            return Located(None, f"{self.label()} is gone")
        if abs(create_time - self.create_time) > CREATE_TIME_TOLERANCE:
            return Located(
                None,
                f"pid {self.pid} now belongs to another process ({name}, started "
                f"{_started(create_time)}, not {_started(self.create_time)}); not signalled",
            )
        if status == psutil.STATUS_ZOMBIE:
            return Located(None, f"{self.label()} has exited")
        return Located(proc)


def _require(ref: ProcessRef, verb: str) -> psutil.Process:
    """The live victim, or :class:`FaultError`; never this process or one of its ancestors."""
    located = ref.locate()
    if located.process is None:
        raise FaultError(f"cannot {verb} {ref.label()}: {located.absent}")
    me = psutil.Process()
    if ref.pid == me.pid or ref.pid in {p.pid for p in me.parents()}:
        raise FaultError(f"refusing to {verb} {ref.label()}: it runs this drill")
    return located.process


def _is_gone(proc: psutil.Process) -> bool:
    try:
        # is_running() is False also when the pid now belongs to another process.
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _is_stopped(proc: psutil.Process) -> bool:
    try:
        return proc.status() in _STOPPED
    except psutil.NoSuchProcess:
        return False


def _record_field(record: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = record.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise FaultError(f"fault record: {key!r} is not a {kind.__name__}: {value!r}")
    return value


def _float_field(record: Mapping[str, Any], key: str, default: float) -> float:
    value = record.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise FaultError(f"fault record: {key!r} is not a number: {value!r}")
    return float(value)


def _target_of(record: Mapping[str, Any]) -> ProcessRef:
    target = record.get("target")
    if not isinstance(target, dict):
        raise FaultError("fault record has no 'target' object")
    return ProcessRef.from_record(target)


@dataclass(frozen=True)
class FreezeProcess:
    """Freeze a process with SIGSTOP (with ``tree``, its descendants too); revert: SIGCONT."""

    kind: ClassVar[str] = "process.freeze"

    target: ProcessRef
    tree: bool = False
    children: tuple[ProcessRef, ...] = ()
    settle: float = SETTLE_TIMEOUT

    @classmethod
    def of(cls, pid: int, *, tree: bool = False, name: str | None = None) -> Self:
        """Plan to freeze the running process ``pid`` (and, with ``tree``, its descendants now)."""
        target = ProcessRef.of(pid, name=name)
        children: list[ProcessRef] = []
        if tree:
            try:
                descendants = psutil.Process(pid).children(recursive=True)
            except psutil.NoSuchProcess as exc:
                raise FaultError(f"{target.label()} exited while being planned") from exc
            for child in descendants:
                try:
                    children.append(ProcessRef.of(child.pid))
                except FaultError:
                    continue  # exited meanwhile: nothing to freeze
        return cls(target=target, tree=tree, children=tuple(children))

    def describe(self) -> str:
        """One line: "freeze process 1234 (demo-app)"."""
        what = "process tree" if self.tree else "process"
        return f"freeze {what} {self.target.pid} ({self.target.name})"

    def inject(self) -> None:
        """SIGSTOP the victim (parent first, so it cannot start new children) and wait for it."""
        root = _require(self.target, "freeze")
        root.suspend()
        frozen = [root]
        if self.tree:
            planned = [ref.locate().process for ref in self.children]
            # Descendants born after planning too: the revert finds them through the root again.
            for proc in [*planned, *_descendants(root)]:
                if proc is not None and proc.pid not in {p.pid for p in frozen} and _suspend(proc):
                    frozen.append(proc)
        if not wait_until(lambda: all(_is_stopped(p) or _is_gone(p) for p in frozen), self.settle):
            raise FaultError(f"{self.describe()}: not stopped after {self.settle:g} s")

    def revert(self) -> RevertResult:
        """SIGCONT every process this froze (descendants first); skips any that is not the same."""
        resumed: list[psutil.Process] = []
        root = self.target.locate()
        if self.tree:
            seen: set[int] = set()
            candidates = [ref.locate().process for ref in reversed(self.children)]
            if root.process is not None:
                candidates.extend(reversed(_descendants(root.process)))
            for proc in candidates:
                if proc is not None and proc.pid not in seen and _resume(proc):
                    seen.add(proc.pid)
                    resumed.append(proc)
        if root.process is not None and _resume(root.process):
            resumed.append(root.process)
        if not wait_until(lambda: not any(_is_stopped(p) for p in resumed), self.settle):
            still = ", ".join(str(p.pid) for p in resumed if _is_stopped(p))
            raise FaultError(f"{self.describe()}: still stopped after SIGCONT: pid {still}")
        if root.process is None:
            extra = f" ({len(resumed)} descendants resumed)" if resumed else ""
            return RevertResult(f"not resumed: {root.absent}{extra}", {"resumed": len(resumed)})
        note = f"resumed {len(resumed)} processes" if self.tree else "resumed"
        return RevertResult(note, {"resumed": len(resumed)})

    def to_record(self) -> dict[str, Any]:
        """The victim (and descendants) by pid and start time."""
        return {
            "target": self.target.to_record(),
            "tree": self.tree,
            "children": [c.to_record() for c in self.children],
            "settle": self.settle,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_record`."""
        children = _record_field(record, "children", list, [])
        if not all(isinstance(c, dict) for c in children):
            raise FaultError("fault record: 'children' is not a list of objects")
        return cls(
            target=_target_of(record),
            tree=_record_field(record, "tree", bool, False),
            children=tuple(ProcessRef.from_record(c) for c in children),
            settle=_float_field(record, "settle", SETTLE_TIMEOUT),
        )


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _suspend(proc: psutil.Process) -> bool:
    try:
        proc.suspend()
    except psutil.NoSuchProcess:  # a descendant that exited meanwhile has nothing to freeze
        return False
    return True


def _resume(proc: psutil.Process) -> bool:
    try:
        proc.resume()  # psutil checks the pid still names the same process before signalling
    except psutil.NoSuchProcess:
        return False
    return True


def default_log_path(target: ProcessRef) -> str:
    """Where a restarted victim writes: ``.drdrill/logs/<name>-<old pid>.log`` under the cwd."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.name) or "process"
    return str(Path.cwd() / ".drdrill" / "logs" / f"{safe}-{target.pid}.log")


def _find_by_argv(argv: tuple[str, ...]) -> psutil.Process | None:
    wanted = list(argv)
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.info["cmdline"] == wanted:
            return proc
    return None


def _restart(target: ProcessRef, restart: bool, log_path: str) -> RevertResult:
    """Bring a stopped or killed victim back, unless it (or a twin with its argv) is running."""
    located = target.locate()
    if located.process is not None:
        return RevertResult(f"nothing to do: {target.label()} is still running")
    if not restart:
        return RevertResult("not restarted (restart disabled)")
    if not target.argv:
        raise FaultError(f"cannot restart {target.label()}: its command line is unknown")
    twin = _find_by_argv(target.argv)
    if twin is not None:
        return RevertResult(f"already running as pid {twin.pid}", {"pid": twin.pid})
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    spec = {"argv": list(target.argv), "cwd": target.cwd, "log": log_path}
    done = subprocess.run(
        [sys.executable, "-I", "-c", _LAUNCHER],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env={**os.environ, **dict(target.env)},
        timeout=60,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        reason = done.stderr.strip() or f"launcher exit status {done.returncode}"
        raise FaultError(f"cannot restart {target.label()}: {reason}")
    pid = int(done.stdout)
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess as exc:
        raise FaultError(
            f"restarted {target.label()} as pid {pid}, but it exited at once (log: {log_path})"
        ) from exc
    return RevertResult(
        f"restarted as pid {pid} (log: {log_path})",
        {"pid": pid, "create_time": create_time, "log": log_path},
    )


def _end(proc: psutil.Process, label: str, grace: float | None) -> None:
    """SIGTERM and wait ``grace`` s, then SIGKILL (at once when ``grace`` is None)."""
    if grace is not None:
        proc.terminate()
        if wait_until(lambda: _is_gone(proc), grace):
            return
    try:
        proc.kill()
    except psutil.NoSuchProcess:
        return
    if not wait_until(lambda: _is_gone(proc), SETTLE_TIMEOUT):
        raise FaultError(f"{label} still alive {SETTLE_TIMEOUT:g} s after SIGKILL")


@dataclass(frozen=True)
class StopProcess:
    """Stop a process: SIGTERM, then SIGKILL after ``grace`` s; revert restarts it from its argv."""

    kind: ClassVar[str] = "process.stop"

    target: ProcessRef
    grace: float = DEFAULT_GRACE
    restart: bool = True
    log_path: str = field(default="")

    def __post_init__(self) -> None:
        if not self.log_path:  # fixed now, so that the journal record carries it
            object.__setattr__(self, "log_path", default_log_path(self.target))

    @classmethod
    def of(
        cls,
        pid: int,
        *,
        grace: float = DEFAULT_GRACE,
        restart: bool = True,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Self:
        """Plan to stop the running process ``pid``."""
        return cls(target=ProcessRef.of(pid, name=name, env=env), grace=grace, restart=restart)

    def describe(self) -> str:
        """One line: "stop process 1234 (demo-app)"."""
        return f"stop {self.target.label()}"

    def inject(self) -> None:
        """SIGTERM; SIGKILL if still alive after the grace; return once it is gone."""
        _end(_require(self.target, "stop"), self.target.label(), self.grace)

    def revert(self) -> RevertResult:
        """Restart it detached, unless it or a process with the same argv is running."""
        return _restart(self.target, self.restart, self.log_path)

    def to_record(self) -> dict[str, Any]:
        """The victim, how to restart it, and the grace."""
        return {
            "target": self.target.to_record(),
            "grace": self.grace,
            "restart": self.restart,
            "log_path": self.log_path,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_record`."""
        return cls(
            target=_target_of(record),
            grace=_float_field(record, "grace", DEFAULT_GRACE),
            restart=_record_field(record, "restart", bool, True),
            log_path=_record_field(record, "log_path", str, ""),
        )


@dataclass(frozen=True)
class KillProcess:
    """Kill a process with SIGKILL; revert restarts it from its argv."""

    kind: ClassVar[str] = "process.kill"

    target: ProcessRef
    restart: bool = True
    log_path: str = field(default="")

    def __post_init__(self) -> None:
        if not self.log_path:
            object.__setattr__(self, "log_path", default_log_path(self.target))

    @classmethod
    def of(
        cls,
        pid: int,
        *,
        restart: bool = True,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Self:
        """Plan to kill the running process ``pid``."""
        return cls(target=ProcessRef.of(pid, name=name, env=env), restart=restart)

    def describe(self) -> str:
        """One line: "kill process 1234 (demo-app)"."""
        return f"kill {self.target.label()}"

    def inject(self) -> None:
        """SIGKILL; return once it is gone."""
        _end(_require(self.target, "kill"), self.target.label(), None)

    def revert(self) -> RevertResult:
        """Restart it detached, unless it or a process with the same argv is running."""
        return _restart(self.target, self.restart, self.log_path)

    def to_record(self) -> dict[str, Any]:
        """The victim and how to restart it."""
        return {
            "target": self.target.to_record(),
            "restart": self.restart,
            "log_path": self.log_path,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_record`."""
        return cls(
            target=_target_of(record),
            restart=_record_field(record, "restart", bool, True),
            log_path=_record_field(record, "log_path", str, ""),
        )
