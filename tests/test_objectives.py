"""Tests for drdrill.objectives and the ``drdrill objectives`` command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from drdrill.durations import parse_duration
from drdrill.errors import ConfigError, DurationError, InputError, RunbookError, quote
from drdrill.objectives import (
    MAX_SCALE,
    MIN_SCALE,
    Objective,
    Objectives,
    _atx_heading,
    checked_scale,
    parse_runbook,
    parse_runbook_text,
    scale_problem,
)

DATA = Path(__file__).parent / "data" / "runbooks"
SEED = DATA / "seed-style.md"  # laid out like a team's runbook: mojibake emoji, matrix first
DRDRILL = Path(sys.executable).parent / "drdrill"

SEED_RTO = {
    "Detection": 120.0,
    "Decision": 180.0,
    "RDS Promotion": 180.0,
    "ECS Scale-up": 120.0,
    "Health Verification": 120.0,
    "DNS Update": 300.0,
    "Total RTO": 900.0,
}
SEED_RPO = {
    "Database": 60.0,
    "Static Assets": 0.0,
    "Application State": None,
    "Configuration": None,
}


def line_of(path: Path, fragment: str) -> int:
    """1-based number of the only line of ``path`` containing ``fragment``."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if fragment in line]
    assert len(hits) == 1, hits
    return hits[0]


def runbook(rto_heading: str = "### Recovery Time Objectives", table: str | None = None) -> str:
    """A small runbook text with the given RTO heading and table."""
    table = table or (
        "| Component | Target RTO | Actual RTO | Notes |\n"
        "|-----------|------------|------------|-------|\n"
        "| **Detection** | 2 minutes | 1-3 minutes | Automated |\n"
        "| **Total RTO** | **15 minutes** | **10-20 minutes** | End-to-end |\n"
    )
    return f"# Runbook\n\n{rto_heading}\n\n{table}\n"


# --- the seed runbook ---------------------------------------------------------------------------


def test_seed_runbook_objectives() -> None:
    objectives = parse_runbook(SEED)
    assert {name: o.target_s for name, o in objectives.rto.items()} == SEED_RTO
    assert list(objectives.rto) == list(SEED_RTO)  # table order kept
    assert {name: o.target_s for name, o in objectives.rpo.items()} == SEED_RPO
    total = objectives.rto["Total RTO"]
    assert total.target_text == "15 minutes"
    assert total.actual == "10-20 minutes"
    assert total.notes == "End-to-end"
    assert total.source == f"{SEED}:{line_of(SEED, '**Total RTO**')}"
    database = objectives.rpo["Database"]
    assert (database.kind, database.actual, database.notes) == (
        "rpo",
        "< 30 seconds",
        "Read replica lag",
    )
    # The escalation matrix ("< 5 minutes" response times) comes first and must not be read.
    assert objectives.get("rto", "P1 - Critical") is None


# --- sample runbooks ----------------------------------------------------------------------------


def test_shop_runbook_skips_escalation_matrix_and_code_fence() -> None:
    path = DATA / "shop-runbook.md"
    objectives = parse_runbook(path)
    assert {name: o.target_s for name, o in objectives.rto.items()} == {
        "Alarm": 90.0,
        "Promote Replica": 240.0,
        "Warm Pool Scale-up": 90.0,
        "DNS Flip": 60.0,
        "Total RTO": 600.0,
    }
    assert {name: o.target_s for name, o in objectives.rpo.items()} == {
        "Orders DB": 5.0,
        "Images": 0.0,
        "Sessions": None,
    }
    scale_up = objectives.rto["Warm Pool Scale-up"]
    assert scale_up == Objective(
        kind="rto",
        component="Warm Pool Scale-up",
        target_s=90.0,
        target_text="1.5 minutes",
        actual="1-2 min",
        notes="ASG warm pool",
        source=f"{path}:{line_of(path, 'Warm Pool Scale-up')}",
    )
    assert objectives.rto["Total RTO"].actual == "6-9 minutes"
    assert objectives.source == str(path)


def test_real_emoji_headings_and_phase_column() -> None:
    objectives = parse_runbook(DATA / "real-emoji.md")
    assert {n: o.target_s for n, o in objectives.rto.items()} == {
        "Detection": 60.0,
        "Total RTO": 300.0,
    }
    assert {n: o.target_s for n, o in objectives.rpo.items()} == {"Ledger DB": 1800.0}


def test_tables_without_outer_pipes() -> None:
    objectives = parse_runbook(DATA / "no-outer-pipes.md")
    assert objectives.to_json() == {
        "rto": {
            "Detection": {"target_s": 45.0, "actual": None, "notes": "Queue depth alarm"},
            "Worker Restart": {"target_s": 7200.0, "actual": None, "notes": "Manual"},
            "Total RTO": {"target_s": 10800.0, "actual": None, "notes": "Slow on purpose"},
        },
        "rpo": {
            "Queue": {"target_s": 0.5, "actual": "~200ms", "notes": ""},
            "Dead Letters": {"target_s": 3600.0, "actual": "none lost", "notes": ""},
        },
    }


