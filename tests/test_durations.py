"""Tests for drdrill.durations: runbook duration text -> seconds."""

from __future__ import annotations

import math

import pytest

from drdrill.durations import (
    MAX_DURATION_TEXT,
    duration_seconds,
    format_seconds,
    is_real_time,
    parse_duration,
    parse_duration_range,
)
from drdrill.errors import DurationError, InputError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2 minutes", 120.0),
        ("15 minutes", 900.0),
        ("1 minute", 60.0),
        ("90s", 90.0),
        ("45 sec", 45.0),
        ("45 secs", 45.0),
        ("30 seconds", 30.0),
        ("1.5 minutes", 90.0),
        ("4 min", 240.0),
        ("4 mins", 240.0),
        ("5 min.", 300.0),
        ("0.5 hours", 1800.0),
        ("1h", 3600.0),
        ("1 hour", 3600.0),
        ("2 hrs", 7200.0),
        ("2 hr", 7200.0),
        ("500ms", 0.5),
        ("250 milliseconds", 0.25),
        ("1 day", 86400.0),
        (".5 min", 30.0),
        ("< 30 seconds", 30.0),
        ("<30s", 30.0),
        ("<= 5 min", 300.0),
        ("≤ 5 min", 300.0),
        ("&lt; 5 min", 300.0),
        ("~2 minutes", 120.0),
        ("≈ 2 minutes", 120.0),
        ("under 5 minutes", 300.0),
        ("within 10 minutes", 600.0),
        ("up to 1 hour", 3600.0),
        ("Real-time", 0.0),
        ("realtime", 0.0),
        ("real time", 0.0),
        ("REAL-TIME", 0.0),
        ("**15 minutes**", 900.0),
        ("  **2   Minutes**  ", 120.0),
        ("1h 30m", 5400.0),
        ("1h30m", 5400.0),
        ("1 min, 30 s", 90.0),
        ("1 hour and 15 minutes", 4500.0),
        ("0 seconds", 0.0),
    ],
)
def test_parse_duration_accepts_runbook_forms(text: str, seconds: float) -> None:
    assert parse_duration(text, "runbook.md:1") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["N/A", "n/a", "NA", "none", "-", "\u2014", "\u2013", "**N/A**"])
def test_parse_duration_no_objective_is_none(text: str) -> None:
    assert parse_duration(text, "runbook.md:1") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3 fortnights", "unknown duration unit 'fortnights' in '3 fortnights'"),
        ("2 minutes 3 parsecs", "unknown duration unit 'parsecs' in '2 minutes 3 parsecs'"),
        ("30", "missing unit in duration '30'"),
        ("1.5", "missing unit in duration '1.5'"),
        ("2 minutes 3", "missing unit in duration '2 minutes 3'"),
        ("", "empty duration (write 'N/A' for no objective)"),
        ("   ", "empty duration (write 'N/A' for no objective)"),
        ("soon", "not a duration: 'soon'"),
        ("> 5 min", "not a duration: '> 5 min'"),
        ("2 minutes, roughly", "not a duration: '2 minutes, roughly'"),
        ("-5 min", "negative duration '-5 min'"),
        ("1-3 minutes", "'1-3 minutes' is a range, not a single duration"),
        ("**10-20 minutes**", "'10-20 minutes' is a range, not a single duration"),
    ],
)
def test_parse_duration_rejects_with_short_message(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text, "runbook.md:42")
    assert info.value.where == "runbook.md:42"
    assert info.value.message == message
    assert str(info.value) == f"runbook.md:42: {message}"
    # The CLI turns every InputError into one line and exit status 2.
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-3 minutes", (60.0, 180.0)),
        ("5-60 minutes", (300.0, 3600.0)),
        ("**10-20 minutes**", (600.0, 1200.0)),
        ("1 \u2013 2 hours", (3600.0, 7200.0)),
        ("1 to 3 minutes", (60.0, 180.0)),
        ("30s-2min", (30.0, 120.0)),
        ("30 s - 2 min", (30.0, 120.0)),
        ("2 minutes", (120.0, 120.0)),
        ("< 30 seconds", (0.0, 30.0)),
        ("≤ 1 min", (0.0, 60.0)),
        ("~45 s", (45.0, 45.0)),
        ("Real-time", (0.0, 0.0)),
    ],
)
def test_parse_duration_range_reads_actual_column(text: str, expected: tuple[float, float]) -> None:
    assert parse_duration_range(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["N/A", "", "junk", "3-1 minutes", "1-3 fortnights", "1-3", "> 5 min", "1h30m-2"]
)
def test_parse_duration_range_unreadable_is_none(text: str) -> None:
    assert parse_duration_range(text) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(120, 120.0), (0, 0.0), (1.5, 1.5), ("2 minutes", 120.0), ("N/A", None), (None, None)],
)
def test_duration_seconds_takes_numbers_as_seconds(
    value: str | float | int | None, seconds: float | None
) -> None:
    assert duration_seconds(value, "drdrill.yaml: objectives.rto.Detection") == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "not a duration: True"),
        (-1, "duration must be a finite number >= 0, got -1"),
        (math.inf, "duration must be a finite number >= 0, got inf"),
        (math.nan, "duration must be a finite number >= 0, got nan"),
        ("3 fortnights", "unknown duration unit 'fortnights' in '3 fortnights'"),
        ("30", "missing unit in duration '30'"),
    ],
)
def test_duration_seconds_rejects_bad_values(value: str | float | int, message: str) -> None:
    where = "drdrill.yaml: objectives.rto.Detection"
    with pytest.raises(DurationError) as info:
        duration_seconds(value, where)
    assert (info.value.where, info.value.message) == (where, message)


