"""The sandbox's ECS: a service scheduler a region that keeps the desired number of app tasks.

Each task is one ``python -m drdrill.sandbox.app`` process listening on
``<subnet>.<10 + slot>:task_port(slot)``, with a new task id at every start
(``primary-task-7``). A control loop (every ~50 ms, sooner when woken) does what ECS does:

- starts tasks up to the desired count and registers each with the load balancer once it
  prints ``listening on``;
- notices tasks that exited (``Popen.poll``, which also reaps them), deregisters them and
  replaces them after ``scheduler_delay``; tasks stopped through :meth:`stop_tasks` or
  :meth:`kill_all` are replaced after the same delay;
- scales down by deregistering, then SIGTERM (SIGKILL after ``stop_timeout_s``);
- rolls the tasks on :meth:`restart_tasks` (new ones first, old ones stopped as new ones run).

While :meth:`pause` is in force (a region down) nothing is started or replaced. Every step is
written to the ground truth (component ``ecs-<region>``): ``task_launched`` (the process is
started: what ECS's ``has started 1 tasks`` event records), ``task_started`` (the process
listens), ``task_stopped`` (we stopped it, with the mode), ``task_exited`` (exit noticed, with
the return code), ``service_desired_changed`` and ``service_steady`` (running == desired after a
change). Each task process appends its own ``app_first_request`` and ``app_first_write`` to the
same log (see :mod:`drdrill.sandbox.app`).

Tasks run in their own session (a Ctrl-C meant for the harness must not reach them first) and
exit by themselves when the process that started them is gone (``--parent-pid``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Protocol

import psutil

from drdrill.errors import DrillError
from drdrill.sandbox.app import PASSWORD_ENV
from drdrill.sandbox.settings import RegionKey, RegionSettings, Timings
from drdrill.sandbox.truth import TruthLog

log = logging.getLogger(__name__)

TaskStatus = Literal["starting", "running", "stopping", "stopped"]
StopMode = Literal["graceful", "kill"]

#: Task ``slot`` listens on host ``FIRST_TASK_HOST + slot`` of the region's /24.
FIRST_TASK_HOST = 10
_MAX_SLOTS = 254 - FIRST_TASK_HOST
#: Stopped tasks kept for :meth:`ServiceScheduler.tasks` (the history, like ECS's stopped tasks).
_KEEP_STOPPED = 50
_READY_LINE = b"listening on "
#: Retries of a failed load-balancer call back off from the first delay to the maximum.
_LB_RETRY_FIRST_S = 0.1
_LB_RETRY_MAX_S = 2.0


class SchedulerError(DrillError):
    """A service scheduler used wrongly, or one that could not stop its tasks."""


class TargetRegistry(Protocol):
    """The load balancer's side of ECS: targets are added when tasks listen, removed on stop."""

    # ``object``: an implementation may return something (HAProxyLB returns its slot).
    def add_server(self, server_id: str, ip: str, port: int) -> object:
        """Start routing to ``ip:port`` under ``server_id`` (after its health checks pass)."""
        ...

    def remove_server(self, server_id: str) -> None:
        """Stop routing to ``server_id``."""
        ...


@dataclass(frozen=True)
class TaskState:
    """One task as the scheduler sees it."""

    task_id: str
    slot: int
    ip: str
    port: int
    pid: int | None
    state: TaskStatus
    db_host: str
    db_port: int
    spawned_mono: float
    listening_mono: float | None = None
    stopped_mono: float | None = None
    returncode: int | None = None

    @property
    def address(self) -> str:
        """``ip:port``."""
        return f"{self.ip}:{self.port}"