# --- headings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "heading",
    [
        "### Recovery Time Objectives",
        "### Recovery Time Objective",
        "### recovery time objectives",
        "## 🎯 Recovery Time Objectives",
        "## ⏱️ Recovery Time Objectives",
        "### ðŸŽ¯ Recovery Time Objectives",
        # latin-1 keeps the bytes cp1252 leaves undefined (0x8F) as C1 control characters
        "### " + "⏱️".encode().decode("latin-1") + " Recovery Time Objectives",
        "### RTO",
        "### RTOs",
        "### RTO Targets",
        "### Recovery Time Objectives (RTO)",
        "### 5.2 Recovery Time Objectives:",
        "### Recovery-Time Objectives ###",
        "# Recovery Time Objectives",
    ],
)
def test_rto_heading_variants(heading: str) -> None:
    objectives = parse_runbook_text(runbook(heading), "runbook.md")
    assert list(objectives.rto) == ["Detection", "Total RTO"]
    assert objectives.rto["Total RTO"].target_s == 900.0
    assert objectives.rto["Detection"].source == "runbook.md:7"


@pytest.mark.parametrize(
    "heading",
    [
        "### Recovery Time",
        "### Objectives",
        "### Targets",
        "### RTO and RPO",
        "### Escalation Decision Matrix",
        "### Recovery Point Objectives",
        "#Recovery Time Objectives",  # no space: not a heading in CommonMark
        "Recovery Time Objectives",
    ],
)
def test_other_headings_are_not_rto(heading: str) -> None:
    with pytest.raises(RunbookError) as info:
        parse_runbook_text(runbook(heading), "runbook.md")
    assert str(info.value) == "runbook.md: no recovery time objectives table found"


def test_heading_and_table_inside_code_fence_ignored() -> None:
    text = (
        "# Runbook\n"
        "~~~~markdown\n"
        "### Recovery Time Objectives\n"
        "| Component | Target RTO |\n"
        "|---|---|\n"
        "| Fake | 1 minute |\n"
        "~~~\n"  # shorter than the opening fence: does not close it
        "~~~~\n"
        "### Recovery Time Objectives\n"
        "| Component | Target RTO |\n"
        "|---|---|\n"
        "| Real | 2 minutes |\n"
    )
    objectives = parse_runbook_text(text, "r.md")
    assert list(objectives.rto) == ["Real"]
    assert objectives.rto["Real"].source == "r.md:12"


def test_escalation_matrix_first_and_rto_table_in_later_section() -> None:
    text = (
        "## Immediate Response\n"
        "### Escalation Decision Matrix\n"
        "| Severity | Criteria | Response Time | Target Response | Action |\n"
        "|---|---|---|---|---|\n"
        "| P1 | Outage | < 5 minutes | 5 minutes | Activate DR |\n"
        "## Objectives\n"
        "### Recovery Time Objectives\n"
        "Some words first.\n"
        "#### Measured by drdrill\n"
        "| Component | Target RTO |\n"
        "|---|---|\n"
        "| Detection | 2 minutes |\n"
    )
    objectives = parse_runbook_text(text, "r.md")
    # The table in a sub-section is still under the RTO heading; the matrix before it never is.
    assert {n: o.target_s for n, o in objectives.rto.items()} == {"Detection": 120.0}
    assert objectives.rpo == {}


def test_heading_without_table_is_an_error_at_its_line() -> None:
    text = (
        "# Runbook\n"
        "## Recovery Time Objectives\n"
        "See the spreadsheet.\n"
        "## Escalation\n"
        "| Severity | Target Response |\n"
        "|---|---|\n"
        "| P1 | 5 minutes |\n"
    )
    with pytest.raises(RunbookError) as info:
        parse_runbook_text(text, "r.md")
    assert str(info.value) == "r.md:2: no table under heading 'Recovery Time Objectives'"


def test_later_rto_heading_with_table_is_used() -> None:
    text = (
        "## RTO\nTo be written.\n"
        "## Recovery Time Objectives\n"
        "| Component | Target |\n|---|---|\n| Total RTO | 10 min |\n"
    )
    assert parse_runbook_text(text, "r.md").rto["Total RTO"].target_s == 600.0


# --- table shapes -------------------------------------------------------------------------------


def test_alignment_colons_whitespace_bold_and_escaped_pipe() -> None:
    table = (
        "  |  Service  |  Notes  |  **Target**  |\n"
        "  | :-------- | :---: | --: |\n"
        "  |  **DB \\| primary**  |  one\\|two  |  **<= 5 min**  |\n"
    )
    objectives = parse_runbook_text(runbook(table=table), "r.md")
    db = objectives.rto["DB | primary"]
    assert (db.target_s, db.target_text, db.notes, db.actual) == (
        300.0,
        "<= 5 min",
        "one|two",
        None,
    )


