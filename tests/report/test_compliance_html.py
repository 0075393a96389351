"""``compliance-YYYY-MM.html``: written beside the markdown and the JSON by a real ``drdrill
compliance``, the month's verdict and why, objectives in the runbook's order (in the markdown
too), each run's figures, verdicts and evidence, every value escaped, nothing fetched.

The history is built as tests/report/test_history.py builds it: the sample runs of
tests/data/reports appended, edited copies beside them. The page is read structurally (no
browser here): :class:`_Page` collects each table's rows as text and checks the tags balance.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from drdrill.report.history import HistoryStore, render_compliance_html, write_compliance
from drdrill.timeline import PHASES

DATA = Path(__file__).resolve().parent.parent / "data" / "reports"
DRDRILL = str(Path(sys.executable).parent / "drdrill")
RUN_A, RUN_B, RUN_C = (
    "20261103T091500Z-a11111",
    "20261110T091500Z-b22222",
    "20261117T091500Z-c33333",
)
#: the sample runbook's rows as its tables list them: RTO, then RPO
RUNBOOK_ORDER = [*PHASES, "Database (RPO)"]
HOSTILE_ID = '20261120T000000Z-<script>alert("id")</script>&'
HOSTILE_TEST = "suites/test_x.py::test_x[<img src=x onerror=alert(1)>]"
HOSTILE_MESSAGE = "boom '\"><b>bold</b> key AKIAPLANTEDKEY123456"
HOSTILE_TARGET = "<svg onload=alert(2)>"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr"}


class _Page(HTMLParser):
    """Each table's rows (by the table's class) as lists of cell texts; the tags must nest."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.row_classes: dict[str, list[str]] = {}
        self.texts: dict[str, str] = {}  # element id -> its text
        self.open: list[str] = []
        self._table = ""
        self._cell: list[str] | None = None
        self._ids: list[tuple[str, int]] = []
        self.feed(text)
        self.close()
        assert self.open == [], f"unclosed: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open an element; a table, row or cell starts collecting."""
        attr = dict(attrs)
        if tag not in VOID:
            self.open.append(tag)
        if attr.get("id"):
            self._ids.append((str(attr["id"]), len(self.open)))
            self.texts[str(attr["id"])] = ""
        if tag == "table":
            self._table = attr.get("class") or ""
            self.tables[self._table] = []
            self.row_classes[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
            self.row_classes[self._table].append(attr.get("class") or "")
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "br":
            self.handle_data(" ")  # a line break reads as a space

    def handle_endtag(self, tag: str) -> None:
        """Close an element: it must be the one open last."""
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = ""
        self._ids = [(i, depth) for i, depth in self._ids if depth < len(self.open)]
        self.open.pop()

    def handle_data(self, data: str) -> None:
        """Text of the cell and of every element with an id it lies in."""
        if self._cell is not None:
            self._cell.append(data)
        for element, _ in self._ids:
            self.texts[element] += data

    def column(self, table: str, index: int = 0) -> list[str]:
        """One column of a table's body (its header row left out)."""
        return [row[index] for row in self.tables[table][1:]]


def _load(reports: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reports / run_id / "report.json").read_text("utf-8"))
    return data


def _files(reports: Path, run_id: str) -> list[Path]:
    return [reports / run_id / "report.json", reports / run_id / "report.md"]


def _md_objectives(markdown: str) -> list[str]:
    section = markdown.split("## Objectives over the month", 1)[1].split("\n\n", 2)[1]
    return [line.split("|")[1].strip() for line in section.splitlines()[2:]]


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """A copy of the sample reports."""
    return Path(shutil.copytree(DATA, tmp_path / "reports"))


@pytest.fixture
def history(tmp_path: Path, reports: Path) -> Path:
    """The three sample runs; first in the month, a run that measured ECS Scale-up and Database
    only (first measured, not first in the runbook); last, a run with hostile strings."""
    db = tmp_path / "history.sqlite"
    with HistoryStore(db) as store:
        for run_id in (RUN_A, RUN_B, RUN_C):
            store.append(_load(reports, run_id), _files(reports, run_id))
        early = _load(reports, RUN_A)
        early["run"].update(id="20261101T000000Z-e00000", started_utc="2026-11-01T00:00:00+00:00")
        early["phases"] = [p for p in early["phases"] if p["name"] in ("ECS Scale-up", "Database")]
        store.append(early, [])
        hostile = _load(reports, RUN_B)
        hostile["run"].update(id=HOSTILE_ID, started_utc="2026-11-20T00:00:00+00:00")
        hostile["target"] = {"name": HOSTILE_TARGET, "kind": "sandbox"}
        renamed = hostile["tests"][1]["nodeid"]
        hostile["tests"][1].update(nodeid=HOSTILE_TEST, message=HOSTILE_MESSAGE)
        for section in ("events", "phases", "outages", "probes", "rpo"):
            for item in hostile[section]:
                if item.get("test") == renamed:
                    item["test"] = HOSTILE_TEST
        store.append(hostile, _files(reports, RUN_B))
    return db


