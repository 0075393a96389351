"""What a MariaDB server committed, from its own binary log: the ground truth of a loss.

The drill's verifier counts the acknowledged writes absent from the promoted database. The
truth here shares nothing with it: ``mariadb-binlog`` decodes the old primary's binary log
after the GTID the promoted replica had applied (its own record of the promotion), and every
row inserted there is a commit the new primary never got. The sandbox logs rows
(``binlog_format=ROW``), so each inserted row is in the log with its values.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from drdrill.errors import DrillError

MARIADB_BINLOG = shutil.which("mariadb-binlog") or "/usr/bin/mariadb-binlog"
_GTID = re.compile(r"\bGTID (\d+-\d+-\d+)\b")
_INSERT = re.compile(r"^### INSERT INTO `([^`]+)`\.`([^`]+)`$")
_VALUE = re.compile(r"^###   @(\d+)=(.*)$")


@dataclass(frozen=True)
class LoggedRow:
    """One inserted row as the binary log has it: its transaction's GTID, table and values
    (``values[0]`` is column 1; strings unquoted, numbers as written)."""

    gtid: str
    database: str
    table: str
    values: tuple[str, ...]


def binlog_files(datadir: Path) -> list[Path]:
    """The server's binary logs, oldest first, as its ``binlog.index`` lists them."""
    index = datadir / "binlog.index"
    try:
        lines = index.read_text().splitlines()
    except OSError as exc:
        raise DrillError(f"{index}: cannot read the binary log index: {exc.strerror}") from exc
    return [datadir / Path(line.strip()).name for line in lines if line.strip()]


def inserted_rows(datadir: Path, after_gtid: str = "") -> list[LoggedRow]:
    """Every row inserted by the transactions logged after ``after_gtid`` (a GTID position
    such as ``0-1-13``; empty: the whole log), in log order."""
    args = [MARIADB_BINLOG, "--no-defaults", "-v", "--base64-output=DECODE-ROWS"]
    if after_gtid:
        args.append(f"--start-position={after_gtid}")
    files = binlog_files(datadir)
    result = subprocess.run(
        [*args, *map(str, files)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise DrillError(f"mariadb-binlog on {datadir}: {result.stderr.strip()[:200]}")
    return parse_rows(result.stdout)


def parse_rows(text: str) -> list[LoggedRow]:
    """The inserted rows in ``mariadb-binlog -v --base64-output=DECODE-ROWS`` output."""
    rows: list[LoggedRow] = []
    gtid = ""
    current: tuple[str, str] | None = None
    values: list[str] = []

    def flush() -> None:
        if current is not None:
            rows.append(LoggedRow(gtid, current[0], current[1], tuple(values)))

    for line in text.splitlines():
        if match := _GTID.search(line):
            flush()
            current, values = None, []
            gtid = match.group(1)
        elif match := _INSERT.match(line):
            flush()
            current, values = (match.group(1), match.group(2)), []
        elif current is not None and (match := _VALUE.match(line)):
            values.append(_unquote(match.group(2)))
        elif current is not None and not line.startswith("###"):
            flush()
            current, values = None, []
    flush()
    return rows


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return value


def marker_ids_after(datadir: Path, after_gtid: str, run_id: str, table: str) -> set[int]:
    """The marker ids of ``run_id`` that the server committed after ``after_gtid``."""
    return {
        int(row.values[1])
        for row in inserted_rows(datadir, after_gtid)
        if row.table == table and len(row.values) >= 2 and row.values[0] == run_id
    }
