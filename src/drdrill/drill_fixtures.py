"""What the ``probes``, ``writer`` and ``inject`` fixtures hand to a drill.

Each is a context manager opened by :class:`drdrill.session.DrillSession` for one test: whatever
the test does, leaving it stops the probes and the writer, reverts the faults, and files what
was measured into the run record.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

from drdrill.errors import ConfigError, DrillError, SafetyError
from drdrill.faults.base import Fault, FaultInjector, is_destructive
from drdrill.faults.journal import Journal
from drdrill.observe import FaultHadNoEffect
from drdrill.probes.http import Check, Endpoint, ProbeRunner
from drdrill.probes.stats import OutageEvent
from drdrill.probes.writes import (
    HttpSink,
    MarkerWriter,
    MySqlEndpoint,
    MySqlSink,
    RpoResult,
    WriteLog,
    WriteSink,
    verify_markers,
)
from drdrill.report.record import RpoRecord, probe_records
from drdrill.targets.base import DryRunnable, GuardedTarget, ProbeClients, WriteTarget
from drdrill.timeline import Event, Source, Timeline

if TYPE_CHECKING:
    from drdrill.config import EndpointConfig, WriterConfig
    from drdrill.session import DrillSession

F = TypeVar("F", bound=Fault)


def to_endpoint(config: EndpointConfig, default_timeout_s: float) -> Endpoint:
    """A probe endpoint from its config entry."""
    statuses = (
        config.expect_status if isinstance(config.expect_status, list) else [config.expect_status]
    )
    json_field = None if config.json_field is None else (config.json_field, config.json_equals)
    check = Check(
        status=frozenset(statuses),
        contains=config.body_contains,
        regex=config.body_matches,
        json_field=json_field,
    )
    return Endpoint(
        url=config.url,
        name=config.name or "",
        check=check,
        timeout_s=config.timeout if config.timeout is not None else default_timeout_s,
    )


def make_runner(
    drill: DrillSession,
    endpoints: Sequence[EndpointConfig],
    interval_s: float | None = None,
    on_event: Callable[[OutageEvent], None] | None = None,
) -> ProbeRunner:
    """A probe runner (not started) for ``endpoints``, with the config's timing and the
    target's way of resolving names."""
    cfg = drill.config.probes
    # a target may resolve names its own way (the sandbox: through its DNS server); the probe
    # loop runs in a process of its own, away from the drill's threads of work
    target = drill.target
    return ProbeRunner(
        [to_endpoint(e, cfg.timeout) for e in endpoints],
        interval_s=interval_s or cfg.interval,
        recovery_samples=cfg.recovery_samples,
        on_event=on_event,
        client=target.http_client_spec() if isinstance(target, ProbeClients) else None,
        mode="process",
    )


def serving_problem(drill: DrillSession, timeout_s: float) -> str | None:
    """After a drill, whether the stack serves again through its public endpoints: None once
    every endpoint shows the config's ``recovery_samples`` good samples in a row, else (after
    ``timeout_s``) what is still failing. A drill that ends with the site down fails."""
    cfg = drill.config.probes
    chosen = list(cfg.endpoints or drill.started_target().endpoints())
    runner = make_runner(drill, chosen)
    started = time.monotonic()
    with runner:
        while time.monotonic() - started < timeout_s:
            if runner.all_good_since(started, cfg.recovery_samples) is not None:
                return None
            time.sleep(0.05)
        stats = runner.stats()
    failing = [
        f"{s.url} ({s.availability or 0.0:.0f}% good)" for s in stats if (s.availability or 0) < 100
    ]
    return f"the drill ended with the site down: not serving {timeout_s:g} s after the drill: " + (
        ", ".join(failing) or "no endpoint on a run of good samples"
    )


def first_failure_after(after: Event, runners: Sequence[ProbeRunner]) -> float | None:
    """The send time of the first failed sample of any endpoint sent since ``after`` could have
    happened (its lower bound: a fault acts during the call that injects it), or None. A
    restore is looked for from there: good samples before the fault showed are no restore."""
    since = after.mono - after.uncertainty_s
    first: float | None = None
    for runner in runners:
        for endpoint in runner.endpoints:
            failed = next((s for s in runner.samples(endpoint.url, since) if s.bad), None)
            if failed is not None and (first is None or failed.send_mono < first):
                first = failed.send_mono
    return first


