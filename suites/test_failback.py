"""Failback: after a failover, the primary region restored and service moved back to it.

The runbook's success criteria: the primary region fully operational, DR back at pilot light,
no acknowledged write lost (the writes made during DR come back), no service interruption.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from drdrill.measure import Measurement
from drdrill.observe import poll_until


@pytest.mark.drill(targets=["sandbox"])
def test_failback_after_failover(
    stack: Any, probes, writer, inject, timeline, measure, drill_config
) -> None:
    """Fail over, restore the primary region, fail back under reads and writes."""
    timeout = drill_config.drills.restore_timeout
    stack.set_mode("manual")
    outage = inject(stack.region_down("primary", mode="kill"))
    result = stack.invoke_dr({"trigger": "manual", "reason": "disaster_recovery"})
    assert result["status"] == "completed", result
    poll_until(
        timeline,
        "serving_from_dr",
        lambda: stack.dns_answer() == stack.region_ip("dr"),
        timeout_s=timeout,
    )
    inject.revert(outage)  # the primary region's processes are back; service stays on DR

    public = probes.start()
    writer.start()  # writes made during DR must come back to the primary
    time.sleep(1.5)
    timeline.mark("failback_started")
    stack.run_script("failback.sh", timeout_s=180)
    done = timeline.mark("failback_script_done")
    serving = poll_until(
        timeline,
        "primary_serving",
        lambda: stack.dns_answer() == stack.region_ip("primary"),
        timeout_s=timeout,
        since=done,
    )
    time.sleep(1.5)  # reads and writes on the primary after the switch
    rpo = writer.verify(stack.present_markers(writer.run_id, region="primary"))

    measure.phase("failback", "failback_started", done, objective=None)
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    measure.verify()

    assert rpo.acknowledged > 0
    assert rpo.lost_acknowledged == 0, f"acknowledged writes missing on the primary: {rpo.lost_ids}"
    for stats in public.stats():
        assert stats.availability is not None
        assert stats.availability >= drill_config.drills.min_availability, (
            f"{stats.url}: availability {stats.availability:.1f}% during failback"
        )
    status = stack.status()
    dr = status["regions"]["dr"]
    assert dr["ecs"]["desired"] == 0 and dr["ecs"]["running"] == 0, dr["ecs"]
    assert dr["rds"]["read_only"] and dr["rds"]["replication"] == {"io": True, "sql": True}
    assert status["regions"]["primary"]["alb"]["healthy"] >= 1
    assert stack.db_writable("primary")
    assert serving.mono >= timeline.get("failback_started").mono
