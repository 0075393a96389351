"""The run history: append (idempotent, two processes at once), trend, chart, compliance.

Three sample runs (tests/data/reports, made from a real sandbox run; see its README) are
appended; every expected figure below is worked out by hand from those files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drdrill.errors import DrillError, InputError
from drdrill.report.history import (
    HistoryStore,
    ObjectiveTrend,
    import_reports,
    parse_month,
    record_run,
    write_compliance,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "reports"
RUN_A, RUN_B, RUN_C = (
    "20261103T091500Z-a11111",
    "20261110T091500Z-b22222",
    "20261117T091500Z-c33333",
)
# the figures of the sample runs, by test: [automated], [script], [lambda]
TOTAL_RTO = {
    RUN_A: [2.5470158980001543, 6.623183882999911, 2.5870354085000145],
    RUN_B: [2.5470158980001543, 19.25, 2.5870354085000145],
    RUN_C: [2.5470158980001543, 6.623183882999911, 3.1],
}
DETECTION = {
    RUN_A: [1.0990807870662138, 1.3530307433770759, 1.2112711523573125],
    RUN_B: [2.05, 1.3530307433770759, 1.2112711523573125],
    RUN_C: [1.0990807870662138, 1.3530307433770759, 1.2112711523573125],
}


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """A copy of the sample reports (tests may alter the files)."""
    return Path(shutil.copytree(DATA, tmp_path / "reports"))


def _load(reports: Path, run_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reports / run_id / "report.json").read_text("utf-8"))
    return data


def _files(reports: Path, run_id: str) -> list[Path]:
    return [reports / run_id / "report.json", reports / run_id / "report.md"]


@pytest.fixture
def store(tmp_path: Path, reports: Path) -> Iterator[HistoryStore]:
    """A history with the three sample runs appended, newest first to check the ordering."""
    with HistoryStore(tmp_path / "history.sqlite") as history:
        for run_id in (RUN_C, RUN_A, RUN_B):
            history.append(_load(reports, run_id), _files(reports, run_id))
        yield history


def _by_name(trends: list[ObjectiveTrend]) -> dict[str, ObjectiveTrend]:
    return {t.label: t for t in trends}


def test_trend_of_three_runs_matches_the_figures_worked_out_by_hand(store: HistoryStore) -> None:
    trend = store.trend_of(10)
    assert [r.run_id for r in trend.runs] == [RUN_A, RUN_B, RUN_C]
    trends = _by_name(list(trend.objectives))
    assert list(trends)[:7] == [
        "Detection",
        "Decision",
        "RDS Promotion",
        "ECS Scale-up",
        "Health Verification",
        "DNS Update",
        "Total RTO",
    ]
    total = trends["Total RTO"]
    assert (total.runs, total.measurements, total.met, total.missed) == (3, 9, 2, 1)
    assert total.pass_rate == pytest.approx(2 / 3)
    # the nine figures sorted: 2.547 2.547 2.547 2.587 [2.587] 3.1 6.623 6.623 19.25
    assert total.median_s == 2.5870354085000145
    assert (total.worst_s, total.worst_run) == (19.25, RUN_B)
    assert total.target_s == 18.0
    assert total.last_status == "met"
    assert [p.measured_s for p in total.points] == [max(TOTAL_RTO[r.run_id]) for r in trend.runs]
    assert [p.status for p in total.points] == ["met", "missed", "met"]

    detection = trends["Detection"]
    assert (detection.met, detection.missed, detection.pass_rate) == (3, 0, 1.0)
    # sorted: 1.099 1.099 1.211 1.211 [1.211] 1.353 1.353 1.353 2.05
    assert detection.median_s == 1.2112711523573125
    assert (detection.worst_s, detection.worst_run) == (2.05, RUN_B)
    assert [p.measured_s for p in detection.points] == [
        max(DETECTION[r.run_id]) for r in trend.runs
    ]

    database = trends["Database (RPO)"]
    assert (database.kind, database.runs, database.pass_rate, database.worst_s) == (
        "rpo",
        3,
        1.0,
        0.0,
    )
    # a figure without an objective is followed, with no pass rate
    downtime = trends["client downtime"]
    assert (downtime.target_s, downtime.pass_rate, downtime.last_status) == (
        None,
        None,
        "no objective",
    )


def test_trend_follows_the_runbooks_order(store: HistoryStore, reports: Path) -> None:
    """An earlier run that measured only ECS Scale-up does not put it first."""
    early = _load(reports, RUN_A)
    early["run"].update(id="20261101T000000Z-e00000", started_utc="2026-11-01T00:00:00+00:00")
    early["phases"] = [p for p in early["phases"] if p["name"] in ("ECS Scale-up", "Database")]
    store.append(early, [])
    labels = [t.label for t in store.trend()]
    assert labels == [
        "Detection",
        "Decision",
        "RDS Promotion",
        "ECS Scale-up",
        "Health Verification",
        "DNS Update",
        "Total RTO",
        "client downtime",
        "Database (RPO)",
    ]
    assert store.runs("2026-11")[0].runbook[-4].label == "Database (RPO)"


def test_a_run_that_did_not_measure_an_objective_breaks_its_line(
    store: HistoryStore, reports: Path, tmp_path: Path
) -> None:
    between = _load(reports, RUN_A)
    between["run"].update(id="20261105T000000Z-e00000", started_utc="2026-11-05T00:00:00+00:00")
    between["phases"] = [p for p in between["phases"] if p["name"] == "ECS Scale-up"]
    store.append(between, [])
    charts = store.write_trend_html(tmp_path / "h.html").read_text("utf-8")
    sections = {part.split("</h2>")[0]: part for part in charts.split("<h2>")[1:]}

    def drawn(label: str) -> tuple[int, int]:
        return sections[label].count("<polyline"), sections[label].count("<circle")

    assert drawn("Detection") == (2, 3)  # A | gap | B C
    assert drawn("ECS Scale-up") == (1, 4)


def test_trend_covers_only_the_last_n_runs(store: HistoryStore) -> None:
    total = _by_name(store.trend(last_n=2))["Total RTO"]
    assert [p.run_id for p in total.points] == [RUN_B, RUN_C]
    assert (total.met, total.missed, total.pass_rate) == (1, 1, 0.5)
    assert total.median_s == pytest.approx((2.5870354085000145 + 3.1) / 2)  # 6 figures
    with pytest.raises(InputError) as info:
        store.trend(last_n=0)
    assert info.value.where == "--last"


def test_trend_can_keep_to_one_kind_of_target(store: HistoryStore, reports: Path) -> None:
    local = _load(reports, RUN_A)
    local["run"]["id"] = "20261120T000000Z-d44444"
    local["run"]["started_utc"] = "2026-11-20T00:00:00+00:00"
    local["target"] = {"name": "local", "kind": "local"}
    store.append(local, [])
    assert len(store.trend_of(10).runs) == 4
    assert [r.run_id for r in store.trend_of(10, "sandbox").runs] == [RUN_A, RUN_B, RUN_C]
    assert [r.run_id for r in store.trend_of(10, "local").runs] == ["20261120T000000Z-d44444"]


def test_appending_a_run_again_changes_nothing(store: HistoryStore, reports: Path) -> None:
    def counts() -> list[int]:
        with sqlite3.connect(store.path) as db:
            return [
                db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("runs", "tests", "results", "evidence")
            ]

    before = counts()
    assert before == [3, 9, 81, 6]  # 3 tests, 27 figures, 2 files a run
    store.append(_load(reports, RUN_B), _files(reports, RUN_B))
    assert counts() == before
    assert store.run_ids() == [RUN_A, RUN_B, RUN_C]


def test_appending_a_run_again_replaces_what_it_said(store: HistoryStore, reports: Path) -> None:
    fixed = _load(reports, RUN_B)
    for phase in fixed["phases"]:
        if phase["name"] == "Total RTO" and phase["measured"] == 19.25:
            phase["measured"], phase["status"] = 5.0, "met"
    store.append(fixed, [reports / RUN_B / "report.json"])
    total = _by_name(store.trend())["Total RTO"]
    assert (total.missed, total.worst_s, total.worst_run) == (0, 6.623183882999911, RUN_A)
    # stored relative to the history's folder: moving the folder keeps the evidence found
    assert [e.path for e in store.runs("2026-11")[1].evidence] == [
        str((reports / RUN_B / "report.json").resolve().relative_to(store.path.parent.resolve()))
    ]


def test_compliance_lists_the_months_runs_with_met_missed_and_digests(
    store: HistoryStore, reports: Path, tmp_path: Path
) -> None:
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    report = store.compliance("2026-11", now=now)
    assert [r.run_id for r in report.runs] == [RUN_A, RUN_B, RUN_C]
    # 9 figures a run: 7 RTO objectives, client downtime (no objective), Database; each run's
    # Health Verification ends before it starts (-0.020, -0.379, -0.037 s): invalid
    assert [(r.met, r.missed, r.invalid) for r in report.runs] == [(7, 0, 1), (6, 1, 1), (7, 0, 1)]
    assert (report.met, report.missed, report.invalid) == (20, 1, 3)
    # stored before verdicts were kept: derived, and an invalid figure is never passed
    assert [r.verdict for r in report.runs] == ["failed", "failed", "failed"]
    assert [r.exit_status for r in report.runs] == [None, None, None]
    assert not report.compliant
    assert report.runs[1].test_counts() == {"passed": 2, "failed": 1}
    assert "Total RTO 19.250 s > 18 s" in report.runs[1].reason
    assert "Health Verification invalid" in report.runs[0].reason
    assert [r.target_kind for r in report.runs] == ["sandbox"] * 3
    assert report.runs[0].started_utc == datetime(2026, 11, 3, 9, 15, 0, 250000, tzinfo=UTC)
    for run in report.runs:
        expected = {
            str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in _files(reports, run.run_id)
        }
        assert {e.path: e.sha256 for e in run.evidence} == expected
        assert {e.state for e in run.evidence} == {"ok"}
    month = {o.objective: o for o in report.objectives()}
    assert (month["Total RTO"].met, month["Total RTO"].missed, month["Total RTO"].worst_s) == (
        2,
        1,
        19.25,
    )

    # Static Assets (RPO, "Real-time": 0 s) is in the runbook but no drill measures it
    assert [(o.label, o.target_s) for o in report.not_measured()] == [("Static Assets (RPO)", 0.0)]

    md, js, _ = write_compliance(report, tmp_path / "out")
    assert (md.name, js.name) == ("compliance-2026-11.md", "compliance-2026-11.json")
    text = md.read_text("utf-8")
    assert "Objectives met: 20; missed: 1; inconclusive: 0; invalid: 3" in text
    assert text.startswith(f"**NOT COMPLIANT** — run {RUN_A} failed: Health Verification invalid")
    assert "Total RTO 19.250 s > 18 s" in text
    assert "no run measured this month: Static Assets (RPO) (0 s)" in text
    for run in report.runs:
        assert run.run_id in text
        for e in run.evidence:
            assert e.sha256 in text
    data = json.loads(js.read_text("utf-8"))
    assert data["summary"] == {
        "compliant": False,
        "accept_inconclusive": False,
        "findings": report.findings,
        "runs": 3,
        "runs_passed": 0,
        "runs_failed": 3,
        "runs_inconclusive": 0,
        "runs_incomplete": 0,
        "objectives_met": 20,
        "objectives_missed": 1,
        "objectives_inconclusive": 0,
        "objectives_invalid": 3,
        "evidence_problems": 0,
    }
    assert len(report.findings) == 3
    assert [r["verdict"] for r in data["runs"]] == ["failed", "failed", "failed"]
    assert data["generated_utc"] == "2026-12-01T08:00:00+00:00"
    assert data["runs"][1]["failed_tests"][0]["nodeid"].endswith("[script]")


def test_compliance_flags_a_report_changed_or_removed_since(
    store: HistoryStore, reports: Path, tmp_path: Path
) -> None:
    (reports / RUN_A / "report.md").write_text("edited afterwards\n", encoding="utf-8")
    (reports / RUN_C / "report.json").unlink()
    report = store.compliance("2026-11")
    problems = {(run_id, Path(e.path).name, e.state) for run_id, e in report.evidence_problems}
    assert problems == {(RUN_A, "report.md", "changed"), (RUN_C, "report.json", "missing")}
    md, _, _ = write_compliance(report, tmp_path)
    assert "**changed**" in md.read_text("utf-8")
    assert "**missing**" in md.read_text("utf-8")


def test_a_month_without_runs_is_an_empty_report(store: HistoryStore, tmp_path: Path) -> None:
    report = store.compliance("2026-12")
    assert (report.runs, report.met, report.missed) == ((), 0, 0)
    md, js, _ = write_compliance(report, tmp_path)
    assert "No drill ran this month." in md.read_text("utf-8")
    assert json.loads(js.read_text("utf-8"))["runs"] == []


@pytest.mark.parametrize("month", ["2026-13", "nov", "2026-1", "2026-00", "26-11", ""])
def test_a_malformed_month_is_an_input_error_naming_month(store: HistoryStore, month: str) -> None:
    with pytest.raises(InputError) as info:
        store.compliance(month)
    assert info.value.where == "--month"
    assert "YYYY-MM" in info.value.message


def test_months_are_utc_calendar_months(store: HistoryStore, reports: Path) -> None:
    assert parse_month("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    for run_id, started in (
        ("20261031T235959Z-e55555", "2026-10-31T23:59:59.999999+00:00"),
        # 00:30 in Berlin on 1 December is still November in UTC
        ("20261130T233000Z-f66666", "2026-12-01T00:30:00+01:00"),
        ("20261201T000000Z-077777", "2026-12-01T00:00:00+00:00"),
    ):
        data = _load(reports, RUN_A)
        data["run"]["id"], data["run"]["started_utc"] = run_id, started
        store.append(data, [])
    assert [r.run_id for r in store.runs("2026-10")] == ["20261031T235959Z-e55555"]
    assert [r.run_id for r in store.runs("2026-11")][-1] == "20261130T233000Z-f66666"
    assert len(store.runs("2026-11")) == 4
    assert [r.run_id for r in store.runs("2026-12")] == ["20261201T000000Z-077777"]


def test_a_dry_run_is_listed_for_compliance_but_left_out_of_the_trend(
    store: HistoryStore, reports: Path
) -> None:
    dry = _load(reports, RUN_A)
    dry["run"].update(id="20261124T000000Z-088888", started_utc="2026-11-24T00:00:00+00:00")
    dry["run"]["dry_run"] = True
    dry["phases"] = []
    store.append(dry, [])
    assert [r.run_id for r in store.trend_of(10).runs] == [RUN_A, RUN_B, RUN_C]
    listed = store.runs("2026-11")
    assert [(r.run_id, r.outcome) for r in listed][-1] == ("20261124T000000Z-088888", "dry run")


def test_trend_chart_has_one_svg_an_objective_and_nothing_external(
    store: HistoryStore, tmp_path: Path
) -> None:
    path = store.write_trend_html(tmp_path / "history.html", last_n=10)
    text = path.read_text("utf-8")
    trends = store.trend()
    assert text.count("<svg") == len(trends) == 9
    for external in ("http:", "https:", "src=", "href=", "url(", "@import", "<script", "<link"):
        assert external not in text
    # the missed point is red and says so; the target is a dashed line at 18 s
    assert f"{RUN_B} (2026-11-10 09:15 UTC): 19.250" in text
    assert 'fill="#c62828"><title>' in text
    assert text.count('stroke-dasharray="6 4"') == 8  # every objective with a target


def test_the_chart_of_an_empty_history_says_so(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as history:
        text = history.write_trend_html(tmp_path / "h.html").read_text("utf-8")
    assert "no runs yet" in text
    assert "<svg" not in text


def test_two_processes_append_at_once(tmp_path: Path) -> None:
    """Two real processes create the store and append 40 runs each into it at the same time."""
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from drdrill.report.history import HistoryStore
        db, sample, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
        data = json.loads(sample.read_text())
        sys.stdin.readline()  # both start appending together
        for i in range(40):
            with HistoryStore(db) as store:
                data["run"]["id"] = f"20261105T0000{i:02d}Z-{tag}"
                store.append(data, [sample])
        print("done")
        """
    )
    db = tmp_path / "shared.sqlite"
    sample = DATA / RUN_A / "report.json"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(db), str(sample), tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("aaaaaa", "bbbbbb")
    ]
    for p in procs:  # both are ready (imports done) and waiting: release them together
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with HistoryStore(db) as store:
        ids = store.run_ids()
    with sqlite3.connect(db) as raw:
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
    assert len(ids) == 80
    assert mode == "wal"


