"""``report.html``: one self-contained page a person reads without the JSON.

The page holds the run's header, the runbook's objectives beside the worst figure measured, and
per drill a timeline (phases as bars beside their targets, the time within Total RTO that no
phase covers as named gaps, events as ticks with their uncertainty, an outage strip per probed
endpoint, where an endpoint down by design before it first came up is drawn as expected, not as
an outage), the figures, the probes, the write markers and the event log.
Everything is inline (CSS and SVG; no script, font or image is fetched), so the file can be mailed,
archived with a compliance record or opened on a machine with no network.

The layout is computed here as typed values; the Jinja2 template only draws them, with
autoescape on, so nothing a target or an endpoint reports can inject markup.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from drdrill import __version__
from drdrill.measure import Measurement, Result, Status
from drdrill.report.figures import error_text, interval_text, status_text, truth_text
from drdrill.report.figures import worst as worst_figure
from drdrill.report.gaps import MIN_GAP_S, Gap, Mark, Span, phase_gaps
from drdrill.report.record import PASSED, OutageRecord, RpoRecord, RunRecord, TestRecord, Verdict
from drdrill.report.verdict import verdict_line
from drdrill.timeline import Event

#: The template, in the package's ``templates`` folder (shipped as package data).
TEMPLATE = "report.html.j2"

# --- timeline geometry, in SVG user units (the SVG scales to the page width) ----------------
_WIDTH = 1200.0
_GUTTER = 200.0  # phase and endpoint labels
_RIGHT = 250.0  # figures beside each row
_PLOT_LEFT = _GUTTER
_PLOT_RIGHT = _WIDTH - _RIGHT
_PLOT_WIDTH = _PLOT_RIGHT - _PLOT_LEFT
_TOP = 34.0  # room for the axis labels
_PHASE_ROW = 26.0
_GAP_ROW = 22.0
_LABEL_ROW = 14.0
_STRIP_ROW = 22.0
_GROUP_ROW = 16.0
_LABEL_LIMIT = 30  # characters of an endpoint label that fit the gutter
#: estimated width of one character of the 11-unit event labels: DejaVu Sans measured up to 6.33
#: in Chromium; a little more leaves room for wider system fonts
LABEL_CHAR_WIDTH = 6.7
#: a target outline may stretch the axis past the last event by this factor, no further: a
#: 18 s objective would otherwise squeeze a 6 s drill into a third of the width
_TARGET_ROOM = 1.3
#: events drawn as endpoint strips rather than as labelled ticks
_STRIP_EVENTS = frozenset({"outage_started", "outage_ended"})
#: events that get a vertical guide line across the whole chart
_GUIDES = {"fault_injected": "fault", "service_restored": "restored"}
#: the words on an expected-down span, the longest that fits its width
_EXPECTED_WORDS = ("expected down (pilot light)", "expected down", "expected")
#: estimated width of one character of the 10-unit words drawn on spans (gaps, expected down)
_SPAN_CHAR_WIDTH = 6.2
_NICE_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800)
_MAX_LOST_IDS = 60


# --- formatting ------------------------------------------------------------------------------


def format_measurement(measured: Measurement) -> str:
    """``2.547 ± 0.003 s``, as report.md writes it; a figure that is not finite says so."""
    if not (math.isfinite(measured.value) and math.isfinite(measured.uncertainty)):
        return "not finite"
    return str(measured)


def _seconds(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f} s"


def _target_text(target_s: float | None) -> str:
    return "N/A" if target_s is None else f"{target_s:g} s"


def _utc_text(when: datetime | None) -> str:
    if when is None:
        return "unfinished"
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"


def _flat(value: Any) -> str:
    """A nested JSON value on one line (a target's description, an event's attributes)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _split_endpoint(url: str) -> tuple[str, str]:
    """``http://host:port/path?q`` as (``host:port``, ``/path?q``): strips are grouped by host."""
    parts = urlsplit(url)
    if not parts.netloc:
        return "", url
    path = parts.path or "/"
    return parts.netloc, path + (f"?{parts.query}" if parts.query else "")


