"""Allure results of a drill: each figure a step beside its objective, the evidence attached.

allure-pytest writes the results (``pytest --alluredir DIR``); this module feeds it through
allure's public API (``allure.step``, ``allure.attach``, ``allure.dynamic``; only a step's times
are set on allure-pytest's own step result, :func:`_open_step`), once a drill has ended, while
allure-pytest still has the test open: in the plugin's ``pytest_runtest_teardown`` wrapper,
after the fixtures are torn down (probes stopped, faults reverted). See docs/allure.md.
``allure`` is imported only where results are fed, so that the rest (titles, severities, checked
at collection) works without allure-pytest installed.

Per drill: a step per measured figure titled
``Total RTO: 2.598 ± 0.001 s [2.597, 2.599] s (objective 18 s): met`` (a missed or invalid one
failed, with the miss or the reason as its message; an inconclusive one broken: allure's word
for "cannot tell"), spanning its phase's real start and stop (:func:`phase_span`); the drill
as JSON (events, figures, outages, probes, RPO), its runbook rows in markdown, an HTML report
when the caller has one; labels ``suite`` (the test module), ``severity`` and a ``tag`` with
the target kind, and for a drill that failed a ``tag`` with its level of the runbook's
escalation matrix ("P1 - Critical"; a drill that passed has none). Per run, at the session's
end: its ``report.html`` as a global attachment (:func:`attach_written_reports`).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drdrill.errors import DrillError, InputError, ObjectiveMissed
from drdrill.measure import Measurement, Result, Status
from drdrill.report.figures import error_text, interval_text, measured_text, status_text
from drdrill.report.record import RunRecord, TestRecord
from drdrill.timeline import Event

#: words in a drill's node id that make it critical by default: losing a region is the
#: disaster the runbook is for; every other drill is normal unless its marker says otherwise
CRITICAL_DRILLS: tuple[str, ...] = ("region_failover", "failback")
#: the severities allure knows (``allure.severity_level``), for the drill marker's ``severity``
SEVERITIES: tuple[str, ...] = ("blocker", "critical", "normal", "minor", "trivial")
#: Allure 3 previews markdown attachments; allure-python has no constant for it
MARKDOWN_TYPE = "text/markdown"

#: the attachments' names, as the Allure report lists them
DRILL_JSON_NAME = "drdrill drill.json"
RUNBOOK_ROWS_NAME = "drdrill runbook tables.md"
HTML_REPORT_NAME = "drdrill report.html"


def allure_recording(config: pytest.Config) -> bool:
    """Whether allure-pytest records this run: installed and given ``--alluredir``.

    ``pluginmanager.hasplugin("allure_pytest")`` alone is true whenever the package is
    installed; without ``--alluredir`` nothing would be written, so nothing needs feeding.
    """
    return config.pluginmanager.hasplugin("allure_pytest") and bool(
        config.getoption("allure_report_dir", None)
    )


class FigureInconclusive(DrillError):
    """Raised inside an inconclusive figure's step: allure marks it broken (not failed, not
    passed), its interval straddling the target."""


def phase_title(result: Result) -> str:
    """A figure beside its objective:
    ``Total RTO: 2.598 ± 0.001 s [2.597, 2.599] s (objective 18 s): met``."""
    figure = f"{result.name}: {measured_text(result)} {interval_text(result)}"
    if result.target_s is None:
        return f"{figure}: {result.status}"
    return f"{figure} (objective {result.target_s:g} s): {result.status}"


def drill_severity(nodeid: str, requested: str | None = None) -> str:
    """The allure severity of a drill: the marker's ``severity``, else by what it drills.

    Region failover and failback are ``critical``, every other drill ``normal``. An unknown
    ``requested`` severity is an InputError naming the drill (check it at collection).
    """
    if requested is not None:
        if requested not in SEVERITIES:
            raise InputError(
                nodeid,
                f"drill marker: unknown severity {requested!r} (one of {', '.join(SEVERITIES)})",
            )
        return requested
    lowered = nodeid.lower()
    return "critical" if any(word in lowered for word in CRITICAL_DRILLS) else "normal"


def module_suite(nodeid: str) -> str:
    """A drill's suite: its test module (``test_region_failover``), as allure-pytest names it."""
    path = nodeid.split("::", 1)[0]
    return path.rsplit("/", 1)[-1].removesuffix(".py")


