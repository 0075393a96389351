"""The life cycle of the sandbox's child processes, in one place.

:class:`Child` is one child process of a component (a ``mariadbd``, an ``haproxy``, a helper):
started in its own session (a Ctrl-C meant for the harness must not reach it first) with its
output in a log file; running until it exits or is a zombie (a Z process is dead already, even
when it is reaped late); stopped with signals in turn, killed with SIGKILL, frozen with SIGSTOP
and thawed with SIGCONT (both waited for: delivery is asynchronous); an orphan left by an
earlier harness process found by its pid file and killed. Its messages name it by the owner's
label and raise the owner's error classes, so that a component's errors stay its own.

Every child is tied to the process that started it (:mod:`drdrill.sandbox.reaper`): its own
session keeps a Ctrl-C away from it, and so nothing else would end it if that process died
without stopping it (a CI timeout's SIGKILL). The process's reaper kills it then.

:class:`ChildProcess` is a small helper process of the supervisor (the pager, the observer),
expected to exit by itself when its parent is gone (``--parent-pid``):
:meth:`ChildProcess.start` waits until the process prints its ready line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from drdrill.errors import DrillError
from drdrill.sandbox import reaper

#: How many lines of its log a child's messages quote.
TAIL_LINES = 8

#: Called when a child exited while starting, with its return code and log tail: returns None
#: once it started the child again (the wait goes on), else a note for the error message.
ExitHandler = Callable[[int, str], str | None]


class ChildError(DrillError):
    """A helper process that did not start or stop."""


def format_tail(text: str, heading: str, lines: int = TAIL_LINES) -> str:
    """The last non-blank ``lines`` of ``text`` under ``heading``, indented for an error message
    (empty when there are none)."""
    kept = [line for line in text.rstrip().splitlines() if line.strip()][-lines:]
    if not kept:
        return ""
    return f"\n  {heading}:\n" + "\n".join(f"    {line}" for line in kept)


class Child:
    """One child process of a component: spawn, watch, signal, reap.

    ``label`` names it in messages (asked each time: an owner's address may change);
    ``logs`` are where its own record is, read in order by :meth:`log_tail`; errors are raised
    as ``error``, and as ``start_error`` while it starts. One owner drives it.
    """

    def __init__(
        self,
        label: Callable[[], str],
        logs: Sequence[Path],
        *,
        tail_heading: str = "log tail",
        error: type[DrillError] = ChildError,
        start_error: type[DrillError] | None = None,
    ) -> None:
        self._label = label
        self.logs = tuple(logs)
        self.tail_heading = tail_heading
        self.error = error
        self.start_error = start_error or error
        #: the last process started (None before the first start and once it is reaped)
        self.popen: subprocess.Popen[bytes] | None = None
        #: stopped with SIGSTOP and not yet continued
        self.frozen = False

    @property
    def label(self) -> str:
        """How messages name it."""
        return self._label()

    @property
    def pid(self) -> int | None:
        """The process id while it runs, else None."""
        proc = self.popen
        return proc.pid if proc is not None and self.is_running() else None

    @property
    def is_frozen(self) -> bool:
        """Stopped with SIGSTOP and not yet continued."""
        return self.frozen and self.is_running()

    def is_running(self) -> bool:
        """The process exists and is not a zombie (a stopped, frozen one counts)."""
        proc = self.popen
        if proc is None or proc.poll() is not None:
            return False
        try:
            # Zombies can be reaped late (1-2 s for mariadbd here): a Z process is dead already.
            return psutil.Process(proc.pid).status() not in (
                psutil.STATUS_ZOMBIE,
                psutil.STATUS_DEAD,
            )
        except psutil.NoSuchProcess:
            return False

    def spawn(self, cmd: Sequence[str], output: Path) -> None:
        """Start ``cmd`` in its own session, stdin closed, stdout and stderr appended to
        ``output``, tied to this process (killed by its reaper if this process dies without
        stopping it); it is not frozen."""
        with output.open("ab") as log:
            try:
                self.popen = subprocess.Popen(
                    list(cmd),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    # Our own session: a Ctrl-C meant for the harness must not reach the child
                    # before the harness has had a chance to revert its faults.
                    start_new_session=True,
                )
            except OSError as exc:
                raise self.start_error(f"{self.label}: cannot run {cmd[0]}: {exc}") from exc
        reaper.tie_child(self.popen.pid, self.label)
        self.frozen = False

    def reap(self) -> None:
        """Forget a process that has exited (a running one is kept)."""
        proc = self.popen
        if proc is not None and proc.poll() is not None:
            self.popen = None
            self.frozen = False
            reaper.untie_child(proc.pid)

    def require_running(self, what: str) -> subprocess.Popen[bytes]:
        """The running process; raises ``error`` naming ``what`` could not be done."""
        proc = self.popen
        if proc is None or not self.is_running():
            raise self.error(f"{self.label}: cannot {what}: not running")
        return proc

    def wait_ready(
        self,
        probe: Callable[[], str | None],
        *,
        timeout: float,
        interval: float,
        on_exit: ExitHandler | None = None,
    ) -> None:
        """Wait until ``probe`` returns None (ready; else it returns why not), every
        ``interval`` s up to ``timeout`` s.

        A process that exits meanwhile is passed to ``on_exit``, which may start it again;
        otherwise ``start_error`` is raised with the log's tail, as it is after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while True:
            proc = self.popen
            if proc is not None and proc.poll() is not None:
                tail = self.log_tail()
                note = "" if on_exit is None else on_exit(proc.returncode, tail)
                if note is None:
                    continue
                raise self.start_error(
                    f"{self.label} exited with status {proc.returncode} while starting"
                    + note
                    + format_tail(tail, self.tail_heading)
                )
            reason = probe()
            if reason is None:
                return
            last = reason
            if time.monotonic() >= deadline:
                raise self.start_error(
                    f"{self.label} not ready after {timeout:.1f} s: {last}" + self.formatted_tail()
                )
            time.sleep(interval)

    def stop(self, signals: Sequence[tuple[int, float]]) -> bool:
        """Send each ``(signal, seconds)`` in turn and wait that long for the process to exit.

        A frozen process is thawed first (a stopped process keeps the signal pending). True
        once it exited and was reaped, or when it was not running; False when it still runs
        after the last signal (the caller kills it).
        """
        proc = self.popen
        if proc is None or not self.is_running():
            self.reap()
            return True
        if self.frozen:
            self.thaw()
        for signum, wait_s in signals:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait_s)
                self.reap()
                return True
        return False

    def kill(self, timeout: float = 10.0) -> bool:
        """SIGKILL, and return once it is reaped; True when it was running until then."""
        proc = self.popen
        if proc is None:
            return False
        was_running = proc.poll() is None
        if was_running:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise self.error(
                    f"{self.label}: pid {proc.pid} still there {timeout:.1f} s after SIGKILL"
                ) from None
        self.reap()
        return was_running

    def freeze(self, timeout: float = 5.0) -> None:
        """SIGSTOP; returns once the kernel reports it stopped."""
        proc = self.require_running("freeze")
        os.kill(proc.pid, signal.SIGSTOP)
        self.frozen = True
        self.wait_state(proc.pid, stopped=True, timeout=timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        """SIGCONT: undo :meth:`freeze`; returns once it runs again."""
        proc = self.require_running("thaw")
        os.kill(proc.pid, signal.SIGCONT)
        self.frozen = False
        self.wait_state(proc.pid, stopped=False, timeout=timeout)

    def wait_state(self, pid: int, *, stopped: bool, timeout: float) -> None:
        """Wait until ``pid`` is stopped (or no longer stopped), gone or a zombie."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = psutil.Process(pid).status()
            except psutil.NoSuchProcess:
                return
            if (state == psutil.STATUS_STOPPED) == stopped or state == psutil.STATUS_ZOMBIE:
                return
            if time.monotonic() >= deadline:
                what = "stop" if stopped else "continue"
                raise self.error(f"{self.label}: did not {what} within {timeout:.1f} s")
            time.sleep(0.005)

    def kill_orphan(self, pid_file: Path, marker: str) -> int | None:
        """Kill a process left running by an earlier harness process, found by ``pid_file``.

        Only a process whose command line holds ``marker`` is killed (the pid file alone may
        be stale and its pid reused), and never this child's own. Returns the pid killed.
        """
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self.popen is not None and self.popen.pid == pid:
            return None  # ours
        try:
            orphan = psutil.Process(pid)
            if marker not in orphan.cmdline():
                return None
            orphan.kill()
            orphan.wait(10)
        except psutil.NoSuchProcess:
            return None
        except psutil.TimeoutExpired:
            raise self.error(f"{self.label}: orphan pid {pid} survived SIGKILL") from None
        return pid

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of the first of ``logs`` that holds anything, or ""."""
        for path in self.logs:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                return "\n".join(text.rstrip().splitlines()[-lines:])
        return ""

    def formatted_tail(self) -> str:
        """:meth:`log_tail` indented under its heading, for an error message."""
        return format_tail(self.log_tail(), self.tail_heading)


class ChildProcess:
    """One helper process with its log, ready once its output holds ``ready_line``."""

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path, ready_line: str) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self.ready_line = ready_line
        #: the output line that held ``ready_line`` (its last start)
        self.ready_text = ""
        self._child = Child(lambda: self.name, (log_path,))

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._child.pid

    def is_running(self) -> bool:
        """It was started and has not exited."""
        return self._child.is_running()

    def start(self, timeout: float = 15.0) -> None:
        """Start it (no-op while it runs) and wait for its ready line."""
        if self.is_running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        start_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._child.spawn(self.cmd, self.log_path)
        proc = self._child.popen
        assert proc is not None  # just spawned
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open("rb") as log:
                log.seek(start_at)
                for line in log.read().decode(errors="replace").splitlines():
                    if self.ready_line in line:
                        self.ready_text = line
                        return
            if proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-500:].strip()
                raise ChildError(f"{self.name} exited with {proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise ChildError(f"{self.name} not ready after {timeout:g} s (see {self.log_path})")
            time.sleep(0.02)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; returns once it is reaped."""
        if not self._child.stop(((signal.SIGTERM, timeout),)):
            self._child.kill(5.0)
