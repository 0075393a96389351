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
- Text over :data:`MAX_DURATION_TEXT` characters is not a duration: no runbook writes one that
  long, and the cap keeps a pasted megabyte from costing more than a glance.
- Error lines quote the input through :func:`drdrill.errors.quote` (at most 80 characters).
"""

from __future__ import annotations

import math
import re
from typing import Final

from drdrill.errors import DurationError, quote

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
#: the longest duration text read (after bold markers and space runs are dropped):
#: "approximately 1 day, 2 hours, 30 minutes and 15 seconds" is 55
MAX_DURATION_TEXT: Final = 200
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
            raise DurationError(where, f"not a duration: '{quote(text)}'")
        number, unit = part.group(1), part.group(2)
        if unit is None:
            raise DurationError(where, f"missing unit in duration '{quote(text)}'")
        unit_key = unit.rstrip(".")
        if unit_key not in UNITS:
            raise DurationError(
                where, f"unknown duration unit '{quote(unit_key, 20)}' in '{quote(text)}'"
            )
        total += float(number) * UNITS[unit_key]
        parts += 1
        pos = part.end()
    if parts == 0:
        raise DurationError(where, f"not a duration: '{quote(text)}'")
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
    if len(body) > MAX_DURATION_TEXT:
        raise DurationError(
            where,
            f"not a duration: '{quote(shown)}' ({len(body)} characters, "
            f"a duration is at most {MAX_DURATION_TEXT})",
        )
    if body in _NO_OBJECTIVE:
        return None
    if body in _REAL_TIME:
        return 0.0
    if _BARE_NUMBER.match(body):
        raise DurationError(where, f"missing unit in duration '{quote(shown)}'")
    if body.startswith("-"):
        raise DurationError(where, f"negative duration '{quote(shown)}'")
    bound = _UPPER_BOUND.match(body) or _ABOUT.match(body)
    if bound is not None:
        body = body[bound.end() :]
    try:
        seconds = _sum_parts(body, shown, where)
    except DurationError:
        # A range fails the strict parse on its dash; say so rather than "not a duration".
        if bound is None and _RANGE.match(body) and parse_duration_range(text) is not None:
            raise DurationError(
                where, f"'{quote(shown)}' is a range, not a single duration"
            ) from None
        raise
    if not seconds <= MAX_DURATION_S:  # also NaN
        raise DurationError(
            where, f"duration '{quote(shown, 40)}' is over a year: not an objective"
        )
    return seconds


def is_real_time(text: str) -> bool:
    """Whether ``text`` says "Real-time" ("realtime", "**real time**"): 0 s by choice, which
    tells it from "0 minutes" when both read as 0."""
    return _clean(text) in _REAL_TIME


def parse_duration_range(text: str) -> tuple[float, float] | None:
    """(low, high) seconds in an observed figure ("1-3 minutes", "< 30 seconds"), or None.

    Never raises: the Actual column of a runbook is informative text, kept raw anyway. A single
    duration gives (value, value); an upper bound gives (0, value); "Real-time" gives (0, 0);
    "N/A" and anything unreadable give None. The low end may omit the unit ("1-3 minutes").
    """
    body = _clean(text)
    if not body or len(body) > MAX_DURATION_TEXT or body in _NO_OBJECTIVE:
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
    A number over a year (:data:`MAX_DURATION_S`) is refused as text over a year is.
    """
    if value is None:
        return None
    # bool is an int subclass; "Detection: yes" is a mistake, not 1 second.
    if isinstance(value, bool):
        raise DurationError(where, f"not a duration: {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float: 10**400
            seconds = math.inf
        if not math.isfinite(seconds) or seconds < 0:
            raise DurationError(
                where, f"duration must be a finite number >= 0, got {quote(_number(value))}"
            )
        if seconds > MAX_DURATION_S:
            raise DurationError(
                where, f"duration {quote(_number(value), 40)} s is over a year: not an objective"
            )
        return seconds
    if isinstance(value, str):
        return parse_duration(value, where)
    raise DurationError(where, f"not a duration: {quote(repr(value))}")


def _number(value: int | float) -> str:
    """A number as an error line shows it: ``repr``, or its size for a huge int (whose ``repr``
    is slow, and refused outright past 4300 digits)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a number of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return repr(value)


def format_seconds(seconds: float | None) -> str:
    """A short human form of a duration in seconds: "120 s", "0.5 s", "n/a"."""
    if seconds is None:
        return "n/a"
    return f"{seconds:g} s"
