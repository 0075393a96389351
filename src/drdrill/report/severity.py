"""The runbook's escalation matrix, and the severity a drill's customer impact would carry.

The matrix is the first table in the section of a heading that mentions "Escalation" or
"Severity" (emoji, numbering and case ignored) and has a severity column, with columns
Severity | Criteria | Response Time | Action in any order. Each row names its level ("**P1 -
Critical**" gives ``P1``, "Critical"); P1 to P4 must all be there, since :func:`classify` picks
among them. Tables are found with the same scanner as the objectives tables
(:mod:`drdrill.objectives`), so fenced code blocks are skipped and errors name ``file:line``.

:func:`classify` reads what the probes recorded for one drill:

- **P1**, complete outage: every probed endpoint down at one same moment;
- **P2**, partial degradation: some endpoints down but never all at once, or availability below
  100% without a complete outage;
- **P3**, performance only: no failed sample, but a latency p99 over the threshold (1 s unless
  told otherwise);
- **P4**, minor: no customer impact seen, but the drill itself failed (an objective missed, a
  check that did not pass);
- **none**: nothing of the above.

A drill that passed carries no level in the reports (:func:`drill_severity`,
:func:`run_severities`): the outage a region failover causes is its design, not an incident. Only
a drill that failed (a test failed or errored, a figure missed or invalid) is classified.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from drdrill.durations import parse_duration
from drdrill.errors import RunbookError
from drdrill.measure import Status
from drdrill.objectives import _clean_cell, _Heading, _scan, _Table
from drdrill.report.record import OutageRecord, RunRecord, TestRecord

#: the levels :func:`classify` chooses from, worst first; a matrix must have them all.
LEVELS: Final[tuple[str, ...]] = ("P1", "P2", "P3", "P4")
#: the level of a drill with no impact at all (not a row of any matrix).
NO_SEVERITY: Final = "none"
#: the level the reports show for a drill that passed: no P-level, whatever its outage
AS_DESIGNED: Final = "—"
#: latency p99 over this (seconds) is a performance issue, unless the caller says otherwise.
DEFAULT_LATENCY_THRESHOLD_S: Final = 1.0

# Words a heading must contain (after folding) for its table to be the matrix.
_HEADING_WORDS: Final = ("escalation", "severity")
# Header cells naming each column; the first header containing one of the words wins.
_SEVERITY_HEADERS: Final = ("severity", "priority", "level")
_CRITERIA_HEADERS: Final = ("criteria", "criterion", "condition", "when")
_RESPONSE_HEADERS: Final = ("response",)
_ACTION_HEADERS: Final = ("action",)
_LEVEL: Final = re.compile(r"\bP\s*([0-9])\b", re.IGNORECASE)
_LEVEL_NAME: Final = re.compile(r"\bP\s*[0-9]\b\s*(?:[-\u2013\u2014:]\s*)?(.*)$", re.IGNORECASE)

#: the matrix of drdrill's own runbook, for runbooks that have none.
DEFAULT_MATRIX_TEXT: Final = """\
## Severity

| Severity | Criteria | Response Time | Action |
|----------|----------|---------------|--------|
| **P1 - Critical** | Complete service outage | < 5 minutes | Activate DR now |
| **P2 - High** | Partial service degradation | < 15 minutes | Investigate, prepare DR |
| **P3 - Medium** | Performance issues | < 30 minutes | Monitor, troubleshoot |
| **P4 - Low** | Minor issues | < 2 hours | Normal troubleshooting |
"""


@dataclass(frozen=True)
class SeverityLevel:
    """One row of the escalation matrix."""

    level: str
    name: str
    criteria: str
    response_time_s: float | None
    response_time_text: str
    action: str
    source: str

    def to_json(self) -> dict[str, Any]:
        """The row at the JSON edge."""
        return {
            "level": self.level,
            "name": self.name,
            "criteria": self.criteria,
            "response_time_s": self.response_time_s,
            "response_time": self.response_time_text,
            "action": self.action,
            "source": self.source,
        }


@dataclass(frozen=True)
class EscalationMatrix:
    """The levels of a runbook's escalation matrix, in table order."""

    levels: tuple[SeverityLevel, ...]
    source: str

    def get(self, level: str) -> SeverityLevel:
        """The row of ``level`` ("P1", case ignored); KeyError when the matrix lacks it."""
        wanted = level.upper()
        for row in self.levels:
            if row.level == wanted:
                return row
        raise KeyError(level)


