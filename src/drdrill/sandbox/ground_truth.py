"""Each failover phase as the sandbox's independent records have it (docs/ground-truth.md).

A drill measures each phase from what it sees (polls, the stack's reported records); the truth
of each phase comes from records the drill does not read: MariaDB's general log, HAProxy's own
log lines, the DNS server's log of its answers to each client, the pager's receipt of the
alarm, the control server's log of each call's arrival, the tasks' own first write, and the
independent observer of the load balancers. :func:`failover_truths` turns them into one
``(seconds, source)`` a phase; a phase whose records are missing gets ``None`` and says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drdrill.sandbox.observer_log import ObserverTransition
from drdrill.sandbox.truth import TruthEvent

#: the control call that carries each on-call trigger to the stack
TRIGGER_CALLS = {"lambda": "invoke_dr", "script": "failover_step"}


@dataclass(frozen=True)
class PhaseTruth:
    """One phase's ground truth in seconds (None when the records lack it) and its sources.

    ``uncertainty_s`` is how far the truth itself may be off (half the width of the interval
    it is the middle of): 0 where both ends are logged moments, half the observer's bracket
    where the independent observer's return to pass ends the phase (on a busy machine, or
    while a restarting database makes requests hang, that bracket is up to ~0.8 s wide)."""

    seconds: float | None
    source: str
    uncertainty_s: float = 0.0


def _first(
    events: Sequence[TruthEvent], name: str, after: float | None, **attrs: Any
) -> TruthEvent | None:
    if after is None:
        return None
    for event in events:
        if (
            event.event == name
            and event.mono >= after
            and all(event.attrs.get(k) == v for k, v in attrs.items())
        ):
            return event
    return None


def _mono(event: TruthEvent | None) -> float | None:
    return None if event is None else event.mono


def _span(
    start: float | None, end: float | None, source: str, missing: str, uncertainty: float = 0.0
) -> PhaseTruth:
    if start is None or end is None:
        return PhaseTruth(None, f"no ground truth: {missing}")
    return PhaseTruth(end - start, source, uncertainty)


def settled_pass(
    transitions: Sequence[ObserverTransition], after_mono: float, settle_s: float
) -> ObserverTransition | None:
    """The observer's first return to pass (upper bound at or after ``after_mono``) that held:
    its next failure was sent ``settle_s`` or more after it (or there was none). None if no
    return to pass held. With ``settle_s`` 0, the first return to pass.

    A drill's probes count an endpoint restored at a run of good samples
    (``recovery_samples``): ``settle_s`` is that run's length,
    ``(recovery_samples - 1) x probe interval``, on the observer's own samples."""
    ordered = list(transitions)
    for i, change in enumerate(ordered):
        if change.new != "pass" or change.hi_mono < after_mono:
            continue
        failed = next((t for t in ordered[i + 1 :] if t.new == "fail"), None)
        if failed is None or failed.lo_mono - change.mid_mono >= settle_s:
            return change
    return None


def passing_since(transitions: Sequence[ObserverTransition]) -> ObserverTransition | None:
    """The observer's last return to pass, when it is passing now (its last transition is
    one): the restore that held, for good, as seen by now (as a drill's
    ``probes.restored_for_good`` counts its own). None when it sees the endpoint failing."""
    if transitions and transitions[-1].new == "pass":
        return transitions[-1]
    return None


def _between(first: ObserverTransition, last: ObserverTransition) -> tuple[float, float]:
    """A restore known to lie between two of the observer's returns to pass: the middle of
    their brackets' middles, ± half the span and half the wider bracket (``last`` may be
    ``first``: its middle, ± half its bracket)."""
    bracket = max(first.uncertainty_s, last.uncertainty_s) / 2
    return (first.mid_mono + last.mid_mono) / 2, (last.mid_mono - first.mid_mono) / 2 + bracket


@dataclass(frozen=True)
class ObservedRestore:
    """An endpoint's return to service as the observer saw it, each end ``(moment, ±)``.

    ``held``: between its first return to pass and the first that held ``settle_s`` (a
    drill's probes count it restored at a run of good samples); ``for_good``: between its
    first return to pass and the last, None while it is failing now."""

    first: ObserverTransition
    held: tuple[float, float] | None
    for_good: tuple[float, float] | None


def observed_restore(
    transitions: Sequence[ObserverTransition], after_mono: float, settle_s: float
) -> ObservedRestore | None:
    """How the observer saw an endpoint come back after ``after_mono``; None if it never
    returned to pass."""
    first = settled_pass(transitions, after_mono, 0.0)
    if first is None:
        return None
    held = settled_pass(transitions, after_mono, settle_s)
    last = passing_since(transitions)
    return ObservedRestore(
        first,
        None if held is None else _between(first, held),
        None if last is None else _between(first, last),
    )


