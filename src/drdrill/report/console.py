"""The summary printed at the end of a pytest session: every figure beside its objective, every
test that did not pass with its one-line reason (the plugin then prints the report paths and,
last, the run's verdict line)."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drdrill.measure import Status
from drdrill.report.figures import (
    NO_TRUTH,
    error_text,
    interval_text,
    measured_text,
    status_text,
)
from drdrill.report.record import PASSED, RunRecord, TestRecord

_STYLE = {
    Status.MET: "green",
    Status.MISSED: "bold red",
    Status.INCONCLUSIVE: "yellow",
    Status.INVALID: "bold red",
    Status.NO_OBJECTIVE: "dim",
}


def _short_endpoint(url: str) -> str:
    """An endpoint as its path (and query): the host is the same for a drill's endpoints."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _drill_table(record: TestRecord) -> Table:
    """A drill's figures: value ± uncertainty over its interval, objective, status, truth."""
    name = escape(record.nodeid.rsplit("::", 1)[-1])  # "[automated]" is not markup
    table = Table(
        title=f"{name} ({record.outcome})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        expand=False,
        pad_edge=False,
        collapse_padding=True,
    )
    # a figure's name is never broken (at 80 columns the truth column wraps instead); short
    # headers leave that column room for "no ground truth" whole
    table.add_column("Figure", no_wrap=True)
    table.add_column("Measured", no_wrap=True)
    table.add_column("Target", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("vs truth", overflow="fold", min_width=len(NO_TRUTH))
    for result in record.results:
        objective = "—" if result.target_s is None else f"{result.target_s:g} s"
        # the truth's source is in report.md and report.html: here the column stays narrow
        error = error_text(result, with_source=False, inside=" (inside)", meets=" (meets)")
        table.add_row(
            escape(result.name),
            f"{measured_text(result)}\n{interval_text(result)}",
            objective,
            f"[{_STYLE[result.status]}]{result.status}[/]",
            escape(error),
        )
    return table


def _outage_line(record: TestRecord) -> str | None:
    """The drill's outages summed up (their count and the longest), under its table; an
    endpoint down by design before it first came up (pilot light) is no outage."""
    outages = [o for o in record.outages if not o.expected_down]
    if not outages:
        return None
    longest = max(outages, key=lambda o: o.duration_s or float("inf"))
    duration = "still open" if longest.duration_s is None else f"{longest.duration_s:.3f} s"
    return (
        f"  outages seen by the probes: {len(outages)}; the longest "
        f"{duration} on {_short_endpoint(longest.endpoint)}"
    )


def _notes(record: TestRecord) -> list[str]:
    """What a figure's status needs said and the table has no room for: why it is invalid."""
    return [
        f"  {r.name}: {status_text(r)}"
        for r in record.results
        if r.status is Status.INVALID or r.status is Status.INCONCLUSIVE
    ]


def failure_lines(run: RunRecord) -> list[str]:
    """Every test that did not pass, with its reason: ``failed  test_x: replication stopped``."""
    width = max((len(t.outcome) for t in run.tests), default=0)
    lines = []
    for test in run.tests:
        if test.outcome == PASSED:
            continue
        why = f": {test.message}" if test.message else ""
        lines.append(f"  {test.outcome:<{width}}  {test.nodeid}{why}")
    return lines


def render_summary(run: RunRecord, width: int = 100, color: bool = False) -> str:
    """The figures of every drill beside their objectives, then every test that did not pass.

    Outages are summed up per drill (count and longest) rather than listed: report.md and
    report.json list them all. The tests that did not pass are plain lines, wrapped by the
    terminal rather than cut into a table.
    """
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False
    )
    if run.drills:
        console.print(f"drdrill run {run.run_id}: figures", markup=False)
    for record in run.drills:
        if record.results:
            console.print(_drill_table(record))
        else:
            name = record.nodeid.rsplit("::", 1)[-1]
            buffer.write(f"{name} ({record.outcome}): no figure measured\n")
        outages = _outage_line(record)
        if outages is not None:
            buffer.write(outages + "\n")
        for note in _notes(record):
            buffer.write(note + "\n")
    failures = failure_lines(run)
    if failures:
        buffer.write("drdrill: tests that did not pass\n")
        buffer.write("".join(line + "\n" for line in failures))
    return buffer.getvalue()
