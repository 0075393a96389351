"""One sandbox a block: the block lock (blocklock) with real processes, and the CLI refusing a
second sandbox in a taken block without starting anything.

The lock tests keep their lock files in a folder of their own; the end-to-end test runs the
real CLI in block 14 (the machine-wide lock folder) and takes down what it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.sandbox.sandbox_project import ROOT, short_folder, write_config

from drdrill.config import load_config
from drdrill.sandbox import blocklock
from drdrill.sandbox.blocklock import XDIST_BOOTSTRAP, BlockLock, BlockTaken
from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing
from drdrill.targets.sandbox import SandboxTarget

DRDRILL = str(Path(sys.executable).parent / "drdrill")
BLOCK = 14
needs_binaries = pytest.mark.skipif(
    bool(mariadb_missing() or haproxy_missing()),
    reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from drdrill.sandbox.blocklock import BlockLock
    lock = BlockLock(int(sys.argv[1]), Path(sys.argv[2]), folder=Path(sys.argv[3]))
    lock.acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """A child python process that holds block 14's lock (lock folder, run folder) until
    killed."""
    folder, run_dir = tmp_path / "locks", tmp_path / "run-a"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(BLOCK), str(run_dir), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc, folder, run_dir
    finally:
        proc.kill()
        proc.wait()


def test_a_free_block_has_no_owner_and_is_taken(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    assert blocklock.owner(BLOCK, folder) is None
    blocklock.check(BLOCK, tmp_path / "run", folder)  # nothing to refuse
    lock = BlockLock(BLOCK, tmp_path / "run", folder)
    record = lock.acquire(command="drdrill sandbox up --config x.yaml")
    try:
        assert record.pid == os.getpid() and lock.held
        assert record.run_dir == os.path.realpath(tmp_path / "run")
        # this process holds it: another descriptor of the same process is refused as well
        with pytest.raises(BlockTaken):
            BlockLock(BLOCK, tmp_path / "other", folder).acquire()
    finally:
        lock.release()
    assert not lock.held and blocklock.owner(BLOCK, folder) is None


def test_a_live_owner_is_named_on_one_line(
    holder: tuple[subprocess.Popen[str], Path, Path], tmp_path: Path
) -> None:
    proc, folder, run_a = holder
    found = blocklock.owner(BLOCK, folder)
    assert found is not None
    assert found.pid == proc.pid and found.run_dir == os.path.realpath(run_a)
    assert "pytest" in found.command  # the holder's parent: this test run
    assert found.owns(run_a) and not found.owns(tmp_path / "run-b")
    # its own run folder is that sandbox, running already: not refused
    blocklock.check(BLOCK, run_a, folder)
    assert blocklock.other_owner(BLOCK, run_a, folder) is None
    with pytest.raises(BlockTaken) as refused:
        blocklock.check(BLOCK, tmp_path / "run-b", folder)
    message = str(refused.value)
    assert "\n" not in message
    assert f"block {BLOCK}" in message and f"pid {proc.pid}" in message
    assert os.path.realpath(run_a) in message and found.command in message
    with pytest.raises(BlockTaken) as taken:
        BlockLock(BLOCK, tmp_path / "run-b", folder).acquire()
    assert str(taken.value) == message
    # another block is free
    assert blocklock.owner(BLOCK + 1, folder) is None


def test_a_dead_owners_lock_is_taken_over(
    holder: tuple[subprocess.Popen[str], Path, Path], tmp_path: Path
) -> None:
    proc, folder, _ = holder
    assert blocklock.owner(BLOCK, folder) is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # its record is still in the file, but nobody holds the lock
    assert blocklock.lock_path(BLOCK, folder).read_text() != ""
    assert blocklock.owner(BLOCK, folder) is None
    blocklock.check(BLOCK, tmp_path / "run-b", folder)
    lock = BlockLock(BLOCK, tmp_path / "run-b", folder)
    try:
        record = lock.acquire()
        found = blocklock.owner(BLOCK, folder)
        assert found == record and found.pid == os.getpid()
        assert found.run_dir == os.path.realpath(tmp_path / "run-b")
    finally:
        lock.release()


def _drdrill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DRDRILL, *args], capture_output=True, text=True, timeout=180, cwd=ROOT)


def _from_run_dir(run_dir: Path) -> list[str]:
    """The command lines of the processes that name ``run_dir`` (or a path inside it)."""
    marker = os.path.realpath(run_dir)
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if f"{marker}/" in f"{cmdline} " or f"{marker} " in f"{cmdline} ":
                found.append(cmdline)
        except psutil.Error:
            continue
    return found


@needs_binaries
def test_a_second_sandbox_in_a_taken_block_is_refused() -> None:
    with short_folder("bl14a") as first, short_folder("bl14b") as second:
        config_a, config_b = write_config(first, BLOCK), write_config(second, BLOCK)
        run_b = second / "sandbox"
        try:
            up_a = _drdrill("sandbox", "up", "--json", "--config", str(config_a))
            assert up_a.returncode == 0, up_a.stdout + up_a.stderr
            pid_a = psutil.Process(json.loads(up_a.stdout)["pid"])

            up_b = _drdrill("sandbox", "up", "--config", str(config_b))
            assert up_b.returncode != 0
            lines = [line for line in up_b.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, up_b.stderr
            assert "Traceback" not in up_b.stderr and up_b.stdout == ""
            line = lines[0]
            assert f"block {BLOCK}" in line and f"pid {pid_a.pid}" in line
            assert os.path.realpath(first / "sandbox") in line and str(config_a) in line
            # nothing of the second sandbox was started (no mariadbd, haproxy, supervisor)
            assert _from_run_dir(run_b) == []
            # its other actions are refused the same way; its down leaves the first alone
            status_b = _drdrill("sandbox", "status", "--config", str(config_b))
            assert status_b.returncode != 0 and f"pid {pid_a.pid}" in status_b.stderr
            down_b = _drdrill("sandbox", "down", "--config", str(config_b))
            assert down_b.returncode == 0 and "left alone" in down_b.stdout
            assert pid_a.is_running() and pid_a.status() != psutil.STATUS_ZOMBIE
            # a pytest-xdist worker whose block is taken (gw0 of block 13 drills block 14)
            (second / "w").mkdir()
            config_w = load_config(write_config(second / "w", BLOCK - 1))
            worker = SandboxTarget(config_w, worker="gw0")
            assert worker.settings.block == BLOCK
            with pytest.raises(BlockTaken, match=f"pid {pid_a.pid}"):
                worker.start()
            assert _from_run_dir(worker.run_dir) == []
            # the first one still answers as before: up on its own run folder is idempotent
            again = _drdrill("sandbox", "up", "--config", str(config_a))
            assert again.returncode == 0, again.stderr
            assert f"supervisor pid {pid_a.pid}" in again.stdout
        finally:
            _drdrill("sandbox", "down", "--config", str(config_b))
            _drdrill("sandbox", "down", "--config", str(config_a))
        assert blocklock.owner(BLOCK) is None


def _starter_seen_from(tmp_path: Path, *, bootstrap: bool) -> str:
    """What :func:`starter` says in a child of a parent started under a pytest-xdist worker's
    environment: the parent run as execnet runs a worker (``bootstrap``), or as a command of its
    own (a script file)."""
    child = "from drdrill.sandbox.blocklock import starter; print(starter())"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    env = {**os.environ, "PYTEST_XDIST_WORKER": "gw7"}
    if bootstrap:
        command = [sys.executable, "-c", f"import sys;{XDIST_BOOTSTRAP}"]
        return subprocess.run(
            command, input=repr(code) + "\n", capture_output=True, text=True, env=env, timeout=60
        ).stdout.strip()
    script = tmp_path / "parent.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    ).stdout.strip()


def test_the_owner_record_names_who_started_the_sandbox_under_xdist(tmp_path: Path) -> None:
    """A sandbox started in a worker is named as that worker of the controller; one started by
    a command a worker ran (``drdrill sandbox up`` in a test) is named by that command. Before
    the fix the command was lost to the worker's anonymous bootstrap (``...ne()))``), and the
    refusal of a taken block did not name the config to take it down with."""
    me = " ".join(psutil.Process().cmdline())
    in_worker = _starter_seen_from(tmp_path, bootstrap=True)
    assert in_worker == f"pytest-xdist gw7 of {' '.join(me.split())}", in_worker
    by_command = _starter_seen_from(tmp_path, bootstrap=False)
    assert by_command == f"{sys.executable} {tmp_path / 'parent.py'}", by_command