def drill_json(record: TestRecord) -> str:
    """One drill as JSON: outcome, timeline events, figures, outages, probe statistics, RPO."""
    data = {
        "schema": "drdrill.drill",
        "test": record.nodeid,
        "outcome": record.outcome,
        "worker": record.worker,
        "events": [e.to_json() for e in record.events],
        "phases": [{**r.to_json(), "test": record.nodeid} for r in record.results],
        "outages": [o.to_json() for o in record.outages],
        "probes": [p.to_json() for p in record.probes],
        "rpo": [r.to_json() for r in record.rpo],
    }
    # event attributes are whatever a drill marked: anything not JSON goes as its text
    return json.dumps(data, indent=2, default=str)


def _figure_row(result: Result) -> str:
    target = "N/A" if result.target_s is None else f"{result.target_s:g} s"
    status = " ".join(status_text(result).replace("|", "\\|").split())
    return (
        f"| {result.name} | {result.kind.upper()} | {result.objective or ''} | {target} | "
        f"{measured_text(result)} {interval_text(result)} | {status} | {error_text(result)} |"
    )


def drill_markdown(record: TestRecord, run: RunRecord | None = None) -> str:
    """The drill's rows in markdown: the runbook's tables filled with this drill alone.

    With the ``run`` (its objectives) the runbook's own RTO and RPO tables, as ``report.md``
    writes them; without, a table of the drill's figures beside their objectives.
    """
    if run is not None:
        from drdrill.report.markdown import render_markdown

        return render_markdown(replace(run, tests=[record]))
    lines = [
        f"# {record.nodeid}",
        "",
        "| Figure | Kind | Objective | Target | Actual (this drill) | Status | Truth error |",
        "|---|---|---|---|---|---|---|",
        *(_figure_row(r) for r in record.results),
        "",
    ]
    return "\n".join(lines)


def _signed(value: float) -> str:
    # rounded first, so that a tiny negative error reads +0.0, not -0.0
    return f"{round(value, 1) + 0.0:+.1f}"


def _truth_step(result: Result) -> str:
    """``ground truth 2.544 s (error +3.1 ms)`` (``0.965 ± 0.280 s`` for a truth that is itself
    uncertain), its source named when known; or "no ground truth"."""
    error = result.error_ms
    if result.truth_s is None or error is None:
        return "no ground truth"
    source = f" from {result.truth_source}" if result.truth_source else ""
    spread = result.truth_uncertainty_s
    value = f"{result.truth_s:.3f} s"
    if spread >= 0.0005:
        value = f"{result.truth_s:.3f} ± {spread:.3f} s"
    return f"ground truth {value}{source} (error {_signed(error)} ms)"


def phase_span(result: Result, events: Sequence[Event]) -> tuple[int, int] | None:
    """When a figure's phase really ran, as allure's steps keep time (ms since the epoch): from
    the middle of its start event's interval, for as long as it measured (a figure is the span
    between the two events' midpoints). None for a figure that is no span of the drill's
    timeline: no start event (an RPO, a count), not finite. An invalid phase (its end before its
    start) has no length."""
    value = result.measured.value
    if result.start is None or result.measured.unit != "s" or not math.isfinite(value):
        return None
    starts = [e for e in events if e.name == result.start]
    if not starts:
        return None
    ends = [e for e in events if e.name == result.end]
    if ends and len(starts) > 1:
        # a name the timeline has more than once: the start whose span to an end is the figure
        pairs = [(s, e) for s in starts for e in ends]
        start = min(pairs, key=lambda p: abs(Measurement.between(*p).value - value))[0]
    else:
        start = starts[0]
    begin = round((start.utc.timestamp() - start.uncertainty_s / 2) * 1000)
    return begin, begin + max(0, round(value * 1000))


def _open_step(uuid: str) -> Any:
    """allure-pytest's result of the step ``uuid`` while it is open (its ``start`` and
    ``stop`` can be set), or None where another allure integration records the run."""
    from allure_commons import plugin_manager

    for plugin in plugin_manager.get_plugins():
        get_item = getattr(getattr(plugin, "allure_logger", None), "get_item", None)
        found = None if get_item is None else get_item(uuid)
        if hasattr(found, "start") and hasattr(found, "stop"):
            return found
    return None