@dataclass(frozen=True)
class Severity:
    """A classified drill: its level, the runbook's words for it, and why it was chosen."""

    level: str
    name: str
    criteria: str
    response_time_s: float | None
    response_time_text: str
    action: str
    reason: str
    source: str | None

    @property
    def label(self) -> str:
        """The level and its name ("P1 - Critical"), or "none"."""
        return f"{self.level} - {self.name}" if self.name else self.level

    def to_json(self) -> dict[str, Any]:
        """The severity at the JSON edge."""
        return {
            "level": self.level,
            "name": self.name,
            "criteria": self.criteria,
            "response_time_s": self.response_time_s,
            "response_time": self.response_time_text,
            "action": self.action,
            "reason": self.reason,
            "source": self.source,
        }


# --- the matrix ----------------------------------------------------------------------------------


def load_escalation_matrix(path: Path) -> EscalationMatrix:
    """The escalation matrix of the runbook at ``path``; RunbookError naming ``path:line``."""
    from drdrill.objectives import read_runbook

    return parse_escalation_matrix(read_runbook(path), str(path))


def parse_escalation_matrix(text: str, source: str) -> EscalationMatrix:
    """The escalation matrix in runbook ``text``; ``source`` names it in errors."""
    table = find_matrix_table(text)
    if table is None:
        raise RunbookError(
            source,
            "no escalation matrix (a Severity | Criteria | Response Time | Action table "
            "under a heading with 'Escalation' or 'Severity')",
        )
    return _read_matrix(table, source)


def default_matrix() -> EscalationMatrix:
    """drdrill's own matrix (P1 complete outage < 5 minutes ... P4 minor issues < 2 hours)."""
    return parse_escalation_matrix(DEFAULT_MATRIX_TEXT, "drdrill default escalation matrix")


def find_matrix_table(text: str) -> _Table | None:
    """The first table with a severity column in the section of an escalation/severity heading."""
    blocks = list(_scan(text.removeprefix("\ufeff").splitlines()))
    for start, block in enumerate(blocks):
        if not isinstance(block, _Heading) or not _is_matrix_heading(block.text):
            continue
        for inner in blocks[start + 1 :]:
            if isinstance(inner, _Heading) and inner.level <= block.level:
                break
            if isinstance(inner, _Table) and _severity_column(inner) is not None:
                return inner
    return None


def _is_matrix_heading(text: str) -> bool:
    # emoji (and their mojibake) are non-ASCII: dropped, as for the objectives headings
    folded = text.encode("ascii", "ignore").decode("ascii").lower()
    return any(word in folded for word in _HEADING_WORDS)


def _find(headers: Sequence[str], words: Sequence[str]) -> int | None:
    for index, header in enumerate(headers):
        if any(word in header for word in words):
            return index
    return None


def _severity_column(table: _Table) -> int | None:
    headers = [_clean_cell(cell).lower() for cell in table.header.cells]
    return _find(headers, _SEVERITY_HEADERS)


