"""The failover mode a drill sets is journaled like a fault: put back when the drill ends, and by
``drdrill recover`` after the drill was killed (issue 12: a killed automated drill left the alarm
to fail the region over by itself, and the next drill's fault became a real failover). A split
brain (both databases writable, as an interrupted failover leaves them) is named by ``drdrill
recover`` and refused by the next drill, not reset silently.

A sandbox of the user's own (``drdrill sandbox up``, block 4, a short temporary folder), drilled
by real pytest runs of a small project; one of them is killed with SIGKILL mid-drill.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.sandbox.sandbox_project import (
    SANDBOX_MARKS,
    drdrill_cli,
    run_drill_file,
    short_folder,
    write_config,
)

pytestmark = SANDBOX_MARKS

BLOCK = 4

DRILLS = """
import os
import signal

import pytest


@pytest.mark.drill(targets=["sandbox"])
def test_mode_put_back_at_the_end(stack, inject, timeline):
    inject.change(stack.mode_change("automated"))
    assert stack.failover_mode() == "automated"
    assert timeline.find("state_changed") is not None
    assert timeline.find("fault_injected") is None  # a change is no fault


@pytest.mark.drill(targets=["sandbox"])
def test_any_drill(stack):
    pass


@pytest.mark.drill(targets=["sandbox"])
def test_killed_after_the_mode_change(stack, inject):
    inject.change(stack.mode_change("automated"))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def project() -> Iterator[tuple[Path, Path]]:
    """The project's folder and config, with the user's sandbox up for the whole test."""
    with short_folder("drdrill-mode-") as folder:
        config = write_config(folder, block=BLOCK)
        (folder / "test_mode.py").write_text(DRILLS)
        _drdrill("sandbox", "up", "--config", str(config))
        try:
            yield folder, config
        finally:
            _drdrill("sandbox", "down", "--config", str(config))


def _drdrill(*args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    result = drdrill_cli(*args)
    assert result.returncode == status, result.stdout + result.stderr
    return result


def _mode(config: Path) -> str:
    status = json.loads(_drdrill("sandbox", "status", "--config", str(config), "--json").stdout)
    return str(status["mode"])


def test_the_mode_is_put_back_at_the_end_and_by_recover_after_a_kill(
    project: tuple[Path, Path],
) -> None:
    folder, config = project
    assert _mode(config) == "manual"

    ended = run_drill_file(folder, folder / "test_mode.py::test_mode_put_back_at_the_end", config)
    assert ended.returncode == 0, ended.stdout[-3000:] + ended.stderr[-2000:]
    assert _mode(config) == "manual"

    killed = run_drill_file(
        folder, folder / "test_mode.py::test_killed_after_the_mode_change", config
    )
    assert killed.returncode == -9, killed.stdout[-3000:] + killed.stderr[-2000:]
    assert _mode(config) == "automated"  # left behind by the killed drill

    recovered = _drdrill("recover", "--config", str(config))
    assert "failover mode automated (was manual)" in recovered.stdout, recovered.stdout
    assert _mode(config) == "manual"


def test_a_split_brain_is_named_by_recover_and_refused_by_the_next_drill(
    project: tuple[Path, Path],
) -> None:
    folder, config = project
    # DR promoted while the primary still takes writes: two writable databases, as an
    # interrupted failover leaves them
    _drdrill("sandbox", "failover", "--step", "promote", "--force", "--config", str(config))
    said = _drdrill("recover", "--config", str(config), status=1).stdout
    assert said.splitlines()[-1] == (
        "split brain: both regions' databases take writes; failback (`drdrill sandbox "
        "failback`) or reset (`drdrill sandbox down`, then `up`) needed"
    )
    drill = run_drill_file(folder, folder / "test_mode.py::test_any_drill", config)
    assert drill.returncode == 1, drill.stdout[-3000:] + drill.stderr[-2000:]
    assert "is in split brain (both regions' databases take writes)" in drill.stdout
    status = json.loads(_drdrill("sandbox", "status", "--config", str(config), "--json").stdout)
    assert status["split_brain"] is True, "the drill reset the stack it should have refused"
    assert "was in split brain when the run began and is left so" in drill.stderr, drill.stderr
