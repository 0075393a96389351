"""The ``sandbox-aws`` target: the sandbox drilled through its AWS API, with its ground truth.

Every drill call goes the AWS target's way (boto3 against the sandbox's endpoint, the same
adapters as on a real account); what only a sandbox has, its components' own records of what
really happened, is put beside each figure as on the ``sandbox`` target. ``drdrill sandbox up``
(with ``targets.sandbox.aws_api``) writes a config for it beside the run folder
(``<run_dir>-aws.yaml``): ``targets.aws`` pointed at the endpoint, ``targets.sandbox`` naming
the sandbox.
"""

from __future__ import annotations

import os
from typing import Any

from drdrill.config import DrillConfig
from drdrill.errors import ConfigError
from drdrill.faults.base import Fault
from drdrill.measure import Measurements
from drdrill.probes.client import ClientSpec
from drdrill.sandbox.aws.stack import CREDENTIALS
from drdrill.sandbox.ground_truth import PhaseTruth
from drdrill.targets.aws.target import AwsTarget
from drdrill.targets.sandbox import DrillKind, SandboxTarget


class SandboxAwsTarget(AwsTarget):
    """:class:`AwsTarget` on the sandbox's AWS endpoint, plus the sandbox's ground truth."""

    name = "sandbox-aws"
    #: the sandbox is this machine's: no real account is at stake
    needs_destructive_flag = False

    def __init__(self, config: DrillConfig, worker: str | None = None) -> None:
        """``targets.aws`` as ``drdrill sandbox up`` wrote it, and the sandbox of
        ``targets.sandbox``; one sandbox for the whole run (no pytest-xdist workers)."""
        if worker:
            raise ConfigError(
                f"{config.path}: target",
                "sandbox-aws drills the one sandbox its endpoint belongs to: run it without -n",
            )
        for key, value in CREDENTIALS.items():
            os.environ.setdefault(key, value)
        super().__init__(config, worker=None)
        self.sandbox = SandboxTarget(config)

    # the sandbox's own DNS clients (each from its own address, which the DNS server's log
    # tells apart), so that the ground truth knows when each client saw the switch

    def http_client_spec(self) -> ClientSpec:
        """The probes resolve through the sandbox DNS from the probes' own address."""
        return self.sandbox.http_client_spec()

    def client_resolver(self, role: str = "drill") -> Any:
        """A resolver of the public name from the ``role``'s own address."""
        return self.sandbox.client_resolver(role)

    def write_sink(self, timeout_s: float) -> Any:
        """RPO markers through the public name, resolved from the writer's own address."""
        return self.sandbox.write_sink(timeout_s)

    def ensure_baseline(self) -> None:
        """The sandbox at its baseline (reset when a drill left it failed over); what this
        target learnt of the old stack (names, connections, records) is forgotten. The stack's
        ids are the same after a reset (the sandbox seeds them), so the config stays true."""
        if self.sandbox.client.alive() and self.sandbox.at_baseline():
            return
        self.sandbox.reset()
        self.forget_stack()

    def guard(self, fault: Fault, allow_destructive: bool) -> None:
        """The AWS target's guard (account, regions, blast radius) without the flag: the
        sandbox is this machine's own, as on the ``sandbox`` target."""
        super().guard(fault, allow_destructive=True)

    def start(self) -> None:
        """Bring the sandbox up unless it runs (then it is left running at the end)."""
        self.sandbox.start()
        super().start()

    def stop(self) -> None:
        """The AWS target's clean-up, then the sandbox down if this run brought it up."""
        try:
            super().stop()
        finally:
            self.sandbox.stop()

    def attach_truth(
        self,
        measure: Measurements,
        trigger: str = "automated",
        drill: DrillKind = "region_failover",
    ) -> dict[str, PhaseTruth]:
        """The sandbox's ground truth beside each figure ``measure`` holds."""
        return self.sandbox.attach_truth(measure, trigger=trigger, drill=drill)

    def describe(self) -> dict[str, Any]:
        """What the report says about the target."""
        described: dict[str, Any] = dict(super().describe())
        described["sandbox"] = str(self.sandbox.run_dir)
        return described