def failover_truths(
    events: Sequence[TruthEvent],
    dr_lb: Sequence[ObserverTransition],
    *,
    trigger: str,
    want: int,
    dr_ip: str,
    clients: Mapping[str, str],
    settle_s: float = 0.0,
) -> dict[str, PhaseTruth]:
    """The truth of each phase of a region failover, from the records since the fault.

    ``events``: the truth log since the fault, in time order; ``dr_lb``: the observer's
    transitions of the DR load balancer; ``clients``: each DNS client's source address
    (``probes``, ``writer``, ``drill``); ``settle_s``: how long the DR load balancer must
    keep passing for its return to pass to hold (:func:`settled_pass`).

    The DR balancer is restored at the observer's first return to pass when it held. On a
    busy machine its requests time out by turns after it first passes (the observer saw it
    pass, fail and pass again up to ten times over four seconds, and a drill's probes saw
    the same flapping, or not, on their own samples): the balancer was then restored
    somewhere between its first pass and the first that held, and that is the truth, as an
    interval (its middle, ± half its width and half the wider bracket). Its checks are
    verified (Health Verification) for good, as the drill's ``probes.restored_for_good``
    counts them: at the observer's last return to pass (:func:`passing_since`), the interval from
    its first when it relapsed, as a reboot's restore in :func:`reboot_truth`.
    """
    down = _first(events, "region_down", float("-inf"))
    down_source = "supervisor's region_down"
    if down is None:
        # through the AWS API the region goes down as AWS lets a drill take it: its service
        # scaled to nothing (the scheduler's own record of the desired count)
        down = next(
            (
                e
                for e in events
                if e.event == "service_desired_changed"
                and e.component == "ecs-primary"
                and e.attrs.get("new") == 0
            ),
            None,
        )
        down_source = "ECS scheduler's primary desired count 0"
    start = _mono(down)
    alarm = _first(events, "sns_delivered", start, test=False)
    at_alarm = _mono(alarm)
    stop_io = _first(
        events, "db_replication_stopped", start, region="dr", statement="STOP SLAVE IO_THREAD"
    )
    # the promotion began when its session connected to the DR database (MariaDB's Connect row)
    promoting = _mono(stop_io)
    if stop_io is not None and stop_io.attrs.get("session_mono") is not None:
        promoting = float(stop_io.attrs["session_mono"])
    # through the AWS API the promotion is a call: RDS's phase runs from its arrival (the
    # API's own log, as a reboot's truth starts at its request); the database sees it only
    # once the promotion, in the background as RDS runs it, has connected
    promote_call = _first(events, "api_request", start, call="rds:PromoteReadReplica")
    if promote_call is not None and promoting is not None and promote_call.mono > promoting:
        promote_call = None  # not this promotion's call
    decided: float | None
    notified = _first(events, "api_request", at_alarm, call="sns:Publish")
    if trigger == "automated" and notified is not None:
        # through the AWS API the alarm's action is a notification to SNS, whose lambda
        # subscription runs the DR function: its arrival is the automation's reaction (the
        # function's own start-up and calls come after it, as on AWS)
        decided = notified.mono
        decided_source = "the AWS API's log of the alarm's notification reaching SNS"
    elif trigger == "automated":
        decided = promoting
        decided_source = "MariaDB general log (the automation's promotion session connects)"
    else:
        call = TRIGGER_CALLS.get(trigger)
        decided = _mono(_first(events, "control_request", at_alarm, call=call))
        decided_source = f"control server's log of the {trigger} trigger's arrival"
    writable = _first(events, "db_read_only_changed", _mono(stop_io), region="dr", read_only=False)
    scaled = _first(events, "service_desired_changed", start, new=want)
    scaled = scaled if scaled is None or scaled.component == "ecs-dr" else None
    ups: list[TruthEvent] = []
    for event in events:
        if (
            scaled is not None
            and event.event == "haproxy_server_state"
            and event.mono >= scaled.mono
            and event.attrs.get("lb") == "alb-dr"
            and event.attrs.get("state") == "UP"
            and all(u.attrs.get("server") != event.attrs.get("server") for u in ups)
        ):
            ups.append(event)
    healthy = ups[want - 1] if len(ups) >= want else None
    # through the AWS API the scale-up is an UpdateService call, and what AWS keeps of it is
    # ECS's record of the tasks it launched ('has started N tasks'), not the ask: a drill on
    # that path times the phase from the launch, so its truth starts at the scheduler's own
    # record of the first DR task launched, and says how long ECS took to launch it
    scale_start, scale_source = _mono(scaled), "ECS scheduler's desired count"
    scale_call = _first(events, "api_request", start, call="ecs:UpdateService")
    if scaled is not None and scale_call is not None and scale_call.mono <= scaled.mono:
        launches = (e for e in events if e.event == "task_launched" and e.component == "ecs-dr")
        launched = next((e for e in launches if e.mono >= scaled.mono), None)
        if launched is not None:
            scale_start = launched.mono
            scale_source = (
                f"ECS scheduler's launch of the first DR task, {launched.mono - scaled.mono:.3f} "
                "s after UpdateService (the phase's start on the AWS path: ECS records the "
                "launch, not the ask; the wait is in no phase)"
            )
    # the DR balancer restored: between the observer's first return to pass and the first
    # that held (the same one unless it flapped); its checks verified: for good, between that
    # first return to pass and the last
    restore = None if scaled is None else observed_restore(dr_lb, scaled.mono, settle_s)
    passes, passes_unc = (None, 0.0) if restore is None or restore.held is None else restore.held
    switched = _first(events, "dns_record_switched", start, to="dr")
    told = {
        role: _first(events, "dns_answer", _mono(switched), client_ip=ip, answer=dr_ip)
        for role, ip in clients.items()
    }
    wrote = _first(events, "app_first_write", start, region="dr")
    probes_moved = _mono(told.get("probes"))
    restored = None if probes_moved is None or passes is None else max(probes_moved, passes)
    done = None if restored is None or wrote is None else max(restored, wrote.mono)
    restored_unc = passes_unc if restored is not None and restored == passes else 0.0
    done_unc = restored_unc if done is not None and done == restored else 0.0
    health: PhaseTruth
    if healthy is None or restore is None:
        health = PhaseTruth(None, "no ground truth: no DR targets UP or no observer pass")
    elif restore.for_good is None:
        health = PhaseTruth(None, "no ground truth: the observer sees the DR balancer failing")
    else:
        verified, verified_unc = restore.for_good
        health = PhaseTruth(
            max(0.0, verified - healthy.mono),
            "HAProxy's log (targets UP), the independent observer (dr-lb passes, for good)",
            verified_unc,
        )
    return {
        "Detection": _span(
            start,
            at_alarm,
            f"{down_source}; the pager's receipt of the ALARM notification",
            "no region_down or no ALARM delivered to the pager",
        ),
        "Decision": (
            # the on-call's trigger is drdrill's own action (it starts the script); the stack
            # hears of it only when the script's first call arrives, after the script's own
            # start-up, so nothing independent records the moment this phase ends
            PhaseTruth(
                None,
                "no ground truth: the trigger is our own action; the stack logs only the "
                "script's first call, after its start-up",
            )
            if trigger == "script"
            else PhaseTruth(
                None,
                "no ground truth: the Invoke is our own action; the AWS API logs its arrival "
                "only after the client's own set-up (a boto3 client's first call)",
            )
            if trigger == "lambda"
            and decided is None
            and any(
                e.event == "api_request" and e.attrs.get("call") == "lambda:Invoke" for e in events
            )
            else _span(at_alarm, decided, decided_source, "no trigger recorded")
        ),
        "RDS Promotion": _span(
            promoting if promote_call is None else promote_call.mono,
            _mono(writable),
            "MariaDB general log (the promotion session's Connect -> SET GLOBAL read_only = 0)"
            if promote_call is None
            else "the AWS API's log of PromoteReadReplica's arrival; MariaDB general log "
            "(SET GLOBAL read_only = 0)",
            "no promotion statements in the DR database's general log",
        ),
        "ECS Scale-up": _span(
            scale_start,
            _mono(healthy),
            f"{scale_source}; HAProxy's log ({want} targets UP)",
            "no scale-up or too few DR targets UP in HAProxy's log",
        ),
        "Health Verification": health,
        "DNS Update": _span(
            _mono(switched),
            _mono(told.get("drill")),
            "DNS server's switch and its answers to the drill's client",
            "no DR answer to the drill's DNS client",
        ),
        "Total RTO": _span(
            start,
            done,
            f"{down_source}; DNS answers to the probes, the observer (dr-lb), the first DR write",
            "no DR answer to the probes, no observer pass or no write on DR",
            done_unc,
        ),
        "client downtime": _span(
            start,
            restored,
            f"{down_source}; DNS answers to the probes, the observer (dr-lb)",
            "no DR answer to the probes or no observer pass",
            restored_unc,
        ),
    }