class ProbeSession:
    """The ``probes`` fixture: continuous probes whose outages land on the drill's timeline."""

    def __init__(self, drill: DrillSession, nodeid: str, timeline: Timeline) -> None:
        self._drill = drill
        self._nodeid = nodeid
        self._timeline = timeline
        self.runners: list[ProbeRunner] = []
        #: the runners whose endpoints must be good before a fault (steady state)
        self._steady: list[ProbeRunner] = []

    def start(
        self,
        endpoints: Sequence[EndpointConfig] | None = None,
        interval_s: float | None = None,
        steady: bool = True,
    ) -> ProbeRunner:
        """Start sampling ``endpoints`` (default: the config's, else the target's).

        ``steady`` says the endpoints serve before the fault (the stack's steady state); pass
        False for endpoints that are down by design until the drill acts (the DR load balancer of
        a pilot-light region).
        """
        cfg = self._drill.config.probes
        chosen = list(endpoints or cfg.endpoints or self._drill.started_target().endpoints())
        if not chosen:
            raise ConfigError(
                f"{self._drill.config.path}: probes.endpoints", "no endpoint to probe"
            )
        # a target may resolve names its own way (the sandbox: through its DNS server)
        runner = make_runner(self._drill, chosen, interval_s, on_event=self._on_event)
        runner.start()
        self.runners.append(runner)
        if steady:
            self._steady.append(runner)
        return runner

    def steady_problems(self, samples: int) -> list[str]:
        """What keeps the probed endpoints from steady state: each ``steady`` endpoint's last
        ``samples`` samples must all be good. Empty when they are (or nothing is probed)."""
        problems = []
        for runner in self._steady:
            for endpoint in runner.endpoints:
                last = runner.samples(endpoint.url)[-samples:]
                if len(last) < samples:
                    problems.append(f"{endpoint.url}: {len(last)} samples of {samples} yet")
                elif any(s.bad for s in last):
                    bad = [s.error or str(s.status) for s in last if s.bad]
                    problems.append(
                        f"{endpoint.url}: {len(bad)} of its last {samples} samples failed "
                        f"({', '.join(sorted(set(bad)))})"
                    )
        return problems

    def first_failure_after(self, after: Event, runners: Sequence[ProbeRunner]) -> float | None:
        """The send time of the first failed sample of any endpoint sent since ``after`` could
        have happened, or None (see :func:`first_failure_after`)."""
        return first_failure_after(after, runners)

    def _on_event(self, event: OutageEvent) -> None:
        outage = event.outage
        if event.kind == "started":
            self._timeline.observe(
                "outage_started",
                outage.start_mono,
                outage.start_uncertainty_s or 0.0,
                endpoint=outage.endpoint,
                error=outage.first_error,
            )
        elif outage.end_mono is not None:
            self._timeline.observe(
                "outage_ended",
                outage.end_mono,
                outage.end_uncertainty_s or 0.0,
                endpoint=outage.endpoint,
                duration_s=outage.duration_s,
            )

    def wait_restored(
        self,
        after: str | Event = "fault_injected",
        timeout_s: float = 60.0,
        name: str = "service_restored",
        runner: ProbeRunner | None = None,
        outage_first: bool = True,
    ) -> Event:
        """Block until every endpoint has passed its recovery run of samples since ``after``.

        With ``outage_first`` (the default) the endpoints must first have been seen failing
        after ``after`` (within the config's ``drills.effect_timeout``): a fault with no visible
        effect raises FaultHadNoEffect rather than giving a restore of ~0 s; the recovery run is
        then looked for from that failure on. Without it (endpoints that were down already, such
        as a pilot-light region's), from ``after``. Records (and returns) the observed event
        ``name``, bounded as the probes bound it. ``runner`` limits the wait to the endpoints of
        one ``start()``; by default all of them count.
        """
        if not self.runners:
            raise DrillError("probes.wait_restored() before probes.start()")
        since = self._timeline.get(after) if isinstance(after, str) else after
        runners = [runner] if runner is not None else self.runners
        deadline = time.monotonic() + timeout_s
        from_mono = since.mono - since.uncertainty_s
        if outage_first:
            effect_timeout = self._drill.config.drills.effect_timeout
            effect_deadline = time.monotonic() + effect_timeout
            notices = self._timeline.waiting(f"the effect of {since.name}", effect_timeout)
            while (failed := self.first_failure_after(since, runners)) is None:
                notices.tick()
                if time.monotonic() > effect_deadline:
                    urls = ", ".join(e.url for r in runners for e in r.endpoints)
                    raise FaultHadNoEffect(
                        f"the fault had no effect: no probe failed within {effect_timeout:g} s "
                        f"of '{since.name}' ({urls})"
                    )
                time.sleep(0.02)
            from_mono = failed
        late = f"endpoints not restored {timeout_s:g} s after '{since.name}'"
        return self._wait_all_good(runners, from_mono, deadline, name, late)

    def _wait_all_good(
        self,
        runners: Sequence[ProbeRunner],
        from_mono: float,
        deadline: float,
        name: str,
        late: str,
    ) -> Event:
        """Wait until every runner's endpoints are on their recovery run of samples sent since
        ``from_mono``; record and return that moment as ``name`` (DrillError ``late`` after
        ``deadline``)."""
        notices = self._timeline.waiting(name, max(0.0, deadline - time.monotonic()))
        while True:
            notices.tick()
            found = [r.all_good_since(from_mono, r.recovery_samples) for r in runners]
            good = [f for f in found if f is not None]
            if len(good) == len(found):
                # every runner's restore lies in its bound: all of them are restored by the
                # latest upper bound, and not before the latest lower bound
                high = max(f.mono for f in good)
                low = max(f.mono - f.uncertainty_s for f in good)
                lag = max(r.worst_lag(low, high) for r in runners)
                return self._timeline.observe(name, high, high - low, probe_lag_s=round(lag, 4))
            if time.monotonic() > deadline:
                raise DrillError(late)
            time.sleep(0.02)

    def restored_for_good(
        self,
        restored: Event,
        timeout_s: float = 60.0,
        name: str = "service_restored_again",
        runner: ProbeRunner | None = None,
    ) -> Event:
        """The restore that held, as seen by now: ``restored`` itself unless an endpoint failed
        again after it (a relapse). Then every relapse is on the timeline
        (``service_relapsed``, at the first failure after the restore) and the moment every
        endpoint was back on its recovery run after the *last* failure is recorded as ``name``
        and returned, waiting up to ``timeout_s`` for it. Call it once the drill has watched
        the service for a while after ``restored``: a restore that did not last is no restore.
        """
        runners = [runner] if runner is not None else self.runners
        relapses = [
            sample
            for r in runners
            for endpoint in r.endpoints
            for sample in r.samples(endpoint.url, restored.mono)
            if sample.bad
        ]
        if not relapses:
            return restored
        first = min(relapses, key=lambda s: s.send_mono)
        self._timeline.observe(
            "service_relapsed",
            first.done_mono,
            first.done_mono - restored.mono,
            after_s=round(first.send_mono - restored.mono, 4),
            error=first.error,
        )
        last = max(relapses, key=lambda s: s.send_mono)
        late = (
            f"the service failed again {first.send_mono - restored.mono:.2f} s after "
            f"'{restored.name}' ({first.error}) and was not back {timeout_s:g} s later"
        )
        return self._wait_all_good(
            runners, last.send_mono, time.monotonic() + timeout_s, name, late
        )

    def worst_availability(self) -> float | None:
        """The lowest availability (%) of any endpoint so far; None before any sample."""
        values = [
            stats.availability
            for runner in self.runners
            for stats in runner.stats()
            if stats.availability is not None
        ]
        return min(values) if values else None

    def close(self) -> None:
        """Stop every runner and file outages and statistics in the run record."""
        record = self._drill.run.test(self._nodeid)
        for runner in self.runners:
            runner.stop()
            # an endpoint down by design (steady=False) was expected down until it came up
            probes, outages = probe_records(
                runner.stats(), expected_down=runner not in self._steady
            )
            record.probes.extend(probes)
            record.outages.extend(outages)


