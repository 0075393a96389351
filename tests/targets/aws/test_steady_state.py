"""The aws target's steady state before a fault, against a stack in a moto server: a healthy
stack has no problem, and each thing that is not in steady state is one problem naming it.

moto publishes no ``ReplicaLag`` and reports no ``StatusInfos``: the tests supply both the way
RDS would, as the readiness tests do (``put_replica_lag`` puts datapoints into moto's CloudWatch;
``set_read_replication`` sets the replica's ``read replication`` entry on moto's model of it;
provisioning already made the replica ``replicating``). The target's own calls
(DescribeDBInstances, GetMetricStatistics, DescribeAlarms) go to the moto server for real: the
steady state is asked with the readiness checks themselves.

The public name is served by a dnslib zone server on loopback (moto's Route53 zone answers no
DNS query): the failover record's answer, and each load balancer's name, so that the target can
tell which region the public name answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver

from drdrill.sandbox.aws.provision import (
    ProvisionedStack,
    put_replica_lag,
    set_read_replication,
)
from drdrill.targets.aws import cloudwatch
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.base import Region, SteadyStateTarget
from drdrill.timeline import Timeline

from .aws_target import aws_target

#: the Database RPO the checks are asked against
RPO_S = 60.0
#: how long ago the tests' ReplicaLag datapoints were published (moto's GetMetricStatistics
#: drops the sub-second part of EndTime: a datapoint stamped "now" could fall after it)
_AGO = timedelta(seconds=20)
#: each region's load balancer address, as its name resolves
LB: dict[Region, str] = {"primary": "127.0.1.2", "dr": "127.0.2.2"}


def _quiet(*_: Any) -> None:
    """dnslib's logger prints every query."""


@pytest.fixture
def public_dns(stack: ProvisionedStack) -> Iterator[Callable[[Region], dict[str, Any]]]:
    """Serve the public name answering a region's load balancer (and both load balancers'
    names); the ``targets.aws.dns`` settings that ask it."""
    servers: list[DNSServer] = []

    def serve(answers: Region) -> dict[str, Any]:
        p, d = stack.settings.primary.alb.dns_name, stack.settings.dr.alb.dns_name
        assert p and d
        zone = "\n".join(
            [
                f"{stack.record_name.rstrip('.')}. 0 IN A {LB[answers]}",
                f"{p.rstrip('.')}. 60 IN A {LB['primary']}",
                f"{d.rstrip('.')}. 60 IN A {LB['dr']}",
            ]
        )
        server = DNSServer(
            ZoneResolver(zone), port=0, address="127.0.0.1", logger=DNSLogger(logf=_quiet)
        )
        server.start_thread()
        servers.append(server)
        port = server.server.server_address[1]
        return {"name_servers": ["127.0.0.1"], "port": port, "timeout": 1.0}

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def healthy(stack: ProvisionedStack) -> ProvisionedStack:
    """The stack with a current ReplicaLag of 0 s (RDS's figure for a replica that keeps up)."""
    dr = stack.settings.dr
    aws = AwsClients(endpoint_url=stack.settings.endpoint_url)
    put_replica_lag(aws, dr.region, dr.rds.instance_id, [(_AGO, 0.0)])
    return stack


def _replica(stack: ProvisionedStack) -> str:
    return stack.settings.dr.rds.instance_id


def test_the_aws_target_has_a_steady_state_of_its_own(
    healthy: ProvisionedStack, tmp_path: Path
) -> None:
    """The drill session asks a target's steady state only where it has the capability."""
    assert isinstance(aws_target(tmp_path, healthy), SteadyStateTarget)


def test_a_healthy_stack_is_in_steady_state(
    healthy: ProvisionedStack,
    public_dns: Callable[[Region], dict[str, Any]],
    tmp_path: Path,
) -> None:
    target = aws_target(tmp_path, healthy, dns=public_dns("primary"))
    assert target.region_of(target.dns_answer()) == "primary"  # the DNS check can tell
    before = len(target.aws.log.calls)

    assert target.steady_state_problems(RPO_S) == []

    calls = {c.operation for c in target.aws.log.calls[before:]}
    # the readiness checks' own calls: StatusInfos, ReplicaLag, the alarm's state
    assert {"DescribeDBInstances", "GetMetricStatistics", "DescribeAlarms"} <= calls