def task_failure_truth(events: Sequence[TruthEvent], since: float) -> PhaseTruth:
    """ECS Scale-up of a task failure: the scheduler's own record of the first task it stopped
    -> HAProxy's own log of the last replacement UP behind the primary load balancer."""
    stops = [
        e
        for e in events
        if e.event == "task_stopped" and e.component == "ecs-primary" and e.mono >= since
    ]
    if not stops:
        return PhaseTruth(None, "no ground truth: no task_stopped in the scheduler's record")
    first = stops[0]
    # the tasks one fault stopped: those stopped in the same breath as the first
    stopped = {e.attrs.get("task") for e in stops if e.mono <= first.mono + 1.0}
    ups: list[TruthEvent] = []
    for event in events:
        if (
            event.event == "haproxy_server_state"
            and event.mono >= first.mono
            and event.attrs.get("lb") == "alb-primary"
            and event.attrs.get("state") == "UP"
            and event.attrs.get("server") not in stopped
            and all(u.attrs.get("server") != event.attrs.get("server") for u in ups)
        ):
            ups.append(event)
    if len(ups) < len(stopped):
        return PhaseTruth(None, "no ground truth: too few replacements UP in HAProxy's log")
    return PhaseTruth(
        ups[len(stopped) - 1].mono - first.mono,
        "ECS scheduler's task_stopped; HAProxy's log (replacements UP)",
    )