def _read_matrix(table: _Table, source: str) -> EscalationMatrix:
    names = [_clean_cell(cell) for cell in table.header.cells]
    headers = [name.lower() for name in names]
    width = len(names)
    header_where = f"{source}:{table.header.line}"
    if len(table.alignment.cells) != width:
        raise RunbookError(
            f"{source}:{table.alignment.line}",
            f"alignment row has {len(table.alignment.cells)} cells, header has {width}",
        )
    columns: dict[str, int] = {}
    for key, words in (
        ("severity", _SEVERITY_HEADERS),
        ("criteria", _CRITERIA_HEADERS),
        ("response time", _RESPONSE_HEADERS),
        ("action", _ACTION_HEADERS),
    ):
        index = _find(headers, words)
        if index is None:
            raise RunbookError(
                header_where,
                f"escalation matrix has no {key} column (columns: {', '.join(names)})",
            )
        columns[key] = index
    levels: list[SeverityLevel] = []
    first_line: dict[str, int] = {}
    for row in table.rows:
        where = f"{source}:{row.line}"
        if len(row.cells) != width:
            raise RunbookError(where, f"row has {len(row.cells)} cells, header has {width}")
        cells = [_clean_cell(cell) for cell in row.cells]
        label = cells[columns["severity"]]
        number = _LEVEL.search(label)
        if number is None:
            raise RunbookError(where, f"severity '{label}' names no level (P1, P2, ...)")
        level = f"P{number.group(1)}"
        if level in first_line:
            raise RunbookError(
                where, f"level {level} given twice (first at line {first_line[level]})"
            )
        first_line[level] = row.line
        name_match = _LEVEL_NAME.search(label)
        response_text = cells[columns["response time"]]
        levels.append(
            SeverityLevel(
                level=level,
                name=(name_match.group(1).strip() if name_match else "") or level,
                criteria=cells[columns["criteria"]],
                response_time_s=parse_duration(response_text, where),
                response_time_text=response_text,
                action=cells[columns["action"]],
                source=where,
            )
        )
    missing = [level for level in LEVELS if level not in first_line]
    if missing:
        raise RunbookError(header_where, f"escalation matrix lacks {', '.join(missing)}")
    return EscalationMatrix(tuple(levels), source)


# --- classification ------------------------------------------------------------------------------

_FOREVER: Final = datetime.max.replace(tzinfo=UTC)
Interval = tuple[datetime, datetime]


def _merged(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined."""
    result: list[Interval] = []
    for start, end in sorted(intervals):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return result


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Where both sorted, disjoint interval lists cover (empty spans dropped)."""
    result: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if start < end:
            result.append((start, end))
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return result


def complete_outage_windows(
    outages: Iterable[OutageRecord], endpoints: Iterable[str]
) -> list[Interval]:
    """The spans during which every one of ``endpoints`` was down (an open outage never ends)."""
    wanted = list(dict.fromkeys(endpoints))
    if not wanted:
        return []
    by_endpoint: dict[str, list[Interval]] = {name: [] for name in wanted}
    for outage in outages:
        if outage.endpoint in by_endpoint:
            end = outage.end_utc if outage.end_utc is not None else _FOREVER
            by_endpoint[outage.endpoint].append((outage.start_utc, end))
    common = _merged(by_endpoint[wanted[0]])
    for name in wanted[1:]:
        common = _intersect(common, _merged(by_endpoint[name]))
    return common


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-4] + "Z"


def _short(endpoint: str) -> str:
    # the path says which check it is; the scheme and host are the same for all of them
    match = re.match(r"^[a-z]+://[^/]+(/.*)?$", endpoint)
    return (match.group(1) or "/") if match else endpoint


def _severity(matrix: EscalationMatrix, level: str, reason: str) -> Severity:
    row = matrix.get(level)
    return Severity(
        level=row.level,
        name=row.name,
        criteria=row.criteria,
        response_time_s=row.response_time_s,
        response_time_text=row.response_time_text,
        action=row.action,
        reason=reason,
        source=row.source,
    )


