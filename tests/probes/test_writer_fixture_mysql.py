"""The ``writer`` fixture with ``writer.sink: mysql``: markers straight into a real MariaDB."""

from __future__ import annotations

from typing import Any

import pytest

from drdrill.probes.writes import ensure_marker_table, read_present_markers

pytest_plugins = ["pytester"]

RUNBOOK = """# Runbook

## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Total RTO** | 15 minutes | | |

## Recovery Point Objectives

| Data Type | Target RPO | Actual RPO | Notes |
|---|---|---|---|
| **Database** | 1 minute | | |
"""


def test_markers_through_the_configured_database(
    pytester: pytest.Pytester, mariadb_pair: Any
) -> None:
    c = mariadb_pair.primary.config
    with mariadb_pair.app_endpoint(mariadb_pair.primary).connect(autocommit=True) as conn:
        ensure_marker_table(conn)
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(
        ".yaml",
        drdrill=(
            "runbook: runbook.md\ntarget: local\njournal: j.jsonl\nreport_dir: out\n"
            f"writer:\n  sink: mysql\n  rate_hz: 50\n  mysql: {{host: {c.host}, port: {c.port}, "
            f"user: {c.app_user}, password: {c.app_password}, database: {c.database}}}\n"
        ),
    )
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(
        """
        import time

        def test_write(writer):
            writer.start()
            time.sleep(0.5)
            log = writer.stop()
            acked = sorted(r.marker_id for r in log.records if r.acknowledged)
            print("RUN", writer.run_id, ",".join(map(str, acked)))
        """
    )
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    (line,) = [ln for ln in result.stdout.lines if "RUN " in ln]
    run_id, ids = line.split("RUN ", 1)[1].split()
    acked = {int(i) for i in ids.split(",")}
    with mariadb_pair.app_endpoint(mariadb_pair.primary).connect(autocommit=True) as conn:
        present = read_present_markers(conn, run_id)
    # every acknowledged marker is in the database the config named, and only those were sent
    assert len(acked) >= 10 and present == acked
