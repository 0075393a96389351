"""The team's own runbook scripts (``targets.aws.scripts``), run by the AWS target with its
access in their environment: real scripts, run from the config's folder."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from drdrill.errors import ConfigError, DrillError
from drdrill.sandbox.aws.provision import MOTO_ACCOUNT, ProvisionedStack
from drdrill.targets.aws import route53
from drdrill.targets.aws.session import AwsClients

from .aws_target import aws_target

_SHOW_ENV = """#!/bin/sh
echo "args=$*"
echo "profile=${AWS_PROFILE:-}"
echo "region=$AWS_REGION default=$AWS_DEFAULT_REGION"
echo "primary=$DRDRILL_PRIMARY_REGION dr=$DRDRILL_DR_REGION"
echo "endpoint=${AWS_ENDPOINT_URL:-}"
echo "key=${AWS_ACCESS_KEY_ID:-}"
echo "cwd=$(pwd)"
touch ran
"""


def _script(folder: Path, name: str, text: str) -> Path:
    path = folder / "scripts" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _lines(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_a_script_runs_with_the_targets_profile_regions_and_endpoint(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    _script(tmp_path, "failover.sh", _SHOW_ENV)
    target = aws_target(
        tmp_path,
        stack,
        profile="dr-exercise",
        scripts={"failover": "./scripts/failover.sh --from-config"},
    )
    seen = _lines(target.run_script("failover.sh", "--yes", timeout_s=30))
    assert seen["args"] == "--from-config --yes"
    assert seen["profile"] == "dr-exercise"
    assert seen["region"] == "eu-west-1 default=eu-west-1"
    assert seen["primary"] == "eu-west-1 dr=eu-central-1"
    assert seen["endpoint"] == moto_endpoint
    assert Path(seen["cwd"]).resolve() == tmp_path.resolve()  # from the config's folder


def test_with_a_role_the_script_gets_the_assumed_roles_credentials(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    _script(tmp_path, "failover.sh", _SHOW_ENV)
    target = aws_target(
        tmp_path,
        stack,
        role_arn=f"arn:aws:iam::{MOTO_ACCOUNT}:role/drdrill-dr-exercise",
        scripts={"failover": "scripts/failover.sh"},
    )
    seen = _lines(target.run_script("failover.sh", timeout_s=30))
    assumed = target.aws.session().get_credentials().get_frozen_credentials()
    assert seen["key"] == assumed.access_key and seen["key"] != "testing"  # moto's STS issued it
    assert seen["profile"] == ""


def test_a_change_the_script_printed_is_the_dns_switch(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    # the aws CLI prints the ChangeInfo of change-resource-record-sets; this script prints
    # a real change's, made in moto just before
    change = route53.change_record(
        AwsClients(endpoint_url=moto_endpoint),
        stack.zone_id,
        f"script.{stack.record_name}",
        "A",
        ["192.0.2.30"],
        60,
    )
    _script(
        tmp_path,
        "failover.sh",
        f'#!/bin/sh\necho \'{{"ChangeInfo": {{"Id": "{change}", "Status": "PENDING"}}}}\'\n',
    )
    target = aws_target(tmp_path, stack, scripts={"failover": "./scripts/failover.sh"})
    target.records.min_interval_s = 0.0
    since = time.monotonic()
    target.run_script("failover.sh", "--yes")
    (record,) = target.reported_since(since, "dns_switch_requested")
    assert isinstance(record, route53.RecordChange)
    assert record.id == change.removeprefix("/change/")


def test_a_failing_script_is_one_line_naming_it_and_its_status(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    _script(tmp_path, "failback.sh", "#!/bin/sh\necho 'replica not in sync' >&2\nexit 3\n")
    target = aws_target(tmp_path, stack, scripts={"failback": "./scripts/failback.sh"})
    with pytest.raises(DrillError) as failed:
        target.run_script("failback.sh")
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("script targets.aws.scripts.failback (")
    assert message.endswith("exited 3: replica not in sync")


def test_a_script_over_its_timeout_is_stopped(stack: ProvisionedStack, tmp_path: Path) -> None:
    # a child of its own (the shell cannot exec it): it goes too, its pipes with it
    _script(tmp_path, "failover.sh", "#!/bin/sh\nsleep 30\necho late\n")
    target = aws_target(tmp_path, stack, scripts={"failover": "./scripts/failover.sh"})
    with pytest.raises(DrillError, match=r"still running after the 0\.3 s timeout"):
        target.run_script("failover.sh", timeout_s=0.3)


def test_a_script_not_configured_names_its_key(stack: ProvisionedStack, tmp_path: Path) -> None:
    target = aws_target(tmp_path, stack, scripts={"failover": "./scripts/failover.sh"})
    with pytest.raises(
        ConfigError,
        match=r"drdrill\.yaml: targets\.aws\.scripts\.failback: not configured \(the command "
        r"that runs failback\.sh\)",
    ):
        target.run_script("failback.sh")
    with pytest.raises(DrillError, match=r"no runbook script 'test-dr\.sh'"):
        target.run_script("test-dr.sh")


def test_a_dry_run_plans_the_script_and_runs_nothing(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    _script(tmp_path, "failover.sh", _SHOW_ENV)
    target = aws_target(tmp_path, stack, scripts={"failover": "./scripts/failover.sh"})
    target.set_dry_run(True)
    assert target.run_script("failover.sh", "--yes") == ""
    assert not (tmp_path / "ran").exists()
    assert (
        target.plan()[-1] == "would run targets.aws.scripts.failover: ./scripts/failover.sh --yes"
    )
