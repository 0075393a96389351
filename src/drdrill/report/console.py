"""The summary table printed at the end of a pytest session."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from drdrill.measure import Status
from drdrill.report.record import RunRecord

_STYLE = {Status.MET: "green", Status.MISSED: "bold red", Status.NO_OBJECTIVE: "dim"}


def render_summary(run: RunRecord, width: int = 100, color: bool = False) -> str:
    """Each measured figure beside its objective, one row a figure."""
    table = Table(title=f"drdrill run {run.run_id}", title_justify="left", expand=False)
    table.add_column("Test", overflow="fold")
    table.add_column("Figure", overflow="fold")
    table.add_column("Measured", no_wrap=True)
    table.add_column("Objective")
    table.add_column("Status", no_wrap=True)
    for result in run.results:
        test = (result.test or "").rsplit("::", 1)[-1]
        objective = "—" if result.target_s is None else f"{result.objective}: {result.target_s:g} s"
        table.add_row(
            test,
            result.name,
            str(result.measured),
            objective,
            f"[{_STYLE[result.status]}]{result.status}[/]",
        )
    for record in run.tests:
        for outage in record.outages:
            duration = "open" if outage.duration_s is None else f"{outage.duration_s:.3f} s"
            table.add_row(
                record.nodeid.rsplit("::", 1)[-1], f"outage {outage.endpoint}", duration, "—", ""
            )
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False
    )
    console.print(table)
    return buffer.getvalue()
