"""The fault journal and the injector: journal before inject, revert on failure, torn lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest

from drdrill.errors import FaultError, InputError
from drdrill.faults.base import (
    SIGNALS,
    DrillInterrupted,
    Fault,
    FaultInjector,
    RevertResult,
    RevertStatus,
    handle_signals,
    is_destructive,
    wait_until,
)
from drdrill.faults.journal import Journal, JournalWarning, UnresolvedRecord
from drdrill.redact import forget_secrets, register_secret


@dataclass(eq=False)
class MarkerFault:
    """A fault whose effect is a file; it can be told to break in inject or revert."""

    kind: ClassVar[str] = "test.marker"

    path: Path
    journal: Journal | None = None
    fail_inject: bool = False
    fail_revert: bool = False
    interrupt_revert: bool = False
    calls: list[str] = field(default_factory=list)
    journaled_before_inject: bool | None = None

    def describe(self) -> str:
        return f"create marker {self.path.name}"

    def inject(self) -> None:
        if self.journal is not None:
            open_kinds = [e.description for e in self.journal.open_entries()]
            self.journaled_before_inject = self.describe() in open_kinds
        self.calls.append(f"inject {self.path.name}")
        self.path.write_text("partial")  # partial work first, then maybe break
        if self.fail_inject:
            raise RuntimeError("inject broke after partial work")

    def revert(self) -> RevertResult:
        self.calls.append(f"revert {self.path.name}")
        if self.fail_revert:
            raise RuntimeError(f"cannot remove {self.path.name}")
        if self.interrupt_revert:  # a second Ctrl-C while reverting
            raise KeyboardInterrupt
        self.path.unlink(missing_ok=True)
        return RevertResult("removed", {"path": str(self.path)})

    def to_record(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        return cls(Path(record["path"]))


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_marker_fault_satisfies_the_protocol(tmp_path: Path) -> None:
    fault = MarkerFault(tmp_path / "m")
    assert isinstance(fault, Fault)
    assert is_destructive(fault)  # no ``destructive`` attribute: assumed destructive


def test_entries_stay_open_until_reverted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "sub" / "journal.jsonl")
    assert journal.open_entries() == []  # no file yet: nothing open
    a = journal.add_inject(run_id="r1", kind="k", description="fault a", record={"x": 1})
    b = journal.add_inject(run_id="r1", kind="k", description="fault b", record={})
    c = journal.add_inject(run_id="r2", kind="k", description="fault c", record={})
    journal.mark_reverted(a.id, "undone", {"pid": 5})
    journal.mark_revert_failed(b.id, "boom")

    open_ids = [e.id for e in journal.open_entries()]
    assert open_ids == [b.id, c.id]
    (entry_b,) = journal.open_entries(run_id="r1")
    assert entry_b.last_error == "boom"
    assert entry_b.pid == os.getpid()
    assert [e.id for e in journal.open_entries(run_id="r2")] == [c.id]

    lines = _lines(journal.path)
    assert [line["op"] for line in lines] == ["inject"] * 3 + ["reverted", "revert_failed"]
    assert lines[0]["record"] == {"x": 1}
    assert lines[0]["describe"] == "fault a"
    assert lines[3]["result"] == {"note": "undone", "pid": 5}
    assert set(lines[0]) >= {"op", "id", "run_id", "pid", "host", "kind", "describe", "utc"}


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    kept = journal.add_inject(run_id="r", kind="k", description="kept", record={})
    with journal.path.open("a") as f:  # what a kill -9 in the middle of a write leaves
        f.write('{"op":"inject","id":"abc","run_id":"r","pi')

    with pytest.warns(JournalWarning, match=r"journal.jsonl:2: torn line skipped"):
        assert [e.id for e in journal.open_entries()] == [kept.id]

    # The next append ends the fragment first, so its own line is whole.
    later = journal.add_inject(run_id="r", kind="k", description="later", record={})
    raw = journal.path.read_text().splitlines()
    assert raw[1] == '{"op":"inject","id":"abc","run_id":"r","pi'
    assert json.loads(raw[2])["id"] == later.id
    with pytest.warns(JournalWarning, match=r"journal.jsonl:2: torn line skipped"):
        assert [e.id for e in journal.open_entries()] == [kept.id, later.id]


def test_a_line_that_is_not_json_names_path_and_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.add_inject(run_id="r", kind="k", description="ok", record={})
    with journal.path.open("a") as f:
        f.write("this is not a journal\n")
    journal.add_inject(run_id="r", kind="k", description="ok too", record={})

    with pytest.raises(InputError) as info:
        journal.open_entries()
    assert info.value.where == f"{journal.path}:2"
    assert "invalid JSON" in str(info.value)


def test_json_without_op_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text('{"hello": "world"}\n')
    with pytest.raises(InputError, match=r"journal.jsonl:1: not a drdrill journal line"):
        Journal(path).open_entries()


def test_concurrent_appends_from_processes_stay_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    writers, per_writer = 4, 40
    # Records of 8 KiB: twice PIPE_BUF, so whole lines rely on the lock, not on luck.
    code = (
        "import sys\n"
        "from drdrill.faults.journal import Journal\n"
        "j = Journal(sys.argv[1])\n"
        "for i in range(int(sys.argv[3])):\n"
        "    j.add_inject(run_id=sys.argv[2], kind='k', description=f'{sys.argv[2]}-{i}',\n"
        "                 record={'pad': sys.argv[2] * 8192})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), f"w{n}", str(per_writer)])
        for n in range(writers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers

    lines = _lines(path)  # every line parses: none torn or interleaved
    assert len(lines) == writers * per_writer
    assert len({line["id"] for line in lines}) == writers * per_writer
    for n in range(writers):
        mine = [line["describe"] for line in lines if line["run_id"] == f"w{n}"]
        assert mine == [f"w{n}-{i}" for i in range(per_writer)]  # each writer's order kept
    assert len(Journal(path).open_entries()) == writers * per_writer


def test_inject_journals_first_and_reverts_a_partial_inject(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal, run_id="run-1")
    fault = MarkerFault(tmp_path / "marker", journal=journal, fail_inject=True)

    with pytest.raises(RuntimeError, match="inject broke after partial work"):
        injector.inject(fault)

    assert fault.journaled_before_inject is True  # the entry was on disk when inject ran
    assert fault.calls == ["inject marker", "revert marker"]
    assert not fault.path.exists()  # the partial work was undone
    assert injector.active == ()
    ops = [(line["op"], line["id"]) for line in _lines(journal.path)]
    assert [op for op, _ in ops] == ["inject", "reverted"]
    assert ops[0][1] == ops[1][1]
    assert journal.open_entries() == []


def test_a_failed_revert_after_a_failed_inject_is_noted_and_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal)
    fault = MarkerFault(tmp_path / "m", fail_inject=True, fail_revert=True)

    with pytest.raises(RuntimeError) as info:
        injector.inject(fault)
    assert any("reverting the partial fault failed too" in n for n in info.value.__notes__)
    assert injector.active == (fault,)  # revert_all will try again
    (entry,) = journal.open_entries()
    assert entry.last_error == "cannot remove m"


def test_revert_all_goes_newest_first_and_attempts_every_fault(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal, run_id="run-2")
    calls: list[str] = []
    faults = [
        MarkerFault(tmp_path / "a", calls=calls),
        MarkerFault(tmp_path / "b", calls=calls, fail_revert=True),
        MarkerFault(tmp_path / "c", calls=calls),
    ]
    for fault in faults:
        injector.inject(fault)

    outcomes = injector.revert_all()

    assert calls[3:] == ["revert c", "revert b", "revert a"]
    assert [(o.description, o.status) for o in outcomes] == [
        ("create marker c", RevertStatus.REVERTED),
        ("create marker b", RevertStatus.FAILED),
        ("create marker a", RevertStatus.REVERTED),
    ]
    assert outcomes[0].line() == "reverted: create marker c: removed"
    assert outcomes[1].line() == "failed: create marker b: cannot remove b"
    assert isinstance(outcomes[1].error, RuntimeError)
    assert injector.active == (faults[1],)
    assert [e.description for e in journal.open_entries("run-2")] == ["create marker b"]
    assert (tmp_path / "b").exists() and not (tmp_path / "a").exists()


def test_an_interrupt_during_revert_all_skips_one_revert_only(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal)
    calls: list[str] = []
    first = MarkerFault(tmp_path / "a", calls=calls)
    second = MarkerFault(tmp_path / "b", calls=calls, interrupt_revert=True)
    injector.inject(first)
    injector.inject(second)

    with pytest.raises(KeyboardInterrupt) as info:
        injector.revert_all()

    assert calls[2:] == ["revert b", "revert a"]  # the older one was still reverted
    assert not first.path.exists()
    assert info.value.__notes__ == [
        f"failed: create marker b: interrupted (KeyboardInterrupt); still open in {journal.path}\n"
        "reverted: create marker a: removed"
    ]
    (entry,) = journal.open_entries()
    assert entry.description == "create marker b"
    assert injector.active == (second,)


def test_revert_one_fault_then_revert_all_skips_it(tmp_path: Path) -> None:
    injector = FaultInjector(Journal(tmp_path / "journal.jsonl"))
    first, second = MarkerFault(tmp_path / "1"), MarkerFault(tmp_path / "2")
    injector.inject(first)
    injector.inject(second)

    outcome = injector.revert(first)
    assert outcome.ok and outcome.note == "removed"
    assert [o.description for o in injector.revert_all()] == ["create marker 2"]
    assert first.calls == ["inject 1", "revert 1"]
    with pytest.raises(FaultError, match="not injected by this injector"):
        injector.revert(first)


def test_revert_one_fault_that_fails_raises_and_keeps_it(tmp_path: Path) -> None:
    injector = FaultInjector(Journal(tmp_path / "journal.jsonl"))
    fault = MarkerFault(tmp_path / "x", fail_revert=True)
    injector.inject(fault)
    with pytest.raises(FaultError, match="create marker x: revert failed: cannot remove x"):
        injector.revert(fault)
    assert injector.active == (fault,)


def test_injecting_the_same_fault_twice_is_refused(tmp_path: Path) -> None:
    injector = FaultInjector(Journal(tmp_path / "journal.jsonl"))
    fault = MarkerFault(tmp_path / "x")
    injector.inject(fault)
    with pytest.raises(FaultError, match="already injected"):
        injector.inject(fault)
    injector.revert_all()


def test_a_record_that_is_not_json_stops_the_inject(tmp_path: Path) -> None:
    class Unrecordable(MarkerFault):
        def to_record(self) -> dict[str, Any]:
            return {"path": self.path}  # a Path: not JSON

    injector = FaultInjector(Journal(tmp_path / "journal.jsonl"))
    fault = Unrecordable(tmp_path / "x")
    with pytest.raises(FaultError, match="record is not JSON"):
        injector.inject(fault)
    assert fault.calls == []  # never injected without its undo on disk


def test_context_manager_reverts_when_the_drill_fails(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    good, bad = MarkerFault(tmp_path / "good"), MarkerFault(tmp_path / "bad", fail_revert=True)
    with pytest.raises(ValueError, match="the drill failed") as info, FaultInjector(journal) as inj:
        inj.inject(good)
        inj.inject(bad)
        raise ValueError("the drill failed")
    # The drill's own error is kept, and says which fault is still in place.
    (note,) = info.value.__notes__
    assert note.startswith("1 fault not reverted: create marker bad (cannot remove bad)")
    assert f"drdrill recover --journal {journal.path}" in note
    assert not good.path.exists()


def test_context_manager_raises_when_a_revert_fails(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    failed = pytest.raises(FaultError, match="1 fault not reverted: create marker bad")
    with failed, FaultInjector(journal) as injector:
        injector.inject(MarkerFault(tmp_path / "bad", fail_revert=True))


def test_handle_signals_raises_in_the_main_thread_and_restores(tmp_path: Path) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    journal = Journal(tmp_path / "journal.jsonl")
    fault = MarkerFault(tmp_path / "m")
    interrupted = pytest.raises(DrillInterrupted, match="interrupted by SIGTERM")
    with interrupted as info, handle_signals(), FaultInjector(journal) as injector:
        injector.inject(fault)
        signal.raise_signal(signal.SIGTERM)
    assert isinstance(info.value, KeyboardInterrupt)  # so pytest stops and tears down
    assert info.value.signum == signal.SIGTERM
    assert fault.calls == ["inject m", "revert m"]
    assert {s: signal.getsignal(s) for s in before} == before
    # the signal was noted for the run it interrupted; this test's run goes on
    SIGNALS.clear()


class FakeClock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_until_polls_until_true_or_the_timeout() -> None:
    clock = FakeClock()
    answers = iter([False, False, True])
    assert wait_until(lambda: next(answers), 5.0, interval=0.5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [0.5, 0.5]

    clock = FakeClock()
    assert not wait_until(lambda: False, 2.0, interval=0.5, clock=clock, sleep=clock.sleep)
    assert clock.now == 102.0  # gave up at the deadline, not before and not long after


# -- no secret in the journal --------------------------------------------------------------

#: secrets planted in a fault's record and description: a configured password, a URL's
#: password, a query token, and a value only its variable's name says is secret
CONFIG_PW = "JournalCfgPw9x"
URL_PW = "JournalUrlPw8x"
TOKEN = "JournalTok7x"
VAULT = "JournalVault6x"
PLANTED = (CONFIG_PW, URL_PW, TOKEN, VAULT)


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The drill's environment holds the secrets, as a drill given its secrets that way has
    them; the config's password is registered, as loading drdrill.yaml does."""
    for name, value in {
        "DB_PASSWORD": CONFIG_PW,
        "DB_URL_PASSWORD": URL_PW,
        "API_TOKEN": TOKEN,
        "VAULT_SECRET": VAULT,
    }.items():
        monkeypatch.setenv(name, value)
    register_secret(CONFIG_PW)
    yield
    forget_secrets()


