"""Every figure a drill measures maps to a row of the runbook; no silent "no objective".

A runbook that names its rows differently is mapped with the config's ``phases:`` (row -> drill
phase). A drill's declared phase, an objective override or a mapping that names no row is a config
error at start (one line listing the rows, exit 2, nothing run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drdrill.config import load_config
from drdrill.errors import ConfigError
from drdrill.session import load_objectives

pytest_plugins = ["pytester"]

RUNBOOK = """# Runbook

## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Detection** | 2 minutes | | alarms |
| **Container start** | 2 minutes | | what the drills call ECS Scale-up |
| **Total RTO** | 15 minutes | | |

## Recovery Point Objectives

| Data Type | Target RPO | Actual RPO | Notes |
|---|---|---|---|
| **Database** | 1 minute | | |
"""

DRILL = """
import pytest

@pytest.mark.drill(phases=["ECS Scale-up", "Total RTO", "Database"])
def test_scale(timeline, measure):
    start = timeline.mark("scale_asked")
    timeline.observe("healthy", start.mono + 30.0, 0.5)
    result = measure.phase("ECS Scale-up", start, "healthy")
    assert result.objective == "Container start"
    assert result.target_s == 120.0
"""


def _config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "runbook.md").write_text(RUNBOOK)
    path = tmp_path / "drdrill.yaml"
    path.write_text("runbook: runbook.md\ntarget: local\n" + extra)
    return path


def test_an_override_naming_no_row_is_an_error_listing_the_rows(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "objectives:\n  rto:\n    Total RTOO: 10s\n"))
    with pytest.raises(ConfigError) as caught:
        load_objectives(config)
    message = str(caught.value)
    assert "objectives.rto.Total RTOO" in message
    assert "'Detection', 'Container start', 'Total RTO'" in message
    assert "\n" not in message


def test_a_mapping_naming_no_row_is_an_error(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "phases:\n  Container strat: ECS Scale-up\n"))
    with pytest.raises(ConfigError, match=r"phases\.Container strat.*'Container start'"):
        load_objectives(config)


def test_a_renamed_row_without_a_mapping_stops_the_run_before_anything_runs(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill="runbook: runbook.md\ntarget: local\nreport_dir: out\n")
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(DRILL)
    result = pytester.runpytest_subprocess()
    assert result.ret == 2
    errors = [line for line in result.errlines if line.startswith("drdrill: error:")]
    assert len(errors) == 1, result.errlines
    assert "measures 'ECS Scale-up'" in errors[0]
    assert "'Container start'" in errors[0] and "phases:" in errors[0]
    assert "Traceback" not in "\n".join(result.outlines + result.errlines)
    result.assert_outcomes()  # nothing ran


def test_with_the_mapping_the_phase_is_held_to_the_renamed_row(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(
        ".yaml",
        drdrill="runbook: runbook.md\ntarget: local\nreport_dir: out\n"
        "phases:\n  Container start: ECS Scale-up\n",
    )
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(DRILL)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_an_undeclared_phase_with_no_row_fails_the_drill_not_silently(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill="runbook: runbook.md\ntarget: local\nreport_dir: out\n")
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(
        """
        def test_undeclared(timeline, measure):
            start = timeline.mark("a")
            timeline.observe("b", start.mono + 1.0, 0.0)
            measure.phase("RDS Promotion", start, "b")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*'RDS Promotion' is not a row of the RTO table*"])
