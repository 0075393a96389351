"""RDS reboot: the primary database restarts under write load; downtime measured, nothing lost."""

from __future__ import annotations

import time
from typing import Any

import pytest

from drdrill.measure import Measurement


@pytest.mark.drill(targets=["sandbox"])
@pytest.mark.parametrize("mode", ["clean", "crash"])
def test_reboot_primary_under_writes(
    stack: Any, mode: str, probes, writer, inject, timeline, measure, drill_config
) -> None:
    """Reboot the primary database: app downtime measured, no acknowledged write lost."""
    probes.start(stack.endpoints("primary"))
    writer.start()
    time.sleep(1.0)

    inject(stack.reboot_db("primary", mode=mode))
    restored = probes.wait_restored("fault_injected", timeout_s=drill_config.drills.restore_timeout)
    time.sleep(1.0)  # writes after the reboot
    rpo = writer.verify()

    measure.phase("app downtime (db reboot)", "fault_injected", restored, objective=None)
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    measure.verify()
    assert rpo.acknowledged > 0
    assert rpo.lost_acknowledged == 0, f"lost acknowledged writes: {rpo.lost_ids}"