#: the stack's records of a reboot request's arrival: the control server's, the AWS API's
_REBOOT_REQUESTS = (("control_request", "reboot_db"), ("api_request", "rds:RebootDBInstance"))


def reboot_truth(
    events: Sequence[TruthEvent], primary_lb: Sequence[ObserverTransition], since: float
) -> PhaseTruth:
    """Total RTO of a database reboot: the reboot request's arrival -> the independent
    observer's primary load balancer passing again, for good, after it failed.

    The start is the fault as the drill times it, and as the runbook's "fault to service
    restored" reads: the request, as the control server or the AWS API logged its arrival, the
    last one before the supervisor's ``db_reboot_started`` (which stands in when neither logged
    one). A reboot the API starts late (RDS starts one some time after answering; the sandbox's
    API in a thread of its own) is part of the downtime clients see.

    For good, as the drill counts it (``probes.restored_for_good``: the restore after the last
    relapse it saw): the last return to pass among the transitions given (those seen by the
    time the drill asks); none when the observer sees the primary failing still. When the
    observer saw the primary relapse after its first return to pass, whether a relapse is seen
    at all depends on which requests a sampler happened to send (CI: a crash reboot measured
    3.91 s, its probes saw no relapse, beside a truth of 5.70 ± 0.40 s): the truth is then the
    interval from the first return to pass to the last (its middle, ± half its width and half
    the wider bracket), as the DR balancer's in :func:`failover_truths`."""
    started = _first(events, "db_reboot_started", since)
    if started is None:
        return PhaseTruth(None, "no ground truth: no db_reboot_started")
    requests = [
        e
        for e in events
        if since <= e.mono <= started.mono and (e.event, e.attrs.get("call")) in _REBOOT_REQUESTS
    ]
    start = requests[-1] if requests else started
    failed = next((t for t in primary_lb if t.new == "fail" and t.hi_mono >= start.mono), None)
    if failed is None:
        return PhaseTruth(None, "no ground truth: the observer saw no outage of the primary")
    back = next((t for t in primary_lb if t.new == "pass" and t.lo_mono >= failed.lo_mono), None)
    if back is None:
        return PhaseTruth(None, "no ground truth: the observer never saw the primary pass again")
    last = passing_since(primary_lb)
    if last is None:
        return PhaseTruth(None, "no ground truth: the observer sees the primary failing again")
    origin = (
        "the reboot request's arrival (the control server's log)"
        if start.event == "control_request"
        else "the reboot request's arrival (the AWS API's log)"
        if start.event == "api_request"
        else "supervisor's db_reboot_started"
    )
    restored, uncertainty = _between(back, last)
    return PhaseTruth(
        restored - start.mono,
        f"{origin}; the independent observer (primary-lb passes again, for good)",
        uncertainty,
    )


def failback_truths(
    events: Sequence[TruthEvent], started: float, primary_ip: str, drill_client: str
) -> dict[str, PhaseTruth]:
    """The failback's figures, from our own ``failback_started`` action (an exact time) to
    the components' records: the primary database's read_only flip in its general log, and the
    DNS server's first answer of the primary to the drill's client after switching back."""
    writable = _first(events, "db_read_only_changed", started, region="primary", read_only=False)
    switched = _first(events, "dns_record_switched", started, to="primary")
    told = _first(events, "dns_answer", _mono(switched), client_ip=drill_client, answer=primary_ip)
    return {
        "failback: primary writable": _span(
            started,
            _mono(writable),
            "our failback_started; MariaDB general log (primary read_only off)",
            "no read_only flip of the primary in its general log",
        ),
        "failback: clients on primary": _span(
            started,
            _mono(told),
            "our failback_started; the DNS server's first primary answer to the drill's client",
            "no primary answer to the drill's DNS client",
        ),
    }
