"""``drdrill history``: each objective over the last runs, as a table and an HTML chart.

No secret goes out (:mod:`drdrill.redact`): a run imported with ``--import`` is stored
redacted (a report.json of an older drdrill may hold one), and what is shown, printed or
written, is made from a redacted copy of the history (a store an older drdrill wrote may hold
one), masked before it is laid out in a table or escaped into HTML.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from drdrill import defaults
from drdrill.errors import InputError

if TYPE_CHECKING:
    from rich.table import Table

    from drdrill.report.history import HistoryStore, Trend

DEFAULT_REPORT_DIR = Path("reports")
DEFAULT_DB_NAME = "history.sqlite"
#: the config a command reads by default where it says so (when the file exists)
DEFAULT_CONFIG = Path(defaults.DEFAULT_CONFIG)

HELP_DB = "the history database (default: the config's history path, else reports/history.sqlite)"
HELP_CONFIG = "read the history path and report_dir from this drdrill.yaml"
HELP_DEFAULT_CONFIG = (
    "read the history path, report_dir and compliance settings from this drdrill.yaml "
    "(default: drdrill.yaml in the current folder, when there is one)"
)
HELP_LAST = "how many of the latest runs to show (default 10; dry runs are left out)"
HELP_HTML = "where to write the chart page (default: <report_dir>/history.html)"
HELP_JSON = "print the trend as JSON: {store, runs, objectives: [...], html}"
HELP_TARGET = "only runs against targets of this kind (sandbox, aws, local)"
HELP_IMPORT = "first append the runs of these report.json files or report folders"


def add_store_options(parser: argparse.ArgumentParser, default_config: bool = False) -> None:
    """The options every history command shares: where the store and the reports are.

    With ``default_config``, ``--config`` defaults to ``drdrill.yaml`` in the current folder
    when there is one.
    """
    parser.add_argument("--db", metavar="PATH", type=Path, default=None, help=HELP_DB)
    parser.add_argument(
        "--config",
        metavar="drdrill.yaml",
        type=Path,
        default=None,
        help=HELP_DEFAULT_CONFIG if default_config else HELP_CONFIG,
    )
    parser.set_defaults(default_config=default_config)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``history`` sub-command."""
    parser = sub.add_parser(
        "history",
        help="show each objective over the last runs, and write an HTML chart",
        description="Pass rate, median and worst figure of each RTO/RPO objective over the last "
        "runs recorded in the history, and a self-contained HTML page with a chart of each.",
    )
    add_store_options(parser)
    # Kept as text and checked in run(): a bad value gives the usual one-line error.
    parser.add_argument("--last", metavar="N", default="10", help=HELP_LAST)
    parser.add_argument("--html", metavar="PATH", type=Path, default=None, help=HELP_HTML)
    parser.add_argument("--json", action="store_true", help=HELP_JSON)
    parser.add_argument("--target", metavar="KIND", default=None, help=HELP_TARGET)
    parser.add_argument(
        "--import",
        dest="imports",
        metavar="PATH",
        type=Path,
        nargs="+",
        default=[],
        help=HELP_IMPORT,
    )
    parser.set_defaults(run=run)


def locations(args: argparse.Namespace) -> tuple[Path, Path]:
    """The history database and the report folder the command reads and writes."""
    report_dir, db = DEFAULT_REPORT_DIR, DEFAULT_REPORT_DIR / DEFAULT_DB_NAME
    config_path: Path | None = args.config
    if config_path is None and getattr(args, "default_config", False):
        config_path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    if config_path is not None:
        from drdrill.config import load_config

        config = load_config(config_path)
        report_dir = config.resolve(config.report_dir)
        db = config.history_path(report_dir)
    else:
        register_config_secrets(DEFAULT_CONFIG)
    return report_dir, (args.db if args.db is not None else db)


def register_config_secrets(path: Path) -> None:
    """Mask the secrets of the config at ``path`` in what the command shows, when there is
    one, though it is not read for anything else (``--db`` without ``--config``): a history
    an older drdrill wrote may quote them. A config that does not load is no error here."""
    if not path.is_file():
        return
    import contextlib

    from drdrill.config import load_config
    from drdrill.errors import DrillError

    with contextlib.suppress(DrillError):
        load_config(path)  # registers its secrets first, even when it is invalid


def existing(db: Path) -> Path:
    """``db`` if there is a history there; InputError naming ``--db`` otherwise."""
    if not db.is_file():
        raise InputError(
            "--db",
            f"no history at {db}: every run of drills appends to it "
            "(drdrill history --import reports/ adds runs already on disk)",
        )
    return db


