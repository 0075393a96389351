"""JUnit properties: each drill's figures as ``<property>`` elements that pytest writes."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from drdrill.measure import Measurement, Result
from drdrill.report.json_report import run_from_json
from drdrill.report.junit import phase_properties

from .drill_project import CONFIG, RUNBOOK

pytest_plugins = ["pytester"]

#: a real sandbox run (three region failovers under pytest-xdist, run 20261129T011824Z-0f09e8)
SAMPLE = Path(__file__).parent.parent / "data" / "reports" / "sample-failover.json"


def _result(
    name: str,
    value: float,
    uncertainty: float,
    target_s: float | None,
    truth_s: float | None = None,
    unit: str = "s",
) -> Result:
    return Result(
        name=name,
        kind="rto",
        measured=Measurement(value, uncertainty, unit),
        target_s=target_s,
        objective=name if target_s is not None else None,
        truth_s=truth_s,
    )


def _properties(xml: Path) -> dict[str, list[tuple[str, str]]]:
    """Each test case's properties by test name, in document order."""
    root = ET.parse(xml).getroot()
    return {
        case.attrib["name"]: [(p.attrib["name"], p.attrib["value"]) for p in case.iter("property")]
        for case in root.iter("testcase")
    }


def test_each_figure_gives_measured_interval_target_status_and_truth() -> None:
    results = [
        _result("Total RTO", 2.5981234, 0.0012, 18.0, truth_s=2.5903),
        _result("Detection", 149.75, 0.25, 120.0),
        _result("client downtime", 2.5, 0.025, None),
    ]
    assert phase_properties(results) == [
        ("drdrill.Total RTO.measured", "2.598"),
        ("drdrill.Total RTO.uncertainty", "0.001"),
        ("drdrill.Total RTO.low", "2.597"),
        ("drdrill.Total RTO.high", "2.599"),
        ("drdrill.Total RTO.target", "18"),
        ("drdrill.Total RTO.status", "met"),
        ("drdrill.Total RTO.truth", "2.590"),
        ("drdrill.Total RTO.truth_error_ms", "7.823"),
        ("drdrill.Detection.measured", "149.750"),
        ("drdrill.Detection.uncertainty", "0.250"),
        ("drdrill.Detection.low", "149.500"),
        ("drdrill.Detection.high", "150.000"),
        ("drdrill.Detection.target", "120"),
        ("drdrill.Detection.status", "missed"),
        # no ground truth is said, never left out or written as an error of 0
        ("drdrill.Detection.truth", "no ground truth"),
        ("drdrill.client downtime.measured", "2.500"),
        ("drdrill.client downtime.uncertainty", "0.025"),
        ("drdrill.client downtime.low", "2.475"),
        ("drdrill.client downtime.high", "2.525"),
        ("drdrill.client downtime.target", ""),
        ("drdrill.client downtime.status", "no objective"),
        ("drdrill.client downtime.truth", "no ground truth"),
    ]


def test_inconclusive_and_invalid_figures_say_so_with_the_truths_source() -> None:
    straddling = _result("Total RTO", 17.95, 0.1, 18.0, truth_s=17.9)
    straddling = replace(straddling, truth_source="sandbox truth.jsonl")
    reversed_span = replace(
        _result("Health Verification", -0.379, 0.049, 2.4),
        note="it ends before it starts: 'checks_passed' precedes 'tasks_healthy' by 379 ms",
    )
    props = dict(phase_properties([straddling, reversed_span]))
    assert props["drdrill.Total RTO.status"] == "inconclusive"
    assert (props["drdrill.Total RTO.low"], props["drdrill.Total RTO.high"]) == (
        "17.850",
        "18.050",
    )
    assert props["drdrill.Total RTO.truth_source"] == "sandbox truth.jsonl"
    assert props["drdrill.Total RTO.truth_error_ms"] == "50.000"
    assert "drdrill.Total RTO.truth_uncertainty" not in props  # an exact truth
    uncertain = dict(
        phase_properties([replace(straddling, truth_s=17.5, truth_uncertainty_s=0.28)])
    )
    assert uncertain["drdrill.Total RTO.truth_uncertainty"] == "0.280"
    assert uncertain["drdrill.Total RTO.truth_error_ms"] == "450.000"
    assert props["drdrill.Health Verification.status"] == "invalid"
    assert props["drdrill.Health Verification.note"] == reversed_span.note


