"""Servers die with whoever started them (issue 12, part 5): the reaper.

Unit tests of the reaper's decisions run without processes (a fake ``/proc``). The rest start
real ones, each owner a ``python -c`` or pytest subprocess killed with SIGKILL as a CI timeout
does: its MariaDB servers, HAProxy and temporary folders are gone within seconds; a normal exit
leaves no reaper and no manifest; a sandbox a drill run brought up (block 18) goes down with the
run, and one brought up with ``drdrill sandbox up`` outlives the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from tests.sandbox.sandbox_project import (
    ROOT,
    SANDBOX_MARKS,
    drdrill_cli,
    short_folder,
    write_config,
)

from drdrill.config import load_config
from drdrill.sandbox import blocklock, control, reaper
from drdrill.sandbox.reaper import Manifest, ProcessId, ProcState, Reaper, TiedChild
from drdrill.sandbox.supervisor import watch_owner

BLOCK = 18
#: how long a killed owner's processes and folders may take to be gone
GONE_WITHIN_S = 20.0

F = TypeVar("F", bound=Callable[..., Any])


def real_processes(test: F) -> F:
    """The sandbox tests' marks (slow; skipped without the MariaDB and HAProxy binaries)."""
    for mark in SANDBOX_MARKS:
        test = mark(test)
    return test


# --- the reaper's decisions, without processes --------------------------------------------------


class FakeProc:
    """A fake process table: pid -> (state, start)."""

    def __init__(self, **table: tuple[str, float]) -> None:
        self.table = {int(pid.removeprefix("p")): state for pid, state in table.items()}

    def __call__(self, pid: int) -> ProcState | None:
        found = self.table.get(pid)
        return None if found is None else ProcState(*found)


def test_a_process_is_its_pid_and_its_start_time() -> None:
    look = FakeProc(p100=("S", 50.0), p101=("Z", 60.0), p102=("R", 99.0))
    assert reaper.is_alive(ProcessId(100, 50.0), look)
    assert not reaper.is_alive(ProcessId(100, 49.0), look)  # the pid was reused
    assert not reaper.is_alive(ProcessId(101, 60.0), look)  # a zombie is dead already
    assert not reaper.is_alive(ProcessId(103, 1.0), look)  # gone
    assert ProcessId.of(102, look) == ProcessId(102, 99.0)
    assert ProcessId.of(101, look) is None and ProcessId.of(103, look) is None
    for pid in (-1, 0, 1):  # kill(2) would signal a group, everyone, or init
        with pytest.raises(ValueError):
            ProcessId(pid, 1.0)


def test_this_process_is_found_by_the_real_probe() -> None:
    me = ProcessId.current()
    assert me.pid == os.getpid() and reaper.is_alive(me)
    assert not reaper.is_alive(ProcessId(me.pid, me.start + 1.0))
    assert ProcessId.of(os.getpid()) == me  # the same start time, read again


def test_only_drdrill_folders_are_removable() -> None:
    assert reaper.removable("/tmp/drdrill-mariadb-primary-x1")
    for path in ("/tmp/other", "drdrill-relative", "/", "/tmp/drdrill-x/../etc", "/tmp/a/data"):
        assert not reaper.removable(path), path


def test_the_manifest_round_trips_and_prunes(tmp_path: Path) -> None:
    kept, gone = tmp_path / "drdrill-kept", tmp_path / "drdrill-gone"
    kept.mkdir()
    manifest = Manifest(
        ProcessId(10, 5.0),
        {
            20: TiedChild(ProcessId(20, 6.0), "mariadb 'a'"),
            21: TiedChild(ProcessId(21, 7.0), "haproxy"),
            22: TiedChild(ProcessId(22, 8.0), "reused"),
        },
        [str(kept), str(gone)],
    )
    path = tmp_path / "m.json"
    reaper.write_manifest(path, manifest)
    assert reaper.read_manifest(path) == manifest
    look = FakeProc(p10=("S", 5.0), p20=("S", 6.0), p22=("S", 9.0))
    pruned = manifest.pruned(look)
    assert list(pruned.children) == [20] and pruned.paths == [str(kept)]
    assert reaper.read_manifest(tmp_path / "missing.json") is None