def _cut(text: str, limit: int) -> str:
    """Text cut in the middle to fit a label column."""
    if len(text) <= limit:
        return text
    keep = limit - 1
    return text[: keep // 2] + "…" + text[-(keep - keep // 2) :]


_STATUS_TEXT = {
    Status.MET: "✓ met",
    Status.MISSED: "✗ MISSED",
    Status.INCONCLUSIVE: "? inconclusive",
    Status.INVALID: "✗ INVALID",
    Status.NO_OBJECTIVE: "no objective",
}
_STATUS_CLASS = {
    Status.MET: "met",
    Status.MISSED: "missed",
    Status.INCONCLUSIVE: "inconclusive",
    Status.INVALID: "invalid",
    Status.NO_OBJECTIVE: "none",
}
#: the colour class of the verdict line at the top of the page
_VERDICT_CLASS = {
    Verdict.PASSED: "passed",
    Verdict.FAILED: "failed",
    Verdict.INCONCLUSIVE: "inconclusive",
    Verdict.INCOMPLETE: "incomplete",
    Verdict.DRY_RUN: "other",
    Verdict.NO_TESTS: "other",
    Verdict.SKIPPED: "other",
}


def _status_words(result: Result) -> str:
    """The status in words and sign, with the interval of an inconclusive figure and the note
    of an invalid one: ``? inconclusive: [17.850, 18.050] s vs 18 s``."""
    words = status_text(result)
    mark = _STATUS_TEXT[result.status]
    return mark + words[len(str(result.status)) :]


# --- the page's values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """A labelled value of the header."""

    label: str
    value: str


@dataclass(frozen=True)
class ObjectiveRow:
    """A row of an objectives table: a runbook row, or a figure no runbook row names."""

    component: str
    target: str
    measured: str
    status_text: str
    status_class: str
    error: str
    runbook_actual: str
    notes: str
    in_runbook: bool
    #: the values the figure admits, ``[low, high]``
    interval: str = ""


@dataclass(frozen=True)
class ObjectivesTable:
    """The runbook's RTO or RPO table with this run's figures."""

    title: str
    first_column: str
    rows: tuple[ObjectiveRow, ...]


@dataclass(frozen=True)
class ResultRow:
    """A figure one drill measured."""

    name: str
    kind: str
    span: str
    measured: str
    target: str
    status_text: str
    status_class: str
    truth: str
    error: str
    interval: str = ""


@dataclass(frozen=True)
class AxisTick:
    """A second mark of a timeline's axis, with its grid line."""

    x: float
    label: str


@dataclass(frozen=True)
class PhaseBar:
    """A phase as a bar from its start event to its end event, its target as an outline."""

    name: str
    y: float
    x: float
    width: float
    target_x: float | None
    target_width: float | None
    target_clipped: bool
    target_label: str
    status_text: str
    status_class: str
    value: str
    title: str
    #: the end event came first (a negative span, within the events' uncertainty or not)
    reversed: bool


@dataclass(frozen=True)
class EventMark:
    """An event as a tick, its uncertainty as a whisker to the left, its name as a label."""

    name: str
    source: str
    x: float
    whisker_x: float
    label_x: float
    label_y: float
    anchor: str
    title: str


@dataclass(frozen=True)
class GapSpan:
    """A stretch of Total RTO that no phase covers, as a dashed span on the gaps row."""

    x: float
    width: float
    #: the duration drawn on the span where it fits ("0.69 s"), else empty
    label: str
    #: the gap named by its two events: "not in any phase: 0.689 ± 0.006 s between ..."
    text: str


@dataclass(frozen=True)
class OutageSpan:
    """A client-observed outage of an endpoint, as a red span; or the stretch before an endpoint
    that is down by design first came up (``expected``), as a neutral one."""

    x: float
    width: float
    open: bool
    title: str
    #: expected down (pilot light): no outage
    expected: bool = False
    #: the words drawn on an expected-down span where they fit, else empty
    label: str = ""


@dataclass(frozen=True)
class StripGroup:
    """A host heading above the strips of its endpoints (drawn in the plot, where it fits)."""

    label: str
    y: float


@dataclass(frozen=True)
class EndpointStrip:
    """The outages of one probed endpoint over the drill's time axis."""

    label: str
    url: str
    y: float
    spans: tuple[OutageSpan, ...]
    summary: str
    #: what hovering the strip says (the summary, and the expected-down stretch spelt out)
    title: str = ""


@dataclass(frozen=True)
class Guide:
    """A vertical line across the chart at a landmark event (fault injected, restored)."""

    x: float
    label: str
    css: str


@dataclass(frozen=True)
class TimelineView:
    """Everything the SVG of one drill draws."""

    width: float
    height: float
    plot_left: float
    plot_right: float
    ticks: tuple[AxisTick, ...]
    bars: tuple[PhaseBar, ...]
    events: tuple[EventMark, ...]
    strips: tuple[EndpointStrip, ...]
    groups: tuple[StripGroup, ...]
    guides: tuple[Guide, ...]
    phases_y: float
    events_y: float
    strips_y: float
    axis_note: str
    summary: str
    #: the time within Total RTO that no phase covers, on a row of its own under the phases
    gaps: tuple[GapSpan, ...] = ()
    gaps_y: float = 0.0
    #: what the gaps row says on the right ("2 gaps · 2.84 s")
    gaps_summary: str = ""
    #: an endpoint was drawn expected down (the legend then explains the colour)
    expected_down: bool = False


@dataclass(frozen=True)
class ProbeRow:
    """The statistics of one probed endpoint."""

    endpoint: str
    samples: int
    availability: str
    p50: str
    p95: str
    p99: str
    outages: str
    #: how long an endpoint down by design was down before it first came up
    #: ("expected down 4.951 s before first up"), else empty
    expected_down: str = ""


@dataclass(frozen=True)
class RpoPanel:
    """What one writer's markers say about data loss."""

    run: str
    sent: int
    acknowledged: int
    lost: int
    lost_ids: str
    unacknowledged_landed: int
    window: str


@dataclass(frozen=True)
class EventRow:
    """A line of the event log."""

    at: str
    utc: str
    name: str
    source: str
    uncertainty: str
    attrs: str


@dataclass(frozen=True)
class DrillView:
    """One drill's section of the page."""

    anchor: str
    nodeid: str
    short_name: str
    outcome: str
    duration: str
    worker: str | None
    message: str | None
    results: tuple[ResultRow, ...]
    timeline: TimelineView | None
    probes: tuple[ProbeRow, ...]
    rpo: tuple[RpoPanel, ...]
    events: tuple[EventRow, ...]
    #: the gaps of Total RTO named in words, as listed under the timeline
    gaps: tuple[str, ...] = ()
    #: the heading of that list, or what it found when empty ("" with nothing to check)
    gaps_note: str = ""


@dataclass(frozen=True)
class OverviewRow:
    """A test of the run in the overview table."""

    anchor: str | None
    nodeid: str
    outcome: str
    worker: str
    duration: str
    total_rto: str
    downtime: str
    lost_writes: str
    missed: int
    #: the drill's severity from the runbook's escalation matrix ("P1 - Critical"); a drill
    #: that passed has none ("—")
    severity: str = ""
    severity_reason: str = ""
    #: why the test did not pass, in one line
    message: str | None = None


@dataclass(frozen=True)
class PageView:
    """The whole page."""

    title: str
    run_id: str
    dry_run: bool
    scale: str
    #: the run's verdict line, the first thing on the page
    verdict_line: str
    verdict_class: str
    #: the tests the run lost (never ran, interrupted, on a crashed worker), and why
    lost: tuple[str, ...]
    interruption: str
    facts: tuple[Fact, ...]
    counts: tuple[Fact, ...]
    target_details: tuple[Fact, ...]
    objectives: tuple[ObjectivesTable, ...]
    overview: tuple[OverviewRow, ...]
    drills: tuple[DrillView, ...]
    version: str


# --- objectives ------------------------------------------------------------------------------


def _worst(results: Sequence[Result]) -> Result | None:
    return worst_figure(results)


def _error_summary(shown: Result, mine: Sequence[Result]) -> str:
    """The worst figure's error against ground truth; the largest one too when several had one."""
    text = error_text(shown)
    errors = [abs(r.error_ms) for r in mine if r.error_ms is not None and math.isfinite(r.error_ms)]
    if len(errors) > 1:
        text += f" (max |error| {max(errors):.1f} ms of {len(errors)})"
    return text


def _objectives_table(run: RunRecord, kind: str, title: str, first: str) -> ObjectivesTable:
    runbook: Mapping[str, Mapping[str, Any]] = run.objectives.get(kind, {}) or {}
    results = [r for r in run.results if r.kind == kind]
    rows: list[ObjectiveRow] = []
    named: set[str] = set()
    for component, row in runbook.items():
        named.add(component.lower())
        mine = [r for r in results if (r.objective or "").lower() == component.lower()]
        worst = _worst(mine)
        target = row.get("target_s")
        interval = ""
        if worst is None:
            measured, status, status_class, error = "not measured", "not measured", "", "—"
        else:
            measured = format_measurement(worst.measured)
            if len(mine) > 1:
                measured += f" (worst of {len(mine)})"
            status = _status_words(worst)
            status_class = _STATUS_CLASS[worst.status]
            error = _error_summary(worst, mine)
            interval = interval_text(worst)
        rows.append(
            ObjectiveRow(
                component=component,
                target=_target_text(target if isinstance(target, int | float) else None),
                measured=measured,
                status_text=status,
                status_class=status_class,
                error=error,
                runbook_actual=str(row.get("actual") or ""),
                notes=str(row.get("notes") or ""),
                in_runbook=True,
                interval=interval,
            )
        )
    # figures no runbook row names (client downtime, ...): grouped by name, worst shown
    extra: dict[str, list[Result]] = {}
    for r in results:
        if (r.objective or "").lower() not in named:
            extra.setdefault(r.name, []).append(r)
    for name, mine in extra.items():
        worst = _worst(mine)
        assert worst is not None  # every group has a member
        measured = format_measurement(worst.measured)
        if len(mine) > 1:
            measured += f" (worst of {len(mine)})"
        rows.append(
            ObjectiveRow(
                component=name,
                target=_target_text(worst.target_s),
                measured=measured,
                status_text=_status_words(worst),
                status_class=_STATUS_CLASS[worst.status],
                error=_error_summary(worst, mine),
                runbook_actual="",
                notes="not a row of the runbook",
                in_runbook=False,
                interval=interval_text(worst),
            )
        )
    return ObjectivesTable(title, first, tuple(rows))


# --- timeline --------------------------------------------------------------------------------


def _nice_step(extent: float) -> float:
    for step in _NICE_STEPS:
        if extent / step <= 12:
            return step
    return _NICE_STEPS[-1]


def _first(events: Iterable[Event], name: str | None) -> Event | None:
    # the first event of that name, as Timeline.get picks it when measuring
    return next((e for e in events if e.name == name), None) if name else None


def _mid(event: Event) -> float:
    # the middle of the interval the event's true time lies in, as Measurement.between uses
    return event.mono - event.uncertainty_s / 2


@dataclass(frozen=True)
class _Axis:
    """Seconds since the drill's first event to SVG x."""

    t0_mono: float
    t0_utc: datetime
    extent: float

    def x(self, seconds: float) -> float:
        clamped = min(max(seconds, 0.0), self.extent)
        return _PLOT_LEFT + clamped / self.extent * _PLOT_WIDTH

    def mono(self, mono: float) -> float:
        return self.x(mono - self.t0_mono)

    def utc(self, when: datetime) -> float:
        return self.x(self.since(when))

    def since(self, when: datetime) -> float:
        return (when - self.t0_utc).total_seconds()


#: a figure measured between two events of the drill, with those events
_Phase = tuple[Result, Event, Event]


def _phases(test: TestRecord, events: Sequence[Event]) -> list[_Phase]:
    found = []
    for result in test.results:
        start, end = _first(events, result.start), _first(events, result.end)
        if start is not None and end is not None:
            found.append((result, start, end))
    return found


def _endpoints(test: TestRecord) -> list[str]:
    seen: dict[str, None] = {}
    for probe in test.probes:
        seen.setdefault(probe.endpoint)
    for outage in test.outages:
        seen.setdefault(outage.endpoint)
    return list(seen)


def _place_labels(
    marks: Sequence[tuple[Event, float, float]], top: float
) -> tuple[list[EventMark], int]:
    """Event labels in as few rows as let none overlap: each takes the first row with room."""
    rows: list[list[tuple[float, float]]] = []
    placed = []
    for event, x, whisker_x in marks:
        width = len(event.name) * LABEL_CHAR_WIDTH
        # a label runs right of its tick, or left of it where the plot would cut it
        left, anchor = (x + 3, "start") if x + 3 + width <= _WIDTH - 4 else (x - 3 - width, "end")
        span = (left - 4, left + width + 4)
        for index, taken in enumerate(rows):
            if all(span[1] <= a or span[0] >= b for a, b in taken):
                taken.append(span)
                level = index
                break
        else:
            rows.append([span])
            level = len(rows) - 1
        uncertainty = f" ± {event.uncertainty_s:.3f} s" if event.uncertainty_s else ""
        placed.append(
            EventMark(
                name=event.name,
                source=str(event.source),
                x=x,
                whisker_x=whisker_x,
                label_x=x + 3 if anchor == "start" else x - 3,
                label_y=top + 24 + level * _LABEL_ROW,
                anchor=anchor,
                title=f"{event.name} ({event.source}){uncertainty}",
            )
        )
    return placed, len(rows)


def _phase_bar(result: Result, start: Event, end: Event, y: float, axis: _Axis) -> PhaseBar:
    a, b = axis.mono(_mid(start)), axis.mono(_mid(end))
    target_x = target_width = None
    clipped = False
    target_label = ""
    if result.target_s is not None and math.isfinite(result.target_s):
        # the objective is drawn from where the phase starts: the bar fits in it when met
        target_end_s = _mid(start) - axis.t0_mono + result.target_s
        target_x = a
        target_width = max(axis.x(target_end_s) - a, 1.0)
        clipped = target_end_s > axis.extent
        target_label = f"target {result.target_s:g} s" + (" ▸" if clipped else "")
    value = format_measurement(result.measured)
    return PhaseBar(
        name=result.name,
        y=y,
        x=min(a, b),
        width=max(abs(b - a), 2.0),  # a phase of 0.3 ms is still seen
        target_x=target_x,
        target_width=target_width,
        target_clipped=clipped,
        target_label=target_label,
        status_text=_STATUS_TEXT[result.status]
        + ("" if result.target_s is None else f" ({result.target_s:g} s)"),
        status_class=_STATUS_CLASS[result.status],
        value=value,
        title=f"{result.name}: {start.name} → {end.name}, {value}; "
        f"objective {_target_text(result.target_s)}"
        + ("; the end event came before the start event" if b < a else ""),
        reversed=b < a,
    )


def _expected_span(outage: OutageRecord, axis: _Axis) -> OutageSpan:
    """The stretch before an endpoint that is down by design first came up, from its first
    sample (probing began while it was down) to the first good sample of its recovery run."""
    x = axis.utc(outage.start_utc)
    if outage.end_utc is None:
        title = "expected down (pilot light): down by design, and it never came up in the drill"
        width = max(_PLOT_RIGHT - x, 2.0)
        label = _fitting(_EXPECTED_WORDS, width)
        return OutageSpan(x, width, True, title, expected=True, label=label)
    title = (
        f"expected down (pilot light), not an outage: down by design from its first sample "
        f"until it first came up {_seconds(outage.duration_s)} later "
        f"(± {outage.end_uncertainty_s:.3f} s)"
    )
    width = max(axis.utc(outage.end_utc) - x, 2.0)
    return OutageSpan(x, width, False, title, expected=True, label=_fitting(_EXPECTED_WORDS, width))


def _fitting(choices: Sequence[str], width: float) -> str:
    """The first of ``choices`` that fits a span ``width`` wide (with a little room), or ""."""
    return next((c for c in choices if len(c) * _SPAN_CHAR_WIDTH + 8 <= width), "")


def _is_total(result: Result) -> bool:
    return "total rto" in ((result.objective or "").lower(), result.name.lower())


def _mark(event: Event) -> Mark:
    return Mark(event.name, _mid(event), event.uncertainty_s / 2)


def _gap_inputs(phases: Sequence[_Phase]) -> tuple[Span, list[Span]] | None:
    """The drill's Total RTO and its phases as spans; None without a Total RTO or a phase.

    Phases are the RTO figures between two events that have an objective (a runbook row),
    Total RTO aside: a figure for information only (client downtime) is none."""
    total = next((p for p in phases if _is_total(p[0])), None)
    spans = [
        Span(r.name, _mark(a), _mark(b))
        for r, a, b in phases
        if r.kind == "rto" and r.objective and not _is_total(r)
    ]
    if total is None or not spans:
        return None
    result, start, end = total
    return Span(result.name, _mark(start), _mark(end)), spans


def drill_gaps(phases: Sequence[_Phase], min_gap_s: float = MIN_GAP_S) -> tuple[Gap, ...]:
    """The stretches of the drill's Total RTO that none of its phases covers, ``min_gap_s``
    long at least (none without a Total RTO or a phase): :func:`drdrill.report.gaps.phase_gaps`
    over the phases' events."""
    inputs = _gap_inputs(phases)
    return () if inputs is None else phase_gaps(*inputs, min_gap_s)


def _gaps_note(phases: Sequence[_Phase], gaps: Sequence[Gap]) -> str:
    """What the list of gaps under the timeline is headed with ("" when there is none to check)."""
    inputs = _gap_inputs(phases)
    if inputs is None or not inputs[0].end.at_s > inputs[0].start.at_s:
        return ""  # nothing to check: no phase, no Total RTO, or one that is not a span
    if gaps:
        return f"Time within Total RTO that no phase covers (gaps of {MIN_GAP_S:g} s or more):"
    return f"Every stretch of Total RTO of {MIN_GAP_S:g} s or more is in some phase."


def _gap_span(gap: Gap, axis: _Axis) -> GapSpan:
    x = axis.mono(gap.start.at_s)
    width = max(axis.mono(gap.end.at_s) - x, 2.0)
    return GapSpan(x, width, _fitting((f"{gap.duration_s:.2f} s",), width), gap.text())


def _outage_span(outage: OutageRecord, axis: _Axis) -> OutageSpan:
    if outage.expected_down:
        return _expected_span(outage, axis)
    x = axis.utc(outage.start_utc)
    if outage.end_utc is None:
        return OutageSpan(
            x, max(_PLOT_RIGHT - x, 2.0), True, "outage still open at the end of the drill"
        )
    title = (
        f"outage {_seconds(outage.duration_s)} (start ± {outage.start_uncertainty_s:.3f} s, "
        f"end ± {outage.end_uncertainty_s:.3f} s)"
    )
    return OutageSpan(x, max(axis.utc(outage.end_utc) - x, 2.0), False, title)


def _strips(
    test: TestRecord, axis: _Axis, top: float
) -> tuple[list[EndpointStrip], list[StripGroup], float]:
    """A strip a probed endpoint, under a heading a host; and the y below the last."""
    strips: list[EndpointStrip] = []
    groups: list[StripGroup] = []
    stats = {p.endpoint: p for p in test.probes}
    y = top
    for endpoint in _endpoints(test):
        host, path = _split_endpoint(endpoint)
        if host and (not groups or groups[-1].label != host):
            groups.append(StripGroup(_cut(host, 90), y))
            y += _GROUP_ROW
        mine = [o for o in test.outages if o.endpoint == endpoint]
        spans = tuple(_outage_span(o, axis) for o in mine)
        outages = [o for o in mine if not o.expected_down]
        expected = [o for o in mine if o.expected_down]
        probe = stats.get(endpoint)
        parts = [] if probe is None else [f"{probe.availability:.1f}% up"]
        # kept short: the summary has the right-hand column (about 34 characters) to itself
        once_up = " once up" if expected else ""
        if any(o.end_utc is None for o in expected):
            parts.append("never came up")
        elif any(o.end_utc is None for o in outages):
            parts.append("still out")
        elif outages:
            parts.append(f"out {sum(o.duration_s or 0.0 for o in outages):.2f} s{once_up}")
        else:
            parts.append(f"no outage{once_up}")
        summary = " · ".join(parts)
        title = summary
        if expected and expected[0].end_utc is not None:
            title += (
                f"; expected down (pilot light) {_seconds(expected[0].duration_s)} "
                "before it first came up"
            )
        strips.append(EndpointStrip(_cut(path, _LABEL_LIMIT), endpoint, y, spans, summary, title))
        y += _STRIP_ROW
    return strips, groups, y


def _axis(test: TestRecord, events: Sequence[Event], phases: Sequence[_Phase]) -> _Axis:
    """From the drill's first event to its last event or outage end, and room for targets."""
    t0_mono = events[0].mono if events else 0.0
    t0_utc = events[0].utc if events else min(o.start_utc for o in test.outages)
    last = max((e.mono - t0_mono for e in events), default=0.0)
    for outage in test.outages:
        last_seen = outage.end_utc or outage.start_utc
        last = max(last, (last_seen - t0_utc).total_seconds())
    target_ends = [
        _mid(start) - t0_mono + r.target_s
        for r, start, _ in phases
        if r.target_s is not None and math.isfinite(r.target_s)
    ]
    extent = max(last, min(max(target_ends, default=0.0), last * _TARGET_ROOM))
    return _Axis(t0_mono, t0_utc, max(extent, 0.5))  # a drill of one instant gets an axis too


def _ticks(axis: _Axis) -> tuple[AxisTick, ...]:
    step = _nice_step(axis.extent)
    digits = 0 if step >= 1 else 1 if step >= 0.1 else 2
    return tuple(
        AxisTick(axis.x(i * step), f"{i * step:.{digits}f} s")
        for i in range(int(axis.extent / step + 1e-9) + 1)
    )


def _timeline(test: TestRecord) -> TimelineView | None:
    """The SVG's layout: phase rows, then the event lane, then the endpoint strips."""
    events = sorted(test.events, key=lambda e: e.mono)
    if not events and not test.outages:
        return None
    phases = _phases(test, events)
    axis = _axis(test, events, phases)
    phases_y = _TOP
    bars = [
        _phase_bar(result, start, end, phases_y + index * _PHASE_ROW, axis)
        for index, (result, start, end) in enumerate(phases)
    ]
    gaps = drill_gaps(phases)
    gaps_y = phases_y + len(phases) * _PHASE_ROW
    events_y = gaps_y + (_GAP_ROW if gaps else 0.0) + 14
    marks = [
        (e, axis.mono(e.mono), axis.mono(e.mono - e.uncertainty_s))
        for e in events
        if e.name not in _STRIP_EVENTS
    ]
    event_marks, levels = _place_labels(marks, events_y)
    strips_y = events_y + 24 + max(levels, 1) * _LABEL_ROW + 10
    strips, groups, bottom = _strips(test, axis, strips_y)
    guides = [
        Guide(axis.mono(event.mono), label, name.replace("_", "-"))
        for name, label in _GUIDES.items()
        if (event := _first(events, name)) is not None
    ]
    expected = [o for o in test.outages if o.expected_down]
    outages = [o for o in test.outages if not o.expected_down]
    return TimelineView(
        width=_WIDTH,
        height=max(bottom, strips_y + _STRIP_ROW) + 8,
        plot_left=_PLOT_LEFT,
        plot_right=_PLOT_RIGHT,
        ticks=_ticks(axis),
        bars=tuple(bars),
        events=tuple(event_marks),
        strips=tuple(strips),
        groups=tuple(groups),
        guides=tuple(guides),
        phases_y=phases_y,
        events_y=events_y,
        strips_y=strips_y,
        axis_note=f"seconds since the drill's first event ({_utc_text(axis.t0_utc)})",
        summary=f"Timeline of {test.nodeid}: {len(phases)} phases, "
        + (f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''} in no phase, " if gaps else "")
        + f"{len(marks)} events, {len(strips)} endpoints, {len(outages)} outages"
        + (f" ({len(expected)} expected down)" if expected else "")
        + f" over {axis.extent:.2f} s",
        gaps=tuple(_gap_span(g, axis) for g in gaps),
        gaps_y=gaps_y,
        gaps_summary=f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''} · "
        f"{sum(g.duration_s for g in gaps):.2f} s",
        expected_down=bool(expected),
    )