class _Named(Protocol):
    """Anything with a name to say in an error (a target)."""

    @property
    def name(self) -> str:
        """What users call it."""


def marker_sink(cfg: WriterConfig, where: str, target: Callable[[], _Named]) -> WriteSink:
    """Where RPO markers go, as the config's ``writer`` says: the database itself
    (``sink: mysql``), the URL given, else the target's own way in (a :class:`WriteTarget`:
    through the public name, as clients write). ``where`` names the config in errors;
    ``target`` is asked only when the config names no sink of its own."""
    if cfg.sink == "mysql":
        if cfg.mysql is None:
            raise ConfigError(f"{where}: writer.mysql", "required for sink mysql")
        db = cfg.mysql
        endpoint = MySqlEndpoint(
            db.host,
            db.port,
            db.user,
            db.password,
            db.database,
            connect_timeout_s=max(1.0, cfg.timeout),
            read_timeout_s=cfg.timeout,
            write_timeout_s=cfg.timeout,
        )
        return MySqlSink(endpoint.connect)
    if cfg.url is not None:
        return HttpSink(cfg.url, timeout_s=cfg.timeout)
    chosen = target()
    if not isinstance(chosen, WriteTarget):
        raise DrillError(
            f"target '{chosen.name}' is no WriteTarget: give writer.url or pass a sink"
        )
    return chosen.write_sink(cfg.timeout)


