"""The whole sandbox's ground truth, each source checked against a moment it does not share:
HAProxy's own DOWN/UP lines inside the runtime-API poller's windows, the DNS server's log of
each client by its own address, the pager's receipt of a test notification, a delayed automated
failover (MariaDB's own record of the promotion, the independent observer's view of both load
balancers), and acknowledged writes really lost by a cut replication link (its undo journaled
first and recoverable).

It runs in its own block (20) and run folder, under ``flock /tmp/drdrill-sandbox.lock``, and
takes its sandbox down at the end.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drdrill.config import load_config
from drdrill.faults import KINDS
from drdrill.faults.base import FaultInjector, recover
from drdrill.faults.journal import Journal
from drdrill.sandbox import control
from drdrill.sandbox.ground_truth import failover_truths
from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing
from drdrill.sandbox.truth import TruthEvent
from drdrill.targets.sandbox import SandboxTarget
from drdrill.targets.sandbox.faults import CutReplication

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 8  # ports stay under the kernel's ephemeral range (32768+)
DELAY_S = 1.0
#: the automation's wait is a thread's timed wait: it may wake this much late on a busy machine
DELAY_TOLERANCE_S = 0.5
#: a component's own stamp against a moment taken on this machine's clock around it (the
#: wall-to-monotonic conversion, and a log line handled while our call was returning)
STAMP_SLACK_S = 0.005

pytestmark = pytest.mark.skipif(
    bool(mariadb_missing() or haproxy_missing()),
    reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxTarget]:
    tmp = tmp_path_factory.mktemp("ground-truth")
    path = tmp / "drdrill.yaml"
    path.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
journal: {tmp / "journal.jsonl"}
report_dir: {tmp / "reports"}
targets:
  sandbox:
    run_dir: {tmp / "sandbox"}
    block: {BLOCK}
    timings: {{automation_delay: {DELAY_S}s}}
"""
    )
    target = SandboxTarget(load_config(path))
    if target.client.alive():
        pytest.fail(f"a sandbox already runs in block {BLOCK}: not ours to drive")
    target.start()
    try:
        yield target
    finally:
        control.down(target.settings, target.run_dir)


