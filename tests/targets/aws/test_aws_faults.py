"""AWS faults journaled before they are injected, and reverted by ``recover`` from the journal
alone (a killed run), against a stack in moto."""

from __future__ import annotations

from pathlib import Path

from drdrill.faults.base import FaultInjector, recover
from drdrill.faults.journal import Journal
from drdrill.sandbox.aws.provision import (
    ProvisionedStack,
)
from drdrill.targets.aws import ecs
from drdrill.targets.aws.faults import AwsAccess, ScaleServiceToZero, StopEcsTasks
from drdrill.targets.aws.session import AwsClients


def test_scale_to_zero_left_open_by_a_killed_run_is_reverted_by_recover(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    p = stack.settings.primary
    aws = AwsClients(endpoint_url=moto_endpoint)
    where = (p.region, p.ecs.cluster, p.ecs.service)
    before = ecs.desired_count(aws, *where)
    fault = ScaleServiceToZero(AwsAccess(moto_endpoint), *where, desired_before=before)
    journal = Journal(tmp_path / "journal.jsonl")
    FaultInjector(journal, run_id="killed").inject(fault)  # never reverted: the run "died"
    assert ecs.desired_count(aws, *where) == 0 and ecs.running_tasks(aws, *where) == []
    (entry,) = journal.open_entries()
    assert entry.kind == "aws.ecs.scale_to_zero"

    outcomes = recover(journal, include_live=True)
    assert [o.ok for o in outcomes] == [True]
    assert ecs.desired_count(aws, *where) == before
    assert journal.open_entries() == []


def test_stop_tasks_record_round_trips(stack: ProvisionedStack, moto_endpoint: str) -> None:
    p = stack.settings.primary
    fault = StopEcsTasks(
        AwsAccess(moto_endpoint), p.region, p.ecs.cluster, p.ecs.service, 2, count=1
    )
    again = StopEcsTasks.from_record(fault.to_record())
    assert again == fault and again.describe() == fault.describe()
