"""The summary table printed at the end of a pytest session."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drdrill.measure import Status
from drdrill.report.record import RunRecord

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


def render_summary(run: RunRecord, width: int = 100, color: bool = False) -> str:
    """Each measured figure beside its objective: one section a drill, one row a figure.

    Outages are summed up per drill (count and longest) rather than listed: report.md and
    report.json list them all.
    """
    table = Table(title=f"drdrill run {run.run_id}", title_justify="left", expand=False)
    table.add_column("Figure", overflow="fold")
    table.add_column("Measured", no_wrap=True)
    table.add_column("Objective", overflow="fold")
    table.add_column("Status", no_wrap=True)
    table.add_column("vs truth", no_wrap=True, justify="right")
    for record in run.drills:
        name = escape(record.nodeid.rsplit("::", 1)[-1])  # "[automated]" is not markup
        table.add_section()
        table.add_row(f"[bold]{name}[/] ({record.outcome})", "", "", "", "")
        for result in record.results:
            objective = "—" if result.target_s is None else f"{result.target_s:g} s"
            error = "" if result.error_ms is None else f"{result.error_ms:+.0f} ms"
            table.add_row(
                f"  {escape(result.name)}",
                str(result.measured),
                objective,
                f"[{_STYLE[result.status]}]{result.status}[/]",
                error,
            )
        if record.outages:
            longest = max(record.outages, key=lambda o: o.duration_s or float("inf"))
            duration = "open" if longest.duration_s is None else f"{longest.duration_s:.3f} s"
            table.add_row(
                f"  outages: {len(record.outages)}, longest "
                f"{escape(_short_endpoint(longest.endpoint))}",
                duration,
                "",
                "",
                "",
            )
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False
    )
    console.print(table)
    return buffer.getvalue()