def wait_for(what: str, found: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
    return result


def one(events: list[TruthEvent], **attrs: Any) -> TruthEvent:
    """The first event with these attributes."""
    matching = [e for e in events if all(e.attrs.get(k) == v for k, v in attrs.items())]
    assert matching, f"no event with {attrs} among {[e.event for e in events]}"
    return matching[0]


def test_a_stopped_task_is_seen_down_then_up_by_haproxy_itself(stack: SandboxTarget) -> None:
    since = time.monotonic()
    stack.stop_tasks("primary", count=1, mode="kill").inject()
    request = one(stack.truth_since(since, "control_request"), call="stop_tasks")
    stopped = stack.truth_since(since, "task_stopped")[0]
    assert request.mono <= stopped.mono  # the stack recorded the call before acting on it
    task = stopped.attrs["task"]
    removed = wait_for(
        "deregistered", lambda: stack.truth_since(since, "lb_target_removed"), timeout=5
    )[0]
    assert removed.attrs["server"] == task
    slot = removed.attrs["slot"]

    def states() -> list[TruthEvent]:
        return [
            e
            for e in stack.truth_since(since, "haproxy_server_state")
            if e.attrs["lb"] == "alb-primary" and e.attrs["slot"] == slot
        ]

    wait_for("the replacement UP", lambda: [e for e in states() if e.attrs["state"] == "UP"])
    down = one(states(), state="DOWN", server=task)
    print(
        f"HAProxy: {task} DOWN ({down.attrs['reason']}) at stop + {down.mono - stopped.mono:.3f} s"
    )
    # HAProxy took it out while the scheduler deregistered it
    assert stopped.mono <= down.mono <= removed.mono + STAMP_SLACK_S
    up = one(states(), state="UP")
    replacement = up.attrs["server"]
    assert replacement != task and up.mono > down.mono
    healthy = wait_for(
        "the poller's UP",
        lambda: [
            e
            for e in stack.truth_since(since, "lb_target_healthy")
            if e.attrs["server"] == replacement
        ],
        timeout=5,
    )[0]
    window = (healthy.attrs["prev_poll_mono"], healthy.mono)
    print(f"HAProxy UP at {up.mono:.4f}, poller window [{window[0]:.4f}, {window[1]:.4f}]")
    assert window[0] - STAMP_SLACK_S <= up.mono <= window[1] + STAMP_SLACK_S
    # the new task answered its first check (logged by the task) before HAProxy called it UP
    first = one(stack.truth_since(since, "app_first_request"), task=replacement)
    assert first.mono <= up.mono
    wait_for("steady", lambda: stack.running_tasks("primary") == 2)


def test_alarm_notifications_reach_the_pager(stack: SandboxTarget) -> None:
    since = time.monotonic()
    assert stack.alarm_notifies()
    [delivered] = stack.truth_since(since, "sns_delivered")
    assert delivered.attrs["test"] is True and delivered.attrs["subscriber"] == "oncall-pager"
    assert delivered.component == "pager-oncall-pager"
    assert stack.alarm_state() == "OK"


def test_each_dns_client_is_named_in_the_servers_log(stack: SandboxTarget) -> None:
    name = stack.settings.app_name
    primary_ip = stack.region_ip("primary")
    windows: dict[str, tuple[float, float]] = {}
    clients = stack.dns_clients()
    assert len({c.source_ip for c in clients.values()}) == 3
    assert all(c.source_ip.startswith(f"127.{BLOCK}.4.") for c in clients.values())

    before = time.monotonic()
    assert stack.dns_answer() == primary_ip
    windows[clients["drill"].source_ip] = (before, time.monotonic())
    sink = stack.write_sink(1.0)
    before = time.monotonic()
    assert stack.caches[-1].lookup(name) == primary_ip
    windows[clients["writer"].source_ip] = (before, time.monotonic())
    sink.close()

    async def probe_lookup() -> tuple[str, float, float]:
        client = stack.http_client_factory(2)  # the probes' client, with its resolver
        try:
            started = time.monotonic()
            ip = await stack.resolvers[-1].lookup(name)
            return ip, started, time.monotonic()
        finally:
            await client.aclose()  # type: ignore[attr-defined]

    ip, started, ended = asyncio.run(probe_lookup())
    assert ip == primary_ip
    windows[clients["probes"].source_ip] = (started, ended)

    since = min(low for low, _ in windows.values())
    answers = [a for a in stack.truth_since(since, "dns_answer") if a.attrs["client_ip"] in windows]
    assert sorted(a.attrs["client_ip"] for a in answers) == sorted(windows)
    for answer in answers:
        low, high = windows[answer.attrs["client_ip"]]
        assert low <= answer.mono <= high
        assert (answer.attrs["answer"], answer.attrs["ttl"]) == (primary_ip, 2)


def test_a_delayed_automated_failover_as_the_stack_and_the_observer_saw_it(
    stack: SandboxTarget,
) -> None:
    stack.ensure_baseline()
    stack.set_mode("automated")
    since = time.monotonic()
    fault = stack.region_down("primary", mode="kill")
    fault.inject()
    try:
        wait_for("failover", lambda: stack.status()["failover"] == "dr", timeout=60)
        stack.flush_truth()
        wait_for(
            "the observer's pass on dr-lb",
            lambda: [t for t in stack.observer_transitions(since, "dr-lb") if t.new == "pass"],
            timeout=5,
        )
        events = stack.truth_since(since)
        primary_lb = stack.observer_transitions(since - 1, "primary-lb")
        dr_lb = stack.observer_transitions(since, "dr-lb")
    finally:
        fault.revert()
    by_name: dict[str, list[TruthEvent]] = {}
    for event in events:
        by_name.setdefault(event.event, []).append(event)

    down = by_name["region_down"][0]
    assert one(by_name["control_request"], call="region_down").mono <= down.mono
    alarm = one(by_name["alarm_state_changed"], new="ALARM")
    [invoked] = by_name["automation_invoked"]
    assert invoked.attrs == {"trigger": "alarm"}
    waited = invoked.mono - alarm.mono
    print(f"the automation acted {waited:.3f} s after the alarm (delay {DELAY_S} s)")
    assert DELAY_S <= waited <= DELAY_S + DELAY_TOLERANCE_S
    assert one(by_name["sns_delivered"], test=False).mono >= alarm.mono

    # MariaDB's own record of the promotion, inside the automation's report of it
    asked, writable = by_name["rds_promotion_requested"][0], by_name["replica_writable"][0]
    read_write = one(by_name["db_read_only_changed"], region="dr", read_only=False)
    print(f"read_only=0 stamped {1000 * (writable.mono - read_write.mono):.2f} ms before reported")
    assert asked.mono - STAMP_SLACK_S <= read_write.mono <= writable.mono + STAMP_SLACK_S
    stops = [e for e in by_name["db_replication_stopped"] if e.attrs["region"] == "dr"]
    assert [e.attrs["statement"] for e in stops] == [
        "STOP SLAVE IO_THREAD",
        "STOP SLAVE",
        "RESET SLAVE ALL",
    ]
    assert asked.mono - STAMP_SLACK_S <= stops[0].mono <= stops[-1].mono <= read_write.mono

    # the observer: the primary LB failed when the region went down...
    [fell] = [t for t in primary_lb if t.new == "fail"]
    assert fell.lo_mono <= down.mono + STAMP_SLACK_S and down.mono <= fell.hi_mono
    # ...and the DR LB passed as HAProxy put its first target UP
    scale = by_name["ecs_scale_requested"][0]
    first_up = next(
        e
        for e in by_name["haproxy_server_state"]
        if e.attrs["lb"] == "alb-dr" and e.attrs["state"] == "UP" and e.mono >= scale.mono
    )
    [rose] = [t for t in dr_lb if t.new == "pass"]
    print(
        f"dr-lb passes in [{rose.lo_mono - scale.mono:.3f}, {rose.hi_mono - scale.mono:.3f}] s "
        f"after scale-up; HAProxy's first UP at {first_up.mono - scale.mono:.3f} s; "
        f"DNS switched at {by_name['dns_record_switched'][0].mono - scale.mono:.3f} s"
    )
    assert rose.lo_mono - STAMP_SLACK_S <= first_up.mono <= rose.hi_mono + STAMP_SLACK_S

    # the phases from these records: the automation's wait is in the Decision, for real
    truths = failover_truths(
        events,
        dr_lb,
        trigger="automated",
        want=stack.scale_to("dr"),
        dr_ip=stack.region_ip("dr"),
        clients={role: c.source_ip for role, c in stack.dns_clients().items()},
    )
    print({name: truth.seconds for name, truth in truths.items()})
    decision = truths["Decision"].seconds
    # the automation waits from the alarm, the phase runs from the pager's receipt of it, which
    # trails the alarm (in CI the Decision read 0.9987 s against the 1.0 s wait)
    delivered = one(by_name["sns_delivered"], test=False)
    paged = delivered.mono - alarm.mono
    assert decision is not None
    assert DELAY_S - paged <= decision <= DELAY_S + DELAY_TOLERANCE_S, f"paged after {paged:.4f} s"
    assert truths["Detection"].seconds == pytest.approx(delivered.mono - down.mono)


def _write(stack: SandboxTarget, run: str, marker: int) -> bool:
    """One marker through the primary load balancer; True when acknowledged."""
    conn = http.client.HTTPConnection(stack.region_ip("primary"), stack.lb_port, timeout=5)
    try:
        body = json.dumps({"run": run, "marker": marker, "ts": time.time()})
        conn.request("POST", "/api.php?action=write", body=body)
        response = conn.getresponse()
        return response.status == 200 and json.loads(response.read()).get("ok") is True
    except OSError:
        return False
    finally:
        conn.close()


def _io_running(stack: SandboxTarget) -> bool:
    replication = stack.status()["regions"]["dr"]["rds"]["replication"] or {}
    return bool(replication.get("io"))


def test_a_cut_replication_link_is_journaled_and_recoverable(
    stack: SandboxTarget, tmp_path: Path
) -> None:
    """The cut's undo is in the journal before the cut, and ``recover`` rebuilds and reverts it
    (with the kind registered; see KINDS)."""
    stack.ensure_baseline()
    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal)
    asked = time.monotonic()
    injector.inject(stack.cut_replication())
    [entry] = journal.open_entries()
    assert entry.kind == "sandbox.cut_replication"
    assert entry.record == {"control_port": stack.control_port}
    assert not _io_running(stack)
    kinds = {**KINDS, CutReplication.kind: "drdrill.targets.sandbox.faults:CutReplication"}
    [outcome] = recover(journal, include_live=True, kinds=kinds)
    assert outcome.ok and outcome.note == "replication link restored", outcome.line()
    wait_for("the io thread", lambda: _io_running(stack), timeout=10)
    stack.flush_truth()
    statements = [
        (e.event, e.attrs["statement"])
        for e in stack.truth_since(asked)
        if e.event.startswith("db_replication_") and e.attrs["region"] == "dr"
    ]
    assert statements == [
        ("db_replication_stopped", "STOP SLAVE IO_THREAD"),
        ("db_replication_started", "START SLAVE IO_THREAD"),
    ]


