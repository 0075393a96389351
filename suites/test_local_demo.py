"""Drills against the local demo endpoint (the main job until the sandbox lands).

The app process is frozen (a black hole: connections hang) for a while and then resumed; the
probes time the client-observed outage, the markers count what was lost.
"""

from __future__ import annotations

import time

import pytest

from drdrill.drill_fixtures import Injector, ProbeSession, WriterSession
from drdrill.faults.process import FreezeProcess, ProcessRef
from drdrill.measure import Measurement, Measurements
from drdrill.timeline import Timeline

FREEZE_S = 2.0


@pytest.mark.drill(phases=["Total RTO", "Database"])
def test_app_freeze_recovers_within_total_rto(
    app_process: ProcessRef,
    probes: ProbeSession,
    writer: WriterSession,
    inject: Injector,
    timeline: Timeline,
    measure: Measurements,
) -> None:
    """Freeze the app for 2 s: outage seen, service restored within Total RTO, no write lost."""
    probes.start()
    writer.start()
    time.sleep(1.0)  # a baseline of good samples and acknowledged writes

    fault = inject(FreezeProcess(app_process))
    time.sleep(FREEZE_S)
    inject.revert(fault)

    restored = probes.wait_restored("fault_injected", timeout_s=30)
    time.sleep(0.5)  # writes after recovery
    rpo = writer.verify()

    total = measure.phase("Total RTO", "fault_injected", restored)
    measure.record("Database", Measurement(rpo.data_loss_window_s), kind="rpo")
    measure.verify()

    assert timeline.find("outage_started") is not None, "the freeze caused no observed outage"
    assert rpo.lost_acknowledged == 0, f"lost acknowledged writes: {rpo.lost_ids}"
    # the freeze lasted FREEZE_S: the restored service cannot be seen before it ended
    assert total.measured.value >= FREEZE_S - total.measured.uncertainty