class _Task:
    """The scheduler's mutable record of one task process (guarded by the scheduler's lock)."""

    def __init__(
        self,
        seq: int,
        task_id: str,
        slot: int,
        ip: str,
        port: int,
        db: tuple[str, int],
        proc: subprocess.Popen[bytes],
        log_file: IO[bytes],
        spawned: float,
    ) -> None:
        self.seq = seq
        self.task_id = task_id
        self.slot = slot
        self.ip = ip
        self.port = port
        self.db = db
        self.proc = proc
        self.log_file = log_file
        self.spawned = spawned
        self.state: TaskStatus = "starting"
        self.ready: float | None = None  # set by the reader thread
        self.listening: float | None = None
        self.registered = False
        self.lb_failures = 0
        self.lb_retry_at = 0.0
        self.frozen = False
        self.stop_mode: StopMode | None = None
        self.stop_deadline: float | None = None
        self.stopped: float | None = None
        self.returncode: int | None = None
        self.reader: threading.Thread | None = None

    @property
    def live(self) -> bool:
        return self.state in ("starting", "running")

    def snapshot(self) -> TaskState:
        return TaskState(
            task_id=self.task_id,
            slot=self.slot,
            ip=self.ip,
            port=self.port,
            pid=self.proc.pid if self.state != "stopped" else None,
            state=self.state,
            db_host=self.db[0],
            db_port=self.db[1],
            spawned_mono=self.spawned,
            listening_mono=self.listening,
            stopped_mono=self.stopped,
            returncode=self.returncode,
        )


_live_schedulers: weakref.WeakSet[ServiceScheduler] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """Tasks still running when the interpreter exits are killed, not orphaned."""
    for scheduler in list(_live_schedulers):
        with contextlib.suppress(Exception):
            scheduler.shutdown(timeout=1.0)


