"""The suites through ``--dr-target aws`` against a stack provisioned in a moto server.

The stack is described only in a YAML file (names of its own); nothing here is real AWS. What an
emulator can show runs for real (faults inject and revert, readiness, dry-run plans, safety
refusals); drills that need real recovery skip and say why.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from drdrill.sandbox.aws.provision import (
    ProvisionedStack,
    keep_tasks_running,
    names_only_settings,
    provision_stack,
    put_replica_lag,
    set_read_replication,
    set_tasks_transition,
    stack_settings,
)
from drdrill.targets.aws import ecs
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings

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


def _config(
    tmp: Path,
    stack: ProvisionedStack,
    accounts: list[str],
    *,
    settings_of: AwsSettings | None = None,
    max_tasks_percent: float | None = None,
    **aws_keys: object,
) -> Path:
    """A config for the suites: ``stack`` (or ``settings_of`` it) under targets.aws."""
    settings = (settings_of or stack.settings).model_dump(mode="json", exclude_none=True)
    if max_tasks_percent is not None:
        settings["blast_radius"] = {"max_tasks_percent": max_tasks_percent}
    settings.update(aws_keys)
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


def _suites(
    config: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
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
        env=None if env is None else dict(env),
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
    # a region down takes every task: only a blast radius of 100% allows it
    config = _config(tmp_path, stack, [MOTO_ACCOUNT], max_tasks_percent=100)
    result = _suites(config, "--dr-allow-destructive")
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    for name in (
        "test_stop_tasks_injects_and_reverts",
        "test_region_down_scales_to_zero_and_back",
        "test_replication_is_running",
        "test_replica_lag_within_rpo",
        "test_dr_region_is_at_pilot_light",
        "test_alarm_is_wired_to_notifications",
        "test_dr_alarm_is_wired_to_notifications",
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
        _config(tmp_path, stack, [MOTO_ACCOUNT], max_tasks_percent=100),
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


def test_a_dry_run_says_what_the_real_run_would_refuse(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    # the blast radius at 50%: the region down (every task) would be refused, so the plan says
    # so instead of listing calls that would never be made
    before = _state(moto_endpoint, stack)
    result = _suites(
        _config(tmp_path, stack, [MOTO_ACCOUNT], max_tasks_percent=50),
        "--dr-dry-run",
        "-k",
        "scales_to_zero",
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    assert "dry run: would refuse: " in out, out[-3000:]
    assert "targets.aws.blast_radius.max_tasks_percent" in out
    assert "would call ecs.UpdateService(" not in out
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
    # the replica's lag as CloudWatch has it (moto publishes none): the steady state before the
    # fault asks for it
    aws = AwsClients(endpoint_url=moto_endpoint)
    put_replica_lag(aws, stack.dr.region, stack.settings.dr.rds.instance_id, [(_AGO, 0.0)])
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
            str(_config(tmp_path, stack, [MOTO_ACCOUNT], max_tasks_percent=100)),
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


_CONTRACTS = ("test_stop_tasks_injects_and_reverts", "test_region_down_scales_to_zero_and_back")
_READINESS = (
    "test_replication_is_running",
    "test_replica_lag_within_rpo",
    "test_dr_region_is_at_pilot_light",
    "test_alarm_is_wired_to_notifications",
    "test_dr_alarm_is_wired_to_notifications",
    "test_failover_record_points_at_a_healthy_primary",
    "test_static_assets_replicate",
)


def _no_credentials(tmp: Path) -> dict[str, str]:
    """This process's environment without any AWS credentials (nor a way to find some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_"))}
    missing = str(tmp / "no-such-aws-file")
    env.update(
        AWS_CONFIG_FILE=missing,
        AWS_SHARED_CREDENTIALS_FILE=missing,
        # never ask an instance metadata service (no test reaches past loopback)
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def _lines_starting(out: str, prefix: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(prefix)]


def test_the_suites_pass_on_a_stack_named_only_by_names(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """The hosted zone by route53.zone_name, target groups by alb.target_group_name, load
    balancers by alb.name: no ARN and no id in the config, and the suites drill it as one that
    has them. The zone's name used to be ignored, and the failover record check failed with a
    bare ``assert False``."""
    aws = AwsClients(endpoint_url=moto_endpoint)
    put_replica_lag(aws, stack.dr.region, stack.settings.dr.rds.instance_id, [(_AGO, 0.0)])
    config = _config(
        tmp_path,
        stack,
        [MOTO_ACCOUNT],
        settings_of=names_only_settings(stack),
        max_tasks_percent=100,
    )
    text = config.read_text()
    assert "arn:" not in text
    for key in ("zone_id", "target_group_arn", "dns_name"):
        assert f"{key}:" not in text, key
    assert "zone_name:" in text and "target_group_name:" in text

    result = _suites(config, "--dr-target", "aws", "--dr-allow-destructive")
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    for name in (*_CONTRACTS, *_READINESS):
        assert f"::{name} PASSED" in out, name


def test_a_region_down_over_the_blast_radius_is_refused_in_one_line_before_any_call(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """blast_radius.max_tasks_percent 50 (the default) caps a region down too: it takes every
    task, so it is refused, saying which key to raise, and the service keeps its tasks. It
    used to stop 3 of 3 tasks whatever the cap."""
    before = _state(moto_endpoint, stack)
    result = _suites(
        _config(tmp_path, stack, [MOTO_ACCOUNT]),
        "--dr-allow-destructive",
        "-k",
        "scales_to_zero",
    )
    out = result.stdout
    assert result.returncode == 1, out[-4000:] + result.stderr[-2000:]
    p = stack.settings.primary
    refusal = (
        f"refused: scale ecs service '{p.ecs.service}' in {p.region} to 0 (was {before[0]}) "
        "takes down 100% of its tasks, over targets.aws.blast_radius.max_tasks_percent 50% "
        "(a region down takes every task: raise it to 100 to allow this)"
    )
    assert _lines_starting(out, "refused: ") == [refusal], out[-4000:]
    # one line: no traceback through the drill, the injector and the guard
    assert "inject(aws_stack.region_down" not in out
    assert "safety.py:" not in out and "Traceback" not in out
    assert _state(moto_endpoint, stack) == before


def _closed_port_url() -> str:
    """A loopback url where nothing listens (the port was just free)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_an_unreachable_endpoint_fails_each_drill_with_the_first_failures_line(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    """The endpoint does not answer: the first call finds it out (a few retries, a short
    connect timeout) and every later drill fails at once with that same one line."""
    url = _closed_port_url()
    config = _config(tmp_path, stack, [MOTO_ACCOUNT], max_tasks_percent=100, endpoint_url=url)
    result = _suites(config, "--dr-allow-destructive", "-k", "fault_contract or readiness")
    out = result.stdout
    assert result.returncode == 1, out[-4000:] + result.stderr[-2000:]
    lines = _lines_starting(out, "aws endpoint unreachable: ")
    assert len(lines) >= 5, out[-4000:]
    # the same line each time: later drills did not try again (their own calls would name
    # their own operations)
    assert len(set(lines)) == 1, lines
    assert f'Could not connect to the endpoint URL: "{url}/' in lines[0]
    assert "Traceback" not in out


def test_without_credentials_each_drill_fails_with_one_line(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    """No credentials anywhere: one line saying so and where to give them, the same for every
    drill, no traceback."""
    config = _config(tmp_path, stack, [MOTO_ACCOUNT], max_tasks_percent=100)
    result = _suites(
        config, "--dr-allow-destructive", "-k", "fault_contract", env=_no_credentials(tmp_path)
    )
    out = result.stdout
    assert result.returncode == 1, out[-4000:] + result.stderr[-2000:]
    lines = _lines_starting(out, "no usable aws credentials: ")
    assert lines, out[-4000:]
    assert set(lines) == {
        "no usable aws credentials: Unable to locate credentials (give targets.aws.profile, "
        "or set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    }


def test_the_suites_run_through_localstack_client_against_an_edge_port(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    """targets.aws.localstack: true builds every client through localstack-client's session,
    pointed by LOCALSTACK_HOST at a moto server standing in for LocalStack's edge port. The run
    has no AWS credentials at all: plain boto3 would stop at "Unable to locate credentials"
    (the test above); localstack-client signs with LocalStack's test credentials."""
    aws = AwsClients(endpoint_url=moto_endpoint)
    put_replica_lag(aws, stack.dr.region, stack.settings.dr.rds.instance_id, [(_AGO, 0.0)])
    settings = stack.settings.model_copy(update={"endpoint_url": None})
    config = _config(
        tmp_path,
        stack,
        [MOTO_ACCOUNT],
        settings_of=settings,
        max_tasks_percent=100,
        localstack=True,
    )
    env = _no_credentials(tmp_path)
    env["LOCALSTACK_HOST"] = moto_endpoint.removeprefix("http://")
    result = _suites(
        config,
        "--dr-target",
        "aws",
        "--dr-allow-destructive",
        "-k",
        "fault_contract or readiness",
        env=env,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    for name in (*_CONTRACTS, *_READINESS):
        assert f"::{name} PASSED" in out, name
    # the run knows where it went: the edge port, an emulator
    report = yaml.safe_load(next((tmp_path / "reports").glob("*/report.json")).read_text())
    assert report["target"]["endpoint_url"] == moto_endpoint
    assert report["target"]["emulator"] is True