@contextlib.contextmanager
def _step(title: str, span: tuple[int, int] | None) -> Iterator[None]:
    """``allure.step(title)`` that spans ``span`` (start and stop, ms since the epoch) once
    closed, not the moment it was written (a drill's steps are written at its teardown)."""
    import allure

    context = allure.step(title)
    step = None
    try:
        with context:
            step = _open_step(context.uuid)
            yield
    finally:
        # allure-pytest stamps the stop when the step closes: the real times go on after
        if step is not None and span is not None:
            step.start, step.stop = span


def _phase_step(result: Result, events: Sequence[Event] = ()) -> None:
    # a missed or invalid figure raises an assertion inside its step: that is how allure's
    # public API marks a step failed (with the reason as its message); an inconclusive one any
    # other exception (broken). The test's own outcome stays pytest's.
    span = phase_span(result, events)
    # the sub-steps say what the phase is: the span its events bound, then at its end what
    # was checked (the ground truth, why it is invalid)
    after = None if span is None else (span[1], span[1])
    with (
        contextlib.suppress(ObjectiveMissed, FigureInconclusive),
        _step(phase_title(result), span),
    ):
        if result.start and result.end:
            with _step(f"from {result.start} to {result.end}", span):
                pass
        with _step(_truth_step(result), after):
            pass
        if result.status is Status.INVALID:
            with _step(f"invalid: {result.note or 'not a possible figure'}", after):
                pass
        if result.status in (Status.MISSED, Status.INVALID):
            raise ObjectiveMissed(result.describe_miss())
        if result.status is Status.INCONCLUSIVE:
            raise FigureInconclusive(result.describe_miss())


def record_drill(
    record: TestRecord,
    html_report: Path | None = None,
    *,
    target_kind: str | None = None,
    severity: str | None = None,
    run: RunRecord | None = None,
) -> None:
    """Feed one finished drill to allure-pytest: steps, attachments and labels.

    Call it while allure has the test open (the plugin's ``pytest_runtest_teardown`` wrapper,
    after ``yield``) and only when :func:`allure_recording`. ``severity`` is the drill marker's
    (None: by what it drills); ``run`` gives the runbook tables their objectives; an
    ``html_report`` that does not exist (yet) is left out.
    """
    import allure

    # allure-python leaves Dynamic and attach.file unannotated, hence the ignores below
    allure.dynamic.suite(module_suite(record.nodeid))  # type: ignore[no-untyped-call]
    level = allure.severity_level(drill_severity(record.nodeid, severity))
    allure.dynamic.severity(level)  # type: ignore[no-untyped-call]
    if target_kind:
        allure.dynamic.tag(target_kind)  # type: ignore[no-untyped-call]
    if record.failed:
        # the escalation matrix's level, for a drill that failed only: a passing drill's
        # outage is its design
        from drdrill.report import severity as escalation_matrix

        matrix = None if run is None else escalation_matrix.run_matrix(run)
        escalation = escalation_matrix.drill_severity(record, matrix)
        allure.dynamic.tag(escalation.label)  # type: ignore[no-untyped-call]
    for result in record.results:
        _phase_step(result, record.events)
    allure.attach(
        drill_json(record), name=DRILL_JSON_NAME, attachment_type=allure.attachment_type.JSON
    )
    allure.attach(
        drill_markdown(record, run),
        name=RUNBOOK_ROWS_NAME,
        attachment_type=MARKDOWN_TYPE,
        extension="md",
    )
    if html_report is not None and html_report.is_file():
        allure.attach.file(  # type: ignore[no-untyped-call]
            str(html_report), name=HTML_REPORT_NAME, attachment_type=allure.attachment_type.HTML
        )


def attach_run_report(html_report: Path) -> None:
    """The run's HTML report as an allure global attachment (for the end of the session).

    The run's ``report.html`` exists only once every drill has ended, after allure has closed
    their tests; Allure 3 shows global attachments in its "Global Attachments" tab.
    """
    import allure

    if html_report.is_file():
        allure.global_attach.file(  # type: ignore[no-untyped-call]
            str(html_report), name=HTML_REPORT_NAME, attachment_type=allure.attachment_type.HTML
        )


def attach_written_reports(config: pytest.Config, written: Iterable[Path]) -> Path | None:
    """The run's ``report.html`` among the reports it wrote (``written``) as an allure global
    attachment, when allure-pytest records the run (:func:`allure_recording`); call it at the
    end of the session, once they are written, while allure-pytest is still configured.
    Returns the report attached, or None."""
    if not allure_recording(config):
        return None
    html = next((path for path in written if path.name == "report.html"), None)
    if html is None or not html.is_file():
        return None
    attach_run_report(html)
    return html