def test_component_column_found_by_name_not_position() -> None:
    table = "| Target RTO | Notes | Phase |\n|---|---|---|\n| 3 minutes | slow | Decision |\n"
    objectives = parse_runbook_text(runbook(table=table), "r.md")
    assert objectives.rto["Decision"].target_s == 180.0
    assert objectives.rto["Decision"].notes == "slow"


def test_empty_actual_is_none_and_table_ends_at_blank_line() -> None:
    table = (
        "| Component | Target RTO | Actual RTO | Notes |\n"
        "|---|---|---|---|\n"
        "| Detection | 2 minutes |  | |\n"
        "\n"
        "| Not | part | of | it |\n"
    )
    objectives = parse_runbook_text(runbook(table=table), "r.md")
    assert list(objectives.rto) == ["Detection"]
    assert objectives.rto["Detection"].actual is None
    assert objectives.rto["Detection"].notes == ""


def test_missing_rpo_table_gives_empty_rpo() -> None:
    objectives = parse_runbook_text(runbook(), "r.md")
    assert objectives.rpo == {}
    assert objectives.to_json()["rpo"] == {}


@pytest.mark.parametrize(
    ("table", "where", "message"),
    [
        (
            "| Component | Actual RTO |\n|---|---|\n| Detection | 2 minutes |\n",
            "r.md:5",
            "recovery time objectives table has no target column (columns: Component, Actual RTO)",
        ),
        (
            "| Component | Target RTO | Notes |\n|---|---|\n| Detection | 2 minutes | x |\n",
            "r.md:6",
            "alignment row has 2 cells, header has 3",
        ),
        (
            "| Component | Target RTO |\n|---|---|\n| Detection | 2 minutes | extra |\n",
            "r.md:7",
            "row has 3 cells, header has 2",
        ),
        (
            "| Component | Target RTO |\n|---|---|\n| Detection | 2 minutes |\n|  | 3 minutes |\n",
            "r.md:8",
            "row has no component",
        ),
        (
            "| Component | Target RTO |\n|---|---|\n"
            "| Detection | 2 min |\n| **detection** | 3 min |\n",
            "r.md:8",
            "component 'detection' given twice (first at line 7)",
        ),
        (
            "| Component | Target RTO |\n|---|---|\n| Detection |  |\n",
            "r.md:7",
            "empty duration (write 'N/A' for no objective)",
        ),
        (
            "| Component | Target RTO |\n|---|---|\n",
            "r.md:5",
            "recovery time objectives table has no rows",
        ),
        (
            "| Target RTO |\n|---|\n| 2 minutes |\n",
            "r.md:5",
            "recovery time objectives table needs a component and a target column",
        ),
    ],
)
def test_bad_tables_name_file_and_line(table: str, where: str, message: str) -> None:
    # RunbookError, or DurationError for a bad target: both InputError, one line from the CLI.
    with pytest.raises(InputError) as info:
        parse_runbook_text(runbook(table=table), "r.md")
    assert (info.value.where, info.value.message) == (where, message)


def test_bad_duration_in_rpo_table_names_its_line() -> None:
    text = runbook() + (
        "### Recovery Point Objectives\n\n"
        "| Data Type | Target RPO |\n|---|---|\n| Database | 3 fortnights |\n"
    )
    with pytest.raises(DurationError) as info:
        parse_runbook_text(text, "r.md")
    assert str(info.value) == "r.md:14: unknown duration unit 'fortnights' in '3 fortnights'"


def test_sample_bad_runbooks() -> None:
    with pytest.raises(RunbookError, match=r"bad-row\.md:8: row has 3 cells, header has 4$"):
        parse_runbook(DATA / "bad-row.md")
    with pytest.raises(DurationError, match=r"bad-unit\.md:8: unknown duration unit 'fortnights'"):
        parse_runbook(DATA / "bad-unit.md")
    with pytest.raises(RunbookError, match=r"no-rto\.md: no recovery time objectives table found$"):
        parse_runbook(DATA / "no-rto.md")


def test_unreadable_runbooks(tmp_path: Path) -> None:
    missing = tmp_path / "missing.md"
    with pytest.raises(RunbookError) as info:
        parse_runbook(missing)
    assert str(info.value) == f"{missing}: cannot read runbook: no such file or directory"
    with pytest.raises(RunbookError, match=r"runbook is a directory, not a file to read"):
        parse_runbook(tmp_path)
    latin1 = tmp_path / "latin1.md"
    latin1.write_bytes("# Runbook \xe9\n".encode("latin-1"))
    with pytest.raises(RunbookError, match=r"latin1\.md: runbook is not utf-8 text \(byte 10\)"):
        parse_runbook(latin1)


