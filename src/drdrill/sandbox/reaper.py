"""Ties the servers a process starts, and its temporary folders, to that process (their owner).

``mariadbd`` and ``haproxy`` run in sessions of their own (a Ctrl-C for the harness must not
reach them first), so nothing ends them when their owner dies without cleaning up: a test run
killed by a CI timeout (SIGKILL) left its MariaDB pairs running with parent 1, and their data
directories in /tmp. ``PR_SET_PDEATHSIG`` is no answer: it fires when the *thread* that spawned
the child exits, and servers are started from whichever thread needs them.

So each owner process gets one small **reaper** process (``python -m drdrill.sandbox.reaper``),
started in a session of its own the first time the owner ties something to itself. The owner
keeps a **manifest** (JSON, replaced atomically): its own identity, the children tied to it and
the folders to remove (a server's temporary run folder, the data directory template). The
reaper waits for its owner to be gone, then kills every child that is still the same process,
waits for them, removes the folders and the manifest, and exits. A process is named by its pid
*and* its start time (:class:`ProcessId`), so that a pid the kernel gave to a new process is
never taken for the old one.

The reaper learns of its owner's death two ways: its stdin is a pipe whose only writer is the
owner, so end of file comes the moment the owner is gone (a ``kill -9`` included), and it checks
the owner's identity every :data:`POLL_S` seconds in case the pipe was inherited by a process
the owner forked. A zombie owner (dead, not yet reaped by its parent) counts as gone.

On a normal exit the owner has stopped its servers and removed its folders itself; its exit
handler (registered when this module is imported, so it runs after the servers' own handlers)
then removes the manifest and closes the pipe, and the reaper exits at once with nothing to do.
Anything the owner left running or lying around is the reaper's, as after a kill.

The reaper imports the standard library only (and psutil where ``/proc`` is missing): it must
start fast. Only folders whose name starts with ``drdrill-`` are ever removed.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: How often the reaper checks that its owner is alive (seconds).
POLL_S = 0.5
#: How often it checks once the owner closed the pipe (exiting): it is about to be gone...
EXITING_POLL_S = 0.02
#: ... for this long; then it checks every :data:`POLL_S` again.
EXITING_FOR_S = 5.0
#: How long the reaper waits for a killed child to be gone.
KILL_WAIT_S = 10.0
#: Only folders with a name that starts with this are ever removed.
REMOVABLE_PREFIX = "drdrill-"
#: The manifest's name: ``drdrill-reaper-<owner pid>-<owner start>.json`` in the temp folder.
MANIFEST_PREFIX = "drdrill-reaper-"
#: Process states that are dead already (zombie, dead).
DEAD_STATES = frozenset({"Z", "X", "x"})
_PROC = Path("/proc")
_MANIFEST_VERSION = 1


# --- identities --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcState:
    """What the kernel says of a pid now: its state letter and its start time."""

    state: str
    #: seconds after boot it started (``/proc/<pid>/stat``), or its creation time elsewhere
    start: float


#: Looks a pid up: its state, or None when there is no such process.
Probe = Callable[[int], ProcState | None]


def probe(pid: int) -> ProcState | None:
    """The state and start time of ``pid``, or None when no such process exists."""
    if pid <= 0:
        return None
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except FileNotFoundError:
        return None if _PROC.is_dir() else _probe_psutil(pid)
    except OSError:
        return None
    # "pid (comm) S ppid ...": comm may hold spaces and parentheses; starttime is field 22
    try:
        fields = raw[raw.rindex(b")") + 2 :].split()
        return ProcState(fields[0].decode(), int(fields[19]) / _clock_ticks())
    except (ValueError, IndexError):
        return None


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _probe_psutil(pid: int) -> ProcState | None:  # pragma: no cover - not Linux
    import psutil

    try:
        proc = psutil.Process(pid)
        state = "Z" if proc.status() == psutil.STATUS_ZOMBIE else "R"
        return ProcState(state, proc.create_time())
    except psutil.Error:
        return None


@dataclass(frozen=True)
class ProcessId:
    """A process as its pid *and* its start time: a pid reused by a new process is not it."""

    pid: int
    start: float

    def __post_init__(self) -> None:
        if self.pid <= 1:  # never 0, -1 (kill(2) would signal a group, or everyone) nor init
            raise ValueError(f"not a process one may own: pid {self.pid}")

    @classmethod
    def of(cls, pid: int, look: Probe = probe) -> ProcessId | None:
        """The process that has ``pid`` now, or None when there is none (or it is a zombie)."""
        found = look(pid)
        if found is None or found.state in DEAD_STATES:
            return None
        return cls(pid, found.start)

    @classmethod
    def current(cls) -> ProcessId:
        """This process."""
        me = cls.of(os.getpid())
        if me is None:  # pragma: no cover - we run
            raise RuntimeError("cannot read this process's start time")
        return me

    def to_json(self) -> dict[str, Any]:
        """The identity at the JSON edge."""
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessId:
        """The identity :meth:`to_json` wrote."""
        return cls(int(data["pid"]), float(data["start"]))


def is_alive(ident: ProcessId, look: Probe = probe) -> bool:
    """Whether the process ``ident`` names still runs: its pid exists, started when it did
    (else the pid was reused), and is not a zombie."""
    found = look(ident.pid)
    return (
        found is not None
        and found.state not in DEAD_STATES
        and math.isclose(found.start, ident.start, rel_tol=0.0, abs_tol=1e-3)
    )


def removable(path: str | Path) -> bool:
    """Whether the reaper may remove ``path``: absolute, and named ``drdrill-*``."""
    where = Path(path)
    return (
        where.is_absolute() and where.name.startswith(REMOVABLE_PREFIX) and ".." not in where.parts
    )


# --- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TiedChild:
    """A child process tied to its owner, and what it is (for people reading the manifest)."""

    ident: ProcessId
    what: str = ""


@dataclass
class Manifest:
    """What a reaper cleans up after its owner: children to kill, folders to remove."""

    owner: ProcessId
    children: dict[int, TiedChild] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing tied."""
        return not self.children and not self.paths

    def to_json(self) -> dict[str, Any]:
        """The manifest at the JSON edge."""
        return {
            "version": _MANIFEST_VERSION,
            "owner": self.owner.to_json(),
            "children": [
                {**child.ident.to_json(), "what": child.what} for child in self.children.values()
            ],
            "paths": list(self.paths),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """The manifest :meth:`to_json` wrote."""
        children = {}
        for item in data.get("children", []):
            ident = ProcessId.from_json(item)
            children[ident.pid] = TiedChild(ident, str(item.get("what", "")))
        return cls(ProcessId.from_json(data["owner"]), children, [str(p) for p in data["paths"]])

    def pruned(self, look: Probe = probe) -> Manifest:
        """Without the children that are gone and the folders that no longer exist."""
        return Manifest(
            self.owner,
            {pid: c for pid, c in self.children.items() if is_alive(c.ident, look)},
            [p for p in self.paths if os.path.lexists(p)],
        )


def manifest_path(owner: ProcessId, folder: Path | None = None) -> Path:
    """Where ``owner``'s manifest is."""
    where = Path(tempfile.gettempdir()) if folder is None else folder
    return where / f"{MANIFEST_PREFIX}{owner.pid}-{owner.start:.2f}.json"


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at ``path``, or None when it is missing (or unreadable)."""
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace the manifest at ``path`` atomically (a reader sees the old one or the new)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(manifest.to_json(), out)
    os.replace(tmp, path)


def remove_manifest(path: Path) -> None:
    """Remove a manifest (and a half-written one beside it)."""
    for each in (path, path.with_name(path.name + ".tmp")):
        with contextlib.suppress(OSError):
            each.unlink()


# --- the reaper's decisions ----------------------------------------------------------------------


def children_to_kill(manifest: Manifest, look: Probe = probe) -> list[TiedChild]:
    """The tied children that still run as the very processes that were tied."""
    return [child for child in manifest.children.values() if is_alive(child.ident, look)]


def kill(ident: ProcessId, look: Probe = probe) -> bool:
    """SIGKILL the process ``ident`` names, if it is still that process; True when signalled.

    Through a pidfd where there is one: the process checked is the process signalled."""
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(ident.pid)
    try:
        if not is_alive(ident, look):
            return False
        with contextlib.suppress(ProcessLookupError):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            else:  # pragma: no cover - kernels before 5.3
                os.kill(ident.pid, signal.SIGKILL)
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _no_eof(seconds: float) -> bool:
    """Waits ``seconds``: no pipe to watch, so never an end of file."""
    time.sleep(seconds)
    return False


@dataclass
class Reaper:
    """The reaper's loop, its world injected (the unit tests run it without processes)."""

    path: Path
    look: Probe = probe
    killer: Callable[[ProcessId], bool] = kill
    remove: Callable[[str], None] = field(default=lambda p: shutil.rmtree(p, ignore_errors=True))
    clock: Callable[[], float] = time.monotonic
    #: waits up to the seconds given for the owner's pipe; True on its end of file
    wait_eof: Callable[[float], bool] = field(default=lambda s: _no_eof(s))
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = POLL_S
    #: what was done, a line each
    done: list[str] = field(default_factory=list)

    def run(self) -> int:
        """Wait for the owner to be gone, then clean up after it; 0 when done (or when the
        owner removed its manifest: nothing to do)."""
        first = read_manifest(self.path)
        if first is None:
            return 0
        owner = first.owner
        exiting_since: float | None = None
        while True:
            if not self.path.exists():
                self.done.append("manifest removed by its owner: nothing to do")
                return 0
            if not is_alive(owner, self.look):
                break
            if exiting_since is None:
                if self.wait_eof(self.poll_s):
                    exiting_since = self.clock()  # the owner closed its pipe: exiting
            elif self.clock() - exiting_since < EXITING_FOR_S:
                self.sleep(EXITING_POLL_S)
            else:
                self.sleep(self.poll_s)
        self.cleanup()
        return 0

    def cleanup(self) -> None:
        """Kill what the manifest ties that still runs, remove its folders and itself."""
        manifest = read_manifest(self.path)
        if manifest is None:
            return
        killed = [
            child for child in children_to_kill(manifest, self.look) if self.killer(child.ident)
        ]
        deadline = self.clock() + KILL_WAIT_S
        for child in killed:
            while is_alive(child.ident, self.look) and self.clock() < deadline:
                self.sleep(0.01)
            gone = "" if not is_alive(child.ident, self.look) else " (still there)"
            self.done.append(f"killed {child.what or 'child'} pid {child.ident.pid}{gone}")
        for path in manifest.paths:
            if removable(path) and os.path.lexists(path):
                self.remove(path)
                self.done.append(f"removed {path}")
        remove_manifest(self.path)


def _wait_for_eof(fd: int) -> Callable[[float], bool]:
    """Waits up to the seconds given for data or end of file on ``fd``; True on end of file."""
    closed = False

    def wait(seconds: float) -> bool:
        nonlocal closed
        if closed:
            time.sleep(seconds)
            return True
        try:
            ready, _, _ = select.select([fd], [], [], seconds)
            if ready and not os.read(fd, 4096):
                closed = True
        except (OSError, ValueError):
            closed = True
        return closed

    return wait


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m drdrill.sandbox.reaper --manifest PATH``, its owner's pipe on stdin."""
    parser = argparse.ArgumentParser(prog="python -m drdrill.sandbox.reaper")
    parser.add_argument("--manifest", required=True, type=Path)
    args = parser.parse_args(argv)
    # a Ctrl-C for the harness is not for us; the terminal's hang-up neither
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    reaper = Reaper(args.manifest, wait_eof=_wait_for_eof(sys.stdin.fileno()))
    code = reaper.run()
    for line in reaper.done:
        print(f"reaper {os.getpid()}: {line}", file=sys.stderr, flush=True)
    return code


# --- the owner's side ----------------------------------------------------------------------------


class Tether:
    """This process's manifest and its reaper, started on the first tie."""

    def __init__(self, owner: ProcessId, folder: Path | None = None) -> None:
        self.owner = owner
        self.path = manifest_path(owner, folder)
        self._lock = threading.Lock()
        self._manifest = Manifest(owner)
        self._reaper: subprocess.Popen[bytes] | None = None
        self._warned = False
        self.closed = False

    @property
    def reaper_pid(self) -> int | None:
        """The reaper's pid while it runs."""
        proc = self._reaper
        return proc.pid if proc is not None and proc.poll() is None else None

    def tie_child(self, pid: int, what: str = "") -> None:
        """Kill ``pid`` (this very process) if the owner dies before it is untied."""
        ident = ProcessId.of(pid)
        if ident is None:
            return  # gone already
        with self._lock:
            self._manifest.children[pid] = TiedChild(ident, what)
            self._save()

    def untie_child(self, pid: int) -> None:
        """Forget ``pid`` (it exited and was reaped)."""
        with self._lock:
            if self._manifest.children.pop(pid, None) is not None:
                self._save()

    def tie_path(self, path: Path) -> None:
        """Remove the folder ``path`` if the owner dies before it is untied."""
        if not removable(path):
            raise ValueError(f"only absolute drdrill-* folders are tied to their owner: {path}")
        with self._lock:
            if str(path) not in self._manifest.paths:
                self._manifest.paths.append(str(path))
                self._save()

    def untie_path(self, path: Path) -> None:
        """Forget the folder ``path`` (removed by the owner)."""
        with self._lock:
            if str(path) in self._manifest.paths:
                self._manifest.paths.remove(str(path))
                self._save()

    def close(self, wait_s: float = 1.0) -> None:
        """At the owner's exit: with nothing left tied, the manifest goes and the reaper exits
        (waited for up to ``wait_s``); what is left stays the reaper's, for once we are gone."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._manifest = self._manifest.pruned()
            if self._manifest.empty:
                remove_manifest(self.path)
            else:
                self._write()
            proc = self._reaper
            if proc is None:
                return
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            if self._manifest.empty:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait_s)

    def _save(self) -> None:
        """Write the manifest (without what is gone) and make sure the reaper runs."""
        if self.closed:
            return
        self._manifest = self._manifest.pruned()
        try:
            self._write()
            self._ensure_reaper()
        except OSError as exc:
            self._warn(f"cannot tie children to this process ({self.path}): {exc}")

    def _write(self) -> None:
        write_manifest(self.path, self._manifest)

    def _ensure_reaper(self) -> None:
        proc = self._reaper
        if proc is not None:
            if proc.poll() is None:
                return
            self._warn(f"reaper {proc.pid} exited with {proc.returncode}: started again")
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding drdrill/
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root, path)))}
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "drdrill.sandbox.reaper", "--manifest", str(self.path)],
            stdin=subprocess.PIPE,  # its only writer is us: end of file when we are gone
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # its own session: a Ctrl-C or a hang-up for the harness must not end it first
            start_new_session=True,
            cwd="/",
            env=env,
        )

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("drdrill: %s", message)


_current: Tether | None = None
_current_lock = threading.Lock()


def tether() -> Tether:
    """This process's tether (a new one in a forked child: the parent's is the parent's)."""
    global _current
    with _current_lock:
        if _current is None or _current.owner.pid != os.getpid():
            _current = Tether(ProcessId.current())
        return _current


def current_tether() -> Tether | None:
    """This process's tether if something was ever tied, else None."""
    found = _current
    return found if found is not None and found.owner.pid == os.getpid() else None


def tie_child(pid: int, what: str = "") -> None:
    """Tie child ``pid`` to this process: it is killed when this process dies without
    stopping it. Never raises (a reaper that cannot start is logged)."""
    try:
        tether().tie_child(pid, what)
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("drdrill: cannot tie %s (pid %s) to this process: %s", what, pid, exc)


def untie_child(pid: int) -> None:
    """Forget a child that exited."""
    found = current_tether()
    if found is not None:
        found.untie_child(pid)


def tie_path(path: Path) -> None:
    """Tie the folder ``path`` (``drdrill-*``) to this process: removed when this process
    dies without removing it."""
    try:
        tether().tie_path(path)
    except (OSError, RuntimeError) as exc:
        log.warning("drdrill: cannot tie %s to this process: %s", path, exc)


def untie_path(path: Path) -> None:
    """Forget a folder that was removed."""
    found = current_tether()
    if found is not None:
        found.untie_path(path)


@atexit.register
def _close_at_exit() -> None:
    """Registered at import, before the servers' own exit handlers: it runs after them."""
    found = current_tether()
    if found is not None:
        found.close()


def _forget_after_fork() -> None:
    """A forked child is not its parent's owner: it drops the parent's pipe to the reaper (the
    pipe's end of file must not wait for the child) and starts a tether of its own if it ties
    anything."""
    global _current, _current_lock
    _current_lock = threading.Lock()  # another thread may have held it at the fork
    found = _current
    _current = None
    if found is not None and found._reaper is not None and found._reaper.stdin is not None:
        with contextlib.suppress(OSError):
            found._reaper.stdin.close()


os.register_at_fork(after_in_child=_forget_after_fork)


if __name__ == "__main__":
    sys.exit(main())
