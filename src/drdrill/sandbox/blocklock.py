"""One sandbox a block: the supervisor holds its block's lock for as long as it lives.

Two sandboxes in one block would share its ports, so a second one would drive the first (its
``up`` would find the first's control API answering). The supervisor therefore takes an
exclusive ``flock`` on ``/tmp/drdrill-blocks/block-<N>.lock`` before it starts anything and
holds it until it exits; the kernel drops the lock with the process, so a lock left by a
supervisor that is gone (``kill -9`` included) is free again and is taken over silently. The
lock file holds the owner's record (JSON): its pid, its run folder and the command line that
started it, which a refusal names on one line.

``drdrill sandbox up``, the sandbox target's start and the other ``drdrill sandbox`` actions ask
:func:`check` first: a block held by another run folder's sandbox is refused
(:class:`BlockTaken`); one held by the same run folder is that sandbox, running already.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import psutil

from drdrill.errors import DrillError

#: machine-wide: every user's and every checkout's sandboxes share the blocks' ports
LOCK_DIR = Path("/tmp/drdrill-blocks")
#: the supervisor's exit status when its block is taken (its last output line says by whom)
EXIT_TAKEN = 3
#: how long a record being written by a new owner, or a reader's brief shared lock, is waited for
SETTLE_S = 1.0
_POLL_S = 0.02
_RECORD_MAX = 65536


class BlockTaken(DrillError):
    """The block is held by another sandbox; the message names its owner on one line."""


@dataclass(frozen=True)
class Owner:
    """The record of the process that holds a block's lock."""

    block: int
    #: the supervisor's pid (None when its record could not be read)
    pid: int | None
    #: its run folder, absolute
    run_dir: str
    #: the command line that started it (``drdrill sandbox up --config ...``, pytest, ...)
    command: str
    #: when it took the block (UTC, ISO 8601)
    since: str = ""

    def owns(self, run_dir: Path) -> bool:
        """Whether this owner is the sandbox of ``run_dir``."""
        return self.run_dir == _canonical(run_dir)

    def describe(self) -> str:
        """One line: pid, run folder and command line."""
        pid = "?" if self.pid is None else str(self.pid)
        since = f" since {self.since}" if self.since else ""
        return f"pid {pid}, run dir {self.run_dir}, started by `{self.command}`{since}"


def lock_path(block: int, folder: Path = LOCK_DIR) -> Path:
    """The lock file of a block."""
    return folder / f"block-{block}.lock"


def taken_message(block: int, owner: Owner) -> str:
    """The one-line refusal for a block ``owner`` holds."""
    return (
        f"sandbox block {block} is taken by another sandbox ({owner.describe()}); "
        "take that one down with its own config, or use another targets.sandbox.block"
    )


def owner(block: int, folder: Path = LOCK_DIR) -> Owner | None:
    """The live owner of a block; None when it is free (never taken, or its owner is gone)."""
    try:
        fd = os.open(lock_path(block, folder), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            # a shared lock is granted unless someone holds the exclusive one: the owner
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd, block)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def other_owner(block: int, run_dir: Path, folder: Path = LOCK_DIR) -> Owner | None:
    """The live owner of a block when it is another run folder's sandbox, else None."""
    found = owner(block, folder)
    return None if found is None or found.owns(run_dir) else found


def check(block: int, run_dir: Path, folder: Path = LOCK_DIR) -> None:
    """Refuse (:class:`BlockTaken`) a block that another run folder's sandbox holds."""
    found = other_owner(block, run_dir, folder)
    if found is not None:
        raise BlockTaken(taken_message(block, found))


class BlockLock:
    """The exclusive lock on one block, held by the process that took it until it exits."""

    def __init__(self, block: int, run_dir: Path, folder: Path = LOCK_DIR) -> None:
        self.block = block
        self.run_dir = run_dir
        self.path = lock_path(block, folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self, command: str | None = None) -> Owner:
        """Take the block, recording this process as its owner; :class:`BlockTaken` when a
        live process holds it. ``command`` is recorded as the starter (default: who started
        this process)."""
        if self._fd is not None:
            raise DrillError(f"sandbox block {self.block}: lock already held")
        try:
            _make_folder(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DrillError(f"sandbox block {self.block}: its lock {self.path}: {exc}") from None
        deadline = time.monotonic() + SETTLE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # held by an owner, or a reader's shared lock for an instant: look again shortly
                if time.monotonic() > deadline:
                    holder = _read_owner(fd, self.block)
                    os.close(fd)
                    raise BlockTaken(taken_message(self.block, holder)) from None
                time.sleep(_POLL_S)
            except BaseException:
                os.close(fd)
                raise
        record = Owner(
            block=self.block,
            pid=os.getpid(),
            run_dir=_canonical(self.run_dir),
            command=command if command is not None else starter(),
            since=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        data = json.dumps(asdict(record)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd = fd
        return record

    def release(self) -> None:
        """Give the block up (exiting does the same)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> BlockLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


#: what execnet runs a pytest-xdist worker as (``python -c "import sys;exec(eval(...))"``)
XDIST_BOOTSTRAP = "exec(eval(sys.stdin.readline()))"


def starter() -> str:
    """Who started this process: its parent's command line (for a pytest-xdist worker, which
    runs from an anonymous command, the controller's, named as that worker's). A command a
    worker ran (``drdrill sandbox up`` in a test) is named itself: it inherits the worker's
    environment, but its parent is no anonymous bootstrap."""
    try:
        parent = psutil.Process(os.getppid())
        command = " ".join(parent.cmdline())
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker and XDIST_BOOTSTRAP in command:
            controller = parent.parent()
            if controller is not None:
                command = f"pytest-xdist {worker} of {' '.join(controller.cmdline())}"
    except psutil.Error:
        return f"process {os.getppid()}"
    return " ".join(command.split()) or f"process {os.getppid()}"


def _canonical(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def _make_folder(folder: Path) -> None:
    """The lock folder, writable by every user (sticky, as /tmp) when this process makes it."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        return
    with contextlib.suppress(OSError):
        folder.chmod(0o1777)


def _read_owner(fd: int, block: int) -> Owner:
    """The record in the lock file; a new owner writes it just after taking the lock."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            data = json.loads(os.pread(fd, _RECORD_MAX, 0) or b"null")
            return Owner(
                block=block,
                pid=int(data["pid"]),
                run_dir=str(data["run_dir"]),
                command=str(data["command"]),
                since=str(data.get("since", "")),
            )
        except (OSError, ValueError, TypeError, KeyError):
            if time.monotonic() > deadline:
                return Owner(block=block, pid=None, run_dir="?", command="? (no owner record)")
            time.sleep(_POLL_S)
