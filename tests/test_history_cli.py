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
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        "drdrill compliance 2026-11: 3 runs (2 passed, 1 failed); objectives met 23, missed 1"
    )
    for run_id, outcome, counts in zip(
        RUNS,
        ["passed", "failed", "passed"],
        ["met 8, missed 0", "met 7, missed 1", "met 8, missed 0"],
        strict=True,
    ):
        line = next(ln for ln in lines if run_id in ln)
        assert f"sandbox (sandbox)  {outcome}  {counts}" in line
    md, js = out_dir / "compliance-2026-11.md", out_dir / "compliance-2026-11.json"
    assert lines[-2:] == [f"drdrill compliance: wrote {md}", f"drdrill compliance: wrote {js}"]
    data = json.loads(js.read_text("utf-8"))
    digests = {e["path"]: e["sha256"] for run in data["runs"] for e in run["evidence"]}
    assert len(digests) == 6
    for path, digest in digests.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
        assert digest in md.read_text("utf-8")


def test_compliance_of_an_empty_month(reports: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert code == 0
    data = json.loads(out)
    assert (data["summary"]["runs"], data["runs"]) == (0, [])
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
