"""Drills in parallel: ``pytest -n N`` (pytest-xdist), one sandbox a worker, one merged report.

The runs here need no sandbox: fake observed events on the local target, in pytest subprocesses
(pytester). That each worker gets its own sandbox is checked on the settings, without starting
one (a real three-worker failover run is in the README's figures, not here: too heavy for CI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drdrill.config import load_config
from drdrill.errors import ConfigError
from drdrill.sandbox.settings import MAX_BLOCK, Ports, SandboxSettings, worker_index
from drdrill.targets import make_target

pytest_plugins = ["pytester"]

RUNBOOK = """# Runbook

## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Detection** | 2 minutes | 1-3 minutes | alarms |
| **Total RTO** | 15 minutes | 10-20 minutes | end to end |

## Recovery Point Objectives

| Data Type | Target RPO | Actual RPO | Notes |
|---|---|---|---|
| **Database** | 1 minute | < 30 seconds | lag |
"""

CONFIG = """runbook: runbook.md
target: local
journal: journal.jsonl
report_dir: out
"""

# Four drills with fake detection times; each records the run id its worker drills under.
DRILLS = """
import os
import pytest
from drdrill.plugin import SESSION_KEY

@pytest.mark.parametrize("delay", [30.0, 60.0, 150.0, 20.0])
def test_detection(request, timeline, measure, delay):
    run_id = request.config.stash[SESSION_KEY].run.run_id
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    start = timeline.mark("fault_injected", run_id=run_id, worker=worker)
    timeline.observe("alarm", start.mono + delay, 0.5)
    measure.phase("Detection", "fault_injected", "alarm")

def test_not_a_drill():
    assert True
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=CONFIG)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(test_drills=DRILLS)
    return pytester


def _reports(project: pytest.Pytester) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in (project.path / "out").glob("*/report.json")]


def test_workers_drill_side_by_side_and_report_one_run(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=4, failed=1)
    (report,) = _reports(project)  # one report for the run, not one a worker
    run_id = report["run"]["id"]
    assert sorted(p.name for p in (project.path / "out").iterdir()) == [run_id, "history.sqlite"]
    assert sorted(p.name for p in (project.path / "out" / run_id).iterdir()) == [
        "report.html",
        "report.json",
        "report.md",
    ]
    # the controller, not each worker, appends the run to the history
    from drdrill.report.history import HistoryStore

    with HistoryStore(project.path / "out" / "history.sqlite") as store:
        assert store.run_ids() == [run_id]
    # every drill of both workers, each run under the controller's run id
    workers = {t["nodeid"].rsplit("::", 1)[1]: t["worker"] for t in report["tests"]}
    # every test of the run, the one that measured nothing too
    assert set(workers) == {
        *(f"test_detection[{d}]" for d in ("30.0", "60.0", "150.0", "20.0")),
        "test_not_a_drill",
    }
    assert set(workers.values()) == {"gw0", "gw1"}
    injected = [e for e in report["events"] if e["name"] == "fault_injected"]
    assert {e["attrs"]["run_id"] for e in injected} == {run_id}
    assert {e["test"]: e["attrs"]["worker"] for e in injected} == {
        t["nodeid"]: t["worker"] for t in report["tests"] if "detection" in t["nodeid"]
    }
    statuses = sorted(p["status"] for p in report["phases"])
    assert statuses == ["met", "met", "met", "missed"]
    outcome = {t["nodeid"].rsplit("::", 1)[1]: t["outcome"] for t in report["tests"]}
    assert outcome["test_detection[150.0]"] == "failed"
    assert report["schema_version"] == "1.2"
    assert (report["run"]["verdict"], report["run"]["exit_status"]) == ("failed", 1)
    assert report["target"]["kind"] == "local"
    assert set(report["target"]["workers"]) == {"gw0", "gw1"}
    md = (project.path / "out" / run_id / "report.md").read_text()
    assert (
        "| **Detection** | 120 s | 149.750 ± 0.250 s [149.500, 150.000] s (worst of 4) | "
        "**MISSED** |" in md
    )
    assert "- Worker gw0:" in md and "- Worker gw1:" in md
    # the summary is printed once, by the controller, for the whole run
    out = result.stdout.lines
    assert sum(f"drdrill run {run_id}" in line for line in out) == 1
    assert [ln for ln in out if ln.startswith("drdrill report:")] == [
        f"drdrill report: {project.path / 'out' / run_id / 'report.json'}",
        f"drdrill report: {project.path / 'out' / run_id / 'report.md'}",
        f"drdrill report: {project.path / 'out' / run_id / 'report.html'}",
    ]
    assert sum("Detection" in line and "missed" in line for line in out) == 1


