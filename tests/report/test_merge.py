"""report.json read back into a run (round trip), and workers' parts merged into one run."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drdrill.errors import InputError
from drdrill.measure import Measurement, Result
from drdrill.report.json_report import SCHEMA_VERSION, run_from_json, run_to_json
from drdrill.report.markdown import render_markdown
from drdrill.report.merge import MergeError, merge_runs, merge_targets, part_from_json
from drdrill.report.record import (
    OutageRecord,
    ProbeStatsRecord,
    RpoRecord,
    RunRecord,
    TestRecord,
)
from drdrill.timeline import Event, Source

T0 = datetime(2026, 11, 29, 0, 12, tzinfo=UTC)
OBJECTIVES = {
    "rto": {"Detection": {"target_s": 2.4, "actual": "1-3 minutes", "notes": "alarms"}},
    "rpo": {"Database": {"target_s": 1.2, "actual": "< 30 seconds", "notes": "lag"}},
}


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _test(nodeid: str, worker: str | None = None, offset: float = 0.0) -> TestRecord:
    """A drill with one of everything a report holds, open outage and non-finite figure too."""
    events = [
        Event("fault_injected", _at(offset), 100.0 + offset, Source.ACTION, 0.0, {"trigger": "x"}),
        Event("alarm_seen", _at(offset + 1.5), 101.5 + offset, Source.OBSERVED, 0.05, {}),
        Event("alarm_raised", _at(offset + 1.2), 101.2 + offset, Source.REPORTED, 0.0, {}),
    ]
    results = [
        Result("Detection", "rto", Measurement(1.2), 2.4, "Detection", "a", "b", nodeid, 1.18),
        Result("Database", "rpo", Measurement(0.0), 1.2, "Database", None, None, nodeid),
        Result("client downtime", "rto", Measurement(math.inf, math.nan), None, None, test=None),
    ]
    outages = [
        OutageRecord("http://h/health", _at(offset + 0.1), _at(offset + 2.6), 2.5, 0.05, 0.05),
        OutageRecord("http://h/", _at(offset + 0.1), None, None, 0.05, 0.0),
    ]
    probes = [
        ProbeStatsRecord("http://h/health", 120, 97.5, 1.2, 3.4, 9.9),
        ProbeStatsRecord("http://h/", 3, 0.0, None, None, None),
    ]
    rpo = [RpoRecord(f"run-{nodeid}", 100, 98, 1, (42,), 1, 0.05)]
    return TestRecord(
        nodeid,
        "passed",
        4.2 + offset,
        None,
        worker,
        events,
        results,
        outages,
        probes,
        rpo,
    )


def _run(*tests: TestRecord, run_id: str = "20261129T001200Z-3fa9c1", **kw: Any) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        target=kw.pop("target", {"name": "sandbox", "kind": "sandbox"}),
        objectives=kw.pop("objectives", OBJECTIVES),
        objectives_source="docs/runbook.md",
        objectives_scale=0.02,
        started_utc=kw.pop("started_utc", T0),
        finished_utc=kw.pop("finished_utc", _at(60)),
        tests=list(tests),
        **kw,
    )


def test_round_trip_gives_the_same_report_and_the_same_records() -> None:
    run = _run(_test("suites/t.py::test_a[automated]"), _test("suites/t.py::test_b", "gw1"))
    data = json.loads(json.dumps(run_to_json(run)))  # through text, as a file holds it
    back = run_from_json(data)
    assert run_to_json(back) == data
    assert data["schema_version"] == SCHEMA_VERSION == "1.2"
    assert [t.nodeid for t in back.tests] == [t.nodeid for t in run.tests]
    assert back.tests[0].events == run.tests[0].events
    assert back.tests[1].outages == run.tests[1].outages
    assert back.tests[1].probes == run.tests[1].probes
    assert back.tests[1].rpo == run.tests[1].rpo and back.tests[1].worker == "gw1"
    detection = back.tests[0].results[0]
    assert detection == run.tests[0].results[0] and detection.truth_s == 1.18
    assert data["phases"][0]["error_ms"] == pytest.approx(20.0)
    # a non-finite figure is written as null and read back as nan; its test is its record's
    downtime = back.tests[0].results[2]
    assert math.isnan(downtime.measured.value) and downtime.test == "suites/t.py::test_a[automated]"
    assert (back.run_id, back.objectives, back.objectives_scale) == (run.run_id, OBJECTIVES, 0.02)
    assert (back.started_utc, back.finished_utc) == (run.started_utc, run.finished_utc)


def test_the_1_2_fields_round_trip_and_decide_the_verdict() -> None:
    """Verdict, exit status, interruption, lost tests, each figure's interval, truth source and
    note: written, read back, written again the same."""
    test = _test("t.py::test_a")
    test.results[0] = Result(
        "Detection",
        "rto",
        Measurement(1.2, 0.05),
        2.4,
        "Detection",
        "a",
        "b",
        "t.py::test_a",
        1.18,
        truth_source="alarm history",
        truth_uncertainty_s=0.04,
    )
    test.results[2] = Result(
        "Health Verification",
        "rto",
        Measurement(-0.4, 0.05),
        2.4,
        "Health Verification",
        note="it ends before it starts: 'b' precedes 'a' by 400 ms",
    )
    lost = TestRecord("t.py::test_b", outcome="not run", message="never ran: worker gw1 crashed")
    run = _run(test, lost, exit_status=1, interruption="worker gw1 crashed", lost=[lost.nodeid])
    data = json.loads(json.dumps(run_to_json(run)))
    assert data["run"]["verdict"] == "incomplete" == run.verdict
    assert (data["run"]["exit_status"], data["run"]["lost"]) == (1, ["t.py::test_b"])
    assert data["run"]["interruption"] == "worker gw1 crashed"
    detection, _, health = data["phases"][:3]
    assert (detection["low"], detection["high"]) == pytest.approx((1.15, 1.25))
    assert detection["truth_source"] == "alarm history"
    assert detection["truth_uncertainty"] == 0.04
    assert (health["status"], health["note"]) == ("invalid", test.results[2].note)
    assert data["tests"][1]["outcome"] == "not run"
    back = run_from_json(data)
    assert run_to_json(back) == data
    assert back.verdict == "incomplete" and back.tests[0].results[2].note == test.results[2].note


def test_a_1_1_report_gets_its_verdict_from_its_tests_and_figures() -> None:
    """A report written before verdicts were kept: no exit status, the verdict derived; a
    failed test or a missed or invalid figure is never passed."""
    data = run_to_json(_run(_test("t.py::test_a")))
    data["schema_version"] = "1.1"
    for key in ("verdict", "exit_status", "interruption", "lost"):
        del data["run"][key]
    for phase in data["phases"]:
        del phase["truth_source"], phase["note"], phase["low"], phase["high"]
        del phase["truth_uncertainty"]
    data["phases"] = [p for p in data["phases"] if p["measured"] is not None]
    back = run_from_json(data)
    assert (back.exit_status, back.lost, back.verdict) == (None, [], "passed")
    data["phases"][0]["measured"] = 3.0  # over the 2.4 s target
    assert run_from_json(data).verdict == "failed"
    data["phases"][0]["measured"] = -0.5  # a phase that ends before it starts
    assert run_from_json(data).verdict == "failed"


def test_a_1_0_report_without_workers_reads_back() -> None:
    data = run_to_json(_run(_test("t.py::test_a")))
    data["schema_version"] = "1.0"
    for test in data["tests"]:
        del test["worker"]
    for phase in data["phases"]:
        del phase["truth_s"], phase["error_ms"]
    back = run_from_json(data)
    assert back.tests[0].worker is None and back.tests[0].results[0].truth_s is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("phases"), "phases: missing"),
        (lambda d: d.update(schema_version="2.0"), "schema_version: 2.0"),
        (lambda d: d.update(schema="other"), "schema: 'other'"),
        (lambda d: d["events"][1].update(mono="soon"), "events[1].mono: 'soon' is not a number"),
        (lambda d: d["events"][0].update(source="guess"), "unknown source 'guess'"),
        (lambda d: d["phases"][0].update(test="t.py::nope"), "phases[0].test: 't.py::nope'"),
        (lambda d: d["tests"].append(dict(d["tests"][0])), "listed twice"),
        (lambda d: d["outages"][0].update(start_utc="noon"), "outages[0].start_utc"),
        (lambda d: d["rpo"][0].update(lost_ids=[True]), "rpo[0].lost_ids"),
        (lambda d: d["run"].update(dry_run=1), "run.dry_run: 1 is not a boolean"),
    ],
)
def test_a_broken_report_names_the_key(change: Any, expected: str) -> None:
    data = copy.deepcopy(run_to_json(_run(_test("t.py::test_a"))))
    change(data)
    with pytest.raises(InputError) as caught:
        run_from_json(data, where="gw3 part")
    assert caught.value.where == "gw3 part"
    assert expected in caught.value.message


def test_two_workers_parts_merge_into_one_run() -> None:
    run_id = "20261129T001200Z-3fa9c1"
    common = {"name": "sandbox", "kind": "sandbox", "timings": {"dns_ttl": 2}}
    gw10 = _run(
        _test("suites/t.py::test_f[lambda]", offset=2.0),
        target={**common, "run_dir": "/x/sandbox-gw10", "control": "127.0.0.1:31199"},
        started_utc=_at(1),
        finished_utc=_at(70),
    )
    gw2 = _run(
        _test("suites/t.py::test_f[automated]"),
        _test("suites/t.py::test_f[script]", offset=1.0),
        target={**common, "run_dir": "/x/sandbox-gw2", "control": "127.0.0.1:29599"},
        started_utc=_at(0.5),
        finished_utc=_at(65),
    )
    # through JSON, as the controller gets the parts
    parts = {w: part_from_json(w, run_to_json(r)) for w, r in {"gw10": gw10, "gw2": gw2}.items()}
    merged = merge_runs(parts)
    assert merged.run_id == run_id
    # worker order is gw2 before gw10 (not text order); each part keeps its own test order
    assert [(t.nodeid.rsplit("::", 1)[1], t.worker) for t in merged.tests] == [
        ("test_f[automated]", "gw2"),
        ("test_f[script]", "gw2"),
        ("test_f[lambda]", "gw10"),
    ]
    assert (merged.started_utc, merged.finished_utc) == (_at(0.5), _at(70))
    assert merged.target == {
        **common,
        "workers": {"gw2": dict(gw2.target), "gw10": dict(gw10.target)},
    }
    data = run_to_json(merged)
    assert len(data["phases"]) == 9 and len(data["events"]) == 9 and len(data["rpo"]) == 3
    assert {p["test"] for p in data["phases"]} == {t.nodeid for t in merged.tests}
    assert run_to_json(run_from_json(data)) == data
    md = render_markdown(merged)
    assert "- Worker gw2: run_dir /x/sandbox-gw2, control 127.0.0.1:29599" in md
    assert "passed suites/t.py::test_f[lambda] (gw10)" in md
    assert "| **Detection** | 2.4 s | 1.200 ± 0.000 s [1.200, 1.200] s (worst of 3) | met |" in md


def test_an_unfinished_part_leaves_the_run_unfinished() -> None:
    merged = merge_runs(
        {"gw0": _run(_test("t.py::a")), "gw1": _run(_test("t.py::b"), finished_utc=None)}
    )
    assert merged.finished_utc is None


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (_run(_test("t.py::b"), run_id="20261129T001300Z-000000"), "recorded run"),
        (_run(_test("t.py::a")), "test t.py::a recorded by workers gw0 and gw1"),
        (_run(_test("t.py::b"), objectives={"rto": {}, "rpo": {}}), "different objectives"),
    ],
)
def test_parts_of_different_runs_do_not_merge(second: RunRecord, expected: str) -> None:
    with pytest.raises(MergeError, match=expected):
        merge_runs({"gw0": _run(_test("t.py::a")), "gw1": second})
    with pytest.raises(MergeError, match="no report part"):
        merge_runs({})


def test_targets_keep_at_the_top_only_what_every_worker_says_alike() -> None:
    gw0 = {"kind": "sandbox", "port": 1, "only0": True}
    merged = merge_targets({"gw0": gw0, "gw1": {"kind": "sandbox", "port": 2}})
    assert merged == {
        "kind": "sandbox",
        "workers": {
            "gw0": {"kind": "sandbox", "port": 1, "only0": True},
            "gw1": {"kind": "sandbox", "port": 2},
        },
    }
