"""Process faults on real victims: freeze and resume, stop or kill and restart, pid reuse."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from drdrill.errors import FaultError
from drdrill.faults.process import FreezeProcess, KillProcess, ProcessRef, StopProcess

VICTIM = Path(__file__).parent / "helpers" / "victim.py"
RUNNING = {psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING}


def _read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output from pid {proc.pid} within {timeout} s")
    return proc.stdout.readline().strip()


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _status(pid: int) -> str:
    return psutil.Process(pid).status()


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).kill()


class Victims:
    """Victim processes started for one test, and every process to kill when it ends."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.popens: list[subprocess.Popen[str]] = []
        self.pids: list[int] = []

    def spawn(self, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a victim (unique argv), wait until it says ready."""
        proc = subprocess.Popen(
            [sys.executable, str(VICTIM), uuid.uuid4().hex, *options],
            stdout=subprocess.PIPE,
            text=True,
            cwd=self.cwd,
            env={**os.environ, **(env or {})},
        )
        self.popens.append(proc)
        assert _read_line(proc).startswith("ready")
        self.pids.extend(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        return proc

    def adopt(self, pid: int) -> None:
        """Kill ``pid`` too at the end (a restarted victim)."""
        self.pids.append(pid)

    def cleanup(self) -> None:
        """SIGKILL everything (a stopped process dies of SIGKILL too) and reap our children."""
        for pid in self.pids:
            _kill_quietly(pid)
        for proc in self.popens:
            proc.kill()
            proc.wait(timeout=30)
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.fixture
def victims(tmp_path: Path) -> Iterator[Victims]:
    """Victims started in ``tmp_path``; all killed after the test."""
    started = Victims(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


def _running_with_argv(argv: list[str]) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline", "status"])
        if p.info["cmdline"] == argv and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def test_freeze_stops_the_victim_and_revert_resumes_it(victims: Victims) -> None:
    victim = victims.spawn()
    fault = FreezeProcess.of(victim.pid, name="demo-app")
    assert fault.describe() == f"freeze process {victim.pid} (demo-app)"

    fault.inject()
    assert _status(victim.pid) == psutil.STATUS_STOPPED

    result = fault.revert()
    assert result.note == "resumed"
    assert _status(victim.pid) in RUNNING
    # Idempotent: a second revert changes nothing and does not fail.
    assert fault.revert().note == "resumed"
    assert _status(victim.pid) in RUNNING


def test_freeze_tree_stops_and_resumes_every_descendant(victims: Victims) -> None:
    victim = victims.spawn("--children", "2")
    fault = FreezeProcess.of(victim.pid, tree=True, name="demo-app")
    pids = [victim.pid, *(c.pid for c in fault.children)]
    assert len(fault.children) == 2
    assert fault.describe() == f"freeze process tree {victim.pid} (demo-app)"

    fault.inject()
    assert [_status(pid) for pid in pids] == [psutil.STATUS_STOPPED] * 3

    assert fault.revert().note == "resumed 3 processes"
    assert all(_status(pid) in RUNNING for pid in pids)


def test_freeze_without_tree_leaves_children_running(victims: Victims) -> None:
    victim = victims.spawn("--children", "1")
    child = psutil.Process(victim.pid).children()[0]
    fault = FreezeProcess.of(victim.pid)
    fault.inject()
    try:
        assert _status(victim.pid) == psutil.STATUS_STOPPED
        assert child.status() in RUNNING
    finally:
        fault.revert()


def test_stop_ends_the_victim_and_revert_restarts_it_from_argv(
    victims: Victims, tmp_path: Path
) -> None:
    victim = victims.spawn()
    argv = psutil.Process(victim.pid).cmdline()
    ref = ProcessRef.of(victim.pid, name="demo-app", env={"VICTIM_MARK": "restarted"})
    fault = StopProcess(ref, grace=10.0, log_path=str(tmp_path / "demo.log"))

    fault.inject()
    # inject returns once the victim is dead; our un-reaped child is a zombie, and counts as dead
    assert victim.wait(timeout=10) == -signal.SIGTERM
    assert _running_with_argv(argv) == []

    result = fault.revert()
    new_pid = result.data["pid"]
    victims.adopt(new_pid)
    assert new_pid != victim.pid
    assert result.note == f"restarted as pid {new_pid} (log: {tmp_path / 'demo.log'})"
    restarted = psutil.Process(new_pid)
    assert restarted.cmdline() == argv
    assert restarted.cwd() == str(tmp_path)
    assert restarted.ppid() != os.getpid()  # detached: not left as our child
    assert os.getsid(new_pid) == new_pid  # a session of its own
    # The env addition reached it: the victim prints it in its ready line.
    log = tmp_path / "demo.log"
    assert _eventually(lambda: log.exists() and "ready restarted" in log.read_text())

    # Idempotent: the process with that argv is there now, so no second copy.
    again = fault.revert()
    assert again.note == f"already running as pid {new_pid}"
    assert _running_with_argv(argv) == [new_pid]


def test_stop_escalates_to_sigkill_after_the_grace(victims: Victims) -> None:
    victim = victims.spawn("--ignore-term")
    fault = StopProcess.of(victim.pid, grace=0.3, restart=False)
    fault.inject()
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert fault.revert().note == "not restarted (restart disabled)"


def test_kill_ends_the_victim_and_revert_restarts_it(victims: Victims, tmp_path: Path) -> None:
    victim = victims.spawn()
    argv = psutil.Process(victim.pid).cmdline()
    fault = KillProcess.of(victim.pid, name="demo-app")
    assert fault.describe() == f"kill process {victim.pid} (demo-app)"
    # The default log goes under the working directory at planning time.
    assert fault.log_path == str(Path.cwd() / ".drdrill" / "logs" / f"demo-app-{victim.pid}.log")
    fault = KillProcess(fault.target, log_path=str(tmp_path / "kill.log"))

    fault.inject()
    assert victim.wait(timeout=10) == -signal.SIGKILL

    result = fault.revert()
    victims.adopt(result.data["pid"])
    assert _running_with_argv(argv) == [result.data["pid"]]
    assert _eventually(lambda: "ready" in (tmp_path / "kill.log").read_text())


def test_revert_of_a_fault_never_injected_changes_nothing(victims: Victims) -> None:
    victim = victims.spawn()
    argv = psutil.Process(victim.pid).cmdline()

    stop = StopProcess.of(victim.pid, name="demo-app")
    assert stop.revert().note == f"nothing to do: process {victim.pid} (demo-app) is still running"
    assert _running_with_argv(argv) == [victim.pid]

    freeze = FreezeProcess.of(victim.pid)
    assert freeze.revert().note == "resumed"
    assert _status(victim.pid) in RUNNING


def _stale(ref: ProcessRef) -> dict[str, object]:
    """The record of an older process that had this pid: same pid, another start time."""
    return {**ref.to_record(), "create_time": ref.create_time - 3600.0}


def test_revert_does_not_signal_a_process_that_reused_the_pid(victims: Victims) -> None:
    victim = victims.spawn()
    ref = ProcessRef.of(victim.pid)
    os.kill(victim.pid, signal.SIGSTOP)
    assert _eventually(lambda: _status(victim.pid) == psutil.STATUS_STOPPED)

    fault = FreezeProcess.from_record({"target": _stale(ref)})
    result = fault.revert()

    assert result.note.startswith(f"not resumed: pid {victim.pid} now belongs to another process")
    assert result.note.endswith("not signalled")
    assert _status(victim.pid) == psutil.STATUS_STOPPED  # the SIGCONT was not sent
    os.kill(victim.pid, signal.SIGCONT)


def test_inject_refuses_a_process_that_reused_the_pid(victims: Victims) -> None:
    victim = victims.spawn()
    stale = _stale(ProcessRef.of(victim.pid))

    with pytest.raises(FaultError, match="now belongs to another process"):
        FreezeProcess.from_record({"target": stale}).inject()
    with pytest.raises(FaultError, match="now belongs to another process"):
        KillProcess.from_record({"target": stale}).inject()
    assert _status(victim.pid) in RUNNING


def test_inject_refuses_the_drill_process_itself(tmp_path: Path) -> None:
    # In a child interpreter: if the guard failed, it would freeze itself, not this test run.
    code = (
        "import os\n"
        "from drdrill.errors import FaultError\n"
        "from drdrill.faults.process import FreezeProcess\n"
        "try:\n"
        "    FreezeProcess.of(os.getpid()).inject()\n"
        "except FaultError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    FreezeProcess.of(os.getppid()).inject()\n"
        "except FaultError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("refusing to freeze process ") for line in lines)
    assert all(line.endswith(": it runs this drill") for line in lines)


def test_process_ref_round_trips_through_its_record(victims: Victims) -> None:
    victim = victims.spawn()
    ref = ProcessRef.of(victim.pid, name="demo-app", env={"B": "2", "A": "1"})
    assert ProcessRef.from_record(ref.to_record()) == ref
    assert ref.to_record()["env"] == {"A": "1", "B": "2"}
    fault = StopProcess(ref, grace=2.5, restart=False, log_path="/tmp/x.log")
    assert StopProcess.from_record(fault.to_record()) == fault
    freeze = FreezeProcess.of(victim.pid, tree=True)
    assert FreezeProcess.from_record(freeze.to_record()) == freeze


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({}, "no 'target' object"),
        ({"target": {"pid": "12"}}, "no valid pid"),
        ({"target": {"pid": 12}}, "no create_time"),
        ({"target": {"pid": 12, "create_time": 1.0, "argv": "sleep 1"}}, "argv is not a list"),
        ({"target": {"pid": 12, "create_time": 1.0}, "grace": "soon"}, "'grace' is not a number"),
    ],
)
def test_malformed_records_raise_fault_error(record: dict[str, object], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        StopProcess.from_record(record)


def test_a_process_on_another_host_is_not_touched(victims: Victims) -> None:
    victim = victims.spawn()
    record = {**ProcessRef.of(victim.pid).to_record(), "host": "some-other-host"}
    with pytest.raises(FaultError, match="runs on host 'some-other-host'"):
        KillProcess.from_record({"target": record}).revert()
    assert _status(victim.pid) in RUNNING


def test_no_process_no_fault(victims: Victims) -> None:
    victim = victims.spawn()
    victim.kill()
    victim.wait(timeout=10)
    with pytest.raises(FaultError, match=f"no process {victim.pid}"):
        FreezeProcess.of(victim.pid)