class WriterSession:
    """The ``writer`` fixture: numbered RPO markers through the app or the database."""

    def __init__(self, drill: DrillSession, nodeid: str, timeline: Timeline) -> None:
        self._drill = drill
        self._nodeid = nodeid
        self._timeline = timeline
        # one marker run a drill: the run id plus a stable digest of the test's node id
        self.run_id = f"{drill.run.run_id}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"
        self._writer: MarkerWriter | None = None
        self._log: WriteLog | None = None

    def _default_sink(self) -> WriteSink:
        return marker_sink(
            self._drill.config.writer, str(self._drill.config.path), self._drill.started_target
        )

    def start(self, sink: WriteSink | None = None, rate_hz: float | None = None) -> MarkerWriter:
        """Start writing markers at ``rate_hz`` (default: the config's) through ``sink``."""
        if self._writer is not None:
            raise DrillError("writer.start() called twice in one drill")
        self._writer = MarkerWriter(
            sink or self._default_sink(),
            rate_hz or self._drill.config.writer.rate_hz,
            self.run_id,
        )
        self._writer.start()
        self._timeline.mark("writes_started", run=self.run_id)
        return self._writer

    def stop(self) -> WriteLog:
        """Stop writing; the log of every marker sent and whether it was acknowledged."""
        if self._log is None:
            if self._writer is None:
                raise DrillError("writer.stop() before writer.start()")
            self._log = self._writer.stop()
            self._timeline.mark("writes_stopped", sent=self._log.sent)
        return self._log

    def first_ack_after(
        self, after: Event, timeout_s: float = 60.0, name: str = "write_acknowledged"
    ) -> Event:
        """The first write acknowledged after the writes failed following ``after``.

        Bounded like every observed event: the writes were taken again somewhere between the
        send of the last write that failed (or ``after``'s lower bound, if none failed) and the
        acknowledgement of the first that succeeded.
        """
        if self._writer is None:
            raise DrillError("writer.first_ack_after() before writer.start()")
        deadline = time.monotonic() + timeout_s
        lower_bound = after.mono - after.uncertainty_s
        notices = self._timeline.waiting(name, timeout_s)
        while True:
            notices.tick()
            records = [r for r in self._writer.log().records if r.sent_mono >= lower_bound]
            failed = [i for i, r in enumerate(records) if not r.acknowledged]
            start = failed[0] if failed else 0
            for i in range(start, len(records)):
                if records[i].acknowledged:
                    last_failed = max(
                        (r.sent_mono for r in records[:i] if not r.acknowledged),
                        default=lower_bound,
                    )
                    return self._timeline.observe(
                        name,
                        records[i].done_mono,
                        records[i].done_mono - last_failed,
                        marker=records[i].marker_id,
                    )
            if time.monotonic() > deadline:
                raise DrillError(f"no write acknowledged {timeout_s:g} s after '{after.name}'")
            time.sleep(0.02)

    def verify(
        self,
        present: Iterable[int] | Callable[[], Iterable[int]] | None = None,
        before: str | Event | None = "fault_injected",
    ) -> RpoResult:
        """Lost acknowledged writes, given the marker ids in the database that survived.

        The writer is stopped first and its writes in flight drained; only then is ``present``
        read (call it with a function, e.g. ``lambda: stack.present_markers(...)``, so that the
        database is read after the last write landed). Without ``present`` the target is asked
        (its ``present_markers(run_id)``). A drill with nothing to lose fails: no acknowledged
        write at all, or none acknowledged before ``before`` (the fault, by default, when the
        drill has one) would make a loss of 0 meaningless.
        """
        log = self.stop()
        acked = [r for r in log.records if r.acknowledged]
        if not acked:
            raise NothingToLose(
                f"nothing to lose: the writer never had a write acknowledged ({log.sent} sent)"
            )
        mark = None
        if before is not None:
            mark = self._timeline.find(before) if isinstance(before, str) else before
        if mark is not None and not any(
            r.done_mono < mark.mono - mark.uncertainty_s for r in acked
        ):
            raise NothingToLose(
                f"nothing to lose: no write acknowledged before '{mark.name}' "
                f"({len(acked)} acknowledged after it)"
            )
        if present is None:
            target = self._drill.started_target()
            if not isinstance(target, WriteTarget):
                raise DrillError(
                    f"target '{target.name}' is no WriteTarget: pass the present marker ids"
                )
            ids: Iterable[int] = target.present_markers(self.run_id)
        elif callable(present):
            ids = present()
        else:
            ids = present
        result = verify_markers(log, ids)
        self._drill.run.test(self._nodeid).rpo.append(
            RpoRecord(
                run=self.run_id,
                sent=result.sent,
                acknowledged=result.acknowledged,
                lost_acknowledged=result.lost_acknowledged,
                lost_ids=tuple(result.lost_ids),
                unacknowledged_landed=result.unacknowledged_landed,
                data_loss_window_s=result.data_loss_window_s,
            )
        )
        return result

    def close(self) -> None:
        """Stop the writer if the drill did not."""
        if self._writer is not None and self._log is None:
            self.stop()