# --- a drill ---------------------------------------------------------------------------------


def _anchor(index: int) -> str:
    return f"drill-{index + 1}"


def _result_row(result: Result) -> ResultRow:
    span = f"{result.start} → {result.end}" if result.start and result.end else ""
    return ResultRow(
        name=result.name,
        kind=result.kind.upper(),
        span=span,
        measured=format_measurement(result.measured),
        target=_target_text(result.target_s),
        status_text=_status_words(result),
        status_class=_STATUS_CLASS[result.status],
        truth=truth_text(result),
        error=error_text(result),
        interval=interval_text(result),
    )


def _rpo_panel(record: RpoRecord) -> RpoPanel:
    ids = ", ".join(str(i) for i in record.lost_ids[:_MAX_LOST_IDS])
    if len(record.lost_ids) > _MAX_LOST_IDS:
        ids += f", … and {len(record.lost_ids) - _MAX_LOST_IDS} more (see report.json)"
    return RpoPanel(
        run=record.run,
        sent=record.sent,
        acknowledged=record.acknowledged,
        lost=record.lost_acknowledged,
        lost_ids=ids or "none",
        unacknowledged_landed=record.unacknowledged_landed,
        window=_seconds(record.data_loss_window_s),
    )


def _drill(index: int, test: TestRecord) -> DrillView:
    events = sorted(test.events, key=lambda e: e.mono)
    t0 = events[0].mono if events else 0.0
    outages: Counter[str] = Counter(o.endpoint for o in test.outages if not o.expected_down)
    phases = _phases(test, events)
    gaps = drill_gaps(phases)
    expected = {o.endpoint: o for o in test.outages if o.expected_down}
    return DrillView(
        anchor=_anchor(index),
        nodeid=test.nodeid,
        short_name=test.nodeid.rsplit("::", 1)[-1],
        outcome=test.outcome,
        duration=_seconds(test.duration_s, 2),
        worker=test.worker,
        message=test.message,
        results=tuple(_result_row(r) for r in test.results),
        timeline=_timeline(test),
        probes=tuple(
            ProbeRow(
                endpoint=p.endpoint,
                samples=p.samples,
                availability=f"{p.availability:.1f} %",
                p50="—" if p.p50_ms is None else f"{p.p50_ms:.1f} ms",
                p95="—" if p.p95_ms is None else f"{p.p95_ms:.1f} ms",
                p99="—" if p.p99_ms is None else f"{p.p99_ms:.1f} ms",
                outages=str(outages.get(p.endpoint, 0)),
                expected_down=_expected_text(expected.get(p.endpoint)),
            )
            for p in test.probes
        ),
        rpo=tuple(_rpo_panel(r) for r in test.rpo),
        events=tuple(
            EventRow(
                at=f"{e.mono - t0:+.3f} s",
                utc=_utc_text(e.utc),
                name=e.name,
                source=str(e.source),
                uncertainty="" if not e.uncertainty_s else f"± {e.uncertainty_s:.3f} s",
                attrs=_flat(dict(e.attrs)),
            )
            for e in events
        ),
        gaps=tuple(g.text() for g in gaps),
        gaps_note=_gaps_note(phases, gaps),
    )