class World:
    """The reaper's world: a fake process table, kills that end processes, a fake clock."""

    def __init__(self, tmp_path: Path, owner_lives_for: int) -> None:
        self.look = FakeProc(
            p10=("S", 5.0),  # the owner
            p20=("S", 6.0),  # a tied server, still running
            p21=("S", 99.0),  # a tied pid, reused since by another process
            p23=("Z", 8.0),  # a tied server that died, not yet reaped
        )
        self.owner_lives_for = owner_lives_for
        self.killed: list[int] = []
        self.removed: list[str] = []
        self.sleeps: list[float] = []
        self.now = 0.0
        self.run_dir = tmp_path / "drdrill-mariadb-x"
        self.run_dir.mkdir()
        self.other = tmp_path / "data"  # not a drdrill- folder: never removed
        self.other.mkdir()
        self.path = tmp_path / "drdrill-reaper-10-5.00.json"
        children = {
            pid: TiedChild(ProcessId(pid, start))
            for pid, start in ((20, 6.0), (21, 7.0), (23, 8.0))
        }
        reaper.write_manifest(
            self.path,
            Manifest(ProcessId(10, 5.0), children, [str(self.run_dir), str(self.other)]),
        )

    def kill(self, ident: ProcessId) -> bool:
        assert reaper.is_alive(ident, self.look), "killed a process that is not the tied one"
        self.killed.append(ident.pid)
        del self.look.table[ident.pid]
        return True

    def wait(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        self.owner_lives_for -= 1
        if self.owner_lives_for <= 0:
            self.look.table.pop(10, None)
        return False

    def reaper(self, **kwargs: Any) -> Reaper:
        return Reaper(
            self.path,
            look=self.look,
            killer=self.kill,
            remove=self.removed.append,
            clock=lambda: self.now,
            wait_eof=kwargs.pop("wait_eof", self.wait),
            sleep=kwargs.pop("sleep", self.wait),
            **kwargs,
        )


def test_a_dead_owners_children_are_killed_and_its_folders_removed(tmp_path: Path) -> None:
    world = World(tmp_path, owner_lives_for=3)
    assert world.reaper().run() == 0
    assert world.sleeps == [reaper.POLL_S] * 3  # the owner was checked until gone
    # the running one only: not the reused pid, not the zombie
    assert world.killed == [20]
    assert world.removed == [str(world.run_dir)]
    assert not world.path.exists()


def test_a_reused_owner_pid_is_a_dead_owner(tmp_path: Path) -> None:
    world = World(tmp_path, owner_lives_for=1000)
    world.look.table[10] = ("S", 77.0)  # someone else has the owner's pid now
    assert world.reaper().run() == 0
    assert world.sleeps == [] and world.killed == [20]


def test_an_owner_that_removed_its_manifest_leaves_nothing_to_do(tmp_path: Path) -> None:
    world = World(tmp_path, owner_lives_for=1000)

    def owner_cleans_up(seconds: float) -> bool:
        reaper.remove_manifest(world.path)
        return True  # and closes its pipe

    assert world.reaper(wait_eof=owner_cleans_up).run() == 0
    assert world.killed == [] and world.removed == []


def test_after_the_owners_pipe_closes_it_is_checked_often(tmp_path: Path) -> None:
    """End of file: the owner is exiting (or dead while a forked child holds its pipe), so it
    is looked at every EXITING_POLL_S, not every POLL_S."""
    world = World(tmp_path, owner_lives_for=3)
    eofs: list[float] = []

    def eof(seconds: float) -> bool:
        eofs.append(seconds)
        return True

    assert world.reaper(wait_eof=eof).run() == 0
    assert eofs == [reaper.POLL_S] and world.sleeps == [reaper.EXITING_POLL_S] * 3
    assert world.killed == [20]


def test_the_supervisor_shuts_down_once_its_owner_is_gone() -> None:
    look = FakeProc(p10=("S", 5.0))
    shutdown = threading.Event()
    watcher = watch_owner(ProcessId(10, 5.0), shutdown, interval_s=0.01, look=look)
    assert not shutdown.wait(0.1)  # alive: nothing asked
    look.table[10] = ("S", 6.0)  # the pid is someone else's now
    assert shutdown.wait(2.0)
    watcher.join(2.0)
    assert not watcher.is_alive()


def test_only_drdrill_folders_can_be_tied(tmp_path: Path) -> None:
    tether = reaper.Tether(ProcessId.current(), folder=tmp_path)
    with pytest.raises(ValueError, match="drdrill-"):
        tether.tie_path(tmp_path / "data")
    assert tether.reaper_pid is None and not tether.path.exists()  # nothing started


# --- real owners, killed ------------------------------------------------------------------------

#: an owner: a MariaDB server with a temporary run folder and an HAProxy in the test's folder;
#: says what it started, then waits to be killed (or, with "exit", cleans up and exits)
OWNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from drdrill.sandbox import mariadb, reaper
    from drdrill.sandbox.haproxy import HAProxyLB
    from drdrill.sandbox.settings import Timings

    mode, folder = sys.argv[1], Path(sys.argv[2])
    servers = [mariadb.MariaDBServer(mariadb.MariaDBConfig(name="owner-death", server_id=61))]
    if mode == "exit-two":
        servers.append(
            mariadb.MariaDBServer(mariadb.MariaDBConfig(name="owner-death-2", server_id=62))
        )
    for server in servers:
        server.start()
    lb = HAProxyLB("alb-owner-death", "127.0.0.1", 0, folder / "alb", Timings())
    lb.start()
    tether = reaper.current_tether()
    print(json.dumps({
        "mariadbd": [s.pid for s in servers],
        "run_dirs": [str(s.run_dir) for s in servers],
        "template": str(mariadb._template_root),
        "haproxy": lb.pid,
        "reaper": tether.reaper_pid,
        "manifest": str(tether.path),
    }), flush=True)
    if mode == "hang":
        time.sleep(600)
    lb.stop()
    if mode == "exit":
        for server in servers:
            server.cleanup()
    # "exit-two": left to the exit handlers
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _start_owner(mode: str, folder: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, mode, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        pytest.fail(f"the owner exited with {proc.returncode} before starting its servers")
    return proc, json.loads(line)


def _leftovers(info: dict[str, Any]) -> list[str]:
    """What the owner started that is still there."""
    left = [f"mariadbd {pid}" for pid in info["mariadbd"] if not _gone(pid)]
    left += [f"haproxy {info['haproxy']}"] if not _gone(info["haproxy"]) else []
    left += [f"reaper {info['reaper']}"] if not _gone(info["reaper"]) else []
    paths = [*info["run_dirs"], info["template"], info["manifest"]]
    return left + [path for path in paths if os.path.lexists(path)]


def _wait_until_gone(info: dict[str, Any], timeout: float) -> float:
    """Seconds until everything the owner started is gone; fails after ``timeout``."""
    started = time.monotonic()
    while left := _leftovers(info):
        if time.monotonic() - started > timeout:
            pytest.fail(f"still there {timeout:g} s after the owner ended: {left}")
        time.sleep(0.01)
    return time.monotonic() - started


def _kill_all(info: dict[str, Any]) -> None:
    """The test's own clean-up, should the reaper have failed."""
    for key in ("mariadbd", "haproxy", "reaper"):
        pids = info[key] if isinstance(info[key], list) else [info[key]]
        for pid in pids:
            if not _gone(pid):
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()


@real_processes
def test_a_killed_owners_servers_and_folders_are_gone() -> None:
    with short_folder("drdrill-od-") as folder:
        proc, info = _start_owner("hang", folder)
        try:
            assert info["run_dirs"][0].startswith("/") and os.path.isdir(info["run_dirs"][0])
            assert os.path.isdir(info["template"]) and os.path.exists(info["manifest"])
            manifest = reaper.read_manifest(Path(info["manifest"]))
            assert manifest is not None and manifest.owner.pid == proc.pid
            assert set(manifest.children) == {*info["mariadbd"], info["haproxy"]}
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            took = _wait_until_gone(info, GONE_WITHIN_S)
            print(f"kill -9 of the owner: servers, folders and reaper gone after {took:.3f} s")
        finally:
            proc.kill()
            proc.wait(10)
            _kill_all(info)


@real_processes
@pytest.mark.parametrize("mode", ["exit", "exit-two"])
def test_a_normal_exit_leaves_no_reaper_and_no_manifest(mode: str) -> None:
    """Cleaned up by the owner (``exit``), or by its exit handlers with two servers running
    (``exit-two``: one reaper for both)."""
    with short_folder("drdrill-od-") as folder:
        proc, info = _start_owner(mode, folder)
        try:
            reapers = [
                p
                for p in psutil.process_iter(["cmdline"])
                if "drdrill.sandbox.reaper" in (p.info["cmdline"] or [])
                and info["manifest"] in (p.info["cmdline"] or [])
            ]
            assert [p.pid for p in reapers] == [info["reaper"]]  # one for the owner
            assert proc.wait(60) == 0
            took = _wait_until_gone(info, 2.0)  # the reaper was waited for by the owner
            print(f"normal exit ({mode}): nothing left {took:.3f} s after it")
        finally:
            proc.kill()
            proc.wait(10)
            _kill_all(info)


# --- a drill run's sandbox ------------------------------------------------------------------------

#: a drill that brings the sandbox up (the ``target`` fixture) and holds it until killed
HOLD = """
import json, time
from pathlib import Path

def test_hold_the_sandbox(target):
    Path({flag!r}).write_text(json.dumps(target.status()))
    time.sleep(600)
"""


def _pids(status: dict[str, Any]) -> dict[str, int]:
    """Every process of a running sandbox, by what it is."""
    pids = {"supervisor": status["pid"], "pager": status["pager"]["pid"]}
    pids["observer"] = status["observer"]["pid"]
    for key, region in status["regions"].items():
        pids[f"rds-{key}"] = region["rds"]["pid"]
        pids[f"alb-{key}"] = region["alb"]["pid"]
        for task in region["ecs"]["tasks"]:
            pids[task["id"]] = task["pid"]
    return {what: pid for what, pid in pids.items() if pid}


@real_processes
def test_a_drill_runs_sandbox_goes_with_the_run_and_a_users_stays() -> None:
    with short_folder("drdrill-od-") as folder:
        config = write_config(folder, BLOCK)
        settings, run_dir = control.load_settings(load_config(config))
        if control.client_for(settings).alive() or blocklock.owner(BLOCK) is not None:
            pytest.fail(f"a sandbox already runs in block {BLOCK}: not ours to drive")
        flag = folder / "up.json"
        drill = folder / "test_hold.py"
        drill.write_text(HOLD.format(flag=str(flag)))
        args = [sys.executable, "-m", "pytest", str(drill), "-p", "no:cacheprovider"]
        args += ["-p", "fixtures.drills", "--rootdir", str(folder), "--dr-config", str(config)]
        run = subprocess.Popen(
            args,
            cwd=folder,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not flag.exists() or not flag.read_text():
                assert run.poll() is None, f"the drill run exited with {run.returncode}"
                assert time.monotonic() < deadline, "the drill run never brought the sandbox up"
                time.sleep(0.05)
            time.sleep(0.05)  # the flag is written in one go; let it land
            pids = _pids(json.loads(flag.read_text()))
            owner = blocklock.owner(BLOCK)
            assert owner is not None and owner.pid == pids["supervisor"]
            assert all(not _gone(pid) for pid in pids.values()), pids

            run.send_signal(signal.SIGKILL)
            run.wait(10)
            started = time.monotonic()
            while left := [w for w, pid in pids.items() if not _gone(pid)]:
                assert time.monotonic() - started < 60, f"still running after the run: {left}"
                time.sleep(0.02)
            took = time.monotonic() - started
            assert blocklock.owner(BLOCK) is None  # the block is free
            log = (run_dir / "supervisor.log").read_text()
            assert f"owner pid {run.pid} is gone: shutting down" in log
            print(f"kill -9 of the drill run: its sandbox down after {took:.3f} s ({len(pids)})")

            # a sandbox brought up by `drdrill sandbox up` is nobody's: it outlives the command
            up = drdrill_cli("sandbox", "up", "--config", str(config), cwd=folder)
            assert up.returncode == 0, up.stdout + up.stderr
            status = control.client_for(settings).status()
            time.sleep(4 * reaper.POLL_S)  # an owner's watch would have seen the command go
            assert not _gone(status["pid"]) and control.client_for(settings).alive()
            owner = blocklock.owner(BLOCK)
            assert owner is not None and owner.pid == status["pid"]
            assert "--owner-pid" not in " ".join(psutil.Process(status["pid"]).cmdline())
            down = drdrill_cli("sandbox", "down", "--config", str(config), cwd=folder)
            assert down.returncode == 0, down.stdout + down.stderr
            assert blocklock.owner(BLOCK) is None
        finally:
            run.kill()
            run.wait(10)
            control.down(settings, run_dir)
