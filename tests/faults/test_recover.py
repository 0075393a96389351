"""Recovery: a drill process signalled reverts its faults; one killed -9 is undone by recover."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from drdrill.errors import FaultError
from drdrill.faults import KINDS, fault_class
from drdrill.faults.base import FaultInjector, RevertStatus, recover
from drdrill.faults.journal import Journal, JournalWarning
from drdrill.faults.process import FreezeProcess

HELPERS = Path(__file__).parent / "helpers"
DRDRILL = Path(sys.executable).parent / "drdrill"
RUNNING = {psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING}

#: secrets planted in a fault: the victim's command line has a database URL with a password and
#: a token, its restart a password in its environment, its name (and so the fault's
#: description) a configured password; the drill has them in its environment
DB_PASSWORD = "RecoverDbPw4x"
URL_PASSWORD = "RecoverUrlPw5x"
TOKEN = "RecoverTok6x"
PLANTED = (DB_PASSWORD, URL_PASSWORD, TOKEN)
SECRET_ENV = {"DB_PASSWORD": DB_PASSWORD, "DB_URL_PASSWORD": URL_PASSWORD, "API_TOKEN": TOKEN}
SECRET_ARG = f"--db=mysql://app:{URL_PASSWORD}@127.0.0.1/app?token={TOKEN}"
#: the drill: kill the victim (journaled first), say so, and wait for its own kill -9
SECRET_DRILL = """
import os, sys, time
from drdrill.faults.base import FaultInjector
from drdrill.faults.journal import Journal
from drdrill.faults.process import KillProcess
from drdrill.redact import register_secret

journal, victim = sys.argv[1], int(sys.argv[2])
password = os.environ["DB_PASSWORD"]
register_secret(password)  # as loading a drdrill.yaml with writer.mysql.password does
fault = KillProcess.of(victim, name="app." + password, env={"DB_PASSWORD": password})
FaultInjector(Journal(journal), "run-secret").inject(fault)
print("injected", flush=True)
while True:
    time.sleep(0.05)
"""


def _read_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output from pid {proc.pid} within {timeout} s")
    return proc.stdout.readline().strip()


def _status(pid: int) -> str:
    return psutil.Process(pid).status()


class Procs:
    """Processes started by one test: victims and drill processes; all killed at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[subprocess.Popen[str]] = []

    def _start(
        self, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            text=True,
            cwd=self.cwd,
            env=None if env is None else {**os.environ, **env},
        )
        self.started.append(proc)
        return proc

    def victim(self, *args: str) -> subprocess.Popen[str]:
        """A sleeping victim, ready; ``args`` go on its command line (victim.py ignores them)."""
        proc = self._start([sys.executable, str(HELPERS / "victim.py"), uuid.uuid4().hex, *args])
        assert _read_line(proc) == "ready"
        return proc

    def drill(self, journal: Path, run_id: str, victim: int) -> subprocess.Popen[str]:
        """A drill process that has frozen ``victim`` (journaled in ``journal``)."""
        proc = self._start(
            [
                sys.executable,
                str(HELPERS / "drill_proc.py"),
                "--journal",
                str(journal),
                "--run-id",
                run_id,
                "--victim",
                str(victim),
                "--name",
                "demo-app",
            ]
        )
        assert _read_line(proc) == "injected"
        return proc

    def secret_drill(self, journal: Path, victim: int) -> subprocess.Popen[str]:
        """A drill process that has killed ``victim`` (to be restarted, with a secret in its
        environment additions and name), its secrets in its environment as :data:`SECRET_ENV`
        says."""
        proc = self._start(
            [sys.executable, "-c", SECRET_DRILL, str(journal), str(victim)], env=SECRET_ENV
        )
        assert _read_line(proc) == "injected"
        return proc

    def cleanup(self) -> None:
        """SIGKILL and reap every process still there."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Victims and drills for one test."""
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


