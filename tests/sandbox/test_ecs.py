"""The ECS service scheduler on real app processes and real MariaDB: tasks up to the desired
count, replaced after the scheduler delay (measured from its ground truth), scale in to zero,
pause, shutdown with frozen tasks, a rolling restart onto another database, and HAProxy as the
load balancer."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from drdrill.sandbox.ecs import SchedulerError, ServiceScheduler, TaskState
from drdrill.sandbox.mariadb import MariaDBServer, unavailable_reason
from drdrill.sandbox.settings import RegionSettings, Timings
from drdrill.sandbox.truth import TruthEvent, TruthLog

_REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

Pair = tuple[MariaDBServer, MariaDBServer]

SUBNET = "127.0.1"
DELAY_S = 0.5
#: Slack on top of "delay + the task's own start time" for the loop period, the truth
#: bookkeeping and a loaded 2-core machine.
TOLERANCE_S = 1.0


def free_port_on_slots(count: int = 8) -> int:
    """A port free a moment ago on the task addresses of slots 0..count-1."""
    ips = [f"{SUBNET}.{10 + slot}" for slot in range(count)]
    for _ in range(50):
        with socket.socket() as first:
            first.bind((ips[0], 0))
            port: int = first.getsockname()[1]
        try:
            for ip in ips[1:]:
                with socket.socket() as other:
                    other.bind((ip, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every task address")


def get(ip: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@dataclass(frozen=True)
class LbCall:
    """One call the registry received."""

    what: str  # "add" or "remove"
    server_id: str
    mono: float
    health: int | None  # for "add": the task's health status at that moment


class ProbingRegistry:
    """A target registry that checks each task answers its health check when it is added."""

    def __init__(self) -> None:
        self.calls: list[LbCall] = []
        self.servers: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def add_server(self, server_id: str, ip: str, port: int) -> None:
        status, _ = get(ip, port, "/health-simple.php")
        with self._lock:
            assert server_id not in self.servers, f"{server_id} added twice"
            self.servers[server_id] = (ip, port)
            self.calls.append(LbCall("add", server_id, time.monotonic(), status))

    def remove_server(self, server_id: str) -> None:
        with self._lock:
            assert server_id in self.servers, f"{server_id} removed but never added"
            del self.servers[server_id]
            self.calls.append(LbCall("remove", server_id, time.monotonic(), None))

    def call(self, what: str, server_id: str) -> LbCall:
        with self._lock:
            return next(c for c in self.calls if c.what == what and c.server_id == server_id)


@dataclass
class Service:
    """A scheduler under test with its registry and ground truth."""

    scheduler: ServiceScheduler
    lb: ProbingRegistry
    truth: TruthLog

    def events(self, event: str, since: float = 0.0) -> list[TruthEvent]:
        return self.truth.since(since, event)

    def wait_event(
        self,
        event: str,
        since: float,
        match: Callable[[TruthEvent], bool] = lambda e: True,
        timeout: float = 20.0,
    ) -> TruthEvent:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events(event, since) if match(e)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {event} within {timeout} s"
            time.sleep(0.02)

    def running(self) -> list[TaskState]:
        return [t for t in self.scheduler.tasks() if t.state == "running"]


MakeService = Callable[..., Service]


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[MakeService]:
    """Build (not start) schedulers on the primary region's range; all shut down afterwards."""
    made: list[ServiceScheduler] = []

    def make(
        db: MariaDBServer,
        desired: int = 2,
        lb: Any = None,
        delay: float = DELAY_S,
        name: str = "primary",
    ) -> Service:
        port = free_port_on_slots()
        truth = TruthLog(tmp_path / f"truth-{len(made)}.jsonl")
        registry = ProbingRegistry()
        scheduler = ServiceScheduler(
            region="primary",
            settings=RegionSettings(name="eu-west-1", subnet=SUBNET, desired=desired),
            timings=Timings(scheduler_delay=delay),
            task_port=lambda slot: port,
            db_endpoint=lambda: (db.host, db.port),
            db_user=db.config.app_user,
            db_password=db.config.app_password,
            db_name=db.config.database,
            run_dir=tmp_path / f"ecs-{len(made)}",
            lb=lb if lb is not None else registry,
            truth=truth,
        )
        made.append(scheduler)
        return Service(scheduler, registry, truth)

    try:
        yield make
    finally:
        for scheduler in made:
            scheduler.shutdown()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def app_processes() -> list[psutil.Process]:
    """App processes started by this test process (they carry ``--parent-pid <us>``)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = proc.cmdline()
            if "drdrill.sandbox.app" in cmd and str(os.getpid()) in cmd:
                found.append(proc)
    return found


# --- tests ------------------------------------------------------------------------------------


def test_desired_tasks_listen_answer_and_are_registered_once_listening(
    app_tables: Pair, make_service: MakeService
) -> None:
    service = make_service(app_tables[0], desired=2)
    service.scheduler.start()
    assert service.scheduler.wait_steady(30)
    tasks = service.running()
    assert len(tasks) == 2 and service.scheduler.running_count() == 2
    assert {t.ip for t in tasks} == {f"{SUBNET}.10", f"{SUBNET}.11"}
    assert len({t.pid for t in tasks}) == 2
    for task in tasks:
        status, body = get(task.ip, task.port, "/api.php?action=stats")
        stats = json.loads(body)
        assert status == 200 and stats["task"] == task.task_id and stats["region"] == "primary"
        # Registered only once it listened: the registry's own health check got an answer.
        assert service.lb.call("add", task.task_id).health == 200
    assert set(service.lb.servers) == {t.task_id for t in tasks}
    started = service.events("task_started")
    assert {e.attrs["task"] for e in started} == {t.task_id for t in tasks}
    steady = service.events("service_steady")
    assert steady and steady[-1].attrs["running"] == 2
    print("task start s:", [e.attrs["start_s"] for e in started])


def test_killed_task_is_replaced_after_the_scheduler_delay(
    app_tables: Pair, make_service: MakeService
) -> None:
    service = make_service(app_tables[0], desired=2)
    service.scheduler.start()
    assert service.scheduler.wait_steady(30)
    before = {t.task_id: t for t in service.running()}
    mark = time.monotonic()
    (victim,) = service.scheduler.stop_tasks(count=1, mode="kill")
    assert victim in before
    new_start = service.wait_event("task_started", mark)
    assert service.scheduler.wait_steady(20)

    stopped = service.wait_event("task_stopped", mark, lambda e: e.attrs["task"] == victim)
    exited = service.wait_event("task_exited", mark, lambda e: e.attrs["task"] == victim)
    assert stopped.attrs["mode"] == "kill"
    assert exited.attrs["returncode"] == -signal.SIGKILL and exited.attrs["expected"] is True
    assert gone(before[victim].pid or 0)
    assert new_start.attrs["task"] not in before
    replacement_s = new_start.mono - stopped.mono
    start_s = float(new_start.attrs["start_s"])
    print(f"replacement {replacement_s:.3f} s (delay {DELAY_S}, task start {start_s:.3f} s)")
    assert DELAY_S <= replacement_s <= DELAY_S + start_s + TOLERANCE_S
    # The load balancer lost the dead task and got the new one.
    assert service.lb.call("remove", victim).mono >= stopped.mono
    assert set(service.lb.servers) == {t.task_id for t in service.running()}
    assert victim not in service.lb.servers


def test_crashed_task_is_noticed_and_replaced(app_tables: Pair, make_service: MakeService) -> None:
    service = make_service(app_tables[0], desired=1)
    service.scheduler.start()
    assert service.scheduler.wait_steady(30)
    (task,) = service.running()
    assert task.pid is not None
    mark = time.monotonic()
    os.kill(task.pid, signal.SIGKILL)  # not through the scheduler: a crash
    exited = service.wait_event("task_exited", mark)
    assert exited.attrs["task"] == task.task_id and exited.attrs["expected"] is False
    new_start = service.wait_event("task_started", mark)
    assert (
        DELAY_S
        <= new_start.mono - exited.mono
        <= DELAY_S + TOLERANCE_S + float(new_start.attrs["start_s"])
    )
    assert not service.events("task_stopped", mark)  # nobody asked for it


def test_graceful_stop_deregisters_before_sigterm_and_exits_0(
    app_tables: Pair, make_service: MakeService
) -> None:
    service = make_service(app_tables[0], desired=2)
    service.scheduler.start()
    assert service.scheduler.wait_steady(30)
    mark = time.monotonic()
    (victim,) = service.scheduler.stop_tasks(percent=50, mode="graceful")
    exited = service.wait_event("task_exited", mark, lambda e: e.attrs["task"] == victim)
    assert exited.attrs["returncode"] == 0
    assert service.lb.call("remove", victim).mono <= exited.mono
    service.wait_event("task_started", mark)
    assert service.scheduler.wait_steady(20)
    assert victim not in {t.task_id for t in service.running()}


def test_scale_to_zero_leaves_no_process(app_tables: Pair, make_service: MakeService) -> None:
    service = make_service(app_tables[0], desired=2)
    service.scheduler.start()
    assert service.scheduler.wait_steady(30)
    pids = [t.pid for t in service.running()]
    mark = time.monotonic()
    service.scheduler.set_desired(0)
    assert service.scheduler.wait_steady(10)
    deadline = time.monotonic() + 10
    while any(t.state != "stopped" for t in service.scheduler.tasks()):
        assert time.monotonic() < deadline, service.scheduler.tasks()
        time.sleep(0.02)
    assert all(gone(pid or 0) for pid in pids)
    assert service.lb.servers == {}
    (changed,) = service.events("service_desired_changed", mark)
    assert (changed.attrs["old"], changed.attrs["new"]) == (2, 0)
    assert service.events("service_steady", mark)[-1].attrs["desired"] == 0
    assert {e.attrs["reason"] for e in service.events("task_stopped", mark)} == {"scale_in"}
    # Scale out again from zero.
    service.scheduler.set_desired(1)
    assert service.scheduler.wait_steady(30)


def test_pause_prevents_replacement_until_resume(
    app_tables: Pair, make_service: MakeService
) -> None:
    service = make_service(app_tables[0], desired=2)
    scheduler = service.scheduler
    scheduler.start()
    assert scheduler.wait_steady(30)
    scheduler.pause()
    mark = time.monotonic()
    killed = scheduler.kill_all()  # a region down
    assert len(killed) == 2
    time.sleep(DELAY_S + 1.0)
    assert scheduler.running_count() == 0
    assert not service.events("task_started", mark)
    assert all(t.state == "stopped" for t in scheduler.tasks())
    scheduler.resume()
    assert scheduler.wait_steady(30)
    assert not {t.task_id for t in service.running()} & set(killed)


def test_shutdown_leaves_no_process_even_with_frozen_tasks(
    app_tables: Pair, make_service: MakeService
) -> None:
    service = make_service(app_tables[0], desired=2)
    service.scheduler.start()
    assert service.scheduler.wait_steady(30)
    pids = [t.pid for t in service.running()]
    assert len(service.scheduler.freeze_all()) == 2
    assert all(psutil.Process(pid or 0).status() == psutil.STATUS_STOPPED for pid in pids)
    service.scheduler.shutdown()
    assert all(gone(pid or 0) for pid in pids)
    assert app_processes() == []
    assert all(t.state == "stopped" for t in service.scheduler.tasks())
    assert len(service.events("task_exited")) == 2


def test_restart_tasks_rolls_onto_a_new_database_new_tasks_first(
    app_tables: Pair, make_service: MakeService
) -> None:
    primary, replica = app_tables
    service = make_service(primary, desired=2)
    scheduler = service.scheduler
    scheduler.start()
    assert scheduler.wait_steady(30)
    old = {t.task_id for t in service.running()}
    scheduler.set_db(replica.host, replica.port)
    assert {t.db_port for t in service.running()} == {primary.port}  # nothing rolled yet
    mark = time.monotonic()
    scheduler.restart_tasks()
    deadline = time.monotonic() + 30
    while not (scheduler.is_steady() and not old & {t.task_id for t in service.running()}):
        assert time.monotonic() < deadline, scheduler.tasks()
        time.sleep(0.05)
    tasks = service.running()
    assert {t.db_port for t in tasks} == {replica.port}
    for task in tasks:
        # On the read-only replica now: health answers, a write is refused.
        assert get(task.ip, task.port, "/health-simple.php")[0] == 200
        conn = http.client.HTTPConnection(task.ip, task.port, timeout=5)
        body = json.dumps({"run": "roll", "marker": 1, "ts": 0})
        conn.request("POST", "/api.php?action=write", body=body)
        assert conn.getresponse().status == 503
        conn.close()
    first_new = min(e.mono for e in service.events("task_started", mark))
    retired = [e for e in service.events("task_stopped", mark)]
    assert {e.attrs["reason"] for e in retired} == {"deployment"}
    assert {e.attrs["task"] for e in retired} == old
    assert first_new < min(e.mono for e in retired)  # a new task listened before an old one went


def test_stop_tasks_and_desired_are_validated(app_tables: Pair, make_service: MakeService) -> None:
    scheduler = make_service(app_tables[0], desired=0).scheduler
    with pytest.raises(SchedulerError):
        scheduler.stop_tasks()
    with pytest.raises(SchedulerError):
        scheduler.stop_tasks(count=1, percent=50)
    with pytest.raises(SchedulerError):
        scheduler.stop_tasks(percent=150)
    with pytest.raises(SchedulerError):
        scheduler.stop_tasks(count=1, mode="gentle")  # type: ignore[arg-type]
    with pytest.raises(SchedulerError):
        scheduler.set_desired(-1)
    assert scheduler.stop_tasks(count=3) == []  # nothing running: nothing stopped


def test_behind_haproxy_tasks_are_served_and_replaced(
    app_tables: Pair, make_service: MakeService, tmp_path: Path
) -> None:
    haproxy = pytest.importorskip("drdrill.sandbox.haproxy")
    reason = haproxy.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    timings = Timings(health_check_interval=0.2, healthy_threshold=2, unhealthy_threshold=2)
    lb = haproxy.HAProxyLB(
        name="alb-ecs-test",
        bind_ip=f"{SUBNET}.2",
        port=0,
        run_dir=tmp_path / "alb",
        timings=timings,
    )
    lb.start()
    try:
        service = make_service(app_tables[0], desired=2, lb=lb)
        scheduler = service.scheduler
        scheduler.start()
        assert scheduler.wait_steady(30)

        def healthy(count: int) -> bool:
            deadline = time.monotonic() + 15
            while lb.healthy_count() != count:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            return True

        assert healthy(2)
        ids = {t.task_id for t in service.running()}
        assert {s.server_id for s in lb.servers()} == ids
        seen = set()
        for _ in range(6):
            status, body = get(lb.bind_ip, lb.port, "/api.php?action=stats")
            assert status == 200
            seen.add(json.loads(body)["task"])
        assert seen <= ids and seen
        (victim,) = scheduler.stop_tasks(count=1, mode="graceful")
        assert victim not in {s.server_id for s in lb.servers()}  # deregistered at once
        assert scheduler.wait_steady(30) and healthy(2)
        assert {s.server_id for s in lb.servers()} == {t.task_id for t in service.running()}
        scheduler.shutdown()
        assert lb.servers() == []
    finally:
        lb.kill()