def _expected_text(outage: OutageRecord | None) -> str:
    """How long an endpoint down by design was down before it first came up, for its row."""
    if outage is None:
        return ""
    if outage.end_utc is None:
        return "expected down; never came up"
    return f"expected down {_seconds(outage.duration_s)} before first up"


def _largest(results: Sequence[Result]) -> Result | None:
    """The largest finite figure (a drill's Total RTO among several), else the first."""
    finite = [r for r in results if math.isfinite(r.measured.value)]
    if finite:
        return max(finite, key=lambda r: r.measured.value)
    return results[0] if results else None


def _overview(run: RunRecord, anchors: Mapping[str, str]) -> tuple[OverviewRow, ...]:
    from drdrill.report.severity import run_severities

    severities = run_severities(run)
    rows = []
    for test in run.tests:
        severity = severities.get(test.nodeid)
        total = _largest([r for r in test.results if (r.objective or "") == "Total RTO"])
        downtime = _largest([r for r in test.results if r.name == "client downtime"])
        lost = sum(r.lost_acknowledged for r in test.rpo)
        rows.append(
            OverviewRow(
                anchor=anchors.get(test.nodeid),
                nodeid=test.nodeid,
                outcome=test.outcome,
                worker=test.worker or "",
                duration=_seconds(test.duration_s, 2),
                total_rto="—" if total is None else format_measurement(total.measured),
                downtime="—" if downtime is None else format_measurement(downtime.measured),
                lost_writes="—" if not test.rpo else str(lost),
                missed=sum(1 for r in test.results if r.status is Status.MISSED),
                severity="" if severity is None else severity.label,
                severity_reason="" if severity is None else severity.reason,
                message=None if test.outcome == PASSED else test.message,
            )
        )
    return tuple(rows)


