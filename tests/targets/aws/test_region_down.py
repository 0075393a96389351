"""The AWS region down: the primary's service at 0 with its tasks stopped and its Route53 health
check failed (inverted), every part's undo journaled before it acts, reverted part by part,
against the two-region stack in moto.

moto reports every health check healthy whatever its ``Inverted`` says, and never answers DNS:
what Route53 then answers is not shown here; the health check's own configuration is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drdrill.errors import DrillError
from drdrill.faults import fault_class
from drdrill.faults.base import FaultInjector, recover
from drdrill.faults.journal import Journal
from drdrill.sandbox.aws.provision import PRIMARY_TASKS, ProvisionedStack
from drdrill.targets.aws import ecs, route53
from drdrill.targets.aws.faults import (
    AwsAccess,
    FailHealthCheck,
    RegionDown,
    ScaleServiceToZero,
)
from drdrill.targets.aws.session import AwsClients

from .aws_target import aws_target


def _primary(stack: ProvisionedStack) -> tuple[str, str, str]:
    p = stack.settings.primary
    return p.region, p.ecs.cluster, p.ecs.service


def test_region_down_injects_every_part_and_reverts_them(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = aws_target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    where = _primary(stack)
    primary_check, dr_check = stack.health_check_ids

    fault = target.region_down("primary")
    assert isinstance(fault, RegionDown)
    # what a blast-radius guard reads before any call: every task of the primary's service
    assert fault.tasks_stopped == PRIMARY_TASKS and fault.tasks_stopped_percent == 100.0
    assert [type(part) for part in fault.parts] == [FailHealthCheck, ScaleServiceToZero]
    assert f"fail route53 health check '{primary_check}'" in fault.describe()

    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal, run_id="region-down")
    injector.inject(fault)
    assert ecs.desired_count(aws, *where) == 0
    assert ecs.running_tasks(aws, *where) == []
    assert route53.health_check_inverted(aws, primary_check) is True
    assert route53.health_check_inverted(aws, dr_check) is False  # the DR side untouched

    (entry,) = journal.open_entries()
    assert entry.kind == "aws.region_down"
    # every part's undo was on disk before the first part acted
    assert entry.record["health_check"]["inverted_before"] is False
    assert entry.record["scale"]["desired_before"] == PRIMARY_TASKS

    outcome = injector.revert(fault)
    assert outcome.ok
    assert ecs.desired_count(aws, *where) == PRIMARY_TASKS
    assert route53.health_check_inverted(aws, primary_check) is False
    # reverting again changes nothing and fails nothing
    assert fault.revert().note


def test_region_down_left_open_by_a_killed_run_is_reverted_by_recover(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = aws_target(tmp_path, stack)
    aws = AwsClients(endpoint_url=moto_endpoint)
    journal = Journal(tmp_path / "journal.jsonl")
    FaultInjector(journal, run_id="killed").inject(target.region_down("primary"))
    assert fault_class("aws.region_down") is RegionDown

    outcomes = recover(journal, include_live=True)  # rebuilt from the journal alone

    assert [o.ok for o in outcomes] == [True]
    assert ecs.desired_count(aws, *_primary(stack)) == PRIMARY_TASKS
    assert route53.health_check_inverted(aws, stack.health_check_ids[0]) is False
    assert journal.open_entries() == []


def test_a_part_that_fails_reverts_the_parts_already_in(
    stack: ProvisionedStack, moto_endpoint: str
) -> None:
    aws = AwsClients(endpoint_url=moto_endpoint)
    access = AwsAccess(moto_endpoint)
    region, cluster, _ = _primary(stack)
    check_id = stack.health_check_ids[0]
    fault = RegionDown(
        region,
        ScaleServiceToZero(access, region, cluster, "no-such-service", desired_before=2),
        FailHealthCheck(access, check_id, inverted_before=False),
        running_before=2,
    )

    with pytest.raises(DrillError, match="no-such-service"):
        fault.inject()

    # the health check went first and was put back when the scale-down failed
    assert route53.health_check_inverted(aws, check_id) is False


def test_region_down_record_round_trips(stack: ProvisionedStack, tmp_path: Path) -> None:
    fault = aws_target(tmp_path, stack).region_down("primary")
    again = RegionDown.from_record(fault.to_record())
    assert again == fault and again.describe() == fault.describe()


def test_without_a_failover_record_only_the_service_goes_down(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    target = aws_target(tmp_path, stack, route53={"record_name": "other.example.test"})
    fault = target.region_down("primary")
    assert fault.health_check is None
    assert "no route53 health check to fail" in fault.describe()
    FaultInjector(Journal(tmp_path / "journal.jsonl")).inject(fault)
    aws = AwsClients(endpoint_url=moto_endpoint)
    assert ecs.desired_count(aws, *_primary(stack)) == 0
    fault.revert()
    assert ecs.desired_count(aws, *_primary(stack)) == PRIMARY_TASKS
