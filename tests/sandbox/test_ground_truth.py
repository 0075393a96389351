"""Each failover phase's ground truth from the sandbox's independent records (synthetic records
here; tests/sandbox/test_ground_truth_stack.py has the real ones): which record ends which
phase, a DR load balancer that passes only after DNS moved, and missing records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from drdrill.sandbox.ground_truth import PhaseTruth, failover_truths, reboot_truth
from drdrill.sandbox.observer_log import ObserverTransition
from drdrill.sandbox.truth import TruthEvent

DR_IP = "127.0.2.2"
CLIENTS = {"probes": "127.0.4.11", "writer": "127.0.4.12", "drill": "127.0.4.13"}
NOW = datetime.now(UTC)


def ev(mono: float, name: str, component: str = "x", **attrs: Any) -> TruthEvent:
    return TruthEvent(name, NOW, mono, component, attrs)


def passes(lo: float, hi: float) -> ObserverTransition:
    return ObserverTransition("dr-lb", "fail", "pass", lo, hi, NOW, NOW, None)


def records(lb_up: float = 3.0) -> list[TruthEvent]:
    """A failover: down at 10, alarm delivered 11.5, promoted 11.6-11.62, scaled 11.63,
    targets UP at 12.4 and 12.5, DNS switched 12.6 and told the drill at 12.61, the probes
    at 13.0, first DR write 13.1."""
    return sorted(
        [
            ev(10.0, "region_down", "region-primary", mode="kill"),
            ev(11.5, "sns_delivered", test=False),
            ev(11.55, "control_request", call="invoke_dr"),
            ev(
                11.6,
                "db_replication_stopped",
                region="dr",
                statement="STOP SLAVE IO_THREAD",
                session_mono=11.59,
            ),
            ev(11.62, "db_read_only_changed", region="dr", read_only=False),
            ev(11.63, "service_desired_changed", "ecs-dr", old=0, new=2),
            ev(10.0 + lb_up - 0.6, "haproxy_server_state", lb="alb-dr", state="UP", server="t1"),
            ev(10.0 + lb_up - 0.5, "haproxy_server_state", lb="alb-dr", state="UP", server="t2"),
            ev(12.6, "dns_record_switched", to="dr"),
            ev(12.605, "dns_answer", client_ip=CLIENTS["drill"], answer="127.0.1.2"),
            ev(12.61, "dns_answer", client_ip=CLIENTS["drill"], answer=DR_IP),
            ev(13.0, "dns_answer", client_ip=CLIENTS["probes"], answer=DR_IP),
            ev(13.1, "app_first_write", region="dr", task="t1", marker_id=9),
        ],
        key=lambda e: e.mono,
    )


def test_each_phase_ends_at_its_own_record() -> None:
    truths = failover_truths(
        records(),
        [passes(12.41, 12.43)],
        trigger="automated",
        want=2,
        dr_ip=DR_IP,
        clients=CLIENTS,
    )
    seconds = {name: t.seconds for name, t in truths.items()}
    assert seconds == pytest.approx(
        {
            "Detection": 1.5,
            "Decision": 0.09,  # the alarm to the promotion session's connect
            "RDS Promotion": 0.03,  # the session's connect to read_only=0
            "ECS Scale-up": 12.5 - 11.63,  # the second target UP
            "Health Verification": 0.0,  # the LB passed as its first target came UP
            "DNS Update": 0.01,  # the first DR answer to the drill's own client
            "Total RTO": 3.1,  # the first write on DR, after the probes moved
            "client downtime": 3.0,  # the probes told DR
        }
    )
    assert all(t.source for t in truths.values())
    # ends that are logged moments are exact; the observer's pass is known to its bracket
    spread = {name: t.uncertainty_s for name, t in truths.items()}
    assert spread == pytest.approx({**dict.fromkeys(seconds, 0.0), "Health Verification": 0.01})


def test_a_dr_balancer_that_passes_after_the_dns_moved_sets_the_total() -> None:
    """The review's case: DNS sent the probes to DR before its load balancer had a healthy
    target; restored is when both held."""
    truths = failover_truths(
        records(lb_up=5.0),
        [passes(14.90, 14.92)],
        trigger="automated",
        want=2,
        dr_ip=DR_IP,
        clients=CLIENTS,
    )
    assert truths["client downtime"].seconds == pytest.approx(4.91)
    assert truths["Total RTO"].seconds == pytest.approx(4.91)
    assert truths["Health Verification"].seconds == pytest.approx(14.91 - 14.5)
    # each of them ends at the observer's pass: known to within half its bracket
    for name in ("client downtime", "Total RTO", "Health Verification"):
        assert truths[name].uncertainty_s == pytest.approx(0.01), name
    assert truths["DNS Update"].uncertainty_s == 0.0


def fails(lo: float, hi: float) -> ObserverTransition:
    return ObserverTransition("dr-lb", "pass", "fail", lo, hi, NOW, NOW, "/: TimeoutError")


def test_a_dr_balancer_that_flaps_is_restored_between_its_first_pass_and_the_one_that_held() -> (
    None
):
    """Seen on a busy machine: the DR balancer passed, then its requests timed out by turns for
    a while. A drill's probes count it restored at a run of good samples, and may or may not
    have seen the same timeouts on their own samples: the truth of its restore (client
    downtime, Total RTO) is the interval from the observer's first return to pass to the first
    that held as long (``settle_s``); its checks are verified for good, at its last return to
    pass, as the drill's ``probes.restored_for_good`` counts them."""
    flapping = [passes(13.51, 13.53), fails(13.60, 14.10), passes(14.20, 14.22)]

    def truths_of(changes: list[ObserverTransition], settle_s: float) -> dict[str, PhaseTruth]:
        return failover_truths(
            records(),
            changes,
            trigger="automated",
            want=2,
            dr_ip=DR_IP,
            clients=CLIENTS,
            settle_s=settle_s,
        )

    truths = truths_of(flapping, 0.1)
    # targets UP at 12.5; the first pass (13.52) held 0.08 s (< 0.1), the second (14.21) held
    health = truths["Health Verification"]
    assert health.seconds == pytest.approx((13.52 + 14.21) / 2 - 12.5)
    assert health.uncertainty_s == pytest.approx((14.21 - 13.52) / 2 + 0.01)
    assert truths["client downtime"].seconds == pytest.approx((13.52 + 14.21) / 2 - 10.0)
    # a pass that held the run's length restores the balancer at once, known to its bracket;
    # its checks are verified only at the last return to pass all the same
    held = truths_of(flapping, 0.05)
    assert held["client downtime"].seconds == pytest.approx(13.52 - 10.0)
    assert held["Health Verification"].seconds == pytest.approx(health.seconds)
    # no relapse: the first pass, known to its bracket
    once = truths_of(flapping[:1], 0.1)["Health Verification"]
    assert once.seconds == pytest.approx(13.52 - 12.5)
    assert once.uncertainty_s == pytest.approx(0.01)
    # a balancer failing still, or that never held a pass, has no truth
    failing = truths_of(flapping[:2], 0.05)["Health Verification"]
    assert failing.seconds is None
    assert "failing" in failing.source
    assert truths_of(flapping[:2], 0.1)["client downtime"].seconds is None