def _secret_record() -> dict[str, Any]:
    return {
        "target": {
            "argv": ["app", f"--db=mysql://app:{URL_PW}@db/app?token={TOKEN}", "--verbose"],
            "name": f"app.{CONFIG_PW}",
            "env": {"APP_SECRET": VAULT, "MODE": "fast"},
        },
        # a FIS experiment's lookup token: named like a secret, needed as it is, and no secret
        "token": "0123456789abcdef",
    }


def test_the_journal_holds_no_secret_and_gives_the_record_back(
    tmp_path: Path, secrets_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    record = _secret_record()
    entry = journal.add_inject(
        run_id="r", kind="k", description=f"stop app.{CONFIG_PW} (key {VAULT})", record=record
    )
    journal.mark_revert_failed(entry.id, f"cannot restart: password {CONFIG_PW} refused")
    text = journal.path.read_text()
    assert not [s for s in PLANTED if s in text], text

    (line, failed) = _lines(journal.path)
    assert line["describe"] == "stop app.*** (key ***)"  # VAULT: known a secret by its name
    assert failed["error"] == "cannot restart: password *** refused"
    target = line["record"]["target"]
    assert target["argv"][0] == "app" and target["argv"][2] == "--verbose"
    assert target["argv"][1] == {
        "$sealed": [
            "--db=mysql://app:",
            {"env": "DB_URL_PASSWORD"},
            "@db/app?token=",
            {"env": "API_TOKEN"},
        ]
    }
    assert target["name"] == {"$sealed": ["app.", {"env": "DB_PASSWORD"}]}
    assert target["env"] == {"APP_SECRET": {"$sealed": [{"env": "VAULT_SECRET"}]}, "MODE": "fast"}
    assert line["record"]["token"] == "0123456789abcdef"

    # what recover rebuilds the fault from: the record as given, from the same environment
    assert entry.record == record
    (opened,) = journal.open_entries()
    assert opened.record == record
    assert opened.last_error == "cannot restart: password *** refused"

    # without one of the variables, the record cannot be rebuilt: reading it says which to set
    monkeypatch.delenv("API_TOKEN")
    (unresolved,) = journal.open_entries()
    assert isinstance(unresolved.record, UnresolvedRecord)
    with pytest.raises(FaultError, match=r"\$API_TOKEN \(for target\.argv\[1\]\)"):
        unresolved.record.get("target")


def test_a_secret_no_variable_holds_stops_the_inject(tmp_path: Path, secrets_env: None) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    record = {"target": {"argv": ["app", "--password", "Unheld-Pw-5x"]}}
    register_secret("Unheld-Pw-5x")  # a configured password no variable of the drill holds
    with pytest.raises(FaultError, match=r"secret at target\.argv\[2\] .* fault not injected"):
        journal.add_inject(run_id="r", kind="k", description="d", record=record)
    assert not journal.exists()


def test_revert_notes_and_results_are_redacted(tmp_path: Path, secrets_env: None) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    entry = journal.add_inject(run_id="r", kind="k", description="d", record={})
    journal.mark_reverted(entry.id, f"restarted with {CONFIG_PW}", {"log": f"/l/{CONFIG_PW}.log"})
    (_, reverted) = _lines(journal.path)
    assert reverted["result"] == {"note": "restarted with ***", "log": "/l/***.log"}


def test_a_recover_missing_a_variable_fails_and_keeps_the_entry(
    tmp_path: Path, secrets_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drdrill.faults.base import recover

    journal = Journal(tmp_path / "journal.jsonl")
    fault = MarkerFault(tmp_path / "marker")
    record = {"path": str(fault.path), "auth": f"--token={TOKEN}"}  # a registered one below
    register_secret(TOKEN)
    journal.add_inject(run_id="r", kind="test.marker", description="m", record=record)
    monkeypatch.delenv("API_TOKEN")
    kinds = {"test.marker": f"{__name__}:MarkerFault"}

    (outcome,) = recover(journal, kinds=kinds)

    assert outcome.status is RevertStatus.FAILED
    assert "$API_TOKEN" in outcome.note and "run drdrill recover again" in outcome.note
    (entry,) = journal.open_entries()
    assert entry.last_error is not None and "$API_TOKEN" in entry.last_error
    assert TOKEN not in journal.path.read_text()
