"""One run out of the parts that pytest-xdist workers recorded, each of its own drills.

Every worker drills its own target (its own sandbox) under the run id the controller gave it,
and hands its part (``report.json`` of its own tests) to the controller, which merges the parts
here and writes the run's one ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from drdrill.errors import DrillError
from drdrill.report.json_report import run_from_json
from drdrill.report.record import RunRecord, TestRecord


class MergeError(DrillError):
    """Parts that do not make one run (other run ids, other objectives, a test twice)."""


def worker_order(worker: str) -> tuple[str, int]:
    """A sort key for worker ids: gw2 before gw10."""
    match = re.fullmatch(r"(\D*)(\d+)", worker)
    return (match.group(1), int(match.group(2))) if match else (worker, -1)


def part_from_json(worker: str, data: Mapping[str, Any]) -> RunRecord:
    """A worker's part (its ``report.json`` object) as a run record; InputError if malformed."""
    return run_from_json(data, where=f"report part of worker {worker}")


def merge_targets(targets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The run's target: what every worker's says alike, and each worker's own under ``workers``.

    The sandbox targets of two workers agree on kind, regions and timings and differ in their
    run folder and control port: the first are kept at the top, all of it per worker.
    """
    described = [dict(t) for t in targets.values()]
    first = described[0] if described else {}
    common = {
        key: value
        for key, value in first.items()
        if key != "workers" and all(key in d and d[key] == value for d in described[1:])
    }
    return {**common, "workers": {worker: dict(t) for worker, t in targets.items()}}


def merge_runs(parts: Mapping[str, RunRecord]) -> RunRecord:
    """The run that the workers' parts (keyed by worker id) make together.

    Tests keep each part's order, parts in worker order (gw0, gw1, ... gw10), and each test
    says which worker ran it. The run started with its first part and finished with its last
    (unfinished if any part is). MergeError for parts that are not of one run.
    """
    if not parts:
        raise MergeError("no report part to merge")
    ordered = sorted(parts.items(), key=lambda item: worker_order(item[0]))
    first_worker, first = ordered[0]
    for worker, part in ordered[1:]:
        if part.run_id != first.run_id:
            raise MergeError(
                f"worker {worker} recorded run {part.run_id}, worker {first_worker} "
                f"run {first.run_id}"
            )
        if (part.objectives, part.objectives_scale) != (first.objectives, first.objectives_scale):
            raise MergeError(
                f"workers {first_worker} and {worker} drilled against different objectives"
            )
    tests: list[TestRecord] = []
    ran_on: dict[str, str] = {}
    for worker, part in ordered:
        for test in part.tests:
            if test.nodeid in ran_on:
                raise MergeError(
                    f"test {test.nodeid} recorded by workers {ran_on[test.nodeid]} and {worker}"
                )
            ran_on[test.nodeid] = worker
            tests.append(replace(test, worker=worker))
    finished = [p.finished_utc for _, p in ordered]
    return RunRecord(
        run_id=first.run_id,
        target=merge_targets({worker: part.target for worker, part in ordered}),
        objectives=first.objectives,
        objectives_source=first.objectives_source,
        objectives_scale=first.objectives_scale,
        dry_run=any(p.dry_run for _, p in ordered),
        started_utc=min(p.started_utc for _, p in ordered),
        finished_utc=None if None in finished else max(f for f in finished if f is not None),
        tests=tests,
    )


def with_outcomes(run: RunRecord, outcomes: RunRecord) -> RunRecord:
    """The merged parts with the outcomes the xdist controller saw itself.

    The controller's record (every test's outcome from the reports the workers forwarded,
    collection errors, tests lost with a crashed worker or never run, pytest's exit status) is
    the authority on how each test ended; the parts bring what each drill measured. Tests keep
    the controller's order; a test only a part knows of comes after.
    """
    measured = {t.nodeid: t for t in run.tests}
    tests: list[TestRecord] = []
    for seen in outcomes.tests:
        base = measured.pop(seen.nodeid, None)
        if base is None:
            tests.append(replace(seen))
            continue
        tests.append(
            replace(
                base,
                outcome=seen.outcome,
                message=seen.message,
                duration_s=seen.duration_s,
                worker=seen.worker or base.worker,
            )
        )
    tests += measured.values()
    return replace(
        run,
        tests=tests,
        exit_status=outcomes.exit_status,
        interruption=outcomes.interruption,
        lost=list(outcomes.lost),
    )
