"""The Fault protocol, the injector that always reverts, and recovery of what a killed run left.

A fault is journaled before it is injected, reverted in reverse order when the drill ends (also on
Ctrl-C and, inside :func:`handle_signals`, on SIGTERM and SIGHUP), and marked reverted in the
journal. A run killed with SIGKILL leaves its entries open; :func:`recover` rebuilds each fault
from its kind and record and reverts it.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, ClassVar, Final, Protocol, Self, runtime_checkable

import psutil

from drdrill.errors import FaultError
from drdrill.faults import KINDS, fault_class
from drdrill.faults.journal import Journal, JournalEntry

#: Signals that :func:`handle_signals` turns into :class:`DrillInterrupted` (SIGINT already
#: raises KeyboardInterrupt).
INTERRUPT_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)

#: Seconds two readings of one process's start time may differ by and still name one process.
# They can differ: psutil adds the boot time, which clock adjustments move. A pid reused within
# a second of the old process's start is not a real risk.
CREATE_TIME_TOLERANCE: Final = 1.0


def wait_until(
    done: Callable[[], bool],
    timeout: float,
    *,
    interval: float = 0.02,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll ``done`` every ``interval`` s until it is true or ``timeout`` s passed; whether it was.

    For faults that wait for a state (stopped, gone, available); ``clock`` and ``sleep`` are
    parameters so that tests of timing logic need not really sleep.
    """
    deadline = clock() + timeout
    while True:
        if done():
            return True
        if clock() >= deadline:
            return False
        sleep(interval)


@dataclass(frozen=True)
class RevertResult:
    """What a revert did: a short note ("resumed") and JSON data for the journal (a new pid)."""

    note: str
    data: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Fault(Protocol):
    """A change to a running system with its undo; one class a kind of fault.

    Optional capability: ``destructive: bool`` (taken as True when absent; see
    :func:`is_destructive`).
    """

    kind: ClassVar[str]

    def describe(self) -> str:
        """One line naming the fault and its victim: "freeze process 1234 (demo-app)"."""
        ...

    def inject(self) -> None:
        """Cause the fault; raise if it could not be done (the injector then reverts at once)."""
        ...

    def revert(self) -> RevertResult:
        """Undo the fault. Idempotent, and safe after a partial inject or none at all."""
        ...

    def to_record(self) -> dict[str, Any]:
        """The JSON parameters a revert needs, taken before the fault is injected."""
        ...

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Self:
        """Rebuild the fault from :meth:`to_record`'s output (in another process, maybe)."""
        ...


def is_destructive(fault: Fault) -> bool:
    """Whether a safety guard must ask before injecting ``fault`` (True unless it says False)."""
    return bool(getattr(fault, "destructive", True))


class DrillInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that ``finally`` blocks revert faults.

    A KeyboardInterrupt, so that pytest stops the session and tears fixtures down, as on Ctrl-C.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class SignalLatch:
    """The interrupting signals a process received, kept even when the exception they raised was
    lost (turned into a ``SystemError`` by the import machinery it landed in, then swallowed by
    an ``except Exception``): a run that received one never ends as if it had not."""

    def __init__(self) -> None:
        self._received: list[int] = []
        self._lock = threading.Lock()

    def note(self, signum: int) -> None:
        """Remember ``signum`` (called from a signal handler: appends only)."""
        self._received.append(signum)

    @property
    def received(self) -> tuple[int, ...]:
        """Every signal noted since the last :meth:`clear`, in order."""
        return tuple(self._received)

    def first_name(self) -> str | None:
        """The first signal's name (``SIGTERM``), or None."""
        received = self.received
        return signal.Signals(received[0]).name if received else None

    def clear(self) -> None:
        """Forget what was received (a new run in the same process)."""
        with self._lock:
            self._received.clear()


#: the process's latch: :func:`handle_signals` and :func:`deferred_signals` note every signal
SIGNALS: Final = SignalLatch()
#: the signals a drill run treats as an interrupt (SIGINT raises KeyboardInterrupt, as always)
RUN_SIGNALS: Final = (signal.SIGINT, *INTERRUPT_SIGNALS)


