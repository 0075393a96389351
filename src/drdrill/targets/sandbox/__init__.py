"""The ``sandbox`` target: the embedded two-region stack, seen only through its control API.

Suites use the capability methods here (faults, failover triggers, observations); they never
touch the supervisor's internals.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import pymysql
from pydantic import ValidationError

from drdrill.config import DrillConfig, EndpointConfig
from drdrill.errors import ConfigError, DrillError
from drdrill.probes.client import ClientSpec
from drdrill.probes.http import AiohttpClient, HttpClient
from drdrill.probes.lag import (
    LagReading,
    ReplicationState,
    ensure_heartbeat_table,
    read_replica_lag,
)
from drdrill.probes.resolve import TtlCache, TtlResolver, resolve_a
from drdrill.probes.writes import MARKER_TABLE, HttpSink, Marker, WriteSink
from drdrill.sandbox import blocklock, control, dbclient
from drdrill.sandbox.binlog import marker_ids_after
from drdrill.sandbox.ground_truth import (
    PhaseTruth,
    failback_truths,
    failover_truths,
    reboot_truth,
    task_failure_truth,
)
from drdrill.sandbox.mariadb import MariaDBConfig
from drdrill.sandbox.observer_log import (
    ObserverTarget,
    ObserverTransition,
    judged_until,
    read_transitions,
)
from drdrill.sandbox.settings import DnsClientRole, RegionKey, SandboxSettings
from drdrill.sandbox.truth import TruthEvent, TruthLog
from drdrill.targets.base import FailoverMode
from drdrill.targets.sandbox.faults import (
    CutOffClients,
    CutReplication,
    DegradeLink,
    PartitionRegions,
    PauseReplication,
    RebootDb,
    RegionDown,
    SetFailoverMode,
    StopTasks,
)
from drdrill.timeline import Timeline

if TYPE_CHECKING:
    from drdrill.measure import Measurements

#: the runbook's scripts, shipped as package data (``drdrill/scripts/``)
SCRIPTS = resources.files("drdrill") / "scripts"


@dataclass(frozen=True)
class DnsClient:
    """How one of the drill's DNS clients resolves the public name: the server it asks and the
    source address its queries carry (which the server's ``dns_answer`` log names)."""

    role: str
    server_ip: str
    port: int
    source_ip: str


class ClientResolver:
    """The public name as one client resolves it: from its own source address, each answer
    kept for its TTL (:class:`TtlCache`)."""

    def __init__(self, name: str, cache: TtlCache) -> None:
        self.name = name
        self.cache = cache

    @property
    def source_ip(self) -> str | None:
        """The address the client's queries come from."""
        return self.cache.source_ip

    def lookup(self) -> str:
        """The address the client would connect to now."""
        return self.cache.lookup(self.name)


#: the drills the sandbox has a ground truth for (:meth:`SandboxTarget.attach_truth`)
DrillKind = Literal["region_failover", "task_failure", "db_reboot", "failback"]


class SandboxTarget:
    """A running sandbox (started on demand, taken down at the end if we started it)."""

    name = "sandbox"
    needs_destructive_flag = False

    def __init__(self, config: DrillConfig, worker: str | None = None) -> None:
        """The sandbox ``config`` describes; a pytest-xdist ``worker`` drills its own."""
        self.config = config
        settings, run_dir = control.load_settings(config)
        self._worker = worker
        if worker:
            # each pytest-xdist worker drills its own sandbox: block, ports, addresses, folder
            settings = _worker_settings(settings, worker, config)
            run_dir = config.resolve(settings.run_dir)
        self.settings: SandboxSettings = settings
        self.run_dir: Path = run_dir
        self.client = control.client_for(self.settings)
        self.truth = TruthLog(self.run_dir / "truth.jsonl")
        self._started_here = False
        #: a sandbox ``start`` found running (its owner's: left running, at its baseline)
        self._found_running = False
        #: whether the first baseline check of a sandbox found running looked for a split brain
        self._split_brain_checked = False
        #: whether it found one (the run then drills nothing on it, and never resets it)
        self._found_split_brain = False
        #: resolvers handed to probes: their histories say when clients saw the DNS switch
        self.resolvers: list[TtlResolver] = []
        #: name caches handed to writers (likewise)
        self.caches: list[TtlCache] = []

    @property
    def control_port(self) -> int:
        """The supervisor's control port."""
        return self.settings.port("control")

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bring the sandbox up unless it runs (then it is left running at the end); refused
        (``BlockTaken``, one line naming the owner) when another sandbox holds the block."""
        blocklock.check(self.settings.block, self.run_dir)
        if not self.client.alive():
            control.up(self.settings, self.run_dir, tie_to_caller=True)  # goes with this run
            self._started_here = True
        else:
            self._found_running = not self._started_here

    def stop(self) -> None:
        """Take the sandbox down if this run brought it up (one it found running stays up:
        a drill run restores its baseline first, :meth:`restore_baseline`)."""
        if self._started_here:
            control.down(self.settings, self.run_dir)
            self._started_here = False

    def reset(self) -> None:
        """A fresh stack at its baseline (primary serving, DR at pilot light). A stack that ran
        stays its owner's: a sandbox the user brought up is reset, not taken over (``stop``
        leaves it running)."""
        was_running = self.client.alive()
        control.down(self.settings, self.run_dir)
        control.up(self.settings, self.run_dir, tie_to_caller=self._started_here or not was_running)
        if not was_running:
            self._started_here = True

    def baseline_changes(self) -> list[str]:
        """How the stack differs from its baseline (as ``up`` left it), each as what restoring
        it does (``failed back from dr``); empty at the baseline."""
        status = self.status()
        regions = status["regions"]
        changes = [
            f"{key} region back up (was {region['state']})"
            for key, region in regions.items()
            if region["state"] != "up"
        ]
        failover, dns = status["failover"], status["dns"]["active"]
        failed_over = "dr" in (failover, dns)
        if failed_over:
            changes.append("failed back from dr")  # DR back to pilot light with it
        elif failover != "primary":
            changes.append(f"its failover undone (was {failover})")
        primary, dr = self.settings.primary, self.settings.dr
        running = regions["primary"]["ecs"]["running"]
        if running != primary.desired:
            changes.append(f"primary service back to {primary.desired} tasks (was {running})")
        desired = regions["dr"]["ecs"]["desired"]
        if desired != dr.desired and not failed_over:
            changes.append(f"dr service back to {dr.desired} desired tasks (was {desired})")
        if status["alarm"]["state"] != "OK":
            changes.append(f"alarm back to OK (was {status['alarm']['state']})")
        link = status["link"]
        if link["partitioned"]:
            changes.append("regions rejoined")
        elif not link["at_baseline"]:  # joined, but not shaped as configured
            changes.append("inter-region link back to its configured shape")
        changes += [
            f"{key} rejoined to its clients" for key, r in regions.items() if r["alb"]["cut_off"]
        ]
        if status["mode"] != self.settings.mode:
            changes.append(f"mode back to {self.settings.mode} (was {status['mode']})")
        return changes

    def at_baseline(self) -> bool:
        """Whether the stack is as ``up`` left it: both regions up, primary serving, no alarm,
        the regions joined as configured, the configured failover mode."""
        return not self.baseline_changes()

    def ensure_baseline(self) -> None:
        """Reset the stack unless it is at its baseline. A sandbox this run found running in
        split brain (both databases writable, as an interrupted failover leaves it) is not
        reset: a reset throws away what the promoted database took, which is for a person to
        choose (DrillError, naming the ways out)."""
        if self._found_running and not self._split_brain_checked:
            self._split_brain_checked = True
            if self.client.alive() and self.status().get("split_brain"):
                self._found_split_brain = True  # and the end of the run leaves it so too
                raise DrillError(
                    f"the sandbox in block {self.settings.block} is in split brain (both "
                    "regions' databases take writes): fail back (`drdrill sandbox failback`) "
                    "or reset it (`drdrill sandbox down`, then `up`) before drilling"
                )
        if not self.client.alive() or not self.at_baseline():
            self.reset()

    def restore_baseline(self, reset: bool = True) -> str | None:
        """At the end of a run, a running sandbox back at its baseline (:meth:`ensure_baseline`)
        if the run left it changed: one line saying what was restored, or a warning that it
        could not be; None when it was at its baseline. A sandbox no longer running is not
        started (its owner may have taken it down). Without ``reset`` (an interrupted run: it
        may have stopped mid-failover, and a reset would throw away what the promoted database
        took) it is left as it is, and the line says what it needs."""
        if self._started_here or not self._found_running:
            return None  # brought up by this run: it goes down with it
        where = f"the sandbox in block {self.settings.block} ({self.run_dir})"
        if blocklock.other_owner(self.settings.block, self.run_dir) is not None:
            return None  # the block's sandbox is another run folder's: not ours to restore
        if not self.client.alive():
            return f"WARNING: {where} no longer runs after the run: nothing restored"
        changes: list[str] = []
        try:
            changes = self.baseline_changes()
            if not changes:
                return None
            if self._found_split_brain:
                return (
                    f"WARNING: {where} was in split brain when the run began and is left so: "
                    "fail back (`drdrill sandbox failback`) or reset it (`drdrill sandbox "
                    "down`, then `up`)"
                )
            if not reset:
                brain = " (SPLIT BRAIN: both databases take writes)" * bool(
                    self.status().get("split_brain")
                )
                return (
                    f"WARNING: {where} is left as the interrupted run left it{brain}, not at "
                    f"its baseline: {', '.join(changes)}; fail back (`drdrill sandbox "
                    "failback`) or reset it (`drdrill sandbox down`, then `up`)"
                )
            self.ensure_baseline()
            left = self.baseline_changes()
            problem = f"a reset left it needing: {', '.join(left)}" if left else None
        except Exception as exc:  # the run's end says so, whatever failed
            problem = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        what = ", ".join(changes) or "its state unreadable"
        if problem is None:
            return f"sandbox restored to its baseline after the run: {what}"
        return (
            f"WARNING: {where} is NOT at its baseline after the run, and restoring it ({what}) "
            f"failed: {problem}; `drdrill sandbox down` then `up` resets it"
        )

    # --- what probes and writers use ---------------------------------------------------------

    def _lb(self, region: RegionKey) -> str:
        return f"http://{self.settings.region(region).ip(2)}:{self.settings.port('lb')}"

    @property
    def public_url(self) -> str:
        """The app's public address: its name, resolved through the sandbox's DNS."""
        return f"http://{self.settings.app_name}:{self.settings.port('lb')}"

    @property
    def dns_server(self) -> tuple[str, int]:
        """Where the app's public name is resolved."""
        return self.settings.dns_ip, self.settings.port("dns")

    def endpoints(self, region: RegionKey | None = None) -> list[EndpointConfig]:
        """The runbook's post-failover checks, through the public name or one region's LB."""
        base = self.public_url if region is None else self._lb(region)
        return [
            EndpointConfig(url=f"{base}/health-simple.php", name="health"),
            EndpointConfig(url=f"{base}/", name="home", body_contains="Visitor Analytics"),
            EndpointConfig(
                url=f"{base}/api.php?action=stats",
                name="stats",
                json_field="status",
                json_equals="ok",
            ),
        ]

    def http_client_spec(self) -> ClientSpec:
        """How probes reach the public name (as a picklable description, for the probes'
        own process): through the sandbox DNS from the ``probes`` client's address, honouring
        the TTL, a new connection a sample (a kept-alive one would stay on the old region)."""
        return ClientSpec(
            resolver=self.dns_server,
            resolver_source_ip=self.settings.client_ip("probes"),
            fresh_connections=True,
        )

    def http_client_factory(self, max_connections: int) -> HttpClient:
        """Probe clients that resolve the public name through the sandbox DNS, honouring its TTL.

        Each sample is a new client on a new connection, so that the probes follow the DNS
        record as new clients do (a kept-alive connection would stay on the old region).
        """
        resolver = TtlResolver(*self.dns_server, source_ip=self.settings.client_ip("probes"))
        self.resolvers.append(resolver)
        return AiohttpClient(max_connections, resolver=resolver, fresh_connections=True)

    def write_sink(self, timeout_s: float) -> WriteSink:
        """RPO markers through the public name (resolved with its TTL, like a client)."""
        cache = TtlCache(*self.dns_server, source_ip=self.settings.client_ip("writer"))
        self.caches.append(cache)
        return DnsHttpSink(self.write_url(), cache, timeout_s)

    def dns_client(self, role: DnsClientRole) -> DnsClient:
        """One DNS client's set-up: ``probes`` (the probes' resolvers), ``writer`` (the RPO
        writer's cache) or ``drill`` (the drill's own polls: :meth:`dns_answer`,
        :meth:`client_resolver`)."""
        server_ip, port = self.dns_server
        return DnsClient(role, server_ip, port, self.settings.client_ip(role))

    def dns_clients(self) -> dict[str, DnsClient]:
        """Every DNS client's set-up, by role."""
        return {role: self.dns_client(role) for role in get_args(DnsClientRole)}

    def client_resolver(self, role: str = "drill") -> ClientResolver:
        """A resolver of the public name as a client has it: from the role's own address,
        each answer kept for its TTL (so it sees a DNS switch as clients do)."""
        roles = get_args(DnsClientRole)
        if role not in roles:
            raise ConfigError("client_resolver", f"unknown dns client '{role}' (known: {roles})")
        client = self.dns_client(cast(DnsClientRole, role))
        cache = TtlCache(client.server_ip, client.port, source_ip=client.source_ip)
        self.caches.append(cache)
        return ClientResolver(self.settings.app_name, cache)

    def writable_probe(self, region: RegionKey) -> Callable[[], bool]:
        """A cheap poll of whether a region's database takes the app's writes (read_only off),
        on one connection kept across calls (a new one after a failure)."""
        held: list[Any] = []

        def writable() -> bool:
            try:
                if not held:
                    held.append(self._db(region))
                with held[0].cursor() as cur:
                    cur.execute("SELECT @@global.read_only")
                    return int(cur.fetchone()[0]) == 0
            except (pymysql.err.Error, OSError):
                for conn in held:
                    with contextlib.suppress(Exception):
                        conn.close()
                held.clear()
                return False

        return writable

    def write_url(self) -> str:
        """The app's write endpoint through the public name."""
        return f"{self.public_url}/api.php?action=write"

    def db_address(self, region: RegionKey) -> tuple[str, int]:
        """A region's database address."""
        return self.settings.region(region).ip(5), self.settings.port("db")

    @property
    def lb_port(self) -> int:
        """The port both regions' load balancers listen on."""
        return self.settings.port("lb")

    def db_connection(self, region: RegionKey) -> Any:
        """A new connection to a region's database as the app's user."""
        return self._db(region)

    def _db(self, region: RegionKey) -> Any:
        """A connection of its own to a region's database, as the app's user (autocommit)."""
        return dbclient.endpoint(
            self.settings.region(region).ip(5),
            self.settings.port("db"),
            MariaDBConfig.app_user,  # the supervisor's servers keep the defaults
            MariaDBConfig.app_password,
            MariaDBConfig.database,
            connect_timeout_s=2,
            read_timeout_s=5,
            write_timeout_s=5,
        ).connect(autocommit=True)

    def marker_ids_in(self, region: RegionKey, run_id: str) -> set[int]:
        """The marker ids of a run in a region's database: plain SQL on a connection of its
        own, independent of the writer's verifier."""
        with self._db(region) as conn, conn.cursor() as cur:
            cur.execute("SELECT marker_id FROM drdrill_markers WHERE run_id = %s", (run_id,))
            return {int(row[0]) for row in cur.fetchall()}

    def markers_committed_after(self, region: RegionKey, gtid: str, run_id: str) -> set[int]:
        """Ground truth of a loss: the marker ids of a run that a region's database committed
        after the GTID position ``gtid``, read from its own binary log (``mariadb-binlog``),
        not from any table the verifier reads."""
        datadir = self.run_dir / f"rds-{region}" / "data"
        return marker_ids_after(datadir, gtid, run_id, MARKER_TABLE)

    def present_markers(self, run_id: str, region: RegionKey | None = None) -> set[int]:
        """Marker ids of a run in the database that serves writes now (or in ``region``'s)."""
        region = region or self._light()["writer_region"]
        with self._db(region) as conn, conn.cursor() as cur:
            cur.execute("SELECT marker_id FROM drdrill_markers WHERE run_id = %s", (run_id,))
            return {int(r[0]) for r in cur.fetchall()}

    # --- faults ------------------------------------------------------------------------------

    def stop_tasks(
        self,
        region: RegionKey = "primary",
        count: int | None = 1,
        percent: float | None = None,
        mode: Literal["graceful", "kill"] = "kill",
    ) -> StopTasks:
        """A fault: stop n or a percentage of a service's tasks."""
        return StopTasks(self.control_port, region, count, percent, mode)

    def reboot_db(
        self, region: RegionKey = "primary", mode: Literal["clean", "crash"] = "clean"
    ) -> RebootDb:
        """A fault: reboot a region's database."""
        return RebootDb(self.control_port, region, mode)

    def region_down(
        self, region: RegionKey = "primary", mode: Literal["kill", "freeze"] = "kill"
    ) -> RegionDown:
        """A fault: a whole region down (kill, or freeze: a black hole)."""
        return RegionDown(self.control_port, region, mode)

    def pause_replication(self) -> PauseReplication:
        """A fault: the DR replica stops applying, its lag builds up."""
        return PauseReplication(self.control_port)

    def cut_replication(self) -> CutReplication:
        """A fault: the replication link to DR cut (its IO thread stopped); writes acknowledged
        from then on are lost by a failover."""
        return CutReplication(self.control_port)

    def partition_regions(self) -> PartitionRegions:
        """A fault: the regions partitioned (nothing crosses the inter-region link); the old
        primary keeps taking writes, which a failover then loses (a split brain)."""
        return PartitionRegions(self.control_port)

    def cut_off_clients(self, region: RegionKey = "primary") -> CutOffClients:
        """A fault: a region partitioned from its clients (its load balancer drops their
        connections without an answer) while it runs on, linked to the other region."""
        return CutOffClients(self.control_port, region)

    def degrade_link(
        self, latency_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0
    ) -> DegradeLink:
        """A fault: the inter-region link slower (one-way latency, jitter) or lossy."""
        return DegradeLink(self.control_port, latency_ms, jitter_ms, loss_pct)

    # --- actions -----------------------------------------------------------------------------

    def scale(self, region: RegionKey, desired: int) -> None:
        """Change a service's desired count."""
        self.client.call("scale", region=region, desired=desired)

    def failover_mode(self) -> FailoverMode | None:
        """Whether the alarm runs the DR automation by itself now."""
        mode = self.status().get("mode")
        return mode if mode in ("automated", "manual") else None

    def set_mode(self, mode: FailoverMode) -> None:
        """Whether the alarm runs the DR automation by itself."""
        self.client.call("set_mode", mode=mode)

    def mode_change(self, mode: FailoverMode) -> SetFailoverMode:
        """Setting the mode as a change a drill journals (``inject.change``): reverted at the
        drill's end, or by ``drdrill recover`` after a kill."""
        return SetFailoverMode(self.control_port, mode, self.failover_mode() or "manual")

    def invoke_dr(self, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Invoke the DR automation like the runbook's Lambda (synchronous)."""
        body = dict(payload or {"trigger": "manual", "reason": "disaster_recovery"})
        result: dict[str, Any] = self.client.call("invoke_dr", payload=body, wait=True)
        return result

    def script_problem(self, name: str) -> str | None:
        """None for the runbook's scripts the sandbox ships (``failover.sh``, ``failback.sh``,
        ...); what is missing otherwise."""
        if not (SCRIPTS / name).is_file():
            return f"the sandbox has no script '{name}' (in {SCRIPTS})"
        return None

    def run_script(self, name: str, *args: str, timeout_s: float = 180.0) -> str:
        """Run one of the runbook's scripts (``failover.sh``, ...) against this sandbox."""
        proc = subprocess.run(
            [str(SCRIPTS / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={
                **os.environ,
                "DRDRILL": str(Path(sys.executable).parent / "drdrill"),
                "DRDRILL_CONFIG": str(self.config.path),
                **({control.WORKER_ENV: self._worker} if self._worker else {}),
            },
        )
        if proc.returncode != 0:
            raise control.SandboxError(
                f"scripts/{name} exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
            )
        return proc.stdout

    # --- observations ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every component's state."""
        return self.client.status()

    def alarm_state(self) -> str:
        """The health alarm's state (OK or ALARM)."""
        return str(self.client.call("alarm")["state"])

    def alarm_history(self) -> list[dict[str, Any]]:
        """The alarm's state changes with their times (like CloudWatch's history)."""
        history: list[dict[str, Any]] = self.client.call("alarm")["history"]
        return history

    def db_writable(self, region: RegionKey) -> bool:
        """Whether the region's database takes the app user's writes (read_only off)."""
        with self._db(region) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@global.read_only")
            return int(cur.fetchone()[0]) == 0

    def _light(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("status", light=True)
        return result

    def healthy_targets(self, region: RegionKey) -> int:
        """Healthy targets behind a region's load balancer."""
        return int(self._light()["regions"][region]["alb"]["healthy"])

    def desired(self, region: RegionKey) -> int:
        """A region's service's desired count now."""
        return int(self._light()["regions"][region]["ecs"]["desired"])

    def scale_to(self, region: RegionKey) -> int:
        """How many tasks the DR automation scales a region's service to."""
        return self.settings.region(region).scale_to

    def replication_running(self) -> ReplicationState:
        """Whether the DR replica's IO and SQL threads both run; the reason names what does not."""
        replication = self.status()["regions"]["dr"]["rds"]["replication"]
        if not replication:
            return ReplicationState(
                False, "the DR database reports no replication (down, frozen or not a replica)"
            )
        if "error" in replication:
            return ReplicationState(
                False, f"the DR database's replication status is unreadable: {replication['error']}"
            )
        stopped = [name for key, name in (("io", "IO"), ("sql", "SQL")) if not replication.get(key)]
        if stopped:
            what = f"{stopped[0]} thread is" if len(stopped) == 1 else "IO and SQL threads are"
            return ReplicationState(False, f"the DR replica's {what} stopped")
        return ReplicationState(True)

    def replica_lag(
        self, timeline: Timeline, rpo_s: float | None = None, seconds: float = 2.0
    ) -> LagReading:
        """The worst heartbeat lag over ``seconds``, sampled every 0.1 s, judged against ``rpo_s``.

        A heartbeat the DR replica never shows is a proven lower bound, not a missing figure: the
        sampling goes on until that bound passes ``rpo_s`` (see
        :func:`~drdrill.probes.lag.read_replica_lag`).
        """
        with self.db_connection("primary") as conn:
            ensure_heartbeat_table(conn)
        return read_replica_lag(
            lambda: self.db_connection("primary"),
            lambda: self.db_connection("dr"),
            rpo_s,
            seconds=seconds,
            interval_s=0.1,
            timeline=timeline,
        )

    def steady_state_problems(self, rpo_s: float | None) -> list[str]:
        """What keeps the stack from its steady state before a fault: replication not
        running, the replica's lag over ``rpo_s`` (or not measurable), the alarm not OK, the
        public name not answering the primary. Empty when all hold."""
        problems = []
        state = self.replication_running()
        if not state:
            problems.append(state.reason or "the DR database does not replicate")
        else:
            lag = self.replica_lag(Timeline(), rpo_s, seconds=0.3)
            if lag.value is None or lag.lower_bound_only:
                problems.append(lag.reason or "the replica's lag is not known")
            elif rpo_s is not None and lag.value - lag.uncertainty > rpo_s:
                problems.append(f"replica lag {lag.value:.3f} s over the RPO of {rpo_s:g} s")
        alarm = self.alarm_state()
        if alarm != "OK":
            problems.append(f"the health alarm is {alarm}, not OK")
        if self.dns_answer() != self.region_ip("primary"):
            problems.append("the public name does not answer the primary region")
        return problems

    def primary_record_healthy(self) -> bool:
        """DNS answers the primary's load balancer, which has healthy targets."""
        return (
            self.dns_answer() == self.region_ip("primary") and self.healthy_targets("primary") > 0
        )

    def alarm_notifies(self, timeout_s: float = 5.0) -> bool:
        """Whether the alarm's notifications reach its subscriber: a test message sent through
        the alarm's delivery path, seen in the subscriber's (the pager's) own log of receipt."""
        since = time.monotonic()
        try:
            sent: dict[str, Any] = self.client.call("test_notification")
        except control.SandboxError:
            return False
        if not sent.get("subscribers"):
            return False
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.truth.since(since, "sns_delivered"):
                if event.attrs.get("message_id") == sent["message_id"]:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def running_tasks(self, region: RegionKey) -> int:
        """Running tasks of a region's service."""
        return int(self._light()["regions"][region]["ecs"]["running"])

    def dns_answer(self) -> str:
        """The address the sandbox DNS gives for the public name now (asked from the
        ``drill`` client's address)."""
        ip, _ttl = resolve_a(
            self.settings.app_name, *self.dns_server, source_ip=self.settings.client_ip("drill")
        )
        return ip

    def region_of(self, address: str | None) -> RegionKey | None:
        """The region whose load balancer ``address`` is (what DNS answers for it)."""
        for region in get_args(RegionKey):
            if address == self.region_ip(region):
                return cast(RegionKey, region)
        return None

    def region_ip(self, region: RegionKey) -> str:
        """A region's load balancer address (what DNS answers when it is active)."""
        return self.settings.region(region).ip(2)

    def truth_since(self, mono: float, event: str | None = None) -> list[TruthEvent]:
        """Ground truth the sandbox logged since ``mono``, in time order."""
        return self.truth.since(mono, event)

    def reported_since(self, mono: float, record: str) -> list[TruthEvent]:
        """The stack's own reports of an action it took since ``mono`` (the DR automation's
        ``automation_invoked``, ``rds_promotion_requested``, ``ecs_scale_requested``,
        ``dns_switch_requested``: what its API would answer), in time order. Drills read these;
        :meth:`attach_truth` does not."""
        return self.truth.since(mono, record)

    def attach_truth(
        self,
        measure: Measurements,
        trigger: str = "automated",
        drill: DrillKind = "region_failover",
    ) -> dict[str, PhaseTruth]:
        """Put the sandbox's ground truth beside each figure of a drill that ``measure`` holds,
        from records the drill does not read (docs/ground-truth.md); returns what was attached.

        The span starts at the timeline's ``fault_injected`` (its lower bound), or for a
        failback at ``failback_started``; ``trigger`` is ``automated``, ``script`` or ``lambda``
        (which record says when a failover was triggered).
        """
        self.flush_truth()
        line = measure.timeline
        if drill == "failback":
            since = line.get("failback_started").mono
        else:
            fault = line.get("fault_injected")
            since = fault.mono - fault.uncertainty_s
        events = self.truth.since(since)
        truths: dict[str, PhaseTruth]
        if drill == "region_failover":
            truths = failover_truths(
                events,
                self.observer_transitions(since, "dr-lb"),
                trigger=trigger,
                want=self.scale_to("dr"),
                dr_ip=self.region_ip("dr"),
                clients={role: c.source_ip for role, c in self.dns_clients().items()},
                # a restore is a run of good samples, on the observer's side as on the probes'
                settle_s=(self.config.probes.recovery_samples - 1) * self.config.probes.interval,
            )
        elif drill == "task_failure":
            truths = {"ECS Scale-up": task_failure_truth(events, since)}
        elif drill == "db_reboot":
            lb = self.observer_transitions(since, "primary-lb")
            truths = {"Total RTO": reboot_truth(events, lb, since)}
        else:
            truths = failback_truths(
                events,
                since,
                self.region_ip("primary"),
                self.dns_client("drill").source_ip,
            )
        measured = {result.name for result in measure.results}
        attached = {name: truth for name, truth in truths.items() if name in measured}
        for name, truth in attached.items():
            measure.set_truth(name, truth.seconds, truth.source, truth.uncertainty_s)
        return attached

    def flush_truth(self) -> int:
        """Harvest the databases' general logs now (else every 0.1 s), so that their
        ``db_read_only_changed`` / ``db_replication_*`` events are in the truth log; how many
        events that added."""
        result: dict[str, Any] = self.client.call("harvest_truth")
        return int(result["harvested"])

    def observer_transitions(
        self, since_mono: float, target: ObserverTarget
    ) -> list[ObserverTransition]:
        """The independent observer's transitions of a load balancer (``primary-lb``,
        ``dr-lb``) whose upper bound is at or after ``since_mono``, in time order, as of now.

        The observer judges samples in the order they were sent, so a sample that hangs holds
        back what the samples after it say; this waits (up to three request timeouts and a
        second) until every sample sent before the call is judged, so that a return to pass
        already seen is not missing."""
        path = self.run_dir / "observer.jsonl"
        asked = time.monotonic()
        timings = self.settings.timings
        deadline = asked + 3 * timings.observer_timeout + 1.0
        while time.monotonic() < deadline:
            judged = judged_until(path, target)
            if judged is not None and judged >= asked:
                break
            time.sleep(timings.observer_interval)
        return read_transitions(path, since_mono, target)

    def describe(self) -> Mapping[str, Any]:
        """Kind, regions and addresses."""
        s: SandboxSettings = self.settings
        return {
            "name": self.name,
            "kind": "sandbox",
            "run_dir": str(self.run_dir),
            "regions": {k: s.region(k).name for k in ("primary", "dr")},
            "public_name": s.app_name,
            "control": f"127.0.0.1:{self.control_port}",
            "timings": json.loads(s.timings.model_dump_json()),
        }


def _worker_settings(
    settings: SandboxSettings, worker: str, config: DrillConfig
) -> SandboxSettings:
    """The worker's own sandbox; ConfigError when the configured block leaves it no room."""
    try:
        return settings.for_worker(worker)
    except ValueError as exc:
        first = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(
            f"{config.path}: targets.sandbox.block",
            f"no sandbox block for pytest-xdist worker '{worker}': {first}",
        ) from None


class DnsHttpSink:
    """An :class:`HttpSink` that resolves its host through a TTL cache before every write."""

    def __init__(self, url: str, cache: TtlCache, timeout_s: float) -> None:
        self.url = url
        self.cache = cache
        self.timeout_s = timeout_s
        self._sinks: dict[str, HttpSink] = {}

    def write(self, marker: Marker) -> None:
        """Resolve (cached for the TTL), then write through a sink kept per address."""
        resolved = self.cache.resolve_url(self.url)
        sink = self._sinks.get(resolved.ip_url)
        if sink is None:
            sink = self._sinks[resolved.ip_url] = HttpSink(
                resolved.ip_url, timeout_s=self.timeout_s
            )
        sink.write(marker)

    def close(self) -> None:
        """Close every connection."""
        for sink in self._sinks.values():
            sink.close()
