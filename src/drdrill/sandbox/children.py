"""Small helper processes of the supervisor (the pager, the observer): start, wait, stop.

Each runs in its own session (a Ctrl-C meant for the harness must not reach it first) with its
output in a log file, and is expected to exit by itself when its parent is gone
(``--parent-pid``). :meth:`ChildProcess.start` waits until the process prints its ready line.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from drdrill.errors import DrillError


class ChildError(DrillError):
    """A helper process that did not start or stop."""


class ChildProcess:
    """One helper process with its log, ready once its output holds ``ready_line``."""

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path, ready_line: str) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        self.ready_line = ready_line
        #: the output line that held ``ready_line`` (its last start)
        self.ready_text = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        """It was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Start it (no-op while it runs) and wait for its ready line."""
        if self.is_running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        start_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self.cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ChildError(f"{self.name}: cannot run {self.cmd[0]}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while True:
            with self.log_path.open("rb") as log:
                log.seek(start_at)
                for line in log.read().decode(errors="replace").splitlines():
                    if self.ready_line in line:
                        self.ready_text = line
                        return
            if self._proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-500:].strip()
                raise ChildError(f"{self.name} exited with {self._proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise ChildError(f"{self.name} not ready after {timeout:g} s (see {self.log_path})")
            time.sleep(0.02)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; returns once it is reaped."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5.0)
        self._proc = None
