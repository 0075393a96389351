"""The small drill project (runbook and stack config) the report tests run with pytester."""

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