def test_duration_seconds_rejects_non_scalar_from_yaml() -> None:
    with pytest.raises(DurationError, match=r"not a duration: \[1, 2\]"):
        duration_seconds([1, 2], "drdrill.yaml: objectives.rpo.Database")  # type: ignore[arg-type]


def test_format_seconds() -> None:
    assert format_seconds(120.0) == "120 s"
    assert format_seconds(0.5) == "0.5 s"
    assert format_seconds(None) == "n/a"


# --- long input: refused fast, quoted short ------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x" * 5000,
        "2 " + "m" * 5000,
        "1s" * 2500,
        "1" * 5000 + " minutes",
        "1-" * 2500,
        "< " * 2500,
        "1 to " * 1000,
    ],
    ids=["letters", "long-unit", "many-parts", "long-number", "dashes", "bounds", "to-to"],
)
def test_long_duration_text_is_refused_quoting_80_characters(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text, "runbook.md:42")
    message = info.value.message
    quoted = message.split("'")[1]
    assert len(quoted) == 80 and quoted.endswith("...")
    assert message.endswith(f"characters, a duration is at most {MAX_DURATION_TEXT})")
    assert len(str(info.value)) < 200
    assert parse_duration_range(text) is None


def test_duration_text_under_the_cap_still_reads() -> None:
    text = "approximately 1 day, 2 hours, 30 minutes and 15 seconds"
    assert parse_duration(text, "r.md:1") == 86400 + 2 * 3600 + 30 * 60 + 15
    padded = "**" * 500 + "2   minutes" + " " * 5000  # bold markers and spaces do not count
    assert parse_duration(padded, "r.md:1") == 120.0


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("3 " + "f" * 150, "unknown duration unit 'fffffffffffffffff...' in '3 fff"),
        ("1 " * 90, "missing unit in duration '1 1 1"),
        ("-" + "5 min " * 30, "negative duration '-5 min"),
        ("1-" + "3" * 150 + " minutes", "'1-333"),
    ],
)
def test_error_lines_quote_at_most_80_characters(text: str, start: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text, "r.md:1")
    assert info.value.message.startswith(start)
    for quoted in info.value.message.split("'")[1::2]:
        assert len(quoted) <= 80
    assert "..." in info.value.message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (366 * 86400 + 1, "duration 31622401 s is over a year: not an objective"),
        (1e300, "duration 1e+300 s is over a year: not an objective"),
        (10**400, "duration must be a finite number >= 0, got a number of about 401 digits"),
        (-(10**400), "duration must be a finite number >= 0, got a number of about 401 digits"),
        (list(range(10_000)), "not a duration: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13"),
    ],
)
def test_duration_seconds_refuses_huge_numbers_in_one_short_line(
    value: object, message: str
) -> None:
    with pytest.raises(DurationError) as info:
        duration_seconds(value, "drdrill.yaml: objectives.rto.Detection")  # type: ignore[arg-type]
    assert info.value.message.startswith(message)
    assert len(info.value.message) < 120


@pytest.mark.parametrize(
    ("text", "real_time"),
    [
        ("Real-time", True),
        ("**realtime**", True),
        (" real   time ", True),
        ("0 seconds", False),
        ("N/A", False),
        ("real-time-ish", False),
    ],
)
def test_is_real_time(text: str, real_time: bool) -> None:
    assert is_real_time(text) is real_time
