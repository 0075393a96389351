"""RDS reboot: the primary database restarts under write load; downtime measured, nothing lost."""

from __future__ import annotations

import time
from typing import Literal

import pytest

from drdrill.config import DrillConfig
from drdrill.drill_fixtures import Injector, ProbeSession, WriterSession
from drdrill.measure import Measurement, Measurements
from drdrill.targets.base import DatabaseServiceStack, GroundTruthTarget, PlatformRecords
from drdrill.timeline import Timeline


@pytest.mark.drill(phases=["Total RTO", "Database"])
@pytest.mark.parametrize("mode", ["clean", "crash"])
def test_reboot_primary_under_writes(
    database_stack: DatabaseServiceStack,
    mode: Literal["clean", "crash"],
    probes: ProbeSession,
    writer: WriterSession,
    inject: Injector,
    timeline: Timeline,
    measure: Measurements,
    drill_config: DrillConfig,
) -> None:
    """Reboot the primary database: app downtime measured, no acknowledged write lost."""
    probes.start(database_stack.endpoints("primary"))
    writer.start()
    time.sleep(1.0)

    inject(database_stack.reboot_db("primary", mode=mode))
    timeout = drill_config.drills.restore_timeout
    restored = probes.wait_restored("fault_injected", timeout_s=timeout)
    time.sleep(1.0)  # writes after the reboot, and time to see whether the restore holds
    rpo = writer.verify()
    # a restore that did not hold is no restore: the service is back once it stays back
    restored = probes.restored_for_good(restored, timeout_s=timeout)

    # the runbook's end-to-end objective holds for any outage: fault -> every check passes again
    measure.phase("Total RTO", "fault_injected", restored)
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    if isinstance(database_stack, PlatformRecords):  # RDS's own word beside what was observed
        back = database_stack.platform_records(timeline.get("fault_injected").mono, "db_restarted")
        if back:
            event = timeline.report_stamped(
                "db_restarted_reported", back[0].utc, back[0].resolution_s, record="db_restarted"
            )
            name = "database restart (RDS's record)"
            measure.phase(name, "fault_injected", event, objective=None)
    if isinstance(database_stack, GroundTruthTarget):  # the sandbox logs what really happened
        database_stack.attach_truth(measure, drill="db_reboot")
    measure.verify()
    assert rpo.acknowledged > 0
    assert rpo.lost_acknowledged == 0, f"lost acknowledged writes: {rpo.lost_ids}"