def test_without_workers_the_run_reports_as_before(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:xdist")
    result.assert_outcomes(passed=4, failed=1)
    (report,) = _reports(project)
    assert {t["worker"] for t in report["tests"]} == {None}
    assert "workers" not in report["target"]
    assert sum("drdrill run " in line for line in result.stdout.lines) == 1


def test_bad_input_stops_every_worker_and_is_said_once(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-n", "2", "--dr-target", "nope")
    assert result.ret == 2
    lines = [ln for ln in result.stderr.lines + result.stdout.lines if "drdrill: error:" in ln]
    assert len(lines) == 1, lines
    assert lines[0].startswith("drdrill: error: --dr-target: unknown target 'nope' (known: ")
    assert not (project.path / "out").exists()


def test_parts_that_are_not_one_run_are_kept_apart(project: pytest.Pytester) -> None:
    """``--dist each`` runs every drill on every worker: one report cannot hold a test twice."""
    result = project.runpytest_subprocess("-n", "2", "--dist", "each")
    result.assert_outcomes(passed=8, failed=2)
    result.stderr.fnmatch_lines(
        [
            "drdrill: error: cannot merge the workers' reports: test *recorded by workers gw0 and*",
            "drdrill: report part: */parts/gw0.json",
            "drdrill: report part: */parts/gw1.json",
        ]
    )
    assert _reports(project) == []
    (parts,) = (project.path / "out").glob("*/parts")
    for part in parts.iterdir():
        assert len(json.loads(part.read_text())["tests"]) == 5  # every test, drill or not


def test_a_run_whose_every_worker_crashed_still_reports_what_it_lost(
    project: pytest.Pytester,
) -> None:
    """No worker hands over a part: the controller writes the run from what it saw itself."""
    project.makepyfile(test_a_crash="import os\n\ndef test_dies(drill_config):\n    os._exit(1)\n")
    result = project.runpytest_subprocess("-n", "1", "--max-worker-restart", "0")
    (report,) = _reports(project)
    run = report["run"]
    assert (run["verdict"], run["interruption"]) == ("incomplete", "worker gw0 crashed")
    assert run["lost"][0] == "test_a_crash.py::test_dies"
    assert len(run["lost"]) == 6  # the crashed test and the five never run
    outcomes = {t["nodeid"].rsplit("::", 1)[1]: t["outcome"] for t in report["tests"]}
    assert outcomes["test_dies"] == "failed"
    assert {o for n, o in outcomes.items() if n != "test_dies"} == {"not run"}
    assert report["target"]["kind"] == "local"  # from the config: no worker described it
    assert any(
        ln.startswith("INCOMPLETE — worker gw0 crashed; lost: test_dies, test_detection[30.0]")
        for ln in result.stdout.lines
    )


# --- one sandbox a worker (pure: nothing is started) -----------------------------------------


def _ports(settings: SandboxSettings) -> set[int]:
    return {settings.port(name) for name in Ports.model_fields}


def test_each_worker_gets_its_own_block_addresses_ports_and_folder() -> None:
    base = SandboxSettings()
    gw0, gw1 = base.for_worker("gw0"), base.for_worker("gw1")
    assert (gw0.block, gw1.block) == (1, 2)
    assert (gw0.primary.subnet, gw0.dr.subnet, gw0.dns_ip) == ("127.1.1", "127.1.2", "127.1.3.1")
    assert (gw1.primary.subnet, gw1.dr.subnet, gw1.dns_ip) == ("127.2.1", "127.2.2", "127.2.3.1")
    assert gw0.run_dir == Path(".drdrill/sandbox-gw0")
    assert gw1.run_dir == Path(".drdrill/sandbox-gw1")
    assert gw0.port("control") == 28999 + 200 and gw1.port("lb") == 28080 + 400
    sandboxes = [base, gw0, gw1]
    for i, a in enumerate(sandboxes):
        for b in sandboxes[i + 1 :]:
            assert not _ports(a) & _ports(b)
            assert a.primary.subnet != b.primary.subnet and a.dns_ip != b.dns_ip
    # everything else is the configured sandbox's
    assert gw1.timings == base.timings and gw1.primary.name == base.primary.name
    assert gw1.dr.scale_to == base.dr.scale_to and gw1.app_name == base.app_name


def test_a_configured_block_is_left_to_runs_without_workers() -> None:
    base = SandboxSettings(block=5, run_dir=Path("/tmp/sbx"))
    gw0 = base.for_worker("gw0")
    assert gw0.block == 6 and gw0.run_dir == Path("/tmp/sbx-gw0")
    # the addresses move as far as the block did: the configured ones stay block 5's
    assert (gw0.primary.subnet, gw0.dns_ip) == ("127.1.1", "127.1.3.1")
    assert base.with_block(5) == base
    with pytest.raises(ValueError, match=r"'127\.0\.1' moved by -5 blocks: second octet -5"):
        base.with_block(0)


def test_every_allowed_block_keeps_its_ports_in_range() -> None:
    top = SandboxSettings(block=MAX_BLOCK)
    assert max(_ports(top)) < 65536 and top.port("task_base", 99) < 65536
    assert top.primary.subnet == "127.0.1"  # a configured block does not move addresses
    with pytest.raises(ValueError, match="less than or equal to 40"):
        SandboxSettings(block=MAX_BLOCK).for_worker("gw0")
    with pytest.raises(ValueError, match=r"ports.control reaches 68000 in block 40"):
        SandboxSettings.model_validate({"block": 40, "ports": {"control": 60000}})
    with pytest.raises(ValueError, match="not a pytest-xdist worker id"):
        worker_index("main")


def _sandbox_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "drdrill.yaml"
    path.write_text(f"target: sandbox\ntargets:\n  sandbox:\n    run_dir: sbx\n{extra}")
    return path


def test_the_sandbox_target_of_a_worker_drills_its_own_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_sandbox_config(tmp_path))
    alone: Any = make_target("sandbox", config, "target")
    # the worker id comes from the plugin (xdist's workerinput), not from the environment,
    # which any pytest a worker's test starts inherits
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    still_alone: Any = make_target("sandbox", config, "target")
    assert still_alone.run_dir == tmp_path / "sbx"
    worker: Any = make_target("sandbox", config, "target", worker="gw1")
    assert alone.run_dir == tmp_path / "sbx" and alone.settings.block == 0
    assert worker.run_dir == tmp_path / "sbx-gw1" and worker.settings.block == 2
    assert worker.control_port == 28999 + 400 and worker.client.port == worker.control_port
    assert worker.region_ip("dr") == "127.2.2.2" and worker.dns_server == ("127.2.3.1", 25753)
    assert worker.truth.path == tmp_path / "sbx-gw1" / "truth.jsonl"
    assert worker.describe()["run_dir"] == str(tmp_path / "sbx-gw1")


def test_a_worker_without_room_for_its_block_is_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_sandbox_config(tmp_path, "    block: 40\n"))
    with pytest.raises(ConfigError) as caught:
        make_target("sandbox", config, "target", worker="gw0")
    assert caught.value.where.endswith("drdrill.yaml: targets.sandbox.block")
    assert "no sandbox block for pytest-xdist worker 'gw0'" in caught.value.message