def test_a_promotion_asked_through_the_aws_api_runs_from_the_calls_arrival() -> None:
    """Through the AWS API the promotion is a call, which RDS runs in the background: the
    database sees it once the promotion's session has connected (30 ms later here), and the
    phase runs from the call's arrival, as the API logged it."""
    called = sorted(
        [*records(), ev(11.56, "api_request", call="rds:PromoteReadReplica", region="dr")],
        key=lambda e: e.mono,
    )
    truths = failover_truths(
        called, [passes(12.41, 12.43)], trigger="lambda", want=2, dr_ip=DR_IP, clients=CLIENTS
    )
    assert truths["RDS Promotion"].seconds == pytest.approx(11.62 - 11.56)
    assert "PromoteReadReplica" in truths["RDS Promotion"].source
    # without the call (the sandbox's own automation) it runs from the session's connect
    plain = failover_truths(
        records(), [passes(12.41, 12.43)], trigger="lambda", want=2, dr_ip=DR_IP, clients=CLIENTS
    )
    assert plain["RDS Promotion"].seconds == pytest.approx(11.62 - 11.59)


def test_a_scale_up_asked_through_the_aws_api_runs_from_ecss_launch() -> None:
    """Through the AWS API what AWS keeps of a scale-up is ECS's record of the tasks it launched
    ('has started N tasks'), which the drill times the phase from: its truth starts at the
    scheduler's first DR launch after the desired count changed (0.16 s later here, as in CI),
    and says so; without the call (the sandbox's own automation) it starts at the ask."""
    called = sorted(
        [
            *records(),
            ev(10.01, "api_request", call="ecs:UpdateService", region="eu-west-1"),
            ev(11.629, "api_request", call="ecs:UpdateService", region="eu-central-1"),
            ev(11.70, "task_launched", "ecs-primary", task="primary-task-9"),
            ev(11.79, "task_launched", "ecs-dr", task="dr-task-3"),
            ev(11.85, "task_launched", "ecs-dr", task="dr-task-4"),
        ],
        key=lambda e: e.mono,
    )
    truths = failover_truths(
        called, [passes(12.41, 12.43)], trigger="lambda", want=2, dr_ip=DR_IP, clients=CLIENTS
    )
    assert truths["ECS Scale-up"].seconds == pytest.approx(12.5 - 11.79)
    assert "launch of the first DR task, 0.160 s after UpdateService" in (
        truths["ECS Scale-up"].source
    )
    # the rest of the failover is untouched: Total RTO still holds ECS's wait
    assert truths["Total RTO"].seconds == pytest.approx(3.1)
    plain = failover_truths(
        [e for e in called if e.event != "api_request"],
        [passes(12.41, 12.43)],
        trigger="lambda",
        want=2,
        dr_ip=DR_IP,
        clients=CLIENTS,
    )
    assert plain["ECS Scale-up"].seconds == pytest.approx(12.5 - 11.63)
    assert "desired count" in plain["ECS Scale-up"].source