def test_counts_and_unmeasurable_figures_stay_parseable() -> None:
    props = dict(
        phase_properties(
            [
                _result("lost writes", 3.0, 0.0, None, unit="writes"),
                _result("DNS Update", math.nan, math.inf, 6.0),
            ]
        )
    )
    assert props["drdrill.lost writes.measured"] == "3"
    assert props["drdrill.lost writes.uncertainty"] == "0"
    assert props["drdrill.DNS Update.measured"] == "nan"
    assert props["drdrill.DNS Update.uncertainty"] == "inf"
    # a figure never measured cannot be right: invalid, never met
    assert props["drdrill.DNS Update.status"] == "invalid"
    assert not phase_properties([])


def test_a_real_runs_figures_match_its_report_json() -> None:
    data = json.loads(SAMPLE.read_text())
    run = run_from_json(data, where=str(SAMPLE))
    first = run.tests[0]
    props = dict(phase_properties(first.results))
    phases = [p for p in data["phases"] if p["test"] == first.nodeid]
    # measured, uncertainty, low, high, target, status, truth; truth_error_ms with a truth
    assert len(props) == sum(8 if p["truth_s"] is not None else 7 for p in phases)
    for phase, result in zip(phases, first.results, strict=True):
        base = f"drdrill.{phase['name']}"
        assert float(props[f"{base}.measured"]) == pytest.approx(phase["measured"], abs=5e-4)
        # the status as judged now (the sample's negative Health Verification is invalid)
        assert props[f"{base}.status"] == str(result.status)
        target = phase["target_s"]
        assert props[f"{base}.target"] == ("" if target is None else f"{target:g}")
        if phase["error_ms"] is not None:
            error = float(props[f"{base}.truth_error_ms"])
            assert error == pytest.approx(phase["error_ms"], abs=5e-4)
        else:
            assert props[f"{base}.truth"] == "no ground truth"
    assert props["drdrill.Health Verification.status"] == "invalid"


#: feeds the sample's figures to a plain test as the plugin feeds a drill's: into
#: item.user_properties after the teardown of its fixtures, before pytest makes the teardown
#: report (whose user_properties the JUnit writer reads)
CONFTEST = """
import json
from pathlib import Path

import pytest

from drdrill.report.json_report import run_from_json
from drdrill.report.junit import phase_properties

RUN = run_from_json(json.loads(Path({sample!r}).read_text()))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        item.user_properties.extend(phase_properties(RUN.tests[0].results))
"""


def test_pytest_writes_the_properties_into_junit_xml(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.format(sample=str(SAMPLE)))
    pytester.makepyfile(test_failover="def test_sample():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    run = run_from_json(json.loads(SAMPLE.read_text()))
    written = _properties(pytester.path / "out.xml")["test_sample"]
    assert written == phase_properties(run.tests[0].results)
    assert ("drdrill.Total RTO.measured", "2.547") in written
    assert ("drdrill.Total RTO.target", "18") in written
    assert ("drdrill.Total RTO.truth_error_ms", "3.127") in written
    # pytest's default JUnit family (xunit2) keeps per-test properties: no warning about them
    assert "incompatible with junit_family" not in result.stdout.str()


DRILLS = """
def test_region_failover_drill(timeline, measure):
    start = timeline.mark("fault_injected")
    timeline.observe("service_restored", start.mono + 2.5, 0.002)
    measure.phase("Total RTO", "fault_injected", "service_restored", truth_s=2.49)


def test_slow_detection(timeline, measure):
    start = timeline.mark("fault_injected")
    timeline.observe("alarm", start.mono + 150.0, 0.5)
    measure.phase("Detection", "fault_injected", "alarm")


def test_not_a_drill():
    pass
"""


def test_a_drills_figures_reach_junit_xml_through_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=CONFIG)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(DRILLS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml=out.xml")
    result.assert_outcomes(passed=2, failed=1)
    props = _properties(pytester.path / "out.xml")
    assert props["test_region_failover_drill"] == [
        ("drdrill.Total RTO.measured", "2.499"),
        ("drdrill.Total RTO.uncertainty", "0.001"),
        ("drdrill.Total RTO.low", "2.498"),
        ("drdrill.Total RTO.high", "2.500"),
        ("drdrill.Total RTO.target", "900"),
        ("drdrill.Total RTO.status", "met"),
        ("drdrill.Total RTO.truth", "2.490"),
        ("drdrill.Total RTO.truth_error_ms", "9.000"),
    ]
    # a drill that failed on its missed objective still has its figures in the XML
    assert props["test_slow_detection"] == [
        ("drdrill.Detection.measured", "149.750"),
        ("drdrill.Detection.uncertainty", "0.250"),
        ("drdrill.Detection.low", "149.500"),
        ("drdrill.Detection.high", "150.000"),
        ("drdrill.Detection.target", "120"),
        ("drdrill.Detection.status", "missed"),
        ("drdrill.Detection.truth", "no ground truth"),
    ]
    assert props["test_not_a_drill"] == []