def drdrill_recover(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``drdrill recover`` command line (in ``env``, default this process's)."""
    return subprocess.run(
        [str(DRDRILL), "recover", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_a_signalled_drill_resumes_its_victim(
    procs: Procs, tmp_path: Path, sig: signal.Signals
) -> None:
    journal = tmp_path / "journal.jsonl"
    victim = procs.victim()
    drill = procs.drill(journal, "run-sig", victim.pid)
    assert _status(victim.pid) == psutil.STATUS_STOPPED

    drill.send_signal(sig)
    out, _ = drill.communicate(timeout=60)

    assert drill.returncode == 130
    assert out.splitlines() == [
        f"reverted: freeze process {victim.pid} (demo-app): resumed",
        f"interrupted: {f'interrupted by {sig.name}' if sig != signal.SIGINT else 'SIGINT'}",
    ]
    assert _status(victim.pid) in RUNNING
    assert Journal(journal).open_entries() == []


def test_kill_9_leaves_the_fault_and_recover_undoes_it(procs: Procs, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    victim = procs.victim()
    drill = procs.drill(journal, "run-9", victim.pid)

    drill.kill()  # SIGKILL: no finally, no revert
    drill.wait(timeout=30)
    assert _status(victim.pid) == psutil.STATUS_STOPPED
    (entry,) = Journal(journal).open_entries()
    assert entry.run_id == "run-9"
    assert entry.pid == drill.pid
    with journal.open("a") as f:  # and a write it was making when killed
        f.write('{"op":"reverted","id":"')

    done = drdrill_recover("--journal", str(journal), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"reverted: freeze process {victim.pid} (demo-app): resumed\n"
    assert done.stderr == f"drdrill: warning: {journal}:2: torn line skipped\n"
    assert _status(victim.pid) in RUNNING
    with pytest.warns(JournalWarning, match="torn line skipped"):
        assert Journal(journal).open_entries() == []

    again = drdrill_recover("--journal", str(journal), cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout == "nothing to recover\n"


def test_dry_run_prints_the_plan_and_changes_nothing(procs: Procs, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    victim = procs.victim()
    drill = procs.drill(journal, "run-dry", victim.pid)
    drill.kill()
    drill.wait(timeout=30)

    done = drdrill_recover("--journal", str(journal), "--dry-run", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"would revert: freeze process {victim.pid} (demo-app)\n"
    assert _status(victim.pid) == psutil.STATUS_STOPPED
    assert len(Journal(journal).open_entries()) == 1
    assert [o.status for o in recover(Journal(journal))] == [RevertStatus.REVERTED]


def test_faults_of_a_running_drill_are_skipped_unless_forced(procs: Procs, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    victim = procs.victim()
    drill = procs.drill(journal, "run-live", victim.pid)
    description = f"freeze process {victim.pid} (demo-app)"

    skipped = drdrill_recover("--journal", str(journal), cwd=tmp_path)
    assert skipped.returncode == 1
    assert skipped.stdout == (
        f"skipped: {description}: drill process {drill.pid} is still running on this host\n"
    )
    assert f"1 fault not reverted: {description}" in skipped.stderr
    assert "use --force" in skipped.stderr
    assert _status(victim.pid) == psutil.STATUS_STOPPED

    forced = drdrill_recover("--journal", str(journal), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == f"reverted: {description}: resumed\n"
    assert _status(victim.pid) in RUNNING

    # The drill still reverts on its way out: a second SIGCONT is harmless.
    drill.terminate()
    out, _ = drill.communicate(timeout=60)
    assert f"reverted: {description}: resumed" in out.splitlines()


def test_recover_with_a_run_id_reverts_that_run_only(procs: Procs, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    first, second = procs.victim(), procs.victim()
    # Two injectors left without revert_all, as if their runs had died.
    FaultInjector(journal, "run-a").inject(FreezeProcess.of(first.pid))
    FaultInjector(journal, "run-b").inject(FreezeProcess.of(second.pid))

    outcomes = recover(journal, "run-a")

    name = psutil.Process(first.pid).name()  # no name given: what the OS reports
    assert [o.line() for o in outcomes] == [
        f"reverted: freeze process {first.pid} ({name}): resumed"
    ]
    assert _status(first.pid) in RUNNING
    assert _status(second.pid) == psutil.STATUS_STOPPED
    assert [e.run_id for e in journal.open_entries()] == ["run-b"]
    assert [o.ok for o in recover(journal)] == [True]
    assert _status(second.pid) in RUNNING


def test_missing_journal_is_nothing_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "journal.jsonl"
    done = drdrill_recover("--journal", str(path), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"nothing to recover (no journal at {path})\n"


def test_default_journal_is_under_dot_drdrill(tmp_path: Path) -> None:
    done = drdrill_recover(cwd=tmp_path)
    assert done.stdout == "nothing to recover (no journal at .drdrill/journal.jsonl)\n"


@pytest.mark.parametrize("how", ["cwd", "--config", "--dr-config"])
def test_recover_reads_the_configs_journal(procs: Procs, tmp_path: Path, how: str) -> None:
    # the config keeps its journal elsewhere, relative to the config's own folder
    project = tmp_path / "project"
    (project / "state").mkdir(parents=True)
    (project / "drdrill.yaml").write_text("journal: state/faults.jsonl\n")
    journal = Journal(project / "state" / "faults.jsonl")
    victim = procs.victim()
    # injected by this (live) process: --force, as for the faults of a drill still running
    FaultInjector(journal, "run-a").inject(FreezeProcess.of(victim.pid))
    if how == "cwd":
        done = drdrill_recover("--force", cwd=project)
    else:
        done = drdrill_recover(how, str(project / "drdrill.yaml"), "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"reverted: freeze process {victim.pid}"), done.stdout
    assert _status(victim.pid) in RUNNING


def test_a_file_that_is_not_a_journal_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text("[faults]\nfreeze = true\n")
    done = drdrill_recover("--journal", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (f"drdrill: error: {path}:1: not a drdrill journal line (invalid JSON)\n")


def _journal_from_a_dead_run(path: Path, kind: str, description: str) -> None:
    """Journal an inject from a process that then exits, as a crashed run leaves it."""
    code = (
        "import sys\n"
        "from drdrill.faults.journal import Journal\n"
        "Journal(sys.argv[1]).add_inject(run_id='dead', kind=sys.argv[2],\n"
        "                                description=sys.argv[3], record={})\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), kind, description], check=True)


def test_an_unknown_kind_fails_and_stays_open(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    _journal_from_a_dead_run(journal.path, "cloud.nuke", "nuke the cloud")

    done = drdrill_recover("--journal", str(journal.path), cwd=tmp_path)

    assert done.returncode == 1
    assert done.stdout.startswith("failed: nuke the cloud: unknown fault kind 'cloud.nuke'")
    assert done.stderr == "drdrill: error: 1 fault not reverted: nuke the cloud\n"
    (entry,) = journal.open_entries()
    assert entry.last_error is not None and "unknown fault kind" in entry.last_error


def test_a_bad_record_fails_without_touching_anything(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.add_inject(run_id="r", kind="process.freeze", description="freeze ?", record={})
    (outcome,) = recover(journal)
    assert outcome.status is RevertStatus.FAILED
    assert outcome.note == "fault record has no 'target' object"
    assert len(journal.open_entries()) == 1


def test_every_registered_kind_loads_lazily_and_matches() -> None:
    for kind in KINDS:
        assert fault_class(kind).kind == kind
    with pytest.raises(FaultError, match=r"unknown fault kind 'nope' \(known: .*process\.freeze"):
        fault_class("nope")
    with pytest.raises(FaultError, match=r"declares kind 'process\.freeze'"):
        fault_class("x", {"x": "drdrill.faults.process:FreezeProcess"})
    with pytest.raises(FaultError, match="cannot load"):
        fault_class("x", {"x": "drdrill.faults.nowhere:Fault"})


@pytest.mark.slow  # ~3 s: a drill process, a victim, two runs of drdrill recover
def test_recover_restarts_a_victim_whose_secrets_the_journal_only_names(
    procs: Procs, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    victim = procs.victim(SECRET_ARG)
    argv = psutil.Process(victim.pid).cmdline()
    drill = procs.secret_drill(journal, victim.pid)
    drill.kill()  # SIGKILL: the victim stays dead, its undo only in the journal
    drill.wait(timeout=30)
    victim.wait(timeout=30)
    assert not [s for s in PLANTED if s in journal.read_text()], journal.read_text()
    description = f"kill process {victim.pid} (app.***)"

    # without the variables the journal names, nothing is restarted and the entry stays open
    bare = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    failed = drdrill_recover("--journal", str(journal), cwd=tmp_path, env=bare)
    assert failed.returncode == 1
    assert failed.stdout.startswith(f"failed: {description}: its undo needs the environment")
    assert "$DB_PASSWORD" in failed.stdout and "$API_TOKEN" in failed.stdout
    assert len(Journal(journal).open_entries()) == 1

    done = drdrill_recover("--journal", str(journal), cwd=tmp_path, env={**bare, **SECRET_ENV})
    restarted: psutil.Process | None = None
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"reverted: {description}: restarted as pid "), done.stdout
        restarted = psutil.Process(int(done.stdout.split("restarted as pid ")[1].split()[0]))
        # the same command line and environment addition as before, secrets and all
        assert restarted.cmdline() == argv
        assert restarted.environ()["DB_PASSWORD"] == DB_PASSWORD
        printed = done.stdout + done.stderr + failed.stdout + failed.stderr
        assert not [s for s in PLANTED if s in printed], printed
        assert not [s for s in PLANTED if s in journal.read_text()], journal.read_text()
        assert Journal(journal).open_entries() == []
    finally:
        if restarted is not None:
            restarted.kill()
            restarted.wait(timeout=30)