class ServiceScheduler:
    """Keeps ``desired`` app tasks running in one region, like an ECS service (module docstring)."""

    def __init__(
        self,
        *,
        region: RegionKey,
        settings: RegionSettings,
        timings: Timings,
        task_port: Callable[[int], int] | int,
        db_endpoint: Callable[[], tuple[str, int]],
        db_user: str = "app",
        db_password: str = "",
        db_name: str = "app",
        run_dir: Path,
        lb: TargetRegistry,
        truth: TruthLog | None = None,
        python: str = sys.executable,
        period_s: float = 0.05,
        stop_timeout_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.region = region
        self.settings = settings
        self.timings = timings
        self._task_port = task_port
        self._db_endpoint = db_endpoint
        self._db_user = db_user
        self._db_password = db_password
        self._db_name = db_name
        self.run_dir = Path(run_dir)
        self.lb = lb
        self.truth = truth
        self._python = python
        self._period = period_s
        self._stop_timeout = stop_timeout_s
        self._clock = clock
        self.component = f"ecs-{region}"

        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._tasks: list[_Task] = []
        self._seq = 0
        self._desired = settings.desired
        self._paused = False
        #: Due times of replacements: a task stopped or lost at t is replaced at t + delay.
        self._holds: list[float] = []
        #: Tasks with ``seq`` up to this are outdated by :meth:`restart_tasks`.
        self._roll_upto = 0
        self._was_steady = False
        _live_schedulers.add(self)

    def __repr__(self) -> str:
        return f"<ServiceScheduler {self.region} desired={self._desired} tasks={len(self._tasks)}>"

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the control loop (tasks come up to the desired count)."""
        with self._lock:
            if self._thread is not None:
                return
            if self._closing.is_set():
                raise SchedulerError(f"{self.component}: cannot start after shutdown")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(
                target=self._loop, name=f"drdrill-{self.component}", daemon=True
            )
            self._thread.start()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop the loop and every task (SIGTERM, then SIGKILL); no process is left."""
        self._closing.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        grace = self._stop_timeout if timeout is None else timeout
        with self._lock:
            for task in self._tasks:
                if task.state == "stopped":
                    continue
                self._deregister(task)
                if task.frozen:
                    self._signal(task, signal.SIGCONT)  # else SIGTERM stays pending
                    task.frozen = False
                if task.state != "stopping" or task.stop_mode != "kill":
                    self._signal(task, signal.SIGTERM)
                    if task.state != "stopping":
                        task.state = "stopping"
                        task.stop_mode = "graceful"
                        self._record("task_stopped", task, mode="graceful", reason="shutdown")
            deadline = time.monotonic() + grace
            for task in self._tasks:
                if task.state == "stopped":
                    continue
                try:
                    task.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._signal(task, signal.SIGKILL)
                    try:
                        task.proc.wait(5.0)
                    except subprocess.TimeoutExpired:
                        log.error("%s: pid %d survived SIGKILL", self.component, task.proc.pid)
                        continue
                self._exited(task, task.proc.returncode)
            leftovers = [t.task_id for t in self._tasks if t.state != "stopped"]
        for task in list(self._tasks):
            if task.reader is not None:
                task.reader.join(1.0)
        _live_schedulers.discard(self)
        if leftovers:
            raise SchedulerError(f"{self.component}: tasks {leftovers} did not stop")

    # --- the service API ---------------------------------------------------------------------

    @property
    def desired(self) -> int:
        """The desired task count."""
        return self._desired

    @property
    def paused(self) -> bool:
        """Whether starting and replacing tasks is suspended."""
        return self._paused

    def set_desired(self, count: int) -> None:
        """Change the desired count (scale out at once, scale in by deregister + SIGTERM)."""
        if not 0 <= count <= _MAX_SLOTS:
            raise SchedulerError(f"{self.component}: desired {count} out of range 0-{_MAX_SLOTS}")
        with self._lock:
            old, self._desired = self._desired, count
            if old != count:
                self._was_steady = False
                self._append("service_desired_changed", old=old, new=count)
        self._wake.set()

    def stop_tasks(
        self,
        count: int | None = None,
        percent: float | None = None,
        mode: StopMode = "kill",
    ) -> list[str]:
        """Stop ``count`` tasks, or ``percent`` % of them rounded up; they are replaced later.

        Running tasks go first, lowest slot first, then starting ones. ``graceful``
        deregisters, then SIGTERM; ``kill`` is SIGKILL (a crash: the load balancer is told
        once the exit is noticed). Returns the ids of the stopped tasks.
        """
        if (count is None) == (percent is None):
            raise SchedulerError(f"{self.component}: stop_tasks needs a count or a percent")
        if count is not None and count < 0:
            raise SchedulerError(f"{self.component}: cannot stop {count} tasks")
        if percent is not None and not 0 <= percent <= 100:
            raise SchedulerError(f"{self.component}: percent {percent} out of range 0-100")
        if mode not in ("graceful", "kill"):
            raise SchedulerError(f"{self.component}: stop mode {mode!r} is not graceful or kill")
        with self._lock:
            live = sorted(
                (t for t in self._tasks if t.live),
                key=lambda t: (t.state != "running", t.slot),
            )
            if count is None:
                assert percent is not None
                count = math.ceil(len(live) * percent / 100 - 1e-9)
            chosen = live[:count]
            for task in chosen:
                self._stop(task, mode, reason="stop_tasks", replace=True)
        self._wake.set()
        return [t.task_id for t in chosen]

    def stop_task(self, task_id: str, mode: StopMode = "graceful", reason: str = "") -> bool:
        """Stop one task by id (ECS's ``StopTask``: graceful, then killed after the stop
        timeout); it is replaced after the scheduler delay. False when it is not live."""
        if mode not in ("graceful", "kill"):
            raise SchedulerError(f"{self.component}: stop mode {mode!r} is not graceful or kill")
        with self._lock:
            task = next((t for t in self._tasks if t.task_id == task_id and t.live), None)
            if task is None:
                return False
            self._stop(task, mode, reason=reason or "stop_task", replace=True)
        self._wake.set()
        return True

    def tasks(self) -> list[TaskState]:
        """Every task, live ones and the recently stopped, oldest first."""
        with self._lock:
            return [t.snapshot() for t in self._tasks]

    def running_count(self) -> int:
        """Tasks that listen and are not being stopped."""
        with self._lock:
            return sum(1 for t in self._tasks if t.state == "running")

    def is_steady(self) -> bool:
        """Running == desired, every live task up to date and listening."""
        with self._lock:
            return self._steady()

    def wait_steady(self, timeout: float) -> bool:
        """Wait until :meth:`is_steady`; False if it was not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.is_steady():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def pause(self) -> None:
        """Start and replace nothing until :meth:`resume` (a region down)."""
        with self._lock:
            if not self._paused:
                self._paused = True
                self._append("service_paused")

    def resume(self) -> None:
        """Undo :meth:`pause`: missing tasks start (replacements whose delay passed at once)."""
        with self._lock:
            if self._paused:
                self._paused = False
                self._was_steady = False
                self._append("service_resumed")
        self._wake.set()

    def kill_all(self) -> list[str]:
        """SIGKILL every task (a region down); they are replaced after the delay unless paused."""
        with self._lock:
            killed: list[str] = []
            for task in self._tasks:
                if task.live:
                    self._stop(task, "kill", reason="kill_all", replace=True)
                    killed.append(task.task_id)
                elif task.state == "stopping" and task.stop_mode != "kill":
                    self._signal(task, signal.SIGKILL)
                    task.stop_mode = "kill"
                    killed.append(task.task_id)
        self._wake.set()
        return killed

    def freeze_all(self) -> list[str]:
        """SIGSTOP every task: they keep their sockets and hang, like a stalled host.

        Returns once the kernel reports them stopped (delivery is asynchronous).
        """
        with self._lock:
            frozen = [t for t in self._tasks if t.state != "stopped" and not t.frozen]
            for task in frozen:
                self._signal(task, signal.SIGSTOP)
                task.frozen = True
            self._wait_states(frozen, stopped=True)
            ids = [t.task_id for t in frozen]
            if ids:
                self._append("tasks_frozen", tasks=ids)
        return ids

    def thaw_all(self) -> list[str]:
        """SIGCONT every frozen task; returns once they run again."""
        with self._lock:
            thawed = [t for t in self._tasks if t.frozen]
            for task in thawed:
                self._signal(task, signal.SIGCONT)
                task.frozen = False
            self._wait_states(thawed, stopped=False)
            ids = [t.task_id for t in thawed]
            if ids:
                self._append("tasks_thawed", tasks=ids)
        return ids

    def set_db(self, host: str, port: int) -> None:
        """Point tasks started from now on at another database (:meth:`restart_tasks` rolls)."""
        with self._lock:
            self._db_endpoint = lambda: (host, port)
            self._append("service_db_changed", db=f"{host}:{port}")

    def db_endpoint(self) -> tuple[str, int]:
        """The database new tasks are started with."""
        with self._lock:
            return self._db_endpoint()

    def restart_tasks(self) -> None:
        """Replace every live task by a new one, new ones first (a rolling deployment)."""
        with self._lock:
            self._roll_upto = self._seq
            self._was_steady = False
            ids = [t.task_id for t in self._tasks if t.live]
            self._append("service_restart_requested", tasks=ids)
        self._wake.set()

    # --- the control loop --------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                with self._lock:
                    if self._closing.is_set():
                        break
                    self._tick()
            except Exception:  # the loop must outlive one bad tick; the next one retries
                log.exception("%s: control loop tick failed", self.component)
            self._wake.wait(self._period)
            self._wake.clear()

    def _tick(self) -> None:
        now = self._clock()
        for task in self._tasks:
            if task.state == "stopped":
                continue
            code = task.proc.poll()
            if code is not None:
                self._exited(task, code)
                continue
            if task.state == "starting" and task.ready is not None:
                task.state = "running"
                task.listening = task.ready
                self._record(
                    "task_started",
                    task,
                    db=f"{task.db[0]}:{task.db[1]}",
                    listening_mono=task.ready,
                    start_s=round(task.ready - task.spawned, 4),
                )
            deadline = task.stop_deadline
            if task.state == "stopping" and deadline is not None and now >= deadline:
                # Graceful stop took too long: ECS's stopTimeout, then SIGKILL.
                self._signal(task, signal.SIGKILL)
                task.stop_deadline = None
        for task in self._tasks:
            if now < task.lb_retry_at:
                continue
            if task.state == "running" and not task.registered:
                self._register(task)
            elif task.state != "running" and task.registered:
                self._deregister(task)
        self._reconcile(now)
        steady = self._steady()
        if steady and not self._was_steady:
            self._append("service_steady", running=self.running_count(), desired=self._desired)
        self._was_steady = steady
        stopped = [t for t in self._tasks if t.state == "stopped"]
        if len(stopped) > _KEEP_STOPPED:
            drop = {id(t) for t in stopped[: len(stopped) - _KEEP_STOPPED]}
            self._tasks = [t for t in self._tasks if id(t) not in drop]

    def _reconcile(self, now: float) -> None:
        live = [t for t in self._tasks if t.live]
        outdated = [t for t in live if t.seq <= self._roll_upto]
        current = [t for t in live if t.seq > self._roll_upto]
        desired = self._desired
        # Scale in: the newest first, starting ones before running ones.
        if len(current) > desired:
            extra = sorted(current, key=lambda t: (t.state == "running", -t.seq))
            for task in extra[: len(current) - desired]:
                self._stop(task, "graceful", reason="scale_in", replace=False)
            current = [t for t in current if t.live]
        # Outdated tasks go as soon as enough new ones run (and all of them when scaling in).
        running_current = sum(1 for t in current if t.state == "running")
        retire = max(0, running_current + len(outdated) - desired)
        for task in sorted(outdated, key=lambda t: t.seq)[:retire]:
            self._stop(task, "graceful", reason="deployment", replace=False)
        # Scale out, but replacements wait for their delay.
        self._holds = sorted(h for h in self._holds if h > now)
        need = desired - len(current)
        if need <= 0:
            self._holds.clear()
            return
        del self._holds[need:]
        startable = need - len(self._holds)
        if self._paused or self._closing.is_set():
            return
        for _ in range(startable):
            if not self._spawn(now):
                break

    def _steady(self) -> bool:
        live = [t for t in self._tasks if t.live]
        return len(live) == self._desired and all(
            t.state == "running" and t.seq > self._roll_upto for t in live
        )

    # --- task processes ----------------------------------------------------------------------

    def _free_slot(self) -> int | None:
        taken = {t.slot for t in self._tasks if t.state != "stopped"}
        for slot in range(_MAX_SLOTS):
            if slot not in taken:
                return slot
        return None

    def _port(self, slot: int) -> int:
        if callable(self._task_port):
            return self._task_port(slot)
        return self._task_port + slot

    def _spawn(self, now: float) -> bool:
        slot = self._free_slot()
        if slot is None:
            log.error("%s: no free task slot", self.component)
            return False
        self._seq += 1
        seq = self._seq
        task_id = f"{self.region}-task-{seq}"
        ip = self.settings.ip(FIRST_TASK_HOST + slot)
        port = self._port(slot)
        db = self._db_endpoint()
        cmd = [
            self._python,
            "-m",
            "drdrill.sandbox.app",
            "--host",
            ip,
            "--port",
            str(port),
            "--db-host",
            db[0],
            "--db-port",
            str(db[1]),
            "--db-user",
            self._db_user,
            "--db-name",
            self._db_name,
            "--task-id",
            task_id,
            "--region",
            self.region,
            "--start-delay",
            str(self.timings.task_start_delay),
            "--parent-pid",
            str(os.getpid()),
        ]
        if self.truth is not None:
            cmd += ["--truth", str(self.truth.path)]  # the task logs its own firsts
        env = {**os.environ, PASSWORD_ENV: self._db_password, "PYTHONUNBUFFERED": "1"}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_file = (self.run_dir / f"{task_id}.log").open("ab")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                env=env,
                # Our own session: a Ctrl-C for the harness must not reach the tasks first.
                start_new_session=True,
            )
        except OSError as exc:
            log_file.close()
            log.error("%s: cannot start a task: %s", self.component, exc)
            self._holds.append(now + self.timings.scheduler_delay)  # no tight retry loop
            return False
        task = _Task(seq, task_id, slot, ip, port, db, proc, log_file, self._clock())
        task.reader = threading.Thread(
            target=self._read_output, args=(task,), name=f"drdrill-{task_id}", daemon=True
        )
        task.reader.start()
        self._tasks.append(task)
        self._record("task_launched", task)
        return True

    def _read_output(self, task: _Task) -> None:
        """Copy the task's stdout to its log; note when it starts listening."""
        stdout = task.proc.stdout
        assert stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for line in stdout:
                if task.ready is None and line.startswith(_READY_LINE):
                    task.ready = self._clock()
                    self._wake.set()
                task.log_file.write(line)
                task.log_file.flush()
        # EOF: the process is gone (or closed its stdout); the log is the reader's to close.
        with contextlib.suppress(OSError):
            stdout.close()
        with contextlib.suppress(OSError):
            task.log_file.close()

    def _stop(self, task: _Task, mode: StopMode, *, reason: str, replace: bool) -> None:
        if not task.live:
            return
        now = self._clock()
        if mode == "graceful":
            self._deregister(task)  # first, so that no new request reaches a draining task
            if task.frozen:
                self._signal(task, signal.SIGCONT)  # a stopped process keeps SIGTERM pending
                task.frozen = False
            self._signal(task, signal.SIGTERM)
            task.stop_deadline = now + self._stop_timeout
        else:
            self._signal(task, signal.SIGKILL)
        task.state = "stopping"
        task.stop_mode = mode
        self._was_steady = False
        self._record("task_stopped", task, mode=mode, reason=reason)
        if replace:
            self._holds.append(now + self.timings.scheduler_delay)

    def _exited(self, task: _Task, code: int | None) -> None:
        expected = task.stop_mode is not None
        if not expected and task.live:
            # Lost without being asked (a crash, a bind failure): ECS replaces it after a delay.
            self._holds.append(self._clock() + self.timings.scheduler_delay)
        task.state = "stopped"
        task.returncode = code
        task.stopped = self._clock()
        task.frozen = False
        self._was_steady = False
        self._deregister(task)
        self._record("task_exited", task, returncode=code, expected=expected)

    def _wait_states(self, tasks: list[_Task], *, stopped: bool, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for task in tasks:
            while True:
                try:
                    state = psutil.Process(task.proc.pid).status()
                except psutil.NoSuchProcess:
                    break
                if (state == psutil.STATUS_STOPPED) == stopped or state == psutil.STATUS_ZOMBIE:
                    break
                if time.monotonic() >= deadline:
                    what = "stop" if stopped else "continue"
                    raise SchedulerError(f"{self.component}: {task.task_id} did not {what}")
                time.sleep(0.002)

    def _signal(self, task: _Task, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if task.proc.poll() is None:
                task.proc.send_signal(signum)

    # --- load balancer and truth -------------------------------------------------------------

    def _register(self, task: _Task) -> None:
        try:
            self.lb.add_server(task.task_id, task.ip, task.port)
        except Exception as exc:  # the LB may be down (a region fault): retried later
            self._lb_error("add", task, exc)
            return
        self._lb_ok(task)
        task.registered = True

    def _deregister(self, task: _Task) -> None:
        if not task.registered:
            return
        try:
            self.lb.remove_server(task.task_id)
        except Exception as exc:  # the LB may be down (a region fault): retried later
            self._lb_error("remove", task, exc)
            return
        self._lb_ok(task)
        task.registered = False

    def _lb_ok(self, task: _Task) -> None:
        task.lb_failures = 0
        task.lb_retry_at = 0.0

    def _lb_error(self, what: str, task: _Task, exc: Exception) -> None:
        # Back off: a frozen load balancer costs a timeout a call, under the scheduler's lock.
        task.lb_failures += 1
        delay = min(_LB_RETRY_MAX_S, _LB_RETRY_FIRST_S * 2 ** (task.lb_failures - 1))
        task.lb_retry_at = self._clock() + delay
        if task.lb_failures == 1:  # logged once, not at every retry
            log.warning(
                "%s: load balancer %s %s failed: %s", self.component, what, task.task_id, exc
            )

    def _record(self, event: str, task: _Task, **attrs: object) -> None:
        self._append(
            event,
            task=task.task_id,
            slot=task.slot,
            address=f"{task.ip}:{task.port}",
            pid=task.proc.pid,
            **attrs,
        )

    def _append(self, event: str, **attrs: object) -> None:
        if self.truth is not None:
            self.truth.append(event, self.component, **attrs)
