"""The AWS target as a failover stack: the capabilities a region failover, a failback and the
quarterly exercise ask for, the failover mode from the health alarm's actions, the scale-up
count, and RDS's word on which database takes writes, against the stack in moto.

moto keeps a promoted replica a replica (it keeps its source), so a promotion never shows as
writable here: the writable answers are checked on both sides as they are (primary writable,
replica not).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drdrill.errors import ConfigError
from drdrill.faults.base import FaultInjector, recover
from drdrill.faults.journal import Journal
from drdrill.sandbox.aws.provision import PRIMARY_TASKS, ProvisionedStack
from drdrill.targets.aws import cloudwatch
from drdrill.targets.aws.database import rds_writable_probe
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.base import (
    ExerciseStack,
    FailoverStack,
    ModeAware,
    ReplicaReadiness,
    ScriptedStack,
    WriteTarget,
)

from .aws_target import aws_target


def test_the_aws_target_is_every_capability_a_failover_drill_asks_for(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = aws_target(
        tmp_path,
        stack,
        scripts={"failover": "./failover.sh", "failback": "./failback.sh"},
        dr={"database": {"user": "drdrill", "password_env": "DRDRILL_DB_PASSWORD"}},
    )
    for capability in (
        FailoverStack,
        ScriptedStack,
        WriteTarget,
        ExerciseStack,
        ModeAware,
        ReplicaReadiness,
    ):
        assert isinstance(target, capability), capability.__name__


def test_failover_mode_is_whether_the_health_alarm_runs_its_actions(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    aws = AwsClients(endpoint_url=moto_endpoint)
    p = stack.settings.primary
    alarm = (p.region, p.alarms.health or "")
    target = aws_target(tmp_path, stack)
    assert target.failover_mode() == "automated"  # provisioned with its actions enabled

    target.set_mode("manual")
    assert cloudwatch.actions_enabled(aws, *alarm) is False
    assert target.failover_mode() == "manual"
    target.set_mode("automated")
    assert target.failover_mode() == "automated"
    target.set_mode("manual")

    # the end of the run puts the alarm back as it found it: a drill must not leave it silent
    target.stop()
    assert cloudwatch.actions_enabled(aws, *alarm) is True


def test_the_mode_change_is_journaled_and_recover_puts_it_back(
    stack: ProvisionedStack, tmp_path: Path, moto_endpoint: str
) -> None:
    aws = AwsClients(endpoint_url=moto_endpoint)
    p = stack.settings.primary
    alarm = (p.region, p.alarms.health or "")
    target = aws_target(tmp_path, stack)
    target.set_mode("manual")
    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal)
    change = target.mode_change("automated")
    injector.inject(change)  # as inject.change does: journaled first
    assert cloudwatch.actions_enabled(aws, *alarm) is True
    # the run is killed here (nothing reverted); recover rebuilds the change from the journal
    (outcome,) = recover(journal, include_live=True)
    assert outcome.ok and outcome.kind == "aws.cloudwatch.alarm_actions", outcome
    assert "enabled=False again" in outcome.note
    assert cloudwatch.actions_enabled(aws, *alarm) is False
    assert recover(journal, include_live=True) == []


def test_without_a_health_alarm_the_mode_is_unknown_and_cannot_be_set(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = aws_target(tmp_path, stack, primary={"alarms": {"health": None}})
    assert target.failover_mode() is None
    with pytest.raises(ConfigError, match=r"targets\.aws\.primary\.alarms\.health: required"):
        target.set_mode("manual")
    with pytest.raises(ConfigError, match=r"targets\.aws\.primary\.alarms\.health: required"):
        target.mode_change("manual")


def test_scale_to_is_the_setting_or_the_primarys_desired_count(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = aws_target(tmp_path, stack)
    assert target.scale_to("dr") == PRIMARY_TASKS
    target.scale("primary", 0)  # a region down: the default was remembered before
    assert target.scale_to("dr") == PRIMARY_TASKS

    configured = aws_target(tmp_path, stack, dr={"ecs": {"scale_to": 4}})
    assert configured.scale_to("dr") == 4
    fresh = aws_target(tmp_path, stack)
    with pytest.raises(ConfigError, match=r"targets\.aws\.dr\.ecs\.scale_to: required"):
        fresh.scale_to("dr")  # the primary wants 0 now and nothing says how many


def test_without_credentials_rds_says_which_database_takes_writes(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = aws_target(tmp_path, stack)
    assert target.db_writable("primary") is True
    assert target.db_writable("dr") is False  # a read replica
    target.rds_poll_interval_s = 0.0
    assert target.writable_probe("primary")() is True
    assert target.writable_probe("dr")() is False
    assert target.writer_region() == "primary"


def test_an_rds_probe_asks_at_most_once_an_interval() -> None:
    """The probe's own pacing, on a fake clock: a call that comes too soon waits its turn."""
    now = [100.0]
    slept: list[float] = []
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def writable() -> bool:
        asked.append(now[0])
        return True

    probe = rds_writable_probe(writable, 1.0, clock=lambda: now[0], sleep=sleep)
    assert probe() and probe()
    now[0] += 0.25
    assert probe()
    assert asked == [100.0, 101.0, 102.0]
    assert slept == [1.0, 0.75]


def test_a_script_not_configured_is_named_before_any_fault(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    # the drills ask this before their fault: a region taken down with no script to recover
    # with is what they must never do
    bare = aws_target(tmp_path, stack)
    problem = bare.script_problem("failover.sh")
    assert problem is not None and problem.endswith(
        "targets.aws.scripts.failover not configured (runs failover.sh)"
    ), problem
    assert "no runbook script 'deploy.sh'" in (bare.script_problem("deploy.sh") or "")
    scripted = aws_target(
        tmp_path, stack, scripts={"failover": "./failover.sh", "failback": "./failback.sh"}
    )
    assert scripted.script_problem("failover.sh") is None
    assert scripted.script_problem("failback.sh") is None
