"""``drdrill history`` and ``drdrill compliance`` on three sample runs, and their bad input.

The commands run in this process through ``drdrill.cli.main`` (and once as a subprocess). Until
``history`` and ``compliance`` are in ``cli.COMMANDS``, the fixture below adds them for the test.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drdrill import cli
from drdrill.report.history import HistoryStore, import_reports

DATA = Path(__file__).resolve().parent / "data" / "reports"
RUNS = ["20261103T091500Z-a11111", "20261110T091500Z-b22222", "20261117T091500Z-c33333"]
NEW = ("history", "compliance")
# run through the real entry point, with the two commands registered if cli does not yet
DRDRILL = str(Path(sys.executable).parent / "drdrill")
BOOT = (
    "import sys; from drdrill import cli; "
    f"cli.COMMANDS = tuple(dict.fromkeys((*cli.COMMANDS, *{NEW!r}))); "
    "sys.exit(cli.main(sys.argv[1:]))"
)


@pytest.fixture(autouse=True)
def _commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", tuple(dict.fromkeys((*cli.COMMANDS, *NEW))))


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """A report folder with the three sample runs and a history holding them."""
    folder = Path(shutil.copytree(DATA, tmp_path / "reports"))
    with HistoryStore(folder / "history.sqlite") as store:
        assert import_reports(store, [folder]).appended == tuple(RUNS)
    return folder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_history_prints_the_trend_and_writes_the_chart(
    reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, html = reports / "history.sqlite", reports / "chart.html"
    code, out, err = _run(capsys, "history", "--db", str(db), "--html", str(html))
    assert (code, err) == (0, "")
    assert "3 runs, 2026-11-03 09:15 to 2026-11-17 09:15 UTC" in out
    total = next(line for line in out.splitlines() if "Total RTO" in line)
    # target, runs, pass rate, median, worst, worst run, last status
    for cell in ("18 s", " 3 ", "67% (2/3)", "2.587 s", "19.250 s", RUNS[1], "met"):
        assert cell in total
    detection = next(line for line in out.splitlines() if "Detection" in line)
    assert "100% (3/3)" in detection and "2.050 s" in detection
    assert out.rstrip().endswith(f"drdrill history: chart {html}")
    assert html.read_text("utf-8").count("<svg") == 9


def test_history_json_and_last(reports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = reports / "history.sqlite"
    code, out, _ = _run(
        capsys,
        "history",
        "--db",
        str(db),
        "--last",
        "2",
        "--json",
        "--html",
        str(reports / "h.html"),
    )
    assert code == 0
    data = json.loads(out)
    assert data["runs"] == RUNS[1:]
    total = next(o for o in data["objectives"] if o["objective"] == "Total RTO")
    assert (total["runs"], total["met"], total["missed"], total["pass_rate"]) == (2, 1, 1, 0.5)
    assert total["worst_s"] == 19.25


def test_history_reads_its_paths_from_the_config(
    reports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "drdrill.yaml"
    config.write_text("report_dir: reports\n", encoding="utf-8")
    code, out, _ = _run(capsys, "history", "--config", str(config))
    assert code == 0
    assert "67% (2/3)" in out
    assert (reports / "history.html").is_file()


def test_history_import_fills_a_new_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "new.sqlite"
    folder = Path(shutil.copytree(DATA, tmp_path / "reports"))
    old = folder / "20261001T000000Z-old000" / "report.json"
    old.parent.mkdir()
    old.write_text('{"schema": "drdrill.report", "schema_version": "0.9"}', encoding="utf-8")
    code, out, err = _run(
        capsys,
        "history",
        "--db",
        str(db),
        "--import",
        str(folder),
        "--html",
        str(tmp_path / "h.html"),
    )
    assert code == 0
    assert [ln for ln in out.splitlines() if "appended" in ln] == [
        f"drdrill history: appended {run_id}" for run_id in RUNS
    ]
    # a report the history cannot read is skipped, and said so; named on its own it is an error
    assert err == f"drdrill history: skipped {old}: schema_version: 0.9 (this drdrill reads 1.x)\n"
    code, out, err = _run(capsys, "history", "--db", str(db), "--import", str(old))
    assert (code, out) == (2, "")
    assert err == f"drdrill: error: {old}: schema_version: 0.9 (this drdrill reads 1.x)\n"


def test_compliance_writes_the_month_and_says_where(
    reports: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "audit"
    code, out, err = _run(
        capsys,
        "compliance",
        "--month",
        "2026-11",
        "--db",
        str(reports / "history.sqlite"),
        "--out",
        str(out_dir),
    )
    # every sample run's Health Verification ends before it starts: invalid, the run failed,
    # the month not compliant (exit status 1)
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0] == (
        "drdrill compliance 2026-11: 3 runs (0 passed, 3 failed); objectives met 20, missed 1, "
        "inconclusive 0, invalid 3"
    )
    for run_id, counts in zip(
        RUNS, ["met 7, missed 0", "met 6, missed 1", "met 7, missed 0"], strict=True
    ):
        line = next(ln for ln in lines if run_id in ln)
        assert f"sandbox (sandbox)  failed (exit -)  {counts}: " in line
        assert "Health Verification invalid" in line
    assert "Total RTO 19.250 s > 18 s" in next(ln for ln in lines if RUNS[1] in ln)
    md, js = out_dir / "compliance-2026-11.md", out_dir / "compliance-2026-11.json"
    assert lines[-3:-1] == [f"drdrill compliance: wrote {md}", f"drdrill compliance: wrote {js}"]
    assert lines[-1].startswith(f"drdrill compliance 2026-11: NOT COMPLIANT — run {RUNS[0]}")
    data = json.loads(js.read_text("utf-8"))
    digests = {e["path"]: e["sha256"] for run in data["runs"] for e in run["evidence"]}
    assert len(digests) == 6
    for path, digest in digests.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
        assert digest in md.read_text("utf-8")


def test_compliance_of_an_empty_month(reports: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A month in which no drill ran shows nothing was drilled: not compliant."""
    code, out, _ = _run(
        capsys,
        "compliance",
        "--month",
        "2027-01",
        "--db",
        str(reports / "history.sqlite"),
        "--out",
        str(reports),
        "--json",
    )
    assert code == 1
    data = json.loads(out)
    assert (data["summary"]["runs"], data["runs"]) == (0, [])
    assert data["summary"]["findings"] == ["no drill ran in 2027-01"]
    assert data["written"][0].endswith("compliance-2027-01.md")


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["compliance", "--month", "2026-13"], "--month: '2026-13' is not a month"),
        (["compliance", "--month", "nov"], "--month: 'nov' is not a month"),
        (["history", "--last", "0"], "--last: '0' is not a number of runs"),
        (["history", "--last", "ten"], "--last: 'ten' is not a number of runs"),
        (["history", "--db", "{tmp}/none.sqlite"], "--db: no history at {tmp}/none.sqlite"),
        (["compliance", "--month", "2026-11", "--db", "{tmp}/none.sqlite"], "--db: no history"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = _run(capsys, *args)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("drdrill: error: " + where.replace("{tmp}", str(tmp_path)))
    assert not (tmp_path / "none.sqlite").exists()  # looking does not create a store


def test_the_drdrill_command_runs_them(reports: Path, tmp_path: Path) -> None:
    db = str(reports / "history.sqlite")
    done = subprocess.run(
        [DRDRILL, "compliance", "--month", "2026-13", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "drdrill: error: --month: '2026-13' is not a month: use YYYY-MM, e.g. 2026-11\n"
    )
    done = subprocess.run(
        [DRDRILL, "history", "--db", db, "--html", str(tmp_path / "h.html")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "67% (2/3)" in done.stdout


# --- verdicts and compliance ---------------------------------------------------------------------


def _month(tmp_path: Path, edit: dict[str, list[tuple[str, str, float, float]]]) -> Path:
    """A history of runs A and C (their Health Verification made a valid span) with ``edit``:
    run id -> (test suffix, figure, measured, uncertainty) to set."""
    folder = Path(shutil.copytree(DATA, tmp_path / "reports"))
    db = tmp_path / "month.sqlite"
    with HistoryStore(db) as store:
        for run_id in (RUNS[0], RUNS[2]):
            path = folder / run_id / "report.json"
            data = json.loads(path.read_text("utf-8"))
            for phase in data["phases"]:
                if phase["name"] == "Health Verification":
                    phase["measured"] = abs(phase["measured"])
                for suffix, name, value, uncertainty in edit.get(run_id, []):
                    if phase["name"] == name and phase["test"].endswith(suffix):
                        phase["measured"], phase["uncertainty"] = value, uncertainty
            path.write_text(json.dumps(data), encoding="utf-8")
            store.append(data, [path])
    return db


INCONCLUSIVE = {RUNS[2]: [("[lambda]", "Total RTO", 17.99, 0.05)]}  # [17.94, 18.04] vs 18 s


def test_a_month_whose_runs_all_passed_is_compliant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _month(tmp_path, {})
    code, out, err = _run(
        capsys, "compliance", "--month", "2026-11", "--db", str(db), "--out", str(tmp_path)
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == ("drdrill compliance 2026-11: COMPLIANT — 2 runs, all passed")
    md = (tmp_path / "compliance-2026-11.md").read_text("utf-8")
    assert md.startswith("**COMPLIANT** — 2 runs, all passed")


def test_an_inconclusive_run_fails_the_month_unless_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _month(tmp_path, INCONCLUSIVE)
    base = ["compliance", "--month", "2026-11", "--db", str(db), "--out", str(tmp_path)]
    monkeypatch.chdir(tmp_path)  # no drdrill.yaml here (yet)
    code, out, _ = _run(capsys, *base)
    assert code == 1
    line = next(ln for ln in out.splitlines() if RUNS[2] in ln and "inconclusive" in ln)
    assert "Total RTO inconclusive (17.990 ± 0.050 s vs 18 s)" in line
    assert out.splitlines()[-1].startswith(
        f"drdrill compliance 2026-11: NOT COMPLIANT — run {RUNS[2]} inconclusive: "
    )
    # the flag accepts it
    code, out, _ = _run(capsys, *base, "--accept-inconclusive")
    assert code == 0
    assert out.splitlines()[-1].endswith("all passed or inconclusive (accepted)")
    # so does the config, named or found as drdrill.yaml in the current folder
    accepting = tmp_path / "accepting.yaml"
    accepting.write_text("compliance:\n  accept_inconclusive: true\n", encoding="utf-8")
    code, _, _ = _run(capsys, *base, "--config", str(accepting))
    assert code == 0
    (tmp_path / "drdrill.yaml").write_text(accepting.read_text("utf-8"), encoding="utf-8")
    code, out, _ = _run(capsys, *base, "--json")
    assert code == 0
    assert json.loads(out)["summary"]["accept_inconclusive"] is True
    (tmp_path / "drdrill.yaml").write_text(
        "compliance:\n  accept_inconclusive: false\n", encoding="utf-8"
    )
    code, _, _ = _run(capsys, *base)
    assert code == 1


def test_history_shows_each_runs_verdict_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _month(tmp_path, INCONCLUSIVE)
    code, out, _ = _run(capsys, "history", "--db", str(db), "--html", str(tmp_path / "h.html"))
    assert code == 0
    rows = {ln.split()[1]: ln for ln in out.splitlines() if ln.startswith("│ 2026")}
    assert "passed" in rows[RUNS[0]] and "inconclusive" in rows[RUNS[2]]
    code, out, _ = _run(
        capsys, "history", "--db", str(db), "--json", "--html", str(tmp_path / "h.html")
    )
    verdicts = {v["id"]: v for v in json.loads(out)["verdicts"]}
    assert verdicts[RUNS[0]]["verdict"] == "passed"
    assert verdicts[RUNS[2]]["verdict"] == "inconclusive"
    assert verdicts[RUNS[2]]["exit_status"] is None  # stored before exit statuses were kept
    page = (tmp_path / "h.html").read_text("utf-8")
    assert f"<td>{RUNS[2]}</td>" in page and '<td class="inconclusive">inconclusive</td>' in page
