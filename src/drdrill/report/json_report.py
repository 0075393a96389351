"""``report.json``: the run as versioned JSON (schema in docs/report-schema.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drdrill.report.record import RunRecord, run_metadata

#: Bumped on any change a reader could notice: major for removals/renames, minor for additions.
SCHEMA_VERSION = "1.0"


def run_to_json(run: RunRecord) -> dict[str, Any]:
    """The whole run as one JSON object; every list item names the test it belongs to."""
    return {
        "schema": "drdrill.report",
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": run.run_id,
            "started_utc": run.started_utc.isoformat(),
            "finished_utc": None if run.finished_utc is None else run.finished_utc.isoformat(),
            "dry_run": run.dry_run,
            **run_metadata(),
        },
        "target": dict(run.target),
        "objectives": {
            "source": run.objectives_source,
            "scale": run.objectives_scale,
            **run.objectives,
        },
        "tests": [
            {
                "nodeid": t.nodeid,
                "outcome": t.outcome,
                "duration_s": round(t.duration_s, 6),
                "message": t.message,
            }
            for t in run.tests
        ],
        "events": [{"test": t.nodeid, **e.to_json()} for t in run.tests for e in t.events],
        "phases": [r.to_json() for r in run.results],
        "outages": [{"test": t.nodeid, **o.to_json()} for t in run.tests for o in t.outages],
        "probes": [{"test": t.nodeid, **p.to_json()} for t in run.tests for p in t.probes],
        "rpo": [{"test": t.nodeid, **r.to_json()} for t in run.tests for r in t.rpo],
    }


def write_json(run: RunRecord, path: Path) -> Path:
    """Write ``report.json``; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_to_json(run), indent=2) + "\n", encoding="utf-8")
    return path
