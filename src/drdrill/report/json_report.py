"""``report.json``: the run as versioned JSON (schema in docs/report-schema.md), and back."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from drdrill.errors import InputError
from drdrill.measure import Kind, Measurement, Result
from drdrill.report.record import (
    OutageRecord,
    ProbeStatsRecord,
    RpoRecord,
    RunRecord,
    TestRecord,
    run_metadata,
)
from drdrill.timeline import Event, Source

#: Bumped on any change a reader could notice: major for removals/renames, minor for additions.
SCHEMA_VERSION = "1.2"
#: the major version this reader understands (``run_from_json`` refuses others)
_MAJOR = SCHEMA_VERSION.split(".")[0]


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
            # the run's one verdict, as report.md, report.html, the console and the history say
            "verdict": str(run.verdict),
            "exit_status": run.exit_status,
            "interruption": run.interruption,
            "lost": list(run.lost),
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
                "worker": t.worker,
            }
            for t in run.tests
        ],
        "events": [{"test": t.nodeid, **e.to_json()} for t in run.tests for e in t.events],
        # the test a phase belongs to is the record it is in (a result may not name its test)
        "phases": [_phase(r, t.nodeid) for t in run.tests for r in t.results],
        "outages": [{"test": t.nodeid, **o.to_json()} for t in run.tests for o in t.outages],
        "probes": [{"test": t.nodeid, **p.to_json()} for t in run.tests for p in t.probes],
        "rpo": [{"test": t.nodeid, **r.to_json()} for t in run.tests for r in t.rpo],
    }


def _phase(result: Result, nodeid: str) -> dict[str, Any]:
    low, high = result.low, result.high
    return {
        **result.to_json(),
        "low": low if math.isfinite(low) else None,
        "high": high if math.isfinite(high) else None,
        "test": nodeid,
    }


def write_json(run: RunRecord, path: Path) -> Path:
    """Write ``report.json``; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_to_json(run), indent=2) + "\n", encoding="utf-8")
    return path


# --- reading back ---------------------------------------------------------------------------


class _Reader:
    """Typed access to one JSON object; every error names ``where`` and the key's path."""

    def __init__(self, data: Any, where: str, path: str) -> None:
        if not isinstance(data, Mapping):
            raise InputError(where, f"{path or 'report'}: not an object")
        self.data: Mapping[str, Any] = data
        self.where = where
        self.path = path

    def key_path(self, key: str) -> str:
        """How errors name a key of this object: ``tests[2].nodeid``."""
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        """The value of ``key``, checked to be of ``kind`` (or null when ``optional``)."""
        if key not in self.data:
            raise InputError(self.where, f"{self.key_path(key)}: missing")
        value: Any = self.data[key]
        if value is None and optional:
            return None
        # a JSON number may be written without a fraction: 3 is a valid float
        wanted = (int, float) if kind is float else kind
        if not isinstance(value, wanted) or (isinstance(value, bool) and kind is not bool):
            raise InputError(self.where, f"{self.key_path(key)}: {value!r} is not a {_name(kind)}")
        if kind is float:
            return float(cast(float, value))
        return value

    def text(self, key: str) -> str:
        """A required string."""
        return cast(str, self.get(key, str))

    def opt_text(self, key: str) -> str | None:
        """A string or null."""
        return cast("str | None", self.get(key, str, optional=True))

    def number(self, key: str) -> float:
        """A required number."""
        return cast(float, self.get(key, float))

    def opt_number(self, key: str) -> float | None:
        """A number or null."""
        return cast("float | None", self.get(key, float, optional=True))

    def integer(self, key: str) -> int:
        """A required integer."""
        return cast(int, self.get(key, int))

    def opt_integer(self, key: str) -> int | None:
        """An integer or null."""
        return cast("int | None", self.get(key, int, optional=True))

    def flag(self, key: str) -> bool:
        """A required boolean."""
        return cast(bool, self.get(key, bool))

    def utc(self, key: str) -> datetime:
        """A required ISO-8601 time."""
        return self._time(key, self.text(key))

    def opt_utc(self, key: str) -> datetime | None:
        """An ISO-8601 time or null."""
        value = self.opt_text(key)
        return None if value is None else self._time(key, value)

    def _time(self, key: str, value: str) -> datetime:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise InputError(self.where, f"{self.key_path(key)}: {value!r} is not a time") from None

    def obj(self, key: str) -> _Reader:
        """A nested object."""
        return _Reader(self.get(key, Mapping), self.where, self.key_path(key))

    def items(self, key: str) -> list[_Reader]:
        """A list of objects."""
        values = self.get(key, list)
        return [_Reader(v, self.where, f"{self.key_path(key)}[{i}]") for i, v in enumerate(values)]


