"""Durations as runbooks write them ("2 minutes", "< 30 seconds", "90s", "Real-time") -> seconds.

One parser for the whole harness; seconds as ``float`` inside. Decisions:

- "N/A", "n/a", "NA", "none", "-" and dashes mean *no objective* and give ``None``.
- An empty string is an error, not ``None``: a blank target cell is more often a slip than a
  statement, and a missing objective would silently never fail. Write "N/A" to mean none.
- A bound ("< 30 seconds", "<= 5 min", "≤ 5 min", "~2 minutes", "under 5 min") means its value.
- "Real-time", "realtime" and "real time" mean 0 seconds.
- A bare number ("30") is rejected in text: a runbook cell must say its unit. A number that
  arrives *as a number* (from YAML) is taken as seconds by :func:`duration_seconds`.
- Several parts add up: "1h 30m", "1 min 30 s".
- A range ("1-3 minutes") is not a single duration; :func:`parse_duration_range` reads it.
"""

from __future__ import annotations

import math
import re
from typing import Final

from drdrill.errors import DurationError

#: unit as written (lower case, trailing dot dropped) -> seconds in one unit.
UNITS: Final[dict[str, float]] = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}

_NO_OBJECTIVE: Final = frozenset({"n/a", "na", "none", "-", "--", "\u2013", "\u2014"})
_REAL_TIME: Final = frozenset({"real-time", "realtime", "real time"})

# Upper bounds ("< 30 seconds") and approximations ("~2 minutes") both mean their value as a
# target; a range reads an upper bound as (0, value). Longest alternatives first.
# the longer words first, and whole words only: "max" must not take the start of "maximum"
_UPPER_BOUND: Final = re.compile(
    r"^(?:<=|=<|\u2264|<|&lt;=|&le;|&lt;"
    r"|(?:under|within|up to|less than|at most|maximum|max\.?)(?![a-z]))\s*"
)
_ABOUT: Final = re.compile(r"^(?:~|\u2248|(?:about|approximately|approx\.?|around)(?![a-z]))\s*")
#: no objective is longer than a year: a longer "target" is a typo (an 80-digit number)
MAX_DURATION_S: Final = 366 * 86400.0
_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([^\W\d_]+\.?)?")
_SEPARATOR: Final = re.compile(r"\s*(?:,|\band\b|\+)?\s*")
_RANGE: Final = re.compile(r"^(.+?)\s*(?:-|\u2013|\u2014|\bto\b)\s*(.+)$")
_BARE_NUMBER: Final = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")


def _clean(text: str) -> str:
    """Bold markers and surrounding space dropped, space runs collapsed, lower case."""
    return " ".join(text.replace("**", "").replace("__", " ").split()).lower()


def _sum_parts(body: str, text: str, where: str) -> float:
    """Seconds in ``body`` ("1 min 30 s"); ``text`` is what the user wrote, for messages."""
    total = 0.0
    pos = 0
    parts = 0
    while pos < len(body):
        if parts:
            separator = _SEPARATOR.match(body, pos)
            if separator is not None:
                pos = separator.end()
            if pos >= len(body):
                break
        part = _PART.match(body, pos)
        if part is None:
            raise DurationError(where, f"not a duration: '{text}'")
        number, unit = part.group(1), part.group(2)
        if unit is None:
            raise DurationError(where, f"missing unit in duration '{text}'")
        unit_key = unit.rstrip(".")
        if unit_key not in UNITS:
            raise DurationError(where, f"unknown duration unit '{unit_key}' in '{text}'")
        total += float(number) * UNITS[unit_key]
        parts += 1
        pos = part.end()
    if parts == 0:
        raise DurationError(where, f"not a duration: '{text}'")
    return total


def parse_duration(text: str, where: str) -> float | None:
    """Seconds in a runbook duration ("2 minutes", "< 30 seconds", "Real-time"); None for "N/A".

    ``where`` names the file and line (or config key) for the :class:`DurationError` raised on
    anything else.
    """
    shown = " ".join(text.replace("**", "").split())
    body = _clean(text)
    if not body:
        raise DurationError(where, "empty duration (write 'N/A' for no objective)")
    if body in _NO_OBJECTIVE:
        return None
    if body in _REAL_TIME:
        return 0.0
    if _BARE_NUMBER.match(body):
        raise DurationError(where, f"missing unit in duration '{shown}'")
    if body.startswith("-"):
        raise DurationError(where, f"negative duration '{shown}'")
    bound = _UPPER_BOUND.match(body) or _ABOUT.match(body)
    if bound is not None:
        body = body[bound.end() :]
    try:
        seconds = _sum_parts(body, shown, where)
    except DurationError:
        # A range fails the strict parse on its dash; say so rather than "not a duration".
        if bound is None and _RANGE.match(body) and parse_duration_range(text) is not None:
            raise DurationError(where, f"'{shown}' is a range, not a single duration") from None
        raise
    if not seconds <= MAX_DURATION_S:  # also NaN
        raise DurationError(where, f"duration '{shown[:40]}' is over a year: not an objective")
    return seconds


def parse_duration_range(text: str) -> tuple[float, float] | None:
    """(low, high) seconds in an observed figure ("1-3 minutes", "< 30 seconds"), or None.

    Never raises: the Actual column of a runbook is informative text, kept raw anyway. A single
    duration gives (value, value); an upper bound gives (0, value); "Real-time" gives (0, 0);
    "N/A" and anything unreadable give None. The low end may omit the unit ("1-3 minutes").
    """
    body = _clean(text)
    if not body or body in _NO_OBJECTIVE:
        return None
    if body in _REAL_TIME:
        return (0.0, 0.0)
    where = "range"  # never shown: every DurationError is caught below
    try:
        upper = _UPPER_BOUND.match(body)
        if upper is not None:
            return (0.0, _sum_parts(body[upper.end() :], text, where))
        about = _ABOUT.match(body)
        if about is not None:
            value = _sum_parts(body[about.end() :], text, where)
            return (value, value)
        span = _RANGE.match(body)
        if span is not None:
            low_text, high_text = span.group(1), span.group(2)
            if _BARE_NUMBER.match(low_text):
                unit = _PART.fullmatch(high_text)
                if unit is None or unit.group(2) is None:
                    return None
                low_text = f"{low_text} {unit.group(2)}"
            low = _sum_parts(low_text, text, where)
            high = _sum_parts(high_text, text, where)
            return (low, high) if low <= high else None
        value = _sum_parts(body, text, where)
        return (value, value)
    except DurationError:
        return None


def duration_seconds(value: str | float | int | None, where: str) -> float | None:
    """Seconds in a config value: a number is seconds, a string is parsed, None means none.

    A YAML ``Detection: 120`` arrives as an int and is 120 s; ``Detection: 2 minutes`` as text.
    """
    if value is None:
        return None
    # bool is an int subclass; "Detection: yes" is a mistake, not 1 second.
    if isinstance(value, bool):
        raise DurationError(where, f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise DurationError(where, f"duration must be a finite number >= 0, got {value!r}")
        return seconds
    if isinstance(value, str):
        return parse_duration(value, where)
    raise DurationError(where, f"not a duration: {value!r}")


def format_seconds(seconds: float | None) -> str:
    """A short human form of a duration in seconds: "120 s", "0.5 s", "n/a"."""
    if seconds is None:
        return "n/a"
    return f"{seconds:g} s"
