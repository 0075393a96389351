"""An :class:`AwsTarget` over a stack provisioned in moto, from a drdrill.yaml of its own."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from drdrill.config import load_config
from drdrill.sandbox.aws.provision import ProvisionedStack
from drdrill.targets.aws.target import AwsTarget


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def aws_target(
    tmp: Path, stack: ProvisionedStack, *, config: Mapping[str, Any] | None = None, **aws: Any
) -> AwsTarget:
    """The target of ``stack``, its ``targets.aws`` merged key by key with ``aws`` and the
    config's top level with ``config``."""
    settings = _merge(stack.settings.model_dump(mode="json", exclude_none=True), aws)
    document = _merge({"target": "aws", "targets": {"aws": settings}}, config or {})
    path = tmp / "drdrill.yaml"
    path.write_text(yaml.safe_dump(document))
    return AwsTarget(load_config(path))