class NothingToLose(DrillError, AssertionError):
    """An RPO drill whose writer had nothing acknowledged: a loss of 0 would prove nothing."""


class SteadyStateError(DrillError):
    """The stack was not healthy before the fault: the drill measures nothing."""


class Injector:
    """The ``inject`` fixture: ``inject(fault)`` journals the undo, injects, reverts at teardown."""

    def __init__(self, drill: DrillSession, nodeid: str, timeline: Timeline) -> None:
        self._drill = drill
        self._nodeid = nodeid
        self._timeline = timeline
        self._faults = FaultInjector(Journal(drill.journal_path), run_id=drill.run.run_id)
        self._watchdog: StopWatchdog | None = None

    def _watch(self) -> None:
        """Poll the target's stop conditions once a fault is in (targets that have them)."""
        target = self._drill.target
        if self._watchdog is not None or not isinstance(target, GuardedTarget):
            return
        conditions = target.stop_conditions(lambda: self._drill.availability_of(self._nodeid))
        interval = float(target.stop_condition_interval_s)
        self._watchdog = StopWatchdog(conditions, interval, self._abort)
        self._watchdog.start()

    def _abort(self, exc: Exception) -> None:
        """A stop condition fired: revert every fault now, from the watchdog's thread."""
        self._timeline.mark("stop_condition_triggered", reasons=str(exc))
        for outcome in self._faults.revert_all():
            self._timeline.mark("fault_reverted", fault=outcome.description, note=outcome.note)

    def __call__(self, fault: F) -> F:
        """Inject ``fault`` now (after journaling its undo); returns it for a later revert."""
        description = fault.describe()
        target = self._drill.target
        if self._drill.dry_run:
            self._timeline.mark("fault_planned", fault=description, kind=fault.kind)
            if isinstance(target, GuardedTarget):
                try:
                    # as the destructive run would judge it (the guard only reads): the plan
                    # says what the real run would refuse, whatever the flag says now
                    target.guard(fault, True)
                except SafetyError as exc:
                    self._timeline.mark("fault_refused", fault=description, reason=str(exc))
                    pytest.skip(f"dry run: would refuse: {description}: {exc}")
            if isinstance(target, DryRunnable):
                # the target intercepts every changing call in a dry run: running the fault
                # sends nothing and lists, with their parameters, the calls it would make
                fault.inject()
            pytest.skip(f"dry run: would inject: {description}")
        if isinstance(target, GuardedTarget):
            # the target's own checks (accounts, regions, blast radius)
            target.guard(fault, self._drill.allow_destructive)
        elif (
            is_destructive(fault)
            and target.needs_destructive_flag
            and not self._drill.allow_destructive
        ):
            raise SafetyError(
                f"refused: '{description}' is destructive on target '{target.name}'; "
                "pass --dr-allow-destructive"
            )
        if self._watchdog is not None and self._watchdog.triggered is not None:
            raise self._watchdog.triggered  # the drill was aborted: inject nothing more
        if self._timeline.find("fault_injected") is None:  # a change (the mode) is no fault
            self._require_steady_state()
        clock = self._timeline.clock
        started: list[float] = []

        def journaled() -> None:
            started.append(clock.mono())
            self._timeline.say(f"injecting: {description}")

        self._faults.inject(fault, on_journaled=journaled)
        # the fault acted somewhere between the call's start (after our journal write) and
        # its return: an action known to within the call's duration
        done = clock.mono()
        self._timeline.observe(
            "fault_injected",
            done,
            done - (started[0] if started else done),
            Source.ACTION,
            fault=description,
            kind=fault.kind,
        )
        self._watch()
        return fault

    def _require_steady_state(self) -> None:
        """SteadyStateError unless the stack is healthy before the first fault: every steady
        probe good for the config's ``drills.steady_samples`` samples in a row, and what the
        target checks itself (replication running, lag within the RPO, the alarm OK). Waits up
        to ``drills.effect_timeout`` for it to hold, then gives up naming what did not."""
        drills = self._drill.config.drills
        deadline = time.monotonic() + drills.effect_timeout
        notices = self._timeline.waiting("a steady state", drills.effect_timeout)
        while True:
            notices.tick()
            problems = self._drill.steady_problems(self._nodeid)
            if not problems:
                self._timeline.mark("steady_state_verified")
                return
            if time.monotonic() > deadline:
                raise SteadyStateError(
                    "stack not healthy before the fault: " + "; ".join(problems[:5])
                )
            time.sleep(0.1)

    def change(self, change: F) -> F:
        """Make a change to the stack that is no fault (the failover mode) the way a fault is
        made: its undo journaled first, reverted at the drill's end with the faults (newest
        first), and by ``drdrill recover`` after a kill. No steady state is asked and no
        ``fault_injected`` marked: the drill's fault comes after. A dry run plans it only."""
        description = change.describe()
        if self._drill.dry_run:
            self._timeline.mark("change_planned", change=description, kind=change.kind)
            return change
        self._faults.inject(change)
        self._timeline.mark("state_changed", change=description, kind=change.kind)
        return change

    def revert(self, fault: Fault) -> Event:
        """Revert one fault now; the ``fault_reverted`` event."""
        outcome = self._faults.revert(fault)
        return self._timeline.mark("fault_reverted", fault=outcome.description, note=outcome.note)

    @property
    def active(self) -> tuple[Fault, ...]:
        """Faults injected and not reverted yet."""
        return self._faults.active

    def close(self) -> None:
        """Revert everything still active, newest first; raise if any revert failed, or the
        stop condition that aborted the drill."""
        triggered = self._watchdog.stop() if self._watchdog is not None else None
        outcomes = self._faults.revert_all()
        for outcome in outcomes:
            self._timeline.mark("fault_reverted", fault=outcome.description, note=outcome.note)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise DrillError(
                "revert failed: "
                + "; ".join(o.line() for o in failed)
                + f" (run 'drdrill recover --journal {self._drill.journal_path}')"
            )
        if triggered is not None:
            raise triggered


class StopWatchdog(threading.Thread):
    """Polls stop conditions (guard alarms, an availability budget) while faults are in.

    When one fires it calls ``on_trigger`` (which reverts every fault) once and stops; the
    drill then fails with that reason.
    """

    def __init__(
        self, conditions: Any, interval_s: float, on_trigger: Callable[[Exception], None]
    ) -> None:
        super().__init__(name="drdrill-stop-conditions", daemon=True)
        self.conditions = conditions
        self.interval_s = interval_s
        self.on_trigger = on_trigger
        self.triggered: Exception | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Check every interval until stopped or triggered."""
        while not self._stop_event.wait(self.interval_s):
            try:
                self.conditions.check()
            except DrillError as exc:
                self.triggered = exc
                self.on_trigger(exc)
                return

    def stop(self) -> Exception | None:
        """Stop polling; what triggered, if anything did."""
        self._stop_event.set()
        self.join(timeout=self.interval_s + 5)
        return self.triggered