def classify(
    record: TestRecord | OutageRecord | Sequence[OutageRecord],
    matrix: EscalationMatrix | None = None,
    *,
    latency_threshold_s: float = DEFAULT_LATENCY_THRESHOLD_S,
    endpoints: Iterable[str] | None = None,
) -> Severity:
    """The severity of a drill's (or of outages') customer impact, in the runbook's words.

    ``endpoints`` are the probed endpoints that must all be down for a complete outage; by
    default those of the record's probe statistics and outages, less those down by design
    (an endpoint with an :attr:`~drdrill.report.record.OutageRecord.expected_down` stretch, like
    the DR load balancer at pilot light, probed directly: no customer's way in, so neither its
    stretch nor its later outages count). ``matrix`` defaults to :func:`default_matrix`.
    """
    if not (math.isfinite(latency_threshold_s) and latency_threshold_s > 0):
        raise ValueError(f"latency threshold must be > 0 s, got {latency_threshold_s!r}")
    matrix = matrix or default_matrix()
    if isinstance(record, TestRecord):
        drill: TestRecord | None = record
        outages = list(record.outages)
    else:
        drill = None
        outages = [record] if isinstance(record, OutageRecord) else list(record)
    stats = list(drill.probes) if drill is not None else []
    if endpoints is None:  # the customers' endpoints: none that is down by design
        by_design = {o.endpoint for o in outages if o.expected_down}
        outages = [o for o in outages if o.endpoint not in by_design]
        stats = [s for s in stats if s.endpoint not in by_design]
    else:
        outages = [o for o in outages if not o.expected_down]
    probed = list(
        dict.fromkeys(endpoints)
        if endpoints is not None
        else dict.fromkeys([*(s.endpoint for s in stats), *(o.endpoint for o in outages)])
    )

    windows = complete_outage_windows(outages, probed)
    if windows:
        first = _clock(windows[0][0])
        spans = f" ({len(windows)} spans)" if len(windows) > 1 else ""
        if windows[-1][1] == _FOREVER:
            span = f"from {first}, still down at the end{spans}"
        else:
            total = sum((end - start).total_seconds() for start, end in windows)
            span = f"for {total:.2f} s from {first}{spans}"
        subject = (
            "the only probed endpoint"
            if len(probed) == 1
            else f"all {len(probed)} probed endpoints"
        )
        return _severity(matrix, "P1", f"{subject} down together {span}")

    down = [name for name in probed if any(o.endpoint == name for o in outages)]
    if down:
        names = ", ".join(_short(name) for name in down)
        return _severity(
            matrix,
            "P2",
            f"{len(down)} of {len(probed)} endpoints down ({names}), never all at once",
        )
    degraded = [s for s in stats if s.samples > 0 and s.availability < 100.0]
    if degraded:
        worst = min(degraded, key=lambda s: s.availability)
        return _severity(
            matrix,
            "P2",
            f"availability {worst.availability:.2f}% on {_short(worst.endpoint)} "
            "without a complete outage",
        )
    slow = [s for s in stats if s.p99_ms is not None and s.p99_ms / 1000.0 > latency_threshold_s]
    if slow:
        worst = max(slow, key=lambda s: s.p99_ms or 0.0)
        return _severity(
            matrix,
            "P3",
            f"no failed sample, but latency p99 {(worst.p99_ms or 0.0) / 1000.0:.3f} s on "
            f"{_short(worst.endpoint)} over the {latency_threshold_s:g} s threshold",
        )
    if drill is not None and drill.failed:
        what = drill.message or (
            "an objective missed"
            if any(r.status is Status.MISSED for r in drill.results)
            else "a figure invalid"
            if any(r.status is Status.INVALID for r in drill.results)
            else f"outcome {drill.outcome}"
        )
        return _severity(matrix, "P4", f"no customer impact seen by the probes, but {what}")
    return Severity(
        level=NO_SEVERITY,
        name="",
        criteria="no customer impact",
        response_time_s=None,
        response_time_text="N/A",
        action="none",
        reason=(
            f"no failed sample, latency p99 within {latency_threshold_s:g} s"
            if stats
            else "no outage recorded"
        ),
        source=None,
    )


def drill_severity(record: TestRecord, matrix: EscalationMatrix | None = None) -> Severity:
    """The severity a report gives a drill: :func:`classify` for a drill that failed; for one
    that passed no level ("—", as designed), its impact said only as the reason."""
    impact = classify(record, matrix)
    if record.failed:
        return impact
    return Severity(
        level=AS_DESIGNED,
        name="",
        criteria="as designed",
        response_time_s=None,
        response_time_text="—",
        action="none",
        reason=f"as designed (the drill passed): {impact.reason}",
        source=None,
    )


def run_matrix(run: RunRecord) -> EscalationMatrix:
    """The escalation matrix of the run's runbook; drdrill's own when the runbook has none or
    cannot be read."""
    from drdrill.errors import DrillError

    try:
        source = run.objectives_source
        return load_escalation_matrix(Path(source)) if source else default_matrix()
    except (DrillError, OSError):
        return default_matrix()


def run_severities(run: RunRecord) -> dict[str, Severity]:
    """The severity of each drill of a run and of each test that failed, by node id: a level
    of the runbook's escalation matrix for those that failed, none ("—") for drills that
    passed."""
    matrix = run_matrix(run)
    return {
        record.nodeid: drill_severity(record, matrix)
        for record in run.tests
        if record.measured_anything or record.failed
    }
