"""The suites through ``--dr-target aws`` against a stack provisioned in a moto server.

The stack is described only in a YAML file (names of its own); nothing here is real AWS. What an
emulator can show runs for real (faults inject and revert, readiness, dry-run plans, safety
refusals); drills that need real recovery skip and say why.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from drdrill.targets.aws import ecs
from drdrill.targets.aws.session import AwsClients

from .provision import (
    ProvisionedStack,
    keep_tasks_running,
    provision_stack,
    put_replica_lag,
    set_read_replication,
    set_tasks_transition,
    stack_settings,
)

ROOT = Path(__file__).resolve().parents[3]
MOTO_ACCOUNT = "123456789012"
#: how long ago the tests' ReplicaLag datapoints were published (moto's GetMetricStatistics
#: drops the sub-second part of EndTime: a datapoint stamped "now" could fall after it)
_AGO = timedelta(seconds=20)


@pytest.fixture
def stack(moto_endpoint: str) -> Iterator[ProvisionedStack]:
    """A fresh stack a test: moto never replaces the tasks a drill stops."""
    before = keep_tasks_running(moto_endpoint)
    aws = AwsClients(endpoint_url=moto_endpoint)
    yield provision_stack(aws, stack_settings(endpoint_url=moto_endpoint))
    set_tasks_transition(moto_endpoint, before)


def _config(tmp: Path, stack: ProvisionedStack, accounts: list[str]) -> Path:
    settings = stack.settings.model_dump(mode="json", exclude_none=True)
    config = {
        "runbook": str(ROOT / "docs" / "runbook.md"),
        "target": "aws",
        "journal": str(tmp / "journal.jsonl"),
        "report_dir": str(tmp / "reports"),
        "safety": {
            "allowed_accounts": accounts,
            "allowed_regions": [stack.settings.primary.region, stack.settings.dr.region],
        },
        "targets": {"aws": settings},
    }
    path = tmp / "drdrill.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _suites(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "suites",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-v",
            "--dr-config",
            str(config),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _state(endpoint: str, stack: ProvisionedStack) -> tuple[int, int]:
    aws = AwsClients(endpoint_url=endpoint)
    p = stack.settings.primary
    return (
        ecs.desired_count(aws, p.region, p.ecs.cluster, p.ecs.service),
        len(ecs.running_tasks(aws, p.region, p.ecs.cluster, p.ecs.service)),
    )


def test_contract_suites_pass_and_recovery_drills_skip_with_the_reason(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    # moto publishes no ReplicaLag: a healthy replica's, as RDS would (the replica is already
    # "replicating" in its StatusInfos, which provisioning supplied)
    aws = AwsClients(endpoint_url=moto_endpoint)
    put_replica_lag(aws, stack.dr.region, stack.settings.dr.rds.instance_id, [(_AGO, 0.0)])
    result = _suites(_config(tmp_path, stack, [MOTO_ACCOUNT]), "--dr-allow-destructive")
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    for name in (
        "test_stop_tasks_injects_and_reverts",
        "test_region_down_scales_to_zero_and_back",
        "test_replication_is_running",
        "test_replica_lag_within_rpo",
        "test_dr_region_is_at_pilot_light",
        "test_alarm_is_wired_to_notifications",
        "test_failover_record_points_at_a_healthy_primary",
        "test_static_assets_replicate",
    ):
        assert f"::{name} PASSED" in out, name
    assert "an AWS API emulator does not recover anything" in out  # the recovery drills skip
    assert list((tmp_path / "reports").glob("*/report.json"))


def test_readiness_fails_on_a_replica_whose_replication_is_broken(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """Stopped replication: RDS says so in the replica's StatusInfos and publishes a ReplicaLag
    of -1. Both readiness checks fail, each saying why; before the fix both passed or skipped."""
    aws = AwsClients(endpoint_url=moto_endpoint)
    dr, replica = stack.dr.region, stack.settings.dr.rds.instance_id
    set_read_replication(aws, dr, replica, "error", message="Replication has stopped: 1062")
    put_replica_lag(aws, dr, replica, [(_AGO, -1.0)])

    result = _suites(
        _config(tmp_path, stack, [MOTO_ACCOUNT]),
        "-k",
        "test_replication_is_running or test_replica_lag_within_rpo",
    )
    out = result.stdout
    assert result.returncode == 1, out[-4000:] + result.stderr[-2000:]
    assert "::test_replication_is_running FAILED" in out, out[-4000:]
    assert "::test_replica_lag_within_rpo FAILED" in out, out[-4000:]
    assert (
        f"the DR database does not replicate: rds instance '{replica}' ({dr}): read replication "
        "is 'error' (not normal): Replication has stopped: 1062"
    ) in out
    assert f"no replica lag: ReplicaLag for {replica} was -1 in the minute from " in out
    assert "SKIPPED" not in out


def test_readiness_fails_without_replica_lag_datapoints(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """No ReplicaLag published at all (moto's own state): a failure naming the replica and the
    window, where it used to be a skip."""
    result = _suites(_config(tmp_path, stack, [MOTO_ACCOUNT]), "-k", "test_replica_lag_within_rpo")
    out = result.stdout
    assert result.returncode == 1, out[-4000:] + result.stderr[-2000:]
    replica = stack.settings.dr.rds.instance_id
    assert f"no replica lag: no ReplicaLag datapoints for {replica} in the last 5 minutes" in out
    assert "SKIPPED" not in out


def test_dry_run_lists_every_call_and_changes_nothing(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    before = _state(moto_endpoint, stack)
    result = _suites(
        _config(tmp_path, stack, [MOTO_ACCOUNT]),
        "--dr-dry-run",
        "--dr-allow-destructive",
        "-k",
        "fault_contract",
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    assert "dry run: would inject: stop 1 tasks of ecs service" in out
    assert "would call ecs.StopTask(" in out
    assert "would call ecs.UpdateService(" in out
    assert _state(moto_endpoint, stack) == before


def test_guard_refuses_an_account_that_is_not_allowed(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    before = _state(moto_endpoint, stack)
    result = _suites(
        _config(tmp_path, stack, ["999999999999"]), "-k", "injects_and_reverts or scales_to_zero"
    )
    out = result.stdout
    assert result.returncode != 0
    assert (
        f"refused: account {MOTO_ACCOUNT} is not in safety.allowed_accounts" in out
        and "--dr-allow-destructive not given" in out
    ), out[-3000:]
    assert _state(moto_endpoint, stack) == before


def test_a_guard_alarm_aborts_the_drill_and_reverts_its_fault(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """Stop conditions are polled while a fault is in: a guard alarm in ALARM reverts it."""
    p = stack.settings.primary
    guard = p.alarms.guards[0]
    drill = tmp_path / "test_guarded.py"
    drill.write_text(
        f"""
import time
from drdrill.targets.aws import ecs

def test_guarded(target, inject):
    inject(target.region_down("primary"))
    assert ecs.desired_count(target.aws, *{(p.region, p.ecs.cluster, p.ecs.service)!r}) == 0
    target.aws.client("cloudwatch", {p.region!r}).set_alarm_state(
        AlarmName={guard!r}, StateValue="ALARM", StateReason="5xx storm"
    )
    deadline = time.monotonic() + 20
    while ecs.desired_count(target.aws, *{(p.region, p.ecs.cluster, p.ecs.service)!r}) == 0:
        assert time.monotonic() < deadline, "the fault was not reverted by the stop condition"
        time.sleep(0.2)
"""
    )
    before = _state(moto_endpoint, stack)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(drill),
            "-p",
            "no:cacheprovider",
            "--dr-config",
            str(_config(tmp_path, stack, [MOTO_ACCOUNT])),
            "--dr-allow-destructive",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode != 0, out[-3000:]
    assert f"guard alarm '{guard}' in {p.region} is in ALARM" in out, out[-3000:]
    assert _state(moto_endpoint, stack)[0] == before[0]  # desired count back
    AwsClients(endpoint_url=moto_endpoint).client("cloudwatch", p.region).set_alarm_state(
        AlarmName=guard, StateValue="OK", StateReason="drill over"
    )