def test_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "windows.md"
    path.write_bytes(("\ufeff" + runbook()).replace("\n", "\r\n").encode("utf-8"))
    assert parse_runbook(path).rto["Detection"].target_s == 120.0


# --- Objectives methods -------------------------------------------------------------------------


@pytest.fixture
def shop() -> Objectives:
    return parse_runbook(DATA / "shop-runbook.md")


def test_get_ignores_case_and_spacing(shop: Objectives) -> None:
    assert shop.get("rto", "dns flip") is shop.rto["DNS Flip"]
    assert shop.get("rto", "  TOTAL   rto ") is shop.rto["Total RTO"]
    assert shop.get("rpo", "orders db") is shop.rpo["Orders DB"]
    assert shop.get("rpo", "DNS Flip") is None
    assert shop.get("rto", "Detection") is None
    with pytest.raises(ValueError, match="unknown objective kind 'mttr'"):
        shop.get("mttr", "x")  # type: ignore[arg-type]


def test_scaled_multiplies_targets_and_records_factor(shop: Objectives) -> None:
    fast = shop.scaled(0.1)
    assert fast.scale == pytest.approx(0.1)
    assert fast.rto["Total RTO"].target_s == pytest.approx(60.0)
    assert fast.rpo["Orders DB"].target_s == pytest.approx(0.5)
    assert fast.rpo["Sessions"].target_s is None
    assert fast.rto["Total RTO"].target_text == "10 minutes"  # what the runbook says, unscaled
    assert list(fast.rto) == list(shop.rto)
    assert shop.rto["Total RTO"].target_s == 600.0  # the original is untouched
    assert fast.scaled(0.5).scale == pytest.approx(0.05)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale factor must be a number > 0 and <= 1000"):
            shop.scaled(bad)


def test_with_overrides_replaces_and_adds(shop: Objectives) -> None:
    out = shop.with_overrides(
        rto={"dns flip": "2 minutes", "Failback": 1800, "Total RTO": None},
        rpo={"Sessions": 1.5},
        where="drdrill.yaml",
    )
    dns = out.rto["DNS Flip"]  # matched case-insensitively, name kept as in the runbook
    assert (dns.target_s, dns.target_text, dns.actual, dns.notes) == (
        120.0,
        "2 minutes",
        "~45 s",
        "TTL 30 s",
    )
    assert dns.source == "drdrill.yaml: objectives.rto.dns flip"
    assert out.rto["Failback"] == Objective(
        "rto", "Failback", 1800.0, "1800", None, "", "drdrill.yaml: objectives.rto.Failback"
    )
    assert list(out.rto) == [*shop.rto, "Failback"]
    assert out.rto["Total RTO"].target_s is None
    assert out.rpo["Sessions"].target_s == 1.5
    assert out.rpo["Orders DB"] == shop.rpo["Orders DB"]
    assert shop.rto["DNS Flip"].target_s == 60.0  # the original is untouched


def test_with_overrides_errors_name_the_key(shop: Objectives) -> None:
    with pytest.raises(DurationError) as info:
        shop.with_overrides(rto={"Alarm": "3 fortnights"}, rpo={}, where="drdrill.yaml")
    assert str(info.value) == (
        "drdrill.yaml: objectives.rto.Alarm: unknown duration unit 'fortnights' in '3 fortnights'"
    )
    with pytest.raises(ConfigError, match=r"objectives\.rpo\.images: component given twice"):
        shop.with_overrides(rto={}, rpo={"Images": 1, "images": 2}, where="drdrill.yaml")
    with pytest.raises(ConfigError, match=r"drdrill.yaml: objectives.rto: empty component name"):
        shop.with_overrides(rto={" ": 1}, rpo={}, where="drdrill.yaml")


def test_objectives_are_immutable(shop: Objectives) -> None:
    with pytest.raises(FrozenInstanceError):
        shop.source = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        shop.rto["New"] = shop.rto["Alarm"]  # type: ignore[index]
    table = {"A": shop.rto["Alarm"]}
    built = Objectives(rto=table, rpo={}, source="s")
    table["B"] = shop.rto["Alarm"]
    assert list(built.rto) == ["A"]  # a copy, not a view of the caller's dict


def test_to_json_shape(shop: Objectives) -> None:
    data = shop.to_json()
    assert list(data) == ["rto", "rpo"]
    assert list(data["rto"]) == [
        "Alarm",
        "Promote Replica",
        "Warm Pool Scale-up",
        "DNS Flip",
        "Total RTO",
    ]
    assert data["rpo"]["Sessions"] == {
        "target_s": None,
        "actual": "N/A",
        "notes": "Rebuilt on login",
    }
    assert json.loads(json.dumps(data)) == data