def last_runs(text: str) -> int:
    """The ``--last`` value: a whole number of runs, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError("--last", f"'{text}' is not a number of runs (1 or more)")
    return value


def redacting_store(db: Path) -> HistoryStore:
    """The history at ``db``, opened so that every run appended to it is redacted first."""
    from drdrill.redact import redact_data
    from drdrill.report.history import HistoryStore

    class RedactingStore(HistoryStore):
        """A history store whose appended runs are redacted (an imported report.json may
        come from a drdrill that did not redact)."""

        def append(
            self,
            run_json: Mapping[str, Any],
            report_files: Sequence[Path],
            where: str = "report.json",
        ) -> None:
            """Append ``run_json`` redacted; the digests are still of the files as they are."""
            super().append(redact_data(run_json), report_files, where)

    return RedactingStore(db)


def run(args: argparse.Namespace) -> int:
    """Print the trend table (or JSON) and write the chart page."""
    from drdrill.redact import redact, redact_fields
    from drdrill.report.history import import_reports, render_trend_html

    last_n = last_runs(args.last)
    report_dir, db = locations(args)
    if not args.imports:
        existing(db)
    html_path: Path = args.html if args.html is not None else report_dir / "history.html"
    with redacting_store(db) as store:
        imported = import_reports(store, args.imports)
        for path, why in imported.skipped:
            print(redact(f"drdrill history: skipped {path}: {why}"), file=sys.stderr)
        trend = redact_fields(store.trend_of(last_n, args.target))
        # as store.write_trend_html writes it, from the redacted trend
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_trend_html(trend, str(store.path)), encoding="utf-8")
    if args.json:
        from drdrill.report.history import run_verdict_json

        print(
            json.dumps(
                {
                    "store": str(db),
                    "imported": list(imported.appended),
                    "runs": [r.run_id for r in trend.runs],
                    # each run's verdict, pytest exit status and failed tests with their reason
                    "verdicts": [run_verdict_json(r) for r in trend.runs],
                    "objectives": [t.to_json() for t in trend.objectives],
                    "html": str(html_path),
                },
                indent=2,
            )
        )
        return 0
    for run_id in imported.appended:
        print(f"drdrill history: appended {run_id}")
    print(render_trend_table(trend, str(db)), end="")
    print(render_runs_table(trend), end="")
    print(f"drdrill history: chart {html_path}")
    return 0


def render_trend_table(trend: Trend, store: str, width: int | None = None) -> str:
    """The trend as a terminal table (colour only on a terminal)."""
    from rich.table import Table

    if not trend.runs:
        return f"drdrill history: no runs in {store}\n"
    first, last = trend.runs[0].started_utc, trend.runs[-1].started_utc
    table = Table(
        title=f"drdrill history: {len(trend.runs)} runs, {first:%Y-%m-%d %H:%M} to "
        f"{last:%Y-%m-%d %H:%M} UTC",
        title_justify="left",
    )
    columns: list[tuple[str, Literal["left", "right"]]] = [
        ("Objective", "left"),
        ("Target", "right"),
        ("Runs", "right"),
        ("Pass rate", "right"),
        ("Median", "right"),
        ("Worst", "right"),
        ("Worst run", "left"),
        ("Last", "left"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name != "Objective")
    style = {
        "met": "green",
        "missed": "bold red",
        "inconclusive": "yellow",
        "invalid": "bold magenta",
    }
    for t in trend.objectives:
        rate = "n/a" if t.pass_rate is None else f"{t.pass_rate:.0%} ({t.met}/{t.judged})"
        table.add_row(
            t.label,
            "n/a" if t.target_s is None else f"{t.target_s:g} s",
            str(t.runs),
            rate,
            f"{t.median_s:.3f} s",
            f"{t.worst_s:.3f} s",
            t.worst_run,
            f"[{style.get(t.last_status, 'dim')}]{t.last_status}[/]",
        )
    return _printed(table, width)


def render_runs_table(trend: Trend, width: int | None = None) -> str:
    """Each run of the trend with its verdict, pytest exit status and why it did not pass."""
    from rich.markup import escape
    from rich.table import Table

    if not trend.runs:
        return ""
    table = Table(title="runs", title_justify="left")
    for name in ("Run", "Started (UTC)", "Verdict", "Exit", "Tests", "Why"):
        table.add_column(name, no_wrap=name not in ("Tests", "Why"), overflow="fold")
    style = {"passed": "green", "failed": "bold red", "incomplete": "bold red"}
    for run in trend.runs:
        tests = ", ".join(f"{n} {o}" for o, n in run.test_counts().items()) or "none"
        table.add_row(
            run.run_id,
            f"{run.started_utc:%Y-%m-%d %H:%M}",
            f"[{style.get(run.verdict, 'yellow')}]{run.verdict}[/]",
            "-" if run.exit_status is None else str(run.exit_status),
            tests,
            escape(run.reason),
        )
    return _printed(table, width)


def _printed(table: Table, width: int | None) -> str:
    """A rich table as text (colour only on a terminal)."""
    import io

    from rich.console import Console

    color = sys.stdout.isatty()
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        # a log or a pipe gets the whole table; a terminal gets its own width
        width=width or (shutil.get_terminal_size().columns if color else 120),
        force_terminal=color,
        no_color=not color,
        highlight=False,
    )
    console.print(table)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
