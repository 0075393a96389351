"""The aws target's own pieces: terraform outputs for endpoints, the public record's answer,
the alarm history (which moto does not implement)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from drdrill.config import load_config
from drdrill.errors import DrillError
from drdrill.sandbox.aws.provision import (
    ProvisionedStack,
)
from drdrill.sandbox.dns import FailoverDns
from drdrill.targets.aws.target import AwsTarget


def _target(tmp: Path, stack: ProvisionedStack, **extra: object) -> AwsTarget:
    aws = stack.settings.model_dump(mode="json", exclude_none=True)
    aws["primary"]["alb"].pop("dns_name", None)
    aws.update(extra)
    path = tmp / "drdrill.yaml"
    path.write_text(yaml.safe_dump({"target": "aws", "targets": {"aws": aws}}))
    return AwsTarget(load_config(path))


def test_endpoints_come_from_terraform_outputs(stack: ProvisionedStack, tmp_path: Path) -> None:
    outputs = tmp_path / "tf.json"
    outputs.write_text(json.dumps({"primary_alb_dns": {"value": "alb.example.test"}}))
    target = _target(tmp_path, stack, terraform_outputs=str(outputs))
    urls = [e.url for e in target.endpoints("primary")]
    assert urls[0] == "http://alb.example.test/health-simple.php"


def test_public_record_answer_and_alarm_history(stack: ProvisionedStack, tmp_path: Path) -> None:
    target = _target(tmp_path, stack)
    name = (stack.settings.route53.record_name or "").rstrip(".")
    dns = FailoverDns("127.0.0.1", 0, name, {"primary": "127.0.1.2", "dr": "127.0.2.2"}, 1)
    dns.start()
    try:
        assert target.dns_answer(["127.0.0.1"], dns.port) == "127.0.1.2"
        dns.switch("dr")
        assert target.dns_answer(["127.0.0.1"], dns.port) == "127.0.2.2"
    finally:
        dns.stop()
    # moto has no DescribeAlarmHistory: the target says so rather than inventing a history
    with pytest.raises(DrillError):
        target.alarm_history()