def test_drdrill_compliance_writes_the_html_beside_the_md_and_json(
    history: Path, tmp_path: Path
) -> None:
    out = tmp_path / "audit"
    done = subprocess.run(
        [DRDRILL, "compliance", "--month", "2026-11", "--db", str(history), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr  # the sample runs failed: not compliant
    page_path, md_path, js_path = (
        out / f"compliance-2026-11.{ext}" for ext in ("html", "md", "json")
    )
    lines = done.stdout.splitlines()
    assert lines[-4:-1] == [f"drdrill compliance: wrote {p}" for p in (page_path, md_path, js_path)]
    text = page_path.read_text("utf-8")
    page = _Page(text)
    md = md_path.read_text("utf-8")
    data = json.loads(js_path.read_text("utf-8"))

    # the month's verdict and why, as the markdown says it
    assert page.texts["verdict"] == md.splitlines()[0].replace("**", "")
    assert page.texts["verdict"].startswith(f"NOT COMPLIANT — run {RUN_A} failed")
    findings = page.texts["findings"]
    for finding in data["summary"]["findings"]:
        assert " ".join(finding.split()) in " ".join(findings.split())
    assert "is not accepted: it fails the month" in text  # inconclusive, as the config says

    # objectives in the runbook's order, then what it has no row for; in the markdown too
    expected = [*RUNBOOK_ORDER, "Static Assets (RPO)", "client downtime"]
    assert page.column("objectives") == expected
    assert _md_objectives(md) == [n for n in expected if n != "Static Assets (RPO)"]
    assert [o["objective"] for o in data["objectives"]][:2] == ["Detection", "Decision"]
    # each objective's target, then one cell a run: its worst figure and status
    total = next(r for r in page.tables["objectives"] if r[0] == "Total RTO")
    assert total[1:8] == ["18 s", "4", "2", "2", "0", "0", "19.250 s"]
    assert total[8:] == [
        "— not measured",  # the early run
        "6.623 s met",
        "19.250 s missed",
        "6.623 s met",
        "19.250 s missed",  # the hostile run is run B's figures
    ]
    static = page.row_classes["objectives"][expected.index("Static Assets (RPO)") + 1]
    assert "unmeasured" in static
    assert page.tables["objectives"][1][1] == "2.4 s"  # Detection, scaled by 0.02

    # the runs with their verdicts; every test, readiness checks too; the evidence
    runs = page.tables["runs"][1:]
    assert [r[0] for r in runs] == [r["id"] for r in data["runs"]]
    assert [r[3] for r in runs] == ["passed", *["failed fails the month"] * 4]
    assert len(page.tables["tests"]) - 1 == sum(len(r.tests) for r in _runs(history))
    evidence = page.tables["evidence"][1:]
    assert len(evidence) == 8  # two files a run, the early run none
    for row, stored in zip(evidence, [e for r in data["runs"] for e in r["evidence"]], strict=True):
        assert row[2] == stored["sha256"] and row[4] == "ok"
        # relative to the history's folder, which holds the reports
        assert row[1] == str(Path(stored["path"]).relative_to(tmp_path))
        assert row[1].startswith("reports/")

    # hostile strings are text, never markup; the secret in the message is masked
    assert HOSTILE_ID in page.column("runs")
    assert HOSTILE_TEST in page.column("tests", 1)
    assert HOSTILE_TARGET + " (sandbox)" in page.column("runs", 2)
    assert "&lt;script&gt;alert(&#34;id&#34;)&lt;/script&gt;&amp;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    for raw in ("<script", "<img", "<b>", "<svg onload", "onerror=alert(1)>"):
        assert raw not in text
    assert "AKIAPLANTEDKEY123456" not in text and "AKIA***" in text

    # nothing fetched: no script, stylesheet, font or image from anywhere
    for external in ("http://", "https://", "src=", "<link", "<script", "url(", "@import"):
        assert external not in text.replace("src=x onerror", "")
    assert all(href.startswith("#") for href in text.split('href="')[1:])


def _runs(db: Path) -> list[Any]:
    with HistoryStore(db) as store:
        return store.runs("2026-11")


def test_the_latest_runs_runbook_decides_the_order(
    history: Path, reports: Path, tmp_path: Path
) -> None:
    """A newer runbook that moved Total RTO up and dropped DNS Update: its order, then DNS
    Update and client downtime (no row in it) in the order first measured."""
    latest = _load(reports, RUN_C)
    latest["run"].update(id="20261125T000000Z-f00000", started_utc="2026-11-25T00:00:00+00:00")
    rto = latest["objectives"]["rto"]
    latest["objectives"]["rto"] = {
        "Total RTO": rto["Total RTO"],
        **{k: v for k, v in rto.items() if k not in ("Total RTO", "DNS Update")},
    }
    for phase in latest["phases"]:
        if phase["name"] == "DNS Update":
            phase["objective"], phase["target_s"], phase["status"] = None, None, "no objective"
    with HistoryStore(history) as store:
        store.append(latest, [])
        report = store.compliance("2026-11")
    expected = [
        "Total RTO",
        "Detection",
        "Decision",
        "RDS Promotion",
        "ECS Scale-up",
        "Health Verification",
        "Database (RPO)",
        # no row in the latest runbook: as first measured (the early run measured neither)
        "DNS Update",
        "client downtime",
    ]
    assert [o.label for o in report.objectives()] == expected
    md, _, html = write_compliance(report, tmp_path / "out")
    assert _md_objectives(md.read_text("utf-8")) == expected
    rows = _Page(html.read_text("utf-8")).column("objectives")
    assert rows == [*expected[:7], "Static Assets (RPO)", *expected[7:]]


def _valid_month(reports: Path, db: Path, inconclusive: bool) -> None:
    """Runs A and C with their Health Verification a valid span (both pass), C's lambda Total
    RTO inconclusive when asked ([17.94, 18.04] against 18 s), and a dry run."""
    with HistoryStore(db) as store:
        for run_id in (RUN_A, RUN_C):
            data = _load(reports, run_id)
            data["schema_version"] = "1.2"
            data["run"].update(exit_status=0, interruption=None, lost=[])
            for phase in data["phases"]:
                if phase["name"] == "Health Verification":
                    phase["measured"] = abs(phase["measured"])
                lambda_total = phase["name"] == "Total RTO" and phase["test"].endswith("[lambda]")
                if inconclusive and run_id == RUN_C and lambda_total:
                    phase["measured"], phase["uncertainty"] = 17.99, 0.05
            store.append(data, [])
        dry = copy.deepcopy(_load(reports, RUN_A))
        dry["run"].update(id="20261124T000000Z-088888", started_utc="2026-11-24T00:00:00+00:00")
        dry["run"]["dry_run"] = True
        dry["phases"] = []
        store.append(dry, [])


@pytest.mark.parametrize("accept", [False, True])
def test_inconclusive_runs_are_shown_as_the_config_says(
    reports: Path, tmp_path: Path, accept: bool
) -> None:
    db = tmp_path / "month.sqlite"
    _valid_month(reports, db, inconclusive=True)
    with HistoryStore(db) as store:
        report = store.compliance("2026-11", accept_inconclusive=accept)
    text = render_compliance_html(report)
    page = _Page(text)
    verdicts = dict(zip(page.column("runs"), page.column("runs", 3), strict=True))
    assert verdicts[RUN_A] == "passed"
    assert verdicts["20261124T000000Z-088888"] == "dry run not judged"
    total = next(r for r in page.tables["objectives"] if r[0] == "Total RTO")
    assert total[-3:] == ["6.623 s met", "17.990 s inconclusive", "— not measured"]
    if accept:
        assert page.texts["verdict"] == "COMPLIANT — 2 runs, all passed or inconclusive (accepted)"
        assert 'class="verdict compliant"' in text and "findings" not in page.texts
        assert verdicts[RUN_C] == "inconclusive accepted"
        assert "is accepted: it counts as compliant" in text
    else:
        assert page.texts["verdict"].startswith(f"NOT COMPLIANT — run {RUN_C} inconclusive: ")
        assert 'class="verdict not-compliant"' in text
        assert verdicts[RUN_C] == "inconclusive fails the month"
        assert "Total RTO inconclusive (17.990 ± 0.050 s vs 18 s)" in page.texts["findings"]


def test_a_month_without_runs_says_so(history: Path, tmp_path: Path) -> None:
    with HistoryStore(history) as store:
        report = store.compliance("2026-12")
    page = _Page(write_compliance(report, tmp_path)[2].read_text("utf-8"))
    assert page.texts["verdict"] == "NOT COMPLIANT — no drill ran in 2026-12"
    assert page.texts["no-runs"] == "No drill ran this month."
    assert page.tables == {}