def _name(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", float: "number", int: "integer", bool: "boolean", list: "list"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, "object")


def _texts(r: _Reader, key: str) -> list[str]:
    values = r.get(key, list)
    if not all(isinstance(v, str) for v in values):
        raise InputError(r.where, f"{r.key_path(key)}: not a list of strings")
    return list(values)


def _event(r: _Reader) -> Event:
    try:
        source = Source(r.text("source"))
    except ValueError:
        raise InputError(r.where, f"{r.path}.source: unknown source {r.text('source')!r}") from None
    return Event(
        name=r.text("name"),
        utc=r.utc("utc"),
        mono=r.number("mono"),
        source=source,
        uncertainty_s=r.number("uncertainty_s"),
        attrs=dict(r.obj("attrs").data),
    )


def _result(r: _Reader) -> Result:
    kind = r.text("kind")
    if kind not in ("rto", "rpo"):
        raise InputError(r.where, f"{r.path}.kind: {kind!r} is not rto or rpo")
    measured, uncertainty = r.opt_number("measured"), r.opt_number("uncertainty")
    return Result(
        name=r.text("name"),
        kind=cast(Kind, kind),
        # null stands for a figure that was not finite (run_to_json writes nan as null)
        measured=Measurement(
            math.nan if measured is None else measured,
            math.nan if uncertainty is None else uncertainty,
            r.text("unit"),
        ),
        target_s=r.opt_number("target_s"),
        objective=r.opt_text("objective"),
        start=r.opt_text("start"),
        end=r.opt_text("end"),
        test=r.text("test"),
        # the ground truth came in 1.1, its source and the note in 1.2; error_ms, low, high and
        # status are derived from the figure and not read
        truth_s=r.opt_number("truth_s") if "truth_s" in r.data else None,
        truth_source=r.opt_text("truth_source") if "truth_source" in r.data else None,
        # added in 1.2 without a version bump: a truth read back without it was taken as exact
        truth_uncertainty_s=(
            (r.opt_number("truth_uncertainty") or 0.0) if "truth_uncertainty" in r.data else 0.0
        ),
        note=r.opt_text("note") if "note" in r.data else None,
    )


def _outage(r: _Reader) -> OutageRecord:
    return OutageRecord(
        endpoint=r.text("endpoint"),
        start_utc=r.utc("start_utc"),
        end_utc=r.opt_utc("end_utc"),
        duration_s=r.opt_number("duration_s"),
        start_uncertainty_s=r.number("start_uncertainty_s"),
        end_uncertainty_s=r.number("end_uncertainty_s"),
        # 1.2 and later
        duration_uncertainty_s=(
            r.opt_number("duration_uncertainty_s") if "duration_uncertainty_s" in r.data else None
        ),
        # absent from reports written before it was recorded: every stretch was an outage
        expected_down=r.flag("expected_down") if "expected_down" in r.data else False,
    )


def _probe(r: _Reader) -> ProbeStatsRecord:
    latency = r.obj("latency_ms")
    return ProbeStatsRecord(
        endpoint=r.text("endpoint"),
        samples=r.integer("samples"),
        availability=r.number("availability"),
        p50_ms=latency.opt_number("p50"),
        p95_ms=latency.opt_number("p95"),
        p99_ms=latency.opt_number("p99"),
        # 1.2 and later
        starved_samples=r.integer("starved_samples") if "starved_samples" in r.data else 0,
        lag_max_ms=r.opt_number("lag_max_ms") if "lag_max_ms" in r.data else None,
    )


def _rpo(r: _Reader) -> RpoRecord:
    ids = r.get("lost_ids", list)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise InputError(r.where, f"{r.path}.lost_ids: not a list of integers")
    return RpoRecord(
        run=r.text("run"),
        sent=r.integer("sent"),
        acknowledged=r.integer("acknowledged"),
        lost_acknowledged=r.integer("lost_acknowledged"),
        lost_ids=tuple(ids),
        unacknowledged_landed=r.integer("unacknowledged_landed"),
        data_loss_window_s=r.number("data_loss_window_s"),
    )


def run_from_json(data: Mapping[str, Any], where: str = "report.json") -> RunRecord:
    """A ``report.json`` object read back into the run it was written from.

    ``run_to_json(run_from_json(d))`` gives ``d`` back (the run metadata is the reader's own:
    it describes where the report is written). InputError, naming ``where`` and the key, for a
    document that is not a drdrill report of this major version or does not hold together.
    """
    top = _Reader(data, where, "")
    if top.text("schema") != "drdrill.report":
        raise InputError(where, f"schema: {top.text('schema')!r} is not drdrill.report")
    version = top.text("schema_version")
    if version.split(".")[0] != _MAJOR:
        raise InputError(where, f"schema_version: {version} (this drdrill reads {_MAJOR}.x)")
    run = top.obj("run")
    objectives = top.obj("objectives")
    record = RunRecord(
        run_id=run.text("id"),
        target=dict(top.obj("target").data),
        objectives={k: v for k, v in objectives.data.items() if k not in ("source", "scale")},
        objectives_source=objectives.opt_text("source"),
        objectives_scale=objectives.number("scale"),
        dry_run=run.flag("dry_run"),
        started_utc=run.utc("started_utc"),
        finished_utc=run.opt_utc("finished_utc"),
        # absent before 1.2: the verdict is then derived from the tests and figures alone
        exit_status=run.opt_integer("exit_status") if "exit_status" in run.data else None,
        interruption=run.opt_text("interruption") if "interruption" in run.data else None,
        lost=_texts(run, "lost") if "lost" in run.data else [],
    )
    tests: dict[str, TestRecord] = {}
    for t in top.items("tests"):
        nodeid = t.text("nodeid")
        if nodeid in tests:
            raise InputError(where, f"{t.path}.nodeid: {nodeid!r} listed twice")
        tests[nodeid] = TestRecord(
            nodeid=nodeid,
            outcome=t.text("outcome"),
            duration_s=t.number("duration_s"),
            message=t.opt_text("message"),
            # absent from 1.0 reports, which had no workers
            worker=t.opt_text("worker") if "worker" in t.data else None,
        )
    record.tests = list(tests.values())

    def owner(r: _Reader) -> TestRecord:
        nodeid = r.text("test")
        if nodeid not in tests:
            raise InputError(where, f"{r.path}.test: {nodeid!r} is not in tests")
        return tests[nodeid]

    sections: list[tuple[str, Callable[[_Reader], Any], str]] = [
        ("events", _event, "events"),
        ("phases", _result, "results"),
        ("outages", _outage, "outages"),
        ("probes", _probe, "probes"),
        ("rpo", _rpo, "rpo"),
    ]
    for key, parse, attr in sections:
        for item in top.items(key):
            getattr(owner(item), attr).append(parse(item))
    return record