def test_record_run_warns_rather_than_raising(tmp_path: Path, reports: Path) -> None:
    (tmp_path / "taken").mkdir()
    warning = record_run(tmp_path / "taken", _load(reports, RUN_A), _files(reports, RUN_A))
    assert warning is not None and "run not recorded" in warning
    assert record_run(tmp_path / "h.sqlite", _load(reports, RUN_A), _files(reports, RUN_A)) is None
    with HistoryStore(tmp_path / "h.sqlite") as store:
        assert store.run_ids() == [RUN_A]


def test_append_refuses_what_is_not_a_report(tmp_path: Path, reports: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        with pytest.raises(InputError, match="schema"):
            store.append({"schema": "something else"}, [])
        with pytest.raises(InputError, match="cannot read report file"):
            store.append(_load(reports, RUN_A), [tmp_path / "absent.md"])
        assert store.run_ids() == []


def test_a_store_from_a_newer_drdrill_or_not_a_store_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    HistoryStore(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(DrillError, match="newer"):
        HistoryStore(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, it is a text file of some length" * 40)
    with pytest.raises(DrillError, match="not a drdrill history"):
        HistoryStore(junk)


def test_import_reports_appends_a_folder_of_runs(tmp_path: Path, reports: Path) -> None:
    with HistoryStore(tmp_path / "h.sqlite") as store:
        assert import_reports(store, [reports]).appended == (RUN_A, RUN_B, RUN_C)
        assert len(store.runs("2026-11")[0].evidence) == 2
        with pytest.raises(InputError, match="no such file"):
            import_reports(store, [tmp_path / "nowhere"])


def test_non_finite_figures_are_left_out(tmp_path: Path, reports: Path) -> None:
    data = copy.deepcopy(_load(reports, RUN_A))
    for phase in data["phases"]:
        if phase["name"] == "Total RTO":
            phase["measured"] = None  # run_to_json writes nan as null
    with HistoryStore(tmp_path / "h.sqlite") as store:
        store.append(data, [])
        assert "Total RTO" not in _by_name(store.trend())
        assert "Detection" in _by_name(store.trend())


def _v1_store(path: Path, reports: Path) -> None:
    """A store as drdrill wrote it before verdicts (store version 1): the old tables, each
    figure's status as judged then (a negative span "met"), no verdict."""
    from drdrill.report import history

    with sqlite3.connect(path) as db:
        db.executescript(history._SCHEMA)
        for run_id in (RUN_A, RUN_B):
            data = _load(reports, run_id)
            db.execute(
                "INSERT INTO runs VALUES (?, ?, NULL, '2026-11', 'sandbox', 'sandbox', 0, "
                "'runbook.md', 0.02, '1.1', '0.1.0', 'vm', ?)",
                (run_id, data["run"]["started_utc"][:19] + ".000000Z", "2026-12-01T00:00:00Z"),
            )
            for i, t in enumerate(data["tests"]):
                db.execute(
                    "INSERT INTO tests VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, i, t["nodeid"], t["outcome"], t["duration_s"], t["message"]),
                )
            for i, ph in enumerate(data["phases"]):
                old_status = "missed" if ph["measured"] > (ph["target_s"] or 1e9) else "met"
                db.execute(
                    "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        i,
                        ph["test"],
                        ph["name"],
                        ph["kind"],
                        ph["objective"],
                        ph["measured"],
                        ph["uncertainty"],
                        ph["unit"],
                        ph["target_s"],
                        old_status if ph["target_s"] is not None else "no objective",
                        ph["truth_s"],
                        ph["error_ms"],
                    ),
                )
        db.execute("PRAGMA user_version = 1")


def test_a_version_1_store_is_migrated_and_its_verdicts_derived(
    tmp_path: Path, reports: Path
) -> None:
    db = tmp_path / "old.sqlite"
    _v1_store(db, reports)
    with sqlite3.connect(db) as raw:
        statuses = {r[0] for r in raw.execute("SELECT status FROM results")}
    assert "invalid" not in statuses  # as the old drdrill judged them
    with HistoryStore(db) as store:
        runs = store.runs("2026-11")
        # its figures judged again: each Health Verification ends before it starts
        assert [r.invalid for r in runs] == [1, 1]
        # its verdicts derived from its tests and figures: never passed with an invalid figure
        assert [(r.run_id, r.verdict, r.exit_status) for r in runs] == [
            (RUN_A, "failed", None),
            (RUN_B, "failed", None),
        ]
        assert "Health Verification invalid" in runs[0].reason
        # and it takes new runs, with their verdicts, beside the old
        new = _load(reports, RUN_C)
        new["schema_version"] = "1.2"
        new["run"].update(verdict="failed", exit_status=1, interruption=None, lost=[])
        store.append(new, [])
        assert store.runs("2026-11")[-1].exit_status == 1
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
        assert raw.execute("SELECT COUNT(*) FROM runs WHERE verdict IS NULL").fetchone()[0] == 0


def test_a_run_stores_its_verdict_exit_status_and_lost_tests(tmp_path: Path, reports: Path) -> None:
    data = _load(reports, RUN_A)
    for phase in data["phases"]:
        if phase["name"] == "Health Verification":
            phase["measured"] = abs(phase["measured"])
    data["schema_version"] = "1.2"
    data["run"].update(exit_status=0, interruption=None, lost=[])
    with HistoryStore(tmp_path / "h.sqlite") as store:
        store.append(data, [])
        (run,) = store.runs("2026-11")
        assert (run.verdict, run.exit_status, run.reason) == ("passed", 0, "")
        # pytest's exit status decides too: a non-zero one is never passed
        data["run"]["exit_status"] = 3
        store.append(data, [])
        (run,) = store.runs("2026-11")
        assert (run.verdict, run.reason) == ("failed", "pytest exit status 3")
        # a worker crashed: its lost test named, the run incomplete
        crashed = data["tests"][1]["nodeid"]
        data["run"].update(exit_status=1, interruption="worker gw1 crashed", lost=[crashed])
        store.append(data, [])
        (run,) = store.runs("2026-11")
        assert (run.verdict, run.lost) == ("incomplete", (crashed,))
        assert run.reason == "worker gw1 crashed; lost: test_region_failover[script]"
        report = store.compliance("2026-11")
        assert report.findings == [f"run {RUN_A} incomplete: {run.reason}"]


def test_dry_runs_are_listed_but_not_judged_and_an_empty_month_is_not_compliant(
    tmp_path: Path, reports: Path
) -> None:
    dry = _load(reports, RUN_A)
    dry["run"]["dry_run"] = True
    dry["phases"] = []
    with HistoryStore(tmp_path / "h.sqlite") as store:
        store.append(dry, [])
        report = store.compliance("2026-11")
        assert [r.verdict for r in report.runs] == ["dry run"]
        assert report.findings == ["no drill ran in 2026-11"]
        assert not store.compliance("2026-10").compliant


def test_moving_the_folder_keeps_the_evidence_found(store: HistoryStore, tmp_path: Path) -> None:
    store.close()
    moved = Path(shutil.move(str(tmp_path), str(tmp_path.parent / f"{tmp_path.name}-moved")))
    try:
        with HistoryStore(moved / "history.sqlite") as history:
            report = history.compliance("2026-11", now=datetime(2026, 12, 1, tzinfo=UTC))
        states = {e.state for run in report.runs for e in run.evidence}
        assert states == {"ok"}
        assert all(e.path.startswith(str(moved)) for run in report.runs for e in run.evidence)
    finally:
        shutil.move(str(moved), str(tmp_path))  # pytest cleans up where it made it