# --- the page --------------------------------------------------------------------------------


def _target_facts(target: Mapping[str, Any]) -> tuple[Fact, ...]:
    return tuple(
        Fact(str(key), _flat(value))
        for key, value in target.items()
        if key not in ("name", "kind", "workers")
    )


def page_view(run: RunRecord) -> PageView:
    """The values the page shows, computed from the run (what the template draws)."""
    drills = [t for t in run.tests if t.measured_anything]
    anchors = {t.nodeid: _anchor(i) for i, t in enumerate(drills)}
    counts = run.counts()
    shown = ["passed", "failed", *(k for k in counts if k not in ("passed", "failed"))]
    target = run.target
    workers: Mapping[str, Any] = target.get("workers") or {}
    target_text = f"{target.get('name', '?')} ({target.get('kind', '?')})"
    if workers:
        target_text += f", {len(workers)} workers: " + ", ".join(workers)
    duration = ""
    if run.finished_utc is not None:
        duration = f" ({(run.finished_utc - run.started_utc).total_seconds():.1f} s)"
    exit_status = "not recorded" if run.exit_status is None else str(run.exit_status)
    facts = (
        Fact("Verdict", f"{run.verdict} (pytest exit status {exit_status})"),
        Fact("Run", run.run_id),
        Fact("Target", target_text),
        Fact("Started", _utc_text(run.started_utc)),
        Fact("Finished", _utc_text(run.finished_utc) + duration),
        Fact("Objectives", run.objectives_source or "none"),
        Fact("Scale", f"runbook figures scaled by {run.objectives_scale:g}"),
    )
    return PageView(
        title=f"DR drill report: run {run.run_id}",
        run_id=run.run_id,
        dry_run=run.dry_run,
        scale=f"{run.objectives_scale:g}",
        verdict_line=verdict_line(run),
        verdict_class=_VERDICT_CLASS[run.verdict],
        lost=tuple(run.lost),
        interruption=run.interruption or "",
        facts=facts,
        counts=tuple(Fact(k, str(counts.get(k, 0))) for k in shown),
        target_details=_target_facts(target),
        objectives=(
            _objectives_table(run, "rto", "Recovery Time Objectives (RTO)", "Component"),
            _objectives_table(run, "rpo", "Recovery Point Objectives (RPO)", "Data type"),
        ),
        overview=_overview(run, anchors),
        drills=tuple(_drill(i, t) for i, t in enumerate(drills)),
        version=__version__,
    )


def _number(value: float) -> str:
    # SVG coordinates: short, and never in exponent form
    return f"{value:.1f}"


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drdrill.report", "templates"),
        autoescape=True,  # the template is .html.j2, which select_autoescape would not match
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = _number
    return env


def render_html(run: RunRecord) -> str:
    """The HTML report of a run: one self-contained page."""
    return _environment().get_template(TEMPLATE).render(page=page_view(run))


def write_html(run: RunRecord, path: Path) -> Path:
    """Write ``report.html``; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run), encoding="utf-8")
    return path