def test_a_cut_replication_link_loses_acknowledged_writes(stack: SandboxTarget) -> None:
    stack.reset()
    run = f"cut-{uuid.uuid4().hex[:10]}"
    before_cut = set(range(1, 21))
    assert all(_write(stack, run, m) for m in sorted(before_cut))
    wait_for("replicated", lambda: stack.marker_ids_in("dr", run) == before_cut)

    cut = stack.cut_replication()
    asked = time.monotonic()
    cut.inject()
    done = time.monotonic()
    after_cut = set(range(21, 41))
    assert all(_write(stack, run, m) for m in sorted(after_cut))
    stack.flush_truth()
    stop = one(
        stack.truth_since(asked - 1, "db_replication_stopped"),
        region="dr",
        statement="STOP SLAVE IO_THREAD",
    )
    assert asked - STAMP_SLACK_S <= stop.mono <= done + STAMP_SLACK_S
    time.sleep(0.5)
    assert stack.marker_ids_in("dr", run) == before_cut  # nothing crosses the cut link

    down = stack.region_down("primary", mode="kill")
    down.inject()
    try:
        since = time.monotonic()
        assert stack.invoke_dr()["status"] == "completed"
        [writable] = stack.truth_since(since, "replica_writable")
        # it kept what had arrived and did not wait for the primary that is gone
        assert writable.attrs["caught_up"] is True
        on_dr = stack.marker_ids_in("dr", run)
    finally:
        down.revert()  # the old primary's processes, with its database, come back
    on_primary = wait_for("the old primary", lambda: _markers_or_none(stack, run), timeout=30)
    acknowledged = before_cut | after_cut
    counts = f"{len(acknowledged)} acknowledged, {len(on_primary)} on the old primary"
    print(f"{counts}, {len(on_dr)} on DR")
    assert on_primary == acknowledged
    assert on_dr == before_cut
    assert acknowledged - on_dr == after_cut  # lost by the failover, all acknowledged
    assert "nothing to restore" in cut.revert().note  # the replica was promoted


def _markers_or_none(stack: SandboxTarget, run: str) -> set[int] | None:
    try:
        return stack.marker_ids_in("primary", run)
    except Exception:  # the old primary's database may still be starting
        return None
