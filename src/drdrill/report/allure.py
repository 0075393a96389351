"""Allure results of a drill: each figure a step beside its objective, the evidence attached.

allure-pytest writes the results (``pytest --alluredir DIR``); this module only feeds it through
allure's public API (``allure.step``, ``allure.attach``, ``allure.dynamic``), once a drill has
ended, while allure-pytest still has the test open: in the plugin's ``pytest_runtest_teardown``
wrapper, after the fixtures are torn down (probes stopped, faults reverted). See docs/allure.md.
``allure`` is imported only where results are fed, so that the rest (titles, severities, checked
at collection) works without allure-pytest installed.

Per drill: a step per measured figure titled
``Total RTO: 2.598 ± 0.001 s [2.597, 2.599] s (objective 18 s): met`` (a missed or invalid one
failed, with the miss or the reason as its message; an inconclusive one broken: allure's word
for "cannot tell"); the drill as JSON (events, figures, outages, probes, RPO), its runbook rows
in markdown, the HTML report when there is one; labels ``suite`` (the test module),
``severity`` and a ``tag`` with the target kind, and for a drill that failed a ``tag`` with its
level of the runbook's escalation matrix ("P1 - Critical"; a drill that passed has none).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from drdrill.errors import DrillError, InputError, ObjectiveMissed
from drdrill.measure import Result, Status
from drdrill.report.figures import error_text, interval_text, measured_text, status_text
from drdrill.report.record import RunRecord, TestRecord

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
    """``ground truth 2.544 s (error +3.1 ms)``, its source named when known; or "no ground
    truth"."""
    error = result.error_ms
    if result.truth_s is None or error is None:
        return "no ground truth"
    source = f" from {result.truth_source}" if result.truth_source else ""
    return f"ground truth {result.truth_s:.3f} s{source} (error {_signed(error)} ms)"


def _phase_step(result: Result) -> None:
    import allure

    # a missed or invalid figure raises an assertion inside its step: that is how allure's
    # public API marks a step failed (with the reason as its message); an inconclusive one any
    # other exception (broken). The test's own outcome stays pytest's.
    with (
        contextlib.suppress(ObjectiveMissed, FigureInconclusive),
        allure.step(phase_title(result)),
    ):
        if result.start and result.end:
            with allure.step(f"from {result.start} to {result.end}"):
                pass
        with allure.step(_truth_step(result)):
            pass
        if result.status is Status.INVALID:
            with allure.step(f"invalid: {result.note or 'not a possible figure'}"):
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
        _phase_step(result)
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
    their tests; Allure 3 shows global attachments on the report's front page.
    """
    import allure

    if html_report.is_file():
        allure.global_attach.file(  # type: ignore[no-untyped-call]
            str(html_report), name=HTML_REPORT_NAME, attachment_type=allure.attachment_type.HTML
        )
