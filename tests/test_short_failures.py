"""A drill's failure reads as its one-line reason and where the test met it (issue 11).

Real pytest runs (pytester, in subprocesses) of a small drill project on the local target: by
default a drdrill error (a missed objective, a fault with no effect) shows its message at the
test's file and line, with no test source and no ``DrillConfig(...)`` repr; a plain assertion in
a drill shows pytest's short form; a test that is no drill keeps pytest's long form; ``--tb``
brings the long form back. The reason still reaches JUnit, report.json and report.md.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from .report.drill_project import drill_project

pytest_plugins = ["pytester"]

DRILLS = """
import pytest

from drdrill.observe import FaultHadNoEffect


@pytest.fixture
def frozen_bystander(drill_config):
    raise FaultHadNoEffect("the fault had no effect: no probe failed within 2 s")


def test_slow_restore(timeline, measure, drill_config):
    start = timeline.mark("fault_injected")
    timeline.observe("restored", start.mono + 950.0, 0.2)
    measure.phase("Total RTO", "fault_injected", "restored")
    measure.verify()  # the missed objective


def test_replication(drill_config):
    lag_s = 75
    assert lag_s <= 60, "replica lag over the RPO"


def test_no_effect(frozen_bystander):
    pass


def test_not_a_drill():
    answer = 41
    assert answer == 42
"""

MISSED = "phase 'Total RTO' measured 949.900 ± 0.100 s, over its objective 'Total RTO' of 900 s"
NO_EFFECT = "the fault had no effect: no probe failed within 2 s"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    project: pytest.Pytester = drill_project(pytester, test_drills=DRILLS)
    return project


def _line_of(project: pytest.Pytester, text: str) -> int:
    """The 1-based line of test_drills.py that holds ``text``."""
    lines = (project.path / "test_drills.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def _section(output: str, title: str) -> list[str]:
    """The lines of one test's section under FAILURES or ERRORS (up to the next header)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip("_ ") == title)
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("____", "====", "----"))),
        len(lines),
    )
    return lines[start + 1 : end]


def _run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--dr-progress=off", *args)
    result.assert_outcomes(failed=3, errors=1)
    return result


def _tests(project: pytest.Pytester) -> dict[str, dict[str, Any]]:
    (path,) = (project.path / "out").glob("*/report.json")
    data = json.loads(path.read_text())
    return {t["nodeid"].rsplit("::", 1)[-1]: t for t in data["tests"]}


def test_a_drill_error_is_its_reason_where_the_test_met_it(project: pytest.Pytester) -> None:
    result = _run(project, "--junitxml=junit.xml")
    output = result.stdout.str()
    where = _line_of(project, "measure.verify()")
    assert _section(output, "test_slow_restore") == [
        f"test_drills.py:{where}: in test_slow_restore",
        f"E   ObjectiveMissed: {MISSED}",
    ]
    # raised in a fixture: where the test's file has it
    assert _section(output, "ERROR at setup of test_no_effect") == [
        f"test_drills.py:{_line_of(project, 'raise FaultHadNoEffect')}: in frozen_bystander",
        f"E   FaultHadNoEffect: {NO_EFFECT}",
    ]
    # no source of the test, no locals, no repr of the config, nothing of drdrill's own code
    assert "DrillConfig(" not in output
    for source in ("def test_slow_restore", 'timeline.mark("fault_injected")', "raise_for("):
        assert source not in output
    assert "measure.py" not in output
    result.stdout.fnmatch_lines(
        ["FAILED test_drills.py::test_slow_restore - ObjectiveMissed: phase 'Total RTO'*"]
    )


def test_an_assertion_in_a_drill_is_pytests_short_form(project: pytest.Pytester) -> None:
    output = _run(project).stdout.str()
    assert _section(output, "test_replication") == [
        f"test_drills.py:{_line_of(project, 'assert lag_s')}: in test_replication",
        '    assert lag_s <= 60, "replica lag over the RPO"',
        "E   AssertionError: replica lag over the RPO",
        "E   assert 75 <= 60",
    ]


def test_a_test_that_is_no_drill_keeps_pytests_long_form(project: pytest.Pytester) -> None:
    section = _section(_run(project).stdout.str(), "test_not_a_drill")
    assert "    def test_not_a_drill():" in section
    assert ">       assert answer == 42" in section
    assert f"test_drills.py:{_line_of(project, 'assert answer')}: AssertionError" in section


@pytest.mark.parametrize("style", ["--tb=long", "--tb=auto"])
def test_tb_given_brings_the_long_form_back(project: pytest.Pytester, style: str) -> None:
    output = _run(project, style).stdout.str()
    section = _section(output, "test_slow_restore")
    assert "    def test_slow_restore(timeline, measure, drill_config):" in section
    assert any(line.startswith("drill_config = DrillConfig(") for line in section)
    assert any(line.endswith(": ObjectiveMissed") and "measure.py" in line for line in section)
    assert "    def test_replication(drill_config):" in _section(output, "test_replication")


def test_the_reason_still_reaches_junit_and_the_reports(project: pytest.Pytester) -> None:
    _run(project, "--junitxml=junit.xml")
    cases = {c.attrib["name"]: c for c in ET.parse(project.path / "junit.xml").iter("testcase")}
    failure = cases["test_slow_restore"].find("failure")
    assert failure is not None
    assert failure.attrib["message"] == f"ObjectiveMissed: {MISSED}"
    assert MISSED in (failure.text or "")
    error = cases["test_no_effect"].find("error")
    assert error is not None and NO_EFFECT in error.attrib["message"]

    tests = _tests(project)
    assert (tests["test_slow_restore"]["outcome"], tests["test_slow_restore"]["message"]) == (
        "failed",
        MISSED,
    )
    assert tests["test_no_effect"]["message"] == NO_EFFECT
    assert tests["test_replication"]["message"] == "replica lag over the RPO"
    (md,) = (project.path / "out").glob("*/report.md")
    (row,) = [ln for ln in md.read_text().splitlines() if "test_slow_restore | **failed**" in ln]
    assert row.endswith(f"| {MISSED} |")


def test_the_short_form_travels_from_xdist_workers(project: pytest.Pytester) -> None:
    output = _run(project, "-n", "2").stdout.str()
    section = [line for line in _section(output, "test_slow_restore") if not line.startswith("[gw")]
    assert section == [
        f"test_drills.py:{_line_of(project, 'measure.verify()')}: in test_slow_restore",
        f"E   ObjectiveMissed: {MISSED}",
    ]
    assert "DrillConfig(" not in output
    assert _tests(project)["test_slow_restore"]["message"] == MISSED