def test_an_on_call_trigger_ends_the_decision_when_its_call_arrives() -> None:
    truths = failover_truths(
        records(),
        [passes(12.41, 12.43)],
        trigger="lambda",
        want=2,
        dr_ip=DR_IP,
        clients=CLIENTS,
    )
    assert truths["Decision"].seconds == pytest.approx(0.05)
    assert "control server" in truths["Decision"].source


def test_missing_records_give_no_truth_and_say_why() -> None:
    without_pager = [e for e in records() if e.event != "sns_delivered"]
    truths = failover_truths(
        without_pager, [], trigger="automated", want=2, dr_ip=DR_IP, clients=CLIENTS
    )
    assert truths["Detection"].seconds is None
    assert truths["Detection"].source.startswith("no ground truth: ")
    assert truths["Decision"].seconds is None  # it starts at the alarm
    assert truths["RDS Promotion"].seconds == pytest.approx(0.03)  # still known
    assert truths["Health Verification"].seconds is None  # no observer pass
    assert truths["Total RTO"].seconds is None
    assert truths["ECS Scale-up"].seconds == pytest.approx(12.5 - 11.63)  # still known


def test_the_script_triggers_decision_has_no_ground_truth() -> None:
    # the script is started by drdrill itself; the stack hears of it only after the script's
    # start-up, which is not part of the on-call's decision
    truths = failover_truths(
        records(), [passes(12.41, 12.43)], trigger="script", want=2, dr_ip=DR_IP, clients=CLIENTS
    )
    assert truths["Decision"].seconds is None
    assert truths["Decision"].source.startswith("no ground truth: the trigger is our own action")


def _lb(new: str, lo: float, hi: float) -> ObserverTransition:
    old = "pass" if new == "fail" else "fail"
    return ObserverTransition("primary-lb", old, new, lo, hi, NOW, NOW, None)


def test_a_reboots_truth_is_the_return_to_pass_for_good() -> None:
    events = [ev(10.0, "db_reboot_started", "rds-primary", mode="clean")]
    # the primary failed, passed briefly, failed again and came back for good
    flapping = [
        _lb("fail", 10.1, 10.2),
        _lb("pass", 10.5, 10.6),
        _lb("fail", 10.7, 10.8),
        _lb("pass", 11.1, 11.3),
    ]
    # the drill's probes count the restore after the last relapse they saw, and may have seen
    # none: restored between the first return to pass (10.55) and the last (11.2), known to
    # within half the wider bracket (0.2 s wide)
    truth = reboot_truth(events, flapping, since=9.0)
    assert truth.seconds == pytest.approx((10.55 + 11.2) / 2 - 10.0)
    assert truth.uncertainty_s == pytest.approx((11.2 - 10.55) / 2 + 0.1)
    assert "for good" in truth.source
    # failing again when the drill asks: no truth rather than the brief pass
    assert reboot_truth(events, flapping[:3], since=9.0).seconds is None
    assert "failing again" in reboot_truth(events, flapping[:3], since=9.0).source
    assert reboot_truth(events, [], since=9.0).seconds is None
    # without a relapse it is the one return to pass, within half its bracket
    back = reboot_truth(events, [flapping[0], flapping[3]], since=9.0)
    assert back.seconds == pytest.approx(1.2) and back.uncertainty_s == pytest.approx(0.1)


def test_a_reboots_truth_starts_at_the_requests_arrival() -> None:
    """The drill times the fault from its request; an API that starts the reboot late (RDS
    does, the sandbox's API in a thread of its own) makes that delay part of the downtime, and
    the truth counts it the same way: from the last request logged before the reboot began."""
    back = [_lb("fail", 10.3, 10.4), _lb("pass", 11.1, 11.3)]
    events = [
        ev(9.5, "api_request", "aws-api", call="rds:RebootDBInstance", region="eu-west-1"),
        ev(9.8, "api_request", "aws-api", call="rds:DescribeDBInstances", region="eu-west-1"),
        ev(10.0, "db_reboot_started", "rds-primary", mode="clean"),
        ev(12.0, "api_request", "aws-api", call="rds:RebootDBInstance", region="eu-west-1"),
    ]
    truth = reboot_truth(events, back, since=9.0)
    assert truth.seconds == pytest.approx(11.2 - 9.5)
    assert truth.source.startswith("the reboot request's arrival (the AWS API's log)")
    control = [ev(9.9, "control_request", "control", call="reboot_db"), *events[2:3]]
    assert reboot_truth(control, back, since=9.0).seconds == pytest.approx(11.2 - 9.9)
    # a request before the drill's start is not this reboot's
    assert reboot_truth(events, back, since=9.6).seconds == pytest.approx(11.2 - 10.0)
