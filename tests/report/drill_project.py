"""The small drill project (runbook and stack config) the report tests run with pytester."""

from __future__ import annotations

from typing import Any

#: a runbook with one RTO table and one RPO table
RUNBOOK = """# Runbook

## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Detection** | 2 minutes | 1-3 minutes | alarms |
| **Total RTO** | **15 minutes** | 10-20 minutes | end to end |

## Recovery Point Objectives

| Data Type | Target RPO | Actual RPO | Notes |
|---|---|---|---|
| **Database** | 1 minute | < 30 seconds | lag |
"""

#: the stack config beside it: the local target, reports in out/
CONFIG = """runbook: runbook.md
target: local
journal: journal.jsonl
report_dir: out
"""


def drill_project(pytester: Any, config: str = CONFIG, **drills: str) -> Any:
    """``pytester``'s folder as the small drill project: the runbook, ``config`` as
    ``drdrill.yaml`` (found through the ini), and each keyword a drill module of that name."""
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=config)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    if drills:
        pytester.makepyfile(**drills)
    return pytester