# --- the command, end to end --------------------------------------------------------------------


def drdrill(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the installed console script."""
    return subprocess.run(
        [str(DRDRILL), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_seed_json() -> None:
    result = drdrill("objectives", SEED, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert {n: v["target_s"] for n, v in data["rto"].items()} == SEED_RTO
    assert {n: v["target_s"] for n, v in data["rpo"].items()} == SEED_RPO
    assert data["rto"]["DNS Update"] == {
        "target_s": 300.0,
        "actual": "5-60 minutes",
        "notes": "TTL dependent",
    }
    assert result.stdout.startswith('{\n  "rto": {\n    "Detection": {')  # indent 2


def test_cli_text_table_and_scale() -> None:
    result = drdrill("objectives", DATA / "shop-runbook.md", "--scale", "0.5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "targets scaled by 0.5" in lines[0]
    total = next(line for line in lines if line.strip().startswith("Total RTO"))
    assert total.split()[2:7] == ["10", "minutes", "300", "s", "6-9"]
    sessions = next(line for line in lines if line.strip().startswith("Sessions"))
    assert "n/a" in sessions.split()


def test_cli_scale_with_json() -> None:
    result = drdrill("objectives", DATA / "real-emoji.md", "--json", "--scale", "0.1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rto"]["Total RTO"]["target_s"] == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [DATA / "bad-row.md"],
            f"drdrill: error: {DATA / 'bad-row.md'}:8: row has 3 cells, header has 4",
        ),
        (
            [DATA / "bad-unit.md", "--json"],
            f"drdrill: error: {DATA / 'bad-unit.md'}:8: "
            "unknown duration unit 'fortnights' in '3 fortnights'",
        ),
        (
            [DATA / "no-rto.md"],
            f"drdrill: error: {DATA / 'no-rto.md'}: no recovery time objectives table found",
        ),
        (
            [DATA / "missing.md"],
            f"drdrill: error: {DATA / 'missing.md'}: "
            "cannot read runbook: no such file or directory",
        ),
        (
            [DATA / "shop-runbook.md", "--scale", "0"],
            "drdrill: error: --scale: scale factor must be a number > 0 and <= 1000, got '0'",
        ),
        (
            [DATA / "shop-runbook.md", "--scale", "fast"],
            "drdrill: error: --scale: scale factor must be a number > 0 and <= 1000, got 'fast'",
        ),
    ],
)
def test_cli_bad_input_one_line_exit_2(args: list[str | Path], expected: str) -> None:
    result = drdrill("objectives", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [expected]
    assert "Traceback" not in result.stderr


RTO_TABLE = """## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Detection** | 2 minutes | | alarm |
| **Decision** | 3 minutes | | on-call |
| **Total RTO** | 15 minutes | | end to end |
"""


def test_a_row_that_lost_its_pipes_is_an_error_at_its_line() -> None:
    # today's GFM: a line without a pipe right under a table's rows is a row of one cell
    text = RTO_TABLE.replace("| **Decision** | 3 minutes | | on-call |", "**Decision** 3 minutes")
    with pytest.raises(RunbookError) as raised:
        parse_runbook_text(text, "rb.md")
    assert str(raised.value) == "rb.md:6: row has 1 cells, header has 4"


def test_only_newlines_end_lines() -> None:
    # a form feed and U+2028 inside the intro keep the table's line numbers right
    text = "# Runbook\nintro\x0cmore\u2028text\n\n" + RTO_TABLE.replace("| **Decision** |", "| |")
    with pytest.raises(RunbookError) as raised:
        parse_runbook_text(text, "rb.md")
    assert str(raised.value).startswith("rb.md:9: ")
    crlf = parse_runbook_text(RTO_TABLE.replace("\n", "\r\n"), "rb.md")
    assert crlf.rto["Total RTO"].target_s == 900


@pytest.mark.parametrize(
    "hidden",
    [
        "<!--\n" + RTO_TABLE.replace("15 minutes", "1 minutes") + "-->\n",
        "\n".join(
            "    " + line for line in RTO_TABLE.replace("15 minutes", "1 minutes").split("\n")
        ),
    ],
    ids=["html-comment", "indented-code"],
)
def test_tables_markdown_does_not_render_are_not_read(hidden: str) -> None:
    objectives = parse_runbook_text(hidden + "\n" + RTO_TABLE, "rb.md")
    assert objectives.rto["Total RTO"].target_s == 900  # not the hidden table's 60 s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("maximum 2 minutes", 120.0),
        ("max 2 minutes", 120.0),
        ("max. 2 minutes", 120.0),
        ("approximately 2 minutes", 120.0),
        ("approx. 2 minutes", 120.0),
        ("about 2 minutes", 120.0),
    ],
)
def test_bounds_and_approximations_read_the_same_whatever_the_word(
    text: str, seconds: float
) -> None:
    # "max" once took the start of "maximum" and left "imum 2 minutes", which failed
    assert parse_duration(text, "rb.md:5") == seconds


def test_a_target_longer_than_a_year_is_a_typo() -> None:
    with pytest.raises(DurationError) as raised:
        parse_duration("1" + "0" * 80 + " minutes", "rb.md:5")
    assert str(raised.value) == (
        f"rb.md:5: duration '{'1' + '0' * 36}...' is over a year: not an objective"
    )
    assert len(str(raised.value)) < 100


def test_no_scale_makes_a_target_infinite() -> None:
    objectives = parse_runbook_text(RTO_TABLE, "rb.md")
    for factor in (1e308, math.inf, math.nan, 0.0, 1001.0):
        with pytest.raises(ValueError, match="scale factor"):
            objectives.scaled(factor)
    assert objectives.scaled(1000.0).rto["Total RTO"].target_s == 900_000


# --- pathological input: linear time, short one-line errors -------------------------------------

MIB = 1 << 20
TABLE = "| Component | Target RTO |\n|---|---|\n| Detection | 2 minutes |\n"
OK = {"Detection": 120.0}
# Each input runs in its own `drdrill objectives` process with a generous timeout: the fixed
# reader takes well under a second on any of them, the quadratic heading regex it replaced took
# 1.6 s on 10,000 spaces, 5.7 s on 20,000 and hours on a megabyte. 20 s tells the two apart on a
# loaded shared machine without asserting a wall-clock limit (which would be flaky there).
GENEROUS_TIMEOUT_S = 20.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("### Recovery Time" + " " * MIB + "Objectives  ###  \n\n" + TABLE, OK),
        ("## RTO\n\n" + TABLE + "\n### Notes" + " " * MIB + "x\n", OK),
        ("#" * MIB + "\n\n## RTO\n\n" + TABLE, OK),
        ("# " + "#" * MIB + "\n\n## RTO\n\n" + TABLE, OK),
        ("# " * (MIB // 2) + "\n\n## RTO\n\n" + TABLE, OK),
        (" " * MIB + "\n## RTO\n\n" + TABLE, OK),
        ("|" * MIB + "\n" + "|" * MIB + "\n\n## RTO\n\n" + TABLE, OK),
        ("| " * (MIB // 2) + "\n" + "|-" * (MIB // 2) + "\n\n## RTO\n\n" + TABLE, OK),
        ("## RTO\n\n" + TABLE.replace("| Detection |", "| Detection" + " " * MIB + "|"), OK),
        ("## RTO " + "-" * MIB + "\n\ntext\n", "1: no table under heading 'RTO -----"),
        ("## RTO\n\n" + TABLE.replace("2 minutes", "x" * MIB), "5: not a duration: 'xxxxx"),
        ("## RTO\n\n" + TABLE.replace("2 minutes", "1s" * (MIB // 2)), "5: not a duration: '1s1s"),
        ("## RTO\n\n" + TABLE.replace("2 minutes", "1" * MIB + " min"), "5: not a duration: '111"),
        ("## RTO\n\n" + TABLE.replace("2 minutes", "2 " + "m" * MIB), "5: not a duration: '2 mmm"),
        ("## RTO\n\n" + TABLE.replace("2 minutes", "1-" * (MIB // 2)), "5: not a duration: '1-1-"),
        (
            "## RTO\n\n" + TABLE.replace("Detection", "D" * MIB) + "| " + "d" * MIB + " | 1 s |\n",
            "6: component 'ddddd",
        ),
        (
            "## RTO\n\n| " + "C" * MIB + " | Actual |\n|---|---|\n| x | 1 s |\n",
            "3: recovery time objectives table has no target column (columns: CCCCC",
        ),
    ],
    ids=[
        "heading-1MiB-spaces",
        "later-heading-1MiB-spaces",
        "line-1MiB-hashes",
        "heading-of-1MiB-hashes",
        "line-of-hash-space",
        "line-1MiB-spaces",
        "lines-1MiB-pipes",
        "table-of-1MiB-pipes",
        "cell-1MiB-spaces",
        "heading-1MiB-no-table",
        "target-1MiB",
        "target-1MiB-parts",
        "target-1MiB-digits",
        "target-1MiB-unit",
        "target-1MiB-dashes",
        "component-1MiB-twice",
        "header-1MiB",
    ],
)
def test_megabyte_lines_are_read_or_refused_in_one_short_line(
    tmp_path: Path, text: str, expected: dict[str, float] | str
) -> None:
    path = tmp_path / "rb.md"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [str(DRDRILL), "objectives", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=GENEROUS_TIMEOUT_S,
        check=False,
    )
    if isinstance(expected, dict):
        assert result.returncode == 0, result.stderr[:500]
        data = json.loads(result.stdout)
        assert {n.split()[0]: v["target_s"] for n, v in data["rto"].items()} == expected
    else:
        assert result.returncode == 2
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith(f"drdrill: error: {path}:{expected}")
        assert len(line) < 250  # input quoted at most ~80 characters, once or twice
        assert "..." in line


# --- error lines quote at most 80 characters ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("3 fortnights", 80, "3 fortnights"),
        ("x" * 80, 80, "x" * 80),
        ("x" * 81, 80, "x" * 77 + "..."),
        ("x" * MIB, 80, "x" * 77 + "..."),
        ("abcdef", 5, "ab..."),
        ("tab\there\x0cand\u2028", 80, "tab\\there\\x0cand\\u2028"),
        ("\x00" * 30, 80, "\\x00" * 19 + "..."),  # escapes count towards the limit
        ("🎯 RTO", 80, "🎯 RTO"),
    ],
)
def test_quote(text: str, limit: int, shown: str) -> None:
    assert quote(text, limit) == shown
    assert len(quote(text, limit)) <= limit


def long_message(text: str, source: str = "r.md") -> str:
    """The message of the InputError parsing ``text`` raises."""
    with pytest.raises(InputError) as info:
        parse_runbook_text(text, source)
    return str(info.value)


def assert_quotes_are_short(message: str, count: int) -> None:
    """``message`` quotes ``count`` cut pieces of input, each at most 80 characters."""
    assert "\n" not in message
    assert message.count("...") == count
    for quoted in message.split("'")[1::2]:
        assert len(quoted) <= 80


def test_long_cells_units_and_headings_are_quoted_short() -> None:
    cell = "x" * 5000
    # before: the whole cell, quoted twice for a long unit: a 10 KB line
    message = long_message(runbook(table=TABLE.replace("2 minutes", "2 " + cell)))
    assert message.startswith("r.md:7: not a duration: '2 xxx")
    assert message.endswith("...' (5002 characters, a duration is at most 200)")
    assert_quotes_are_short(message, 1)
    message = long_message(runbook(table=TABLE.replace("2 minutes", "2 " + "y" * 150)))
    assert message.startswith("r.md:7: unknown duration unit 'yyyyyyyyyyyyyyyyy...' in '2 yyy")
    assert_quotes_are_short(message, 2)
    message = long_message(runbook(table=TABLE.replace("Detection", cell) + f"| {cell} | 1 s |\n"))
    assert message == f"r.md:8: component '{'x' * 77}...' given twice (first at line 7)"
    message = long_message(runbook(table=f"| {cell} | x |\n|---|---|\n| a | 2 min |\n"))
    assert message.startswith("r.md:5: recovery time objectives table has no target column")
    assert_quotes_are_short(message, 1)
    table = f"| Target | {cell} |\n|---|---|\n| 2 min |  |\n"
    message = long_message(runbook(table=table))
    assert message == f"r.md:7: row has no {'x' * 77}..."
    message = long_message(f"## Recovery Time Objectives {'-' * 5000} (RTO)\n\nsoon\n")
    assert message == f"r.md:1: no table under heading 'Recovery Time Objectives {'-' * 52}...'"


def test_long_override_keys_are_quoted_short(shop: Objectives) -> None:
    key = "K" * 5000
    with pytest.raises(DurationError) as info:
        shop.with_overrides(rto={key: "soon"}, rpo={}, where="drdrill.yaml")
    assert str(info.value) == f"drdrill.yaml: objectives.rto.{'K' * 77}...: not a duration: 'soon'"
    with pytest.raises(ConfigError) as config_info:
        shop.with_overrides(rto={key: 1, key.lower(): 2}, rpo={}, where="drdrill.yaml")
    assert_quotes_are_short(str(config_info.value), 2)


# --- targets are finite and at least 1 ms ("Real-time" is 0 s on purpose) -------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("0 minutes", "target '0 minutes' is zero, which no drill meets"),
        ("**0 s**", "target '0 s' is zero, which no drill meets"),
        ("< 0 seconds", "target '< 0 seconds' is zero, which no drill meets"),
        ("0.0000001 seconds", "target '0.0000001 seconds' is under 1 ms, finer than any drill"),
        ("0.5 ms", "target '0.5 ms' is under 1 ms, finer than any drill measures"),
        ("1e-7 seconds", "unknown duration unit 'e' in '1e-7 seconds'"),  # no exponents
        ("400 days", "duration '400 days' is over a year: not an objective"),
    ],
)
def test_zero_and_sub_millisecond_targets_are_refused(target: str, message: str) -> None:
    text = runbook(table=TABLE.replace("2 minutes", target))
    with pytest.raises(DurationError) as info:
        parse_runbook_text(text, "r.md")
    assert info.value.where == "r.md:7"
    assert info.value.message.startswith(message)


@pytest.mark.parametrize(
    ("target", "seconds"),
    [("1 ms", 0.001), ("1 msec", 0.001), ("Real-time", 0.0), ("**realtime**", 0.0), ("N/A", None)],
)
def test_smallest_targets_taken(target: str, seconds: float | None) -> None:
    text = runbook(table=TABLE.replace("2 minutes", target))
    assert parse_runbook_text(text, "r.md").rto["Detection"].target_s == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "target 0 s is zero, which no drill meets (write 'N/A' for no objective)"),
        (0.0, "target 0.0 s is zero, which no drill meets (write 'N/A' for no objective)"),
        (1e-7, "target 1e-07 s is under 1 ms, finer than any drill measures"),
        ("0 minutes", "target '0 minutes' is zero, which no drill meets"),
        (math.inf, "duration must be a finite number >= 0, got inf"),
        (1e300, "duration 1e+300 s is over a year: not an objective"),
    ],
)
def test_override_targets_are_finite_and_at_least_1_ms(
    shop: Objectives, value: str | float, message: str
) -> None:
    with pytest.raises(DurationError) as info:
        shop.with_overrides(rto={"Alarm": value}, rpo={}, where="drdrill.yaml")
    assert info.value.where == "drdrill.yaml: objectives.rto.Alarm"
    assert info.value.message.startswith(message)
    out = shop.with_overrides(rto={"Alarm": 0.001}, rpo={"Images": "Real-time"}, where="c.yaml")
    assert (out.rto["Alarm"].target_s, out.rpo["Images"].target_s) == (0.001, 0.0)


# --- the scale factor has a floor as it has a ceiling -------------------------------------------


def test_scale_floor(shop: Objectives) -> None:
    for factor in (1e-320, 5e-324, 9.99e-7):
        with pytest.raises(ValueError) as info:
            shop.scaled(factor)
        assert str(info.value) == f"scale factor must be at least 1e-06, got {factor!r}"
    smallest = shop.scaled(MIN_SCALE)
    assert smallest.rto["Total RTO"].target_s == pytest.approx(600 * MIN_SCALE)
    assert scale_problem(MIN_SCALE) is None and scale_problem(MAX_SCALE) is None
    assert checked_scale(0.02) == 0.02


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--scale", "1e-320"], "--scale: scale factor must be at least 1e-06, got '1e-320'"),
        (["--scale", "1e-7", "--json"], "--scale: scale factor must be at least 1e-06, got '1e-7'"),
        (
            ["--scale", "9" * 5000],
            f"--scale: scale factor must be a number > 0 and <= 1000, got '{'9' * 77}...'",
        ),
        (["--json"], "{rb}:7: target '0 minutes' is zero, which no drill meets"),
    ],
)
def test_cli_refuses_tiny_scales_and_zero_targets(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    path = tmp_path / "zero.md"
    path.write_text(runbook(table=TABLE.replace("2 minutes", "0 minutes")), encoding="utf-8")
    result = drdrill("objectives", path, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("drdrill: error: " + expected.format(rb=path))


def test_config_scale_floor(tmp_path: Path) -> None:
    from drdrill.config import load_config

    config = tmp_path / "drdrill.yaml"
    config.write_text("objectives: {scale: 1.0e-320}\n")  # YAML 1.1 floats need a dot
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert str(info.value) == (
        f"{config}:1: objectives.scale: scale factor must be at least 1e-06, got 1e-320"
    )
    config.write_text("objectives: {scale: 1.0e-6}\n")
    assert load_config(config).objectives.scale == MIN_SCALE


# --- ATX headings, read linearly ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("# RTO", (1, "RTO")),
        ("   ###### RTO", (6, "RTO")),
        ("    # RTO", None),  # 4 spaces: indented code
        ("####### RTO", None),
        ("#RTO", None),
        ("#", (1, "")),
        ("## ", (2, "")),
        ("### ###", (3, "")),
        ("## RTO ##", (2, "RTO")),
        ("## RTO ##   ", (2, "RTO")),
        ("## RTO\t#\t", (2, "RTO")),
        ("## C#", (2, "C#")),
        ("## RTO ## x", (2, "RTO ## x")),
        ("## RTO \\##", (2, "RTO \\##")),
        ("##\tRecovery" + " " * 1000 + "Time #", (2, "Recovery" + " " * 1000 + "Time")),
    ],
)
def test_atx_headings(line: str, heading: tuple[int, str] | None) -> None:
    assert _atx_heading(line) == heading


def test_a_pipe_escaped_after_a_backslash_is_still_literal() -> None:
    table = "| Component | Target |\n|---|---|\n| a\\\\|b | 2 min |\n| c\\|\\|d | 1 min |\n"
    assert list(parse_runbook_text(runbook(table=table), "r.md").rto) == ["a\\|b", "c||d"]