def test_a_public_name_that_does_not_resolve_tells_nothing(
    healthy: ProvisionedStack, tmp_path: Path
) -> None:
    """moto's zone answers no DNS query: the target cannot tell, and says nothing of DNS."""
    assert aws_target(tmp_path, healthy).steady_state_problems(RPO_S) == []


def test_the_health_alarm_in_alarm_is_a_problem(healthy: ProvisionedStack, tmp_path: Path) -> None:
    target = aws_target(tmp_path, healthy)
    p = healthy.settings.primary
    alarm = p.alarms.health
    assert alarm
    cloudwatch.put_alarm_state(target.aws, p.region, alarm, "ALARM", "no healthy task")

    assert target.steady_state_problems(RPO_S) == [f"the health alarm '{alarm}' is ALARM, not OK"]


def test_a_replica_lag_of_minus_one_is_a_problem(stack: ProvisionedStack, tmp_path: Path) -> None:
    """-1 is what CloudWatch holds while replication is not active, whatever StatusInfos says."""
    target = aws_target(tmp_path, stack)
    replica = _replica(stack)
    put_replica_lag(target.aws, stack.dr.region, replica, [(_AGO, -1.0)])

    (problem,) = target.steady_state_problems(RPO_S)

    assert problem.startswith(f"ReplicaLag for {replica} was -1 in the minute from ")
    assert problem.endswith(" UTC: replication is not active")


def test_a_minus_one_earlier_in_a_minute_that_replicates_now_is_no_problem(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    """A reboot drill leaves a -1 in the minute it rebooted; RDS says the replica replicates
    now and the same minute has a lag: the next drill is not held up to a minute for it (the
    readiness check, which asks a different question, still fails on it)."""
    target = aws_target(tmp_path, stack)
    replica = _replica(stack)
    put_replica_lag(
        target.aws, stack.dr.region, replica, [(_AGO, -1.0), (_AGO - timedelta(seconds=5), 0.4)]
    )

    assert target.steady_state_problems(RPO_S) == []
    assert target.replica_lag(Timeline(), RPO_S).value is None  # readiness: a failure


def test_no_replica_lag_datapoint_is_a_problem(stack: ProvisionedStack, tmp_path: Path) -> None:
    """moto's own state: nothing published; no figure is no evidence the replica keeps up."""
    target = aws_target(tmp_path, stack)

    problems = target.steady_state_problems(RPO_S)

    assert problems == [f"no ReplicaLag datapoints for {_replica(stack)} in the last 5 minutes"]


def test_a_replica_lag_over_the_rpo_is_a_problem(stack: ProvisionedStack, tmp_path: Path) -> None:
    target = aws_target(tmp_path, stack)
    put_replica_lag(target.aws, stack.dr.region, _replica(stack), [(_AGO, 120.0)])

    problems = target.steady_state_problems(RPO_S)

    assert problems == ["the DR replica's ReplicaLag 120 s (± 1 s) is over the RPO of 60 s"]
    # without an RPO only a missing figure is a problem
    assert target.steady_state_problems(None) == []


def test_stopped_replication_is_a_problem(healthy: ProvisionedStack, tmp_path: Path) -> None:
    target = aws_target(tmp_path, healthy)
    replica = _replica(healthy)
    set_read_replication(
        target.aws, healthy.dr.region, replica, "stopped", message="Replication stopped by the user"
    )

    problems = target.steady_state_problems(RPO_S)

    # one problem: the lag of a replica that does not replicate is not asked
    assert problems == [
        f"rds instance '{replica}' ({healthy.dr.region}): read replication is 'stopped' "
        "(not normal): Replication stopped by the user"
    ]


def test_the_public_name_on_the_dr_region_is_a_problem(
    healthy: ProvisionedStack,
    public_dns: Callable[[Region], dict[str, Any]],
    tmp_path: Path,
) -> None:
    target = aws_target(tmp_path, healthy, dns=public_dns("dr"))

    problems = target.steady_state_problems(RPO_S)

    assert problems == [f"the public name {healthy.record_name.rstrip('.')} answers the dr region"]
