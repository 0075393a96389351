"""Targets by name: each kind lives in its own module and is imported only when chosen."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING

from drdrill.errors import ConfigError, UnknownTargetError

if TYPE_CHECKING:
    from drdrill.config import DrillConfig
    from drdrill.targets.base import Target

#: target name -> "module:factory"; read-only so that nothing registers behind our back.
TARGETS = MappingProxyType(
    {
        "local": "drdrill.targets.local:LocalTarget",
        "sandbox": "drdrill.targets.sandbox:SandboxTarget",
        "aws": "drdrill.targets.aws.target:AwsTarget",
        "sandbox-aws": "drdrill.targets.sandbox.aws:SandboxAwsTarget",
    }
)

#: a package a target needs -> the extra that brings it
EXTRAS = MappingProxyType(
    {
        "boto3": "drdrill[aws]",
        "botocore": "drdrill[aws]",
        "dnslib": "drdrill[sandbox]",
        "moto": "drdrill[aws-api]",
    }
)


def make_target(name: str, config: DrillConfig, where: str, worker: str | None = None) -> Target:
    """The target called ``name``; UnknownTargetError (naming ``where``) for an unknown name.

    ``worker`` is the pytest-xdist worker the target is for (the plugin knows it from xdist's
    ``workerinput``; the environment's PYTEST_XDIST_WORKER is inherited by any pytest a worker's
    test starts, which is no worker).
    """
    spec = TARGETS.get(name)
    if spec is None:
        known = ", ".join(sorted(TARGETS))
        raise UnknownTargetError(where, f"unknown target '{name}' (known: {known})")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get(str(exc.name).split(".")[0])
        if extra is None:
            raise
        raise ConfigError(
            where, f"target '{name}' needs {exc.name}, not installed: pip install '{extra}'"
        ) from None
    factory = getattr(module, attr)
    target: Target = factory(config, worker=worker)
    return target