def _set_handlers(
    signals: Iterable[signal.Signals], handler: Callable[[int, FrameType | None], None]
) -> dict[signal.Signals, Any]:
    previous: dict[signal.Signals, Any] = {}
    for sig in signals:
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_handlers(previous: Mapping[signal.Signals, Any]) -> None:
    for sig, handler in previous.items():
        # None: a handler set outside Python, which cannot be put back; default is closest.
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def handle_signals(signals: Iterable[signal.Signals] = INTERRUPT_SIGNALS) -> Iterator[None]:
    """Within the block, ``signals`` raise :class:`DrillInterrupted` (SIGINT, if among them,
    KeyboardInterrupt as usual), each noted in :data:`SIGNALS` first; old handlers come back
    after.

    Signal handlers can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        SIGNALS.note(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise DrillInterrupted(signum)

    previous: dict[signal.Signals, Any] = {}
    try:
        previous = _set_handlers(signals, _raise)
        yield
    finally:
        _restore_handlers(previous)


@contextlib.contextmanager
def deferred_signals(signals: Iterable[signal.Signals] = RUN_SIGNALS) -> Iterator[None]:
    """Within the block, ``signals`` are only noted in :data:`SIGNALS`: work that must finish
    whole (the run's reports and history) is not cut short; the caller looks at the latch after
    and ends the run as interrupted. Main thread only; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _note(signum: int, frame: FrameType | None) -> None:
        SIGNALS.note(signum)

    previous: dict[signal.Signals, Any] = {}
    try:
        previous = _set_handlers(signals, _note)
        yield
    finally:
        _restore_handlers(previous)


class RevertStatus(enum.Enum):
    """How one revert ended."""

    REVERTED = "reverted"
    FAILED = "failed"
    SKIPPED = "skipped"
    PLANNED = "would revert"


@dataclass(frozen=True)
class RevertOutcome:
    """The outcome of reverting one journaled fault."""

    entry_id: str
    kind: str
    description: str
    status: RevertStatus
    note: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        """True when the fault is no longer in place (or, in a dry run, would be reverted)."""
        return self.status in (RevertStatus.REVERTED, RevertStatus.PLANNED)

    def line(self) -> str:
        """One line for a person: "reverted: freeze process 1234 (demo-app): resumed"."""
        text = f"{self.status.value}: {self.description}"
        return f"{text}: {self.note}" if self.note else text


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _attempt_revert(
    journal: Journal, entry_id: str, kind: str, description: str, fault: Fault
) -> tuple[RevertOutcome, BaseException | None]:
    """Revert one fault and journal the result; never raises.

    A Ctrl-C or SIGTERM that lands here (a second one, during the unwinding) ends this revert
    only: it comes back as the second item, for the caller to re-raise once every fault was
    attempted. A journal that cannot be written does not stop the revert either; the outcome says
    so, and the entry stays open (a later recover reverts it again, which is harmless).
    """
    try:
        try:
            result = fault.revert()
        except Exception as exc:
            error = _error_text(exc)
            note = error + _journaled(lambda: journal.mark_revert_failed(entry_id, error))
            failed = RevertOutcome(
                entry_id, kind, description, RevertStatus.FAILED, note, error=exc
            )
            return failed, None
        note = result.note + _journaled(
            lambda: journal.mark_reverted(entry_id, result.note, result.data)
        )
        reverted = RevertOutcome(
            entry_id, kind, description, RevertStatus.REVERTED, note, result.data
        )
        return reverted, None
    except BaseException as exc:
        note = f"interrupted ({_error_text(exc)}); still open in {journal.path}"
        with contextlib.suppress(BaseException):  # a third signal must not lose the second
            journal.mark_revert_failed(entry_id, note)
        interrupted = RevertOutcome(
            entry_id, kind, description, RevertStatus.FAILED, note, error=exc
        )
        return interrupted, exc


def _journaled(write: Callable[[], None]) -> str:
    """Run a journal write; '' when it worked, else a note for the outcome."""
    try:
        write()
    except OSError as exc:
        return f" (journal not updated: {exc})"
    return ""


@dataclass
class _Active:
    fault: Fault
    entry: JournalEntry


def new_run_id() -> str:
    """A fresh run id."""
    return uuid.uuid4().hex[:16]


class FaultInjector:
    """Injects faults, each journaled first, and reverts them all at the end, newest first.

    Use as a context manager (``with FaultInjector(journal) as inj: inj.inject(fault)``), or call
    :meth:`inject` and, in a ``finally`` or fixture teardown, :meth:`revert_all`.
    """

    def __init__(self, journal: Journal, run_id: str | None = None) -> None:
        self.journal = journal
        self.run_id = run_id or new_run_id()
        self._active: list[_Active] = []

    @property
    def active(self) -> tuple[Fault, ...]:
        """The faults injected and not yet reverted, oldest first."""
        return tuple(a.fault for a in self._active)

    def inject(self, fault: Fault, on_journaled: Callable[[], None] | None = None) -> None:
        """Journal ``fault``, then inject it; if injecting raises, revert at once and re-raise.

        ``on_journaled`` is called between the two (a drill stamps the fault's start there: the
        journal write is ours, not the fault's).
        """
        if any(a.fault is fault for a in self._active):
            raise FaultError(f"{fault.describe()}: already injected")
        entry = self.journal.add_inject(
            run_id=self.run_id,
            kind=fault.kind,
            description=fault.describe(),
            record=fault.to_record(),
        )
        active = _Active(fault, entry)
        self._active.append(active)
        try:
            if on_journaled is not None:
                on_journaled()
            fault.inject()
        except BaseException as exc:
            outcome, _ = _attempt_revert(
                self.journal, entry.id, fault.kind, entry.description, fault
            )
            if outcome.ok:
                self._active.remove(active)
            else:  # revert_all tries again; the journal keeps it open for drdrill recover
                exc.add_note(f"reverting the partial fault failed too: {outcome.note}")
            raise

    def revert(self, fault: Fault) -> RevertOutcome:
        """Revert one fault this injector injected; :class:`FaultError` if the revert fails."""
        for active in self._active:
            if active.fault is fault:
                break
        else:
            raise FaultError(f"{fault.describe()}: not injected by this injector")
        outcome, interrupt = _attempt_revert(
            self.journal, active.entry.id, fault.kind, active.entry.description, fault
        )
        if interrupt is not None:
            raise interrupt
        if not outcome.ok:
            raise FaultError(f"{outcome.description}: revert failed: {outcome.note}") from (
                outcome.error
            )
        self._active.remove(active)
        return outcome

    def revert_all(self) -> list[RevertOutcome]:
        """Revert every active fault, newest first; each is attempted even if another fails.

        Failures are returned (and journaled, so ``drdrill recover`` can retry them). A Ctrl-C or
        SIGTERM during a revert skips that one only; it is re-raised once all were attempted.
        """
        outcomes: list[RevertOutcome] = []
        interrupt: BaseException | None = None
        for active in reversed(list(self._active)):
            fault = active.fault
            outcome, stop = _attempt_revert(
                self.journal, active.entry.id, fault.kind, active.entry.description, fault
            )
            outcomes.append(outcome)
            if outcome.ok:
                self._active.remove(active)
            interrupt = interrupt or stop
        if interrupt is not None:
            interrupt.add_note("\n".join(o.line() for o in outcomes))
            raise interrupt
        return outcomes

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = [o for o in self.revert_all() if not o.ok]
        if not failed:
            return
        message = _failure_message(failed, self.journal)
        if exc is not None:
            exc.add_note(message)  # do not hide the error that ended the drill
            return
        raise FaultError(message) from failed[0].error


def _failure_message(failed: list[RevertOutcome], journal: Journal) -> str:
    names = "; ".join(f"{o.description} ({o.note})" for o in failed)
    noun = "fault" if len(failed) == 1 else "faults"
    hint = f"drdrill recover --journal {journal.path}"
    return f"{len(failed)} {noun} not reverted: {names}; run: {hint}"


def _drill_alive(entry: JournalEntry) -> bool:
    """Whether the process that injected ``entry`` is still running (and so owns its revert)."""
    if entry.host != socket.gethostname() or entry.pid == os.getpid():
        return False
    try:
        proc = psutil.Process(entry.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = proc.create_time()
    except psutil.Error:
        return False
    if entry.pid_create_time is None:
        return True
    return abs(started - entry.pid_create_time) <= CREATE_TIME_TOLERANCE


def recover(
    journal: Journal,
    run_id: str | None = None,
    *,
    dry_run: bool = False,
    include_live: bool = False,
    kinds: Mapping[str, str] = KINDS,
) -> list[RevertOutcome]:
    """Revert every fault the journal has open (of one run, or all), newest first.

    Each fault is rebuilt from its kind (looked up in ``kinds``) and record. An unknown kind or
    a failed revert is reported as failed and its entry stays open. Faults of a drill process
    still running on this host are skipped unless ``include_live``: that drill reverts its own.
    ``dry_run`` reverts nothing and writes nothing.
    """
    outcomes: list[RevertOutcome] = []
    interrupt: BaseException | None = None
    for entry in reversed(journal.open_entries(run_id)):
        if not include_live and _drill_alive(entry):
            note = f"drill process {entry.pid} is still running on this host"
            outcomes.append(
                RevertOutcome(entry.id, entry.kind, entry.description, RevertStatus.SKIPPED, note)
            )
            continue
        try:
            fault = fault_class(entry.kind, kinds).from_record(entry.record)
        except Exception as exc:  # a bad record is reported like a failed revert
            if not dry_run:
                journal.mark_revert_failed(entry.id, _error_text(exc))
            outcomes.append(
                RevertOutcome(
                    entry.id,
                    entry.kind,
                    entry.description,
                    RevertStatus.FAILED,
                    _error_text(exc),
                    error=exc,
                )
            )
            continue
        if dry_run:
            outcomes.append(
                RevertOutcome(entry.id, entry.kind, entry.description, RevertStatus.PLANNED)
            )
            continue
        outcome, stop = _attempt_revert(journal, entry.id, entry.kind, entry.description, fault)
        outcomes.append(outcome)
        interrupt = interrupt or stop
    if interrupt is not None:
        raise interrupt
    return outcomes
