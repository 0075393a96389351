"""Faults with a guaranteed undo, and the names ``drdrill recover`` knows them by.

``KINDS`` maps a fault kind (the ``kind`` a fault class declares and the journal records) to the
``"module:Class"`` that implements it. Modules are imported only when a kind is looked up, so
naming AWS faults here costs nothing to a run that never touches AWS. The mapping is a constant:
a project with faults of its own passes its own mapping (``{**KINDS, "mine.x": "pkg.mod:X"}``)
to :func:`fault_class` and :func:`drdrill.faults.base.recover`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, cast

from drdrill.errors import FaultError

if TYPE_CHECKING:
    from drdrill.faults.base import Fault

#: fault kind -> "module:Class" import path; see docs/faults.md to add one.
KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "process.freeze": "drdrill.faults.process:FreezeProcess",
        "process.stop": "drdrill.faults.process:StopProcess",
        "process.kill": "drdrill.faults.process:KillProcess",
        "sandbox.stop_tasks": "drdrill.targets.sandbox.faults:StopTasks",
        "sandbox.reboot_db": "drdrill.targets.sandbox.faults:RebootDb",
        "sandbox.region_down": "drdrill.targets.sandbox.faults:RegionDown",
        "sandbox.pause_replication": "drdrill.targets.sandbox.faults:PauseReplication",
        "sandbox.cut_replication": "drdrill.targets.sandbox.faults:CutReplication",
        "sandbox.partition_regions": "drdrill.targets.sandbox.faults:PartitionRegions",
        "sandbox.degrade_link": "drdrill.targets.sandbox.faults:DegradeLink",
        "sandbox.cut_off_clients": "drdrill.targets.sandbox.faults:CutOffClients",
        "sandbox.set_mode": "drdrill.targets.sandbox.faults:SetFailoverMode",
        "aws.ecs.stop_tasks": "drdrill.targets.aws.faults:StopEcsTasks",
        "aws.ecs.scale_to_zero": "drdrill.targets.aws.faults:ScaleServiceToZero",
        "aws.rds.reboot": "drdrill.targets.aws.faults:RebootDbInstance",
        "aws.region_down": "drdrill.targets.aws.faults:RegionDown",
        "aws.cloudwatch.alarm_actions": "drdrill.targets.aws.faults:SetAlarmActions",
        "aws.fis.experiment": "drdrill.targets.aws.fis:FisExperiment",
    }
)


def fault_class(kind: str, kinds: Mapping[str, str] = KINDS) -> type[Fault]:
    """The class that implements ``kind``, imported now; :class:`FaultError` if none does."""
    target = kinds.get(kind)
    if target is None:
        raise FaultError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(kinds))})")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise FaultError(f"fault kind {kind!r}: cannot load {target} ({exc})") from exc
    declared = getattr(cls, "kind", None)
    if declared != kind:
        raise FaultError(f"fault kind {kind!r}: {target} declares kind {declared!r}")
    return cast("type[Fault]", cls)
