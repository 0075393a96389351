"""report.md's outage table: a drill's blips on one endpoint (outages under ``report.min_outage``,
uncertainty included) make one line with their count, longest and total; real outages keep their
rows, and report.json still lists every outage.

The run is a real sandbox failover run (``tests/data/reports/sample-failover.json``) whose
``[automated]`` drill also saw an endpoint flap after the failover: its outages come from probe
samples through :func:`drdrill.probes.stats.endpoint_stats` and
:func:`drdrill.report.record.probe_records`, as a drill session makes them. Sample ``k`` is sent
at ``k * 0.05`` s (the sandbox's probe interval) and answered 2 ms later, so a one-sample blip
lasts 0.051 ± 0.051 s, a two-sample one 0.100 ± 0.052 s and a nine-sample one 0.450 ± 0.052 s.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from drdrill.config import load_config
from drdrill.probes.stats import ERROR_REFUSED, Sample, endpoint_stats
from drdrill.report.json_report import run_from_json
from drdrill.report.markdown import render_markdown
from drdrill.report.record import RunRecord, probe_records
from drdrill.session import DrillSession, WorkerPart, write_merged_reports, write_run_reports

from .drill_project import CONFIG, RUNBOOK

SAMPLE = Path(__file__).parent.parent / "data" / "reports" / "sample-failover.json"
DRILL = "suites/test_region_failover.py::test_region_failover[automated]"
#: the endpoint that flaps, beside the drill's real 2.541 s outage on it
FLAPPING = "http://app.visitor-analytics.test:28280/health-simple.php"
#: an endpoint with one blip only: a lone blip keeps its row
ONCE = "http://app.visitor-analytics.test:28280/"
INTERVAL = 0.05
#: after the failover: 8 one-sample and 4 two-sample blips, and a 9-sample outage whose
#: duration (0.450 s) is under 0.5 s but whose uncertainty takes it over
FLAPS = "...." + "x...." * 4 + "xx...." * 2 + "xxxxxxxxx...." + "x...." * 4 + "xx...." * 2
BLIPS = 12
LONGEST = "0.100 s"
TOTAL = "0.808 s"  # 8 x 0.051 + 4 x 0.100


def _samples(pattern: str, epoch0: float) -> list[Sample]:
    """A sample an interval from ``epoch0``: ``.`` good, ``x`` refused."""
    return [
        Sample(
            due_mono=k * INTERVAL,
            send_mono=k * INTERVAL,
            send_epoch=epoch0 + k * INTERVAL,
            status=None if mark == "x" else 200,
            latency_s=0.002,
            error=ERROR_REFUSED if mark == "x" else None,
        )
        for k, mark in enumerate(pattern)
    ]


def _outages(endpoint: str, pattern: str, epoch0: float) -> list[dict[str, Any]]:
    """The outages a drill session records from these samples, as report.json has them."""
    _, outages = probe_records([endpoint_stats(endpoint, endpoint, _samples(pattern, epoch0))])
    return [{"test": DRILL, **o.to_json()} for o in outages]


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    """The real run's report.json, its ``[automated]`` drill with the flapping endpoint's
    outages after the failover (every other outage as the run recorded it)."""
    loaded: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    long = next(o for o in loaded["outages"] if (o["test"], o["endpoint"]) == (DRILL, FLAPPING))
    after = datetime.fromisoformat(long["end_utc"]).timestamp() + 1.0
    at = loaded["outages"].index(long) + 1
    loaded["outages"][at:at] = [
        *_outages(FLAPPING, FLAPS, after),
        *_outages(ONCE, "....x....", after),
    ]
    return loaded


@pytest.fixture(scope="module")
def run(data: dict[str, Any]) -> RunRecord:
    return run_from_json(data)


def _outage_rows(md: str) -> list[str]:
    """The body rows of report.md's outage table."""
    section = md.split("## Outages (client-observed)", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")][1:]


def _rows_of(rows: list[str], endpoint: str) -> list[str]:
    return [r for r in rows if r.startswith(f"| {DRILL} | {endpoint} |")]


def test_blips_of_an_endpoint_make_one_line_and_real_outages_keep_their_rows(
    run: RunRecord, data: dict[str, Any]
) -> None:
    md = render_markdown(run)
    rows = _outage_rows(md)
    flapping = _rows_of(rows, FLAPPING)
    assert len(flapping) == 3, flapping
    real, merged, near = flapping
    # the drill's real outage, as the run recorded it
    assert (
        "| 2026-11-29T01:18:32.322443+00:00 | 2026-11-29T01:18:34.863560+00:00 | 2.541 s |" in real
    )
    # the twelve blips on one line, from the first's start to the last's end
    assert f"| {BLIPS} blips under 0.5 s (longest {LONGEST}, total {TOTAL}) | |" in merged
    blips = [o for o in data["outages"] if o["endpoint"] == FLAPPING and o["duration_s"] < 0.2]
    assert len(blips) == BLIPS
    first, last = blips[0]["start_utc"], blips[-1]["end_utc"]
    assert merged.startswith(f"| {DRILL} | {FLAPPING} | {first} | {last} | ")
    # under 0.5 s, but not once its uncertainty is counted: a row of its own
    assert "| 0.450 ± 0.052 s |" in near
    # a lone blip keeps its own row
    (once,) = [r for r in _rows_of(rows, ONCE) if "| 2.551 s |" not in r]
    assert "| 0.051 ± 0.051 s |" in once
    # the other drills' outages, every one a real outage, one row each
    others = [o for o in data["outages"] if o["test"] != DRILL]
    assert len(rows) == len(others) + 6 + 3
    assert "`report.min_outage`" in md.split("## Outages", 1)[1]
    # the table's header is as short as it was
    header = "| Test | Endpoint | Start (UTC) | End (UTC) | Duration | Boundary uncertainty |"
    assert header in md


def test_the_merged_line_sums_what_report_json_lists(run: RunRecord, tmp_path: Path) -> None:
    """Nothing is hidden: report.json keeps every outage, and report.md's line counts them."""
    json_path, md_path, _ = write_run_reports(run, tmp_path)
    listed = [
        o
        for o in json.loads(json_path.read_text(encoding="utf-8"))["outages"]
        if (o["test"], o["endpoint"]) == (DRILL, FLAPPING)
    ]
    assert len(listed) == 1 + BLIPS + 1
    blips = [o for o in listed if o["duration_s"] + (o["duration_uncertainty_s"] or 0.0) < 0.5]
    longest = max(o["duration_s"] for o in blips)
    total = sum(o["duration_s"] for o in blips)
    assert (f"{longest:.3f} s", f"{total:.3f} s") == (LONGEST, TOTAL)
    line = f"{len(blips)} blips under 0.5 s (longest {longest:.3f} s, total {total:.3f} s)"
    assert line in md_path.read_text(encoding="utf-8")


def test_min_outage_0_lists_every_outage(run: RunRecord, data: dict[str, Any]) -> None:
    md = render_markdown(run, 0.0)
    rows = _outage_rows(md)
    assert len(rows) == len(data["outages"])
    assert "blips" not in md
    assert len(_rows_of(rows, FLAPPING)) == 1 + BLIPS + 1
    assert sum("| 0.051 ± 0.051 s |" in r for r in rows) == 8 + 1


def test_a_run_without_blips_reads_as_before() -> None:
    """The real run as it was recorded: every outage a row, no note."""
    real = run_from_json(json.loads(SAMPLE.read_text(encoding="utf-8")))
    md = render_markdown(real)
    assert md == render_markdown(real, 0.0)
    assert len(_outage_rows(md)) == sum(len(t.outages) for t in real.tests)
    assert "blips" not in md


def test_report_min_outage_from_the_config_reaches_report_md(
    run: RunRecord, tmp_path: Path
) -> None:
    """``report.min_outage`` in drdrill.yaml: the session's report.md, and with pytest-xdist the
    controller's, from the worker's part."""
    (tmp_path / "runbook.md").write_text(RUNBOOK, encoding="utf-8")
    config = tmp_path / "drdrill.yaml"
    config.write_text(CONFIG + "report:\n  min_outage: 120ms\n", encoding="utf-8")
    assert load_config(config).report.min_outage == pytest.approx(0.12)

    session = DrillSession.open(config, run_id=run.run_id)
    session.run.tests.extend(run.tests)
    md = next(p for p in session.write_reports() if p.name == "report.md")
    # the two-sample blips (0.100 ± 0.052 s) are over 0.12 s: only the one-sample ones merge
    line = "8 blips under 0.12 s (longest 0.051 s, total 0.408 s)"
    assert line in md.read_text(encoding="utf-8")

    part = WorkerPart.from_wire(session.part().to_wire())
    assert part.min_outage_s == pytest.approx(0.12)
    merged_dir = tmp_path / "merged"
    part = WorkerPart(part.report, str(merged_dir), None, None, part.min_outage_s)
    _, written = write_merged_reports({"gw0": part})
    merged_md = next(p for p in written if p.name == "report.md").read_text(encoding="utf-8")
    assert re.search(r"\| 8 blips under 0\.12 s \(longest 0\.051 s, total 0\.408 s\) \|", merged_md)
