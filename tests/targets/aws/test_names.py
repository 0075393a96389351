"""Names in ``targets.aws`` looked up once against a stack in a moto server: the hosted zone by
``route53.zone_name``, target groups by ``alb.target_group_name``, load balancers' DNS names by
``alb.name``; a name that matches nothing is one line naming the file and the key."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from drdrill.config import load_config
from drdrill.errors import ConfigError
from drdrill.sandbox.aws.provision import ProvisionedStack, names_only_settings
from drdrill.targets.aws.names import UnresolvedName
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings
from drdrill.targets.aws.target import AwsTarget


def _target(tmp: Path, settings: AwsSettings) -> tuple[AwsTarget, Path]:
    aws = settings.model_dump(mode="json", exclude_none=True)
    path = tmp / "drdrill.yaml"
    path.write_text(yaml.safe_dump({"target": "aws", "targets": {"aws": aws}}))
    return AwsTarget(load_config(path)), path


def _operations(target: AwsTarget) -> list[str]:
    return [c.operation for c in target.aws.log.calls]


def test_names_are_looked_up_once_and_used(stack: ProvisionedStack, tmp_path: Path) -> None:
    target, _ = _target(tmp_path, names_only_settings(stack))
    for _ in range(2):
        # moto counts every registered ip target healthy: the primary's two tasks
        assert target.healthy_targets("primary") == 2
        assert target.healthy_targets("dr") == 0
        assert target.alb_dns("primary") == stack.primary.load_balancer_dns
        urls = [e.url for e in target.endpoints("dr")]
        assert urls[0] == f"http://{stack.dr.load_balancer_dns}/health-simple.php"
        assert target.primary_record_healthy()
    ops = _operations(target)
    assert ops.count("ListHostedZonesByName") == 1
    assert ops.count("DescribeTargetGroups") == 2  # one a region
    assert ops.count("DescribeLoadBalancers") == 2
    # what it found is what provisioning built
    assert target.stack_names.zone_id() == stack.zone_id
    assert target.stack_names.target_group_arn("dr") == stack.dr.target_group_arn


def test_ids_and_configured_dns_names_need_no_lookup(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target, _ = _target(tmp_path, stack.settings)  # ARNs, the zone id, the DNS names
    assert target.healthy_targets("primary") == 2
    assert target.alb_dns("dr") == stack.dr.load_balancer_dns
    assert target.primary_record_healthy()
    ops = set(_operations(target))
    assert not ops & {"ListHostedZonesByName", "DescribeTargetGroups", "DescribeLoadBalancers"}


def _renamed(stack: ProvisionedStack, key: str, value: str) -> AwsSettings:
    data: dict[str, Any] = names_only_settings(stack).model_dump()
    *path, last = key.split(".")
    node = data
    for part in path:
        node = node[part]
    node[last] = value
    return AwsSettings.model_validate(data)


@pytest.mark.parametrize(
    ("key", "value", "use", "what"),
    [
        (
            "route53.zone_name",
            "nowhere.example.com",
            lambda t: t.primary_record_healthy(),
            "no hosted zone named 'nowhere.example.com.'",
        ),
        (
            "primary.alb.target_group_name",
            "no-such-group",
            lambda t: t.healthy_targets("primary"),
            "no target group named 'no-such-group' in eu-west-1",
        ),
        (
            "dr.alb.name",
            "no-such-alb",
            lambda t: t.endpoints("dr"),
            "no load balancer named 'no-such-alb' in eu-central-1",
        ),
    ],
)
def test_a_name_that_matches_nothing_is_one_line_naming_the_key(
    stack: ProvisionedStack, tmp_path: Path, key: str, value: str, use: Any, what: str
) -> None:
    target, path = _target(tmp_path, _renamed(stack, key, value))
    with pytest.raises(UnresolvedName) as caught:
        use(target)
    assert str(caught.value) == f"{path}: targets.aws.{key}: {what}"
    assert isinstance(caught.value, ConfigError)
    # pytest shows it as that one line, with no traceback
    assert isinstance(caught.value, pytest.fail.Exception) and not caught.value.pytrace
    # looked up once: the next use fails at once with the same line
    made = len(target.aws.log.calls)
    with pytest.raises(UnresolvedName) as again:
        use(target)
    assert str(again.value) == str(caught.value)
    assert len(target.aws.log.calls) == made


def test_a_zone_name_two_public_zones_share_is_refused(
    stack: ProvisionedStack, moto_endpoint: str, tmp_path: Path
) -> None:
    name = f"twice-{uuid.uuid4().hex[:8]}.example.com."
    route53 = AwsClients(endpoint_url=moto_endpoint).client("route53", "us-east-1")
    ids = [
        str(
            route53.create_hosted_zone(Name=name, CallerReference=uuid.uuid4().hex)["HostedZone"][
                "Id"
            ]
        ).removeprefix("/hostedzone/")
        for _ in range(2)
    ]
    target, path = _target(tmp_path, _renamed(stack, "route53.zone_name", name))
    with pytest.raises(UnresolvedName) as caught:
        target.stack_names.zone_id()
    message = str(caught.value)
    assert message.startswith(
        f"{path}: targets.aws.route53.zone_name: 2 hosted zones are named '{name}' ("
    )
    assert message.endswith("): give route53.zone_id instead")
    assert all(zone in message for zone in ids)


def test_nothing_to_probe_names_the_keys_to_give(tmp_path: Path, moto_endpoint: str) -> None:
    target, path = _target(tmp_path, AwsSettings(endpoint_url=moto_endpoint))
    with pytest.raises(UnresolvedName) as caught:
        target.endpoints("dr")
    assert str(caught.value) == (
        f"{path}: targets.aws: nothing to probe: give route53.record_name, or "
        "dr.alb.dns_name or dr.alb.name"
    )
    with pytest.raises(UnresolvedName, match=r"targets\.aws\.primary\.alb: give target_group"):
        target.healthy_targets("primary")
