"""The truth log: events stamped with a component's own time, read in time order, read
incrementally (a line being written is left for later, a replaced file is read afresh)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drdrill.sandbox.truth import TruthLog, mono_of_wall, wall_minus_mono


def test_events_with_their_own_time_are_read_in_time_order(tmp_path: Path) -> None:
    log = TruthLog(tmp_path / "truth.jsonl")
    now = time.monotonic()
    log.append("live", "a")
    log.append_at("harvested", "b", now - 1.0, datetime.now(UTC), stamped="component")
    assert [e.event for e in log.read()] == ["live", "harvested"]  # file order
    assert [e.event for e in log.since(now - 2.0)] == ["harvested", "live"]  # time order
    assert [e.event for e in log.since(now - 0.5)] == ["live"]
    assert log.since(now - 2.0, "harvested")[0].attrs == {"stamped": "component"}


def test_reads_are_incremental_and_survive_a_torn_line_and_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    log = TruthLog(path)
    log.append("one", "a")
    assert [e.event for e in log.read()] == ["one"]
    with path.open("a") as handle:
        handle.write('{"event": "two", "utc": "2026-01-01T00:00:00+00:00", "mo')
    assert [e.event for e in log.read()] == ["one"]  # the line is not complete yet
    with path.open("a") as handle:
        handle.write('no": 5.0, "component": "a"}\n')
    assert [e.event for e in log.read()] == ["one", "two"]
    path.unlink()
    TruthLog(path).append("fresh", "a")  # a new sandbox's log
    assert [e.event for e in log.read()] == ["fresh"]


def test_wall_times_go_to_the_monotonic_axis() -> None:
    """A wall time lands on the monotonic axis at wall - offset, exactly for a given offset.
    The offset read now is checked only to be this machine's (within a second: a loaded runner
    may stall between two clock reads; how close it is, is benchmarks/bench_truth.py's)."""
    offset = wall_minus_mono()
    assert mono_of_wall(1_800_000_000.25, offset) == 1_800_000_000.25 - offset
    assert mono_of_wall(1_800_000_000.0 - 2.5, offset) - mono_of_wall(1_800_000_000.0, offset) == (
        pytest.approx(-2.5)
    )
    before = time.monotonic()
    wall = time.time()
    after = time.monotonic()
    assert before - 1.0 <= mono_of_wall(wall) <= after + 1.0


def test_a_new_file_that_outgrew_the_old_one_is_read_afresh(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    log = TruthLog(path)
    log.append("old", "a")
    assert [e.event for e in log.read()] == ["old"]
    replacement = tmp_path / "new.jsonl"
    writer = TruthLog(replacement)
    for _ in range(5):
        writer.append("new", "b", padding="x" * 50)
    # a new sandbox's log in the same inode, longer than what was read of the old one
    path.write_bytes(replacement.read_bytes())
    assert [e.event for e in log.read()] == ["new"] * 5
