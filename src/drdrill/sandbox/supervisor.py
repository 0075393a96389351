"""The sandbox supervisor: one process that owns every component of the two-region stack.

``drdrill sandbox up`` starts it detached (``python -m drdrill.sandbox.supervisor``); it starts
the databases, load balancers, services, DNS and the health monitor as its children and serves a
small JSON control API on loopback that the target, the runbook's scripts and ``drdrill sandbox``
use. Every operation is a method of :class:`Sandbox`; the control API calls them by name.

Ground truth independent of the drills (docs/ground-truth.md): the databases' general logs are
harvested (:mod:`drdrill.sandbox.dblog`), the load balancers' syslog lines received on
``127.0.0.1:<ports.syslog>`` (:mod:`drdrill.sandbox.syslog_receiver`), the alarm notifies a
pager process on ``127.0.0.1:<ports.pager>`` (:mod:`drdrill.sandbox.pager`), an observer
process that shares no code with drdrill samples both load balancers
(:mod:`drdrill.sandbox.observer`, writing ``observer.jsonl``), and the control server logs each
call that acts (``control_request``) before acting.

Its life: ``drdrill sandbox up`` starts it for good (it runs until ``down``). A drill run that
brings a sandbox up for itself passes its own identity (``--owner-pid``, ``--owner-start``):
the supervisor then shuts down as on ``down`` once that process is gone, a ``kill -9``
included. Its own children are tied to it (:mod:`drdrill.sandbox.reaper`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drdrill.errors import DrillError
from drdrill.sandbox import reaper
from drdrill.sandbox.automation import DrAutomation
from drdrill.sandbox.aws import unavailable_reason as aws_api_unavailable
from drdrill.sandbox.aws.assets import ROUTE as S3_COPIES
from drdrill.sandbox.blocklock import EXIT_TAKEN, BlockLock, BlockTaken
from drdrill.sandbox.children import ChildProcess
from drdrill.sandbox.dblog import GENERAL_LOG_OPTIONS, GeneralLogHarvester
from drdrill.sandbox.dns import FailoverDns
from drdrill.sandbox.ecs import ServiceScheduler
from drdrill.sandbox.haproxy import HAProxyLB
from drdrill.sandbox.link import InterRegionLink, LinkShape, Route
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    attach_replica,
    replication_status,
    setup_primary,
)
from drdrill.sandbox.monitor import HealthMonitor
from drdrill.sandbox.settings import RegionKey, SandboxSettings
from drdrill.sandbox.syslog_receiver import SyslogMessage, SyslogReceiver
from drdrill.sandbox.truth import TruthLog

if TYPE_CHECKING:
    from drdrill.sandbox.aws.stack import SandboxAws

REGIONS: tuple[RegionKey, RegionKey] = ("primary", "dr")
#: ops the control API exposes (public methods of Sandbox)
OPS = frozenset(
    {
        "status",
        "scale",
        "stop_tasks",
        "reboot_db",
        "region_down",
        "region_up",
        "pause_replication",
        "resume_replication",
        "promote_replica",
        "switch_dns",
        "alarm",
        "invoke_dr",
        "failover_step",
        "failback",
        "shutdown",
        "set_mode",
        "cut_replication",
        "restore_replication",
        "partition_regions",
        "heal_regions",
        "degrade_link",
        "restore_link",
        "cut_off_clients",
        "rejoin_clients",
        "test_notification",
        "harvest_truth",
    }
)
#: read-only calls, which drills poll tens of times a second: not logged as control_request
QUIET_OPS = frozenset({"status", "alarm", "harvest_truth"})
#: the observer runs from its file, with ``python -I``: it must not import drdrill
OBSERVER_SCRIPT = Path(__file__).with_name("observer.py")
#: the observer's name for each region's load balancer
OBSERVER_TARGETS: dict[RegionKey, str] = {"primary": "primary-lb", "dr": "dr-lb"}


class Sandbox:
    """The running stack: both regions, DNS, the monitor and the DR automation."""

    def __init__(self, settings: SandboxSettings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.truth = TruthLog(run_dir / "truth.jsonl")
        self._lock = threading.RLock()
        #: the regions whose database is rebooting (stopped, its start not done yet)
        self._rebooting: set[RegionKey] = set()
        self._reboot_lock = threading.Condition()
        self.shutdown_requested = threading.Event()
        self.region_state: dict[RegionKey, str] = {"primary": "up", "dr": "up"}
        self.db: dict[RegionKey, MariaDBServer] = {}
        self.lb: dict[RegionKey, HAProxyLB] = {}
        self.ecs: dict[RegionKey, ServiceScheduler] = {}
        self.writer_region: RegionKey = "primary"
        self.mode: str = settings.mode
        timings = settings.timings
        for key in REGIONS:
            region = settings.region(key)
            self.db[key] = MariaDBServer(
                MariaDBConfig(
                    name=f"rds-{key}",
                    host=region.ip(5),
                    port=settings.port("db"),
                    server_id=1 if key == "primary" else 2,
                    run_dir=run_dir / f"rds-{key}",
                    read_only=key == "dr",
                    slave_net_timeout_s=5,
                    extra_options=GENERAL_LOG_OPTIONS,  # harvested as ground truth
                )
            )
            self.lb[key] = HAProxyLB(
                name=f"alb-{key}",
                bind_ip=region.ip(2),
                port=settings.port("lb"),
                run_dir=run_dir / f"alb-{key}",
                timings=timings,
                truth=self.truth,
                log_to=("127.0.0.1", settings.port("syslog")),
            )
        db_port = settings.port("db")
        routes = [
            Route(
                "dr-to-primary",
                (settings.dr.link_ip, db_port),
                (self.db["primary"].host, db_port),
            ),
            Route(
                "primary-to-dr",
                (settings.primary.link_ip, db_port),
                (self.db["dr"].host, db_port),
            ),
        ]
        if settings.aws_api:  # S3's copies of the assets, primary bucket to DR's
            aws_port = settings.port("aws")
            routes.append(
                Route(S3_COPIES, (settings.primary.s3_ip, aws_port), (settings.dr.s3_ip, aws_port))
            )
        #: every connection between the regions crosses this link (its latency, its partitions)
        self.link = InterRegionLink(
            routes,
            LinkShape(
                timings.inter_region_latency,
                timings.inter_region_jitter,
                timings.inter_region_loss,
            ),
            on_event=lambda event, **attrs: self.truth.append(event, "inter-region-link", **attrs),
        )
        self.dns = FailoverDns(
            bind_ip=settings.dns_ip,
            port=settings.port("dns"),
            name=settings.app_name,
            records={"primary": settings.primary.ip(2), "dr": settings.dr.ip(2)},
            ttl=timings.dns_ttl,
            truth=self.truth,
        )
        for key in REGIONS:
            self.ecs[key] = self._scheduler(key)
        self.automation = DrAutomation(self)
        #: the AWS API endpoint and its reconciler, once up
        self.aws: SandboxAws | None = None
        self.harvester = GeneralLogHarvester(
            {"primary": lambda: self.db["primary"], "dr": lambda: self.db["dr"]}, self.truth
        )
        self.syslog = SyslogReceiver("127.0.0.1", settings.port("syslog"), self._on_syslog)
        pager_port = settings.port("pager")
        self.pager = ChildProcess(
            "pager",
            [
                sys.executable,
                "-m",
                "drdrill.sandbox.pager",
                *("--host", "127.0.0.1", "--port", str(pager_port)),
                *("--truth", str(self.truth.path), "--name", "oncall-pager"),
                *("--parent-pid", str(os.getpid()), "--any-port-if-taken"),
            ],
            run_dir / "pager.log",
            "listening on ",
        )
        self.monitor = HealthMonitor(
            name="visitor-analytics-primary-health",
            ip=settings.primary.ip(2),
            port=settings.port("lb"),
            period_s=timings.alarm_period,
            evaluation_periods=timings.alarm_evaluation_periods,
            sns_log=run_dir / "sns-notifications.log",
            truth=self.truth,
            on_alarm=self._on_alarm,
            subscribers=[f"http://127.0.0.1:{pager_port}/notify"],
            # a stack coming up is no failure: evaluated from its first passing check on
            wait_until_healthy=True,
        )
        self.pager_address = f"127.0.0.1:{pager_port}"  # or the free port it took: see up()
        self.observer_log = run_dir / "observer.jsonl"
        targets = [f"{OBSERVER_TARGETS[k]}={self.lb[k].address}" for k in REGIONS]
        self.observer = ChildProcess(
            "observer",
            [
                sys.executable,
                "-I",  # no site packages, no script folder on the path: nothing of drdrill
                str(OBSERVER_SCRIPT),
                *(arg for target in targets for arg in ("--target", target)),
                *("--interval", str(timings.observer_interval)),
                *("--timeout", str(timings.observer_timeout)),
                *("--out", str(self.observer_log), "--parent-pid", str(os.getpid())),
            ],
            run_dir / "observer.log",
            "observing ",
        )

    def _scheduler(self, key: RegionKey) -> ServiceScheduler:
        region = self.settings.region(key)
        db = self.db[key]
        offset = 0 if key == "primary" else 50
        return ServiceScheduler(
            region=key,
            settings=region,
            timings=self.settings.timings,
            task_port=lambda slot: self.settings.port("task_base", offset + slot),
            db_endpoint=lambda: (db.host, db.port),
            db_user=db.config.app_user,
            db_password=db.config.app_password,
            run_dir=self.run_dir / f"ecs-{key}",
            lb=self.lb[key],
            truth=self.truth,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def up(self) -> None:
        """Start everything: the database pair, load balancers, services, DNS, monitor."""
        primary, replica = self.db["primary"], self.db["dr"]
        for server in (primary, replica):
            server.start(wait=False)
        for server in (primary, replica):
            server.wait_ready(30)
        setup_primary(primary)
        self.link.start()
        attach_replica(primary, replica, timeout=30, via=self.across("dr"))
        self.truth.append(
            "replication_started", "rds", primary=primary.label, replica=replica.label
        )
        self.harvester.start()
        # before the load balancers, so that none of their lines is lost. The block's ports of
        # blocks >= 19 lie in the kernel's ephemeral range, where a client may hold one: the
        # receiver and the pager then take a free port (only the supervisor needs to know it)
        self.syslog.start(any_port_if_taken=True)
        for key in REGIONS:
            self.lb[key].log_to = self.syslog.address
            self.lb[key].rejoin_clients()  # a new stack starts reachable
            self.lb[key].start()
        self.dns.start()
        for key in REGIONS:
            self.ecs[key].start()
        self.pager.start()
        self.pager_address = self.pager.ready_text.rsplit(" ", 1)[-1]
        self.monitor.subscribers = [f"http://{self.pager_address}/notify"]
        self.monitor.start()
        self.observer.start()
        if self.settings.aws_api:
            self._serve_aws()
        self.truth.append("sandbox_up", "supervisor", pid=os.getpid())

    def _serve_aws(self) -> None:
        """The AWS API endpoint, kept true to the processes (``targets.sandbox.aws_api``)."""
        missing = aws_api_unavailable()
        if missing:
            raise DrillError(f"targets.sandbox.aws_api: {missing}")
        from drdrill.sandbox.aws.stack import serve as serve_aws

        self.aws = serve_aws(
            self.settings,
            self.ecs,
            self.lb,
            reboot_db=self.reboot_db,
            db_running=lambda key: self.db[key].is_running(),
            monitor=self.monitor,
            replication=lambda key: replication_status(self.db[key]),
            region_up=lambda key: self.region_state[key] == "up",
            automation=self.automation,
            set_mode=self.set_mode,
            mode=self.mode,
            on_call=lambda call: self.truth.append(
                "api_request",
                "aws-api",
                call=f"{call.service}:{call.action}",
                region=call.region,
                access_key=call.access_key,
            ),
            route_dns=self._route_dns if self.settings.route53_routing else None,
            copies_via=(self.settings.primary.s3_ip, self.settings.port("aws")),
        )
        stack = self.aws.stack
        for key, built in zip(REGIONS, (stack.primary, stack.dr), strict=True):
            self.dns.add_static(built.load_balancer_dns, self.settings.region(key).ip(2))

    def _route_dns(self, to: RegionKey, why: str) -> None:
        """Route53's failover routing answers ``to`` (``route53_routing``): the DNS follows."""
        if self.dns.active != to:
            self.truth.append("route53_routed", "route53", to=to, why=why)
            self.dns.switch(to)

    def shutdown(self) -> dict[str, Any]:
        """Ask the supervisor to stop everything and exit."""
        self.shutdown_requested.set()
        return {"shutting_down": True}

    def down(self) -> None:
        """Stop every component; no process and no port left behind."""
        self.wait_rebooted()  # a database starting in the background would outlive the rest
        steps: list[Callable[[], None]] = [self.observer.stop, self.monitor.stop]
        if self.aws is not None:
            steps.insert(0, self.aws.stop)
        steps += [self.automation.stop, self.pager.stop]
        steps += [self.ecs[k].shutdown for k in REGIONS]
        steps += [self.lb[k].stop for k in REGIONS]
        steps += [self.syslog.stop, self.dns.stop, self.link.stop]
        # the last statements of each database's general log, before it stops
        steps += [self._thaw_db(k) for k in REGIONS]
        steps += [self._harvest_all, self.harvester.stop]
        for key in REGIONS:
            steps += [self.db[key].stop]
        for step in steps:
            try:
                step()
            except Exception as exc:
                print(f"supervisor: {step!r}: {exc}", file=sys.stderr)
        self.truth.append("sandbox_down", "supervisor")

    def across(self, region: RegionKey) -> tuple[str, int]:
        """Where ``region`` reaches the other region's database: its end of the link."""
        return self.settings.region(region).link_ip, self.settings.port("db")

    def _harvest_all(self) -> None:
        self.harvester.harvest_all()

    def _on_syslog(self, message: SyslogMessage) -> None:
        """A load balancer's own log line (its ``log-tag`` is its name)."""
        for key in REGIONS:
            lb = self.lb[key]
            if message.app == lb.name:
                lb.record_log(message.message, message.wall, message.received_mono, region=key)
                return

    def harvest_db_log(self, region: RegionKey) -> int:
        """Harvest a region's database's general log now (before a reseed wipes it)."""
        return self.harvester.harvest(region)

    def harvest_truth(self) -> dict[str, Any]:
        """Harvest both databases' general logs now, so that the truth log is current."""
        return {"harvested": self.harvester.harvest_all()}

    def _thaw_db(self, key: RegionKey) -> Callable[[], None]:
        def thaw() -> None:
            if self.db[key].is_frozen:
                self.db[key].thaw()

        return thaw

    # --- observation -------------------------------------------------------------------------

    def status(self, light: bool = False) -> dict[str, Any]:
        """Every component with its address and state (``light``: no database query)."""
        s = self.settings
        regions: dict[str, Any] = {}
        for key in REGIONS:
            db = self.db[key]
            repl: dict[str, Any] | None = None
            try:
                asked = not light and db.is_running() and not db.is_frozen
                repl_status = replication_status(db) if asked else None
                if repl_status is not None:
                    repl = {"io": repl_status.io_running, "sql": repl_status.sql_running}
            except Exception as exc:
                repl = {"error": str(exc)[:200]}
            lb = self.lb[key]
            lb_up = lb.is_running() and not lb.is_frozen
            regions[key] = {
                "name": s.region(key).name,
                "state": self.region_state[key],
                "rds": {
                    "address": db.address,
                    "running": db.is_running(),
                    "rebooting": key in self._rebooting,
                    "pid": db.pid,
                    "read_only": db.read_only,
                    "replication": repl,
                },
                "alb": {
                    "address": f"{lb.bind_ip}:{lb.port}",
                    "running": lb.is_running(),
                    "pid": lb.pid,
                    "healthy": lb.healthy_count() if lb_up else 0,
                    "cut_off": lb.cut_off,
                    "servers": [
                        {"id": t.server_id, "addr": f"{t.ip}:{t.port}", "state": t.state}
                        for t in (lb.servers() if lb_up else [])
                    ],
                },
                "ecs": {
                    "desired": self.ecs[key].desired,
                    "running": self.ecs[key].running_count(),
                    "tasks": [
                        {
                            "id": t.task_id,
                            "addr": f"{t.ip}:{t.port}",
                            "pid": t.pid,
                            "state": t.state,
                        }
                        for t in self.ecs[key].tasks()
                        if t.state != "stopped"
                    ],
                },
            }
        return {
            "pid": os.getpid(),
            "run_dir": str(self.run_dir),
            "control": f"127.0.0.1:{s.port('control')}",
            "syslog": f"127.0.0.1:{self.syslog.port}",
            "pager": {"address": self.pager_address, "pid": self.pager.pid},
            "observer": {
                "pid": self.observer.pid,
                "log": str(self.observer_log),
                "targets": {OBSERVER_TARGETS[k]: self.lb[k].address for k in REGIONS},
                "interval_s": s.timings.observer_interval,
            },
            "mode": self.mode,
            "writer_region": self.writer_region,
            "regions": regions,
            "dns": {
                "address": f"{s.dns_ip}:{s.port('dns')}",
                "name": s.app_name,
                "active": self.dns.active,
                "ttl": s.timings.dns_ttl,
            },
            "alarm": self.alarm(),
            "link": self.link.status(),
            "split_brain": self.split_brain(),
            "failover": self.automation.state,
            "aws": self._aws_status(),
        }

    def split_brain(self) -> bool:
        """Whether both regions' databases run writable (a failover while the old primary
        lived on, e.g. across a partition): only failback or a reset mends it."""
        return all(db.is_running() and not db.read_only for db in self.db.values())

    def _aws_status(self) -> dict[str, Any] | None:
        """The AWS API endpoint, and ``targets.aws`` for drills through it."""
        if self.aws is None:
            return None
        dbs = {
            key: (
                db.host,
                db.port,
                db.config.app_user,
                db.config.app_password,
                db.config.database,
            )
            for key, db in self.db.items()
        }
        from drdrill.sandbox.aws.stack import CREDENTIALS as AWS_CREDENTIALS
        from drdrill.sandbox.aws.stack import target_section as aws_target_section

        return {
            "endpoint_url": self.aws.endpoint.url,
            "env": dict(AWS_CREDENTIALS),
            "target": aws_target_section(self.aws, self.settings, dbs),
            "errors": list(self.aws.reconciler.errors),
        }

    def alarm(self) -> dict[str, Any]:
        """The health alarm's state and history (like CloudWatch's)."""
        return {
            "name": self.monitor.name,
            "state": self.monitor.state,
            "notifies": str(self.monitor.sns_log),
            "history": [
                {"state": h.state, "utc": h.utc.isoformat(), "mono": h.mono, "reason": h.reason}
                for h in self.monitor.history
            ],
        }

    # --- faults and their reverts ------------------------------------------------------------

    def scale(self, region: RegionKey, desired: int) -> dict[str, Any]:
        """Change a service's desired count."""
        self.ecs[region].set_desired(int(desired))
        return {"region": region, "desired": int(desired)}

    def stop_tasks(
        self,
        region: RegionKey,
        count: int | None = None,
        percent: float | None = None,
        mode: str = "kill",
    ) -> dict[str, Any]:
        """Stop tasks of a service (they are replaced after the scheduler delay)."""
        stopped = self.ecs[region].stop_tasks(count=count, percent=percent, mode=mode)  # type: ignore[arg-type]
        return {"region": region, "stopped": stopped}

    def reboot_db(
        self, region: RegionKey, mode: str = "clean", wait: bool = True
    ) -> dict[str, Any]:
        """Reboot a region's database (clean: shutdown and start; crash: kill -9 and start).

        ``wait`` (the default; the AWS API's ``RebootDBInstance`` runs this in a thread of its
        own): return once the database is back up. Without it, return at once and reboot in
        the background, as RDS answers a reboot request and then reboots: the caller knows the
        moment of its request, which is the fault, rather than a call as long as the whole
        reboot. ``status`` shows ``rebooting`` until the start is done.
        """
        with self._reboot_lock:
            if region in self._rebooting:
                raise DrillError(f"the {region} database is rebooting already")
            self._rebooting.add(region)
        if not wait:
            threading.Thread(
                target=self._reboot, args=(region, mode), name=f"reboot-{region}"
            ).start()
            return {"region": region, "mode": mode, "rebooting": True}
        self._reboot(region, mode)
        return {"region": region, "mode": mode, "pid": self.db[region].pid, "rebooting": False}

    def _reboot(self, region: RegionKey, mode: str) -> None:
        """Stop (or kill) the database, keep it down the configured downtime, start it."""
        db = self.db[region]
        try:
            self.truth.append("db_reboot_started", f"rds-{region}", mode=mode)
            if mode == "crash":
                db.kill()
            else:
                db.stop()
            self.truth.append("db_down", f"rds-{region}", mode=mode)
            time.sleep(self.settings.timings.db_reboot_downtime)
            self._start_db(region)
            self.truth.append("db_available", f"rds-{region}")
        finally:
            self._reboot_done(region)

    def _reboot_done(self, region: RegionKey) -> None:
        with self._reboot_lock:
            self._rebooting.discard(region)
            self._reboot_lock.notify_all()

    def wait_rebooted(self, timeout_s: float = 60.0) -> bool:
        """Wait until no database is rebooting (False if one still is after ``timeout_s``)."""
        with self._reboot_lock:
            return self._reboot_lock.wait_for(lambda: not self._rebooting, timeout_s)

    def _start_db(self, region: RegionKey) -> None:
        """Start a region's database; a start that crashed and was retried is in the truth."""
        db = self.db[region]
        before = len(db.start_crashes)
        try:
            db.start(wait=True, timeout=60)
        finally:
            for crash in db.start_crashes[before:]:
                self.truth.append("db_start_crashed", f"rds-{region}", signal=crash.signal)

    def region_down(self, region: RegionKey, mode: str = "kill") -> dict[str, Any]:
        """Take a whole region down: its database, load balancer and tasks.

        ``kill`` ends the processes (connections refused); ``freeze`` stops them with SIGSTOP
        so that connections hang, like a black hole.
        """
        with self._lock:
            if self.region_state[region] != "up":
                return {"region": region, "state": self.region_state[region]}
            self.truth.append("region_down", f"region-{region}", mode=mode)
            ecs, lb, db = self.ecs[region], self.lb[region], self.db[region]
            ecs.pause()
            if mode == "freeze":
                ecs.freeze_all()
                lb.freeze()
                db.freeze()
            else:
                ecs.kill_all()
                lb.kill()
                db.kill()
            self.region_state[region] = f"down ({mode})"
            return {"region": region, "state": self.region_state[region]}

    def region_up(self, region: RegionKey) -> dict[str, Any]:
        """Bring a region back: thaw or restart its processes, resume its service."""
        with self._lock:
            state = self.region_state[region]
            if state == "up":
                return {"region": region, "state": "up"}
            ecs, lb, db = self.ecs[region], self.lb[region], self.db[region]
            if state == "down (freeze)":
                db.thaw()
                lb.thaw()
                ecs.thaw_all()
            else:
                if not db.is_running():
                    self._start_db(region)
                lb.restart()
            ecs.resume()
            self.region_state[region] = "up"
            self.truth.append("region_up", f"region-{region}")
            return {"region": region, "state": "up"}

    def _replica_cursor_exec(self, sql: str) -> None:
        with self.db["dr"].connect("root") as conn, conn.cursor() as cur:
            cur.execute(sql)

    def pause_replication(self) -> dict[str, Any]:
        """Stop applying on the replica (its lag grows while the primary takes writes)."""
        self._replica_cursor_exec("STOP SLAVE SQL_THREAD")
        self.truth.append("replication_paused", "rds-dr")
        return {"paused": True}

    def resume_replication(self) -> dict[str, Any]:
        """Apply again on the replica."""
        self._replica_cursor_exec("START SLAVE SQL_THREAD")
        self.truth.append("replication_resumed", "rds-dr")
        return {"paused": False}

    def cut_replication(self) -> dict[str, Any]:
        """Cut the replication link: the replica's IO thread stops, nothing more arrives.

        Writes the primary acknowledges from now on exist only there; a promotion keeps what
        had arrived and does not wait for the rest.
        """
        replica = self.db["dr"]
        with replica.connect("root") as conn, conn.cursor() as cur:
            if self._replica_status(cur) is None:
                raise DrillError("the dr database is not a replica: no replication link to cut")
            cur.execute("STOP SLAVE IO_THREAD")
        self.truth.append("replication_cut", "rds-dr")
        return {"cut": True}

    def restore_replication(self) -> dict[str, Any]:
        """Undo :meth:`cut_replication`: the IO thread starts again (idempotent). A replica
        promoted meanwhile has no link to restore, and is left alone."""
        replica = self.db["dr"]
        if not replica.is_running():
            return {"restored": False, "why": "the dr database is not running"}
        with replica.connect("root") as conn, conn.cursor() as cur:
            if self._replica_status(cur) is None:
                return {"restored": False, "why": "the dr database is no longer a replica"}
            cur.execute("START SLAVE IO_THREAD")
        self.truth.append("replication_restored", "rds-dr")
        return {"restored": True}

    def partition_regions(self) -> dict[str, Any]:
        """Partition the regions: nothing crosses the link (each side keeps running; the old
        primary keeps taking writes, so a failover now is a split brain)."""
        return {"partitioned": True, "changed": self.link.partition()}

    def heal_regions(self) -> dict[str, Any]:
        """Undo :meth:`partition_regions` (idempotent): what was held is delivered."""
        return {"partitioned": False, "changed": self.link.heal()}

    def degrade_link(
        self, latency_ms: float, jitter_ms: float = 0.0, loss_pct: float = 0.0
    ) -> dict[str, Any]:
        """Change the link's one-way latency, jitter and loss."""
        try:
            shape = LinkShape(latency_ms / 1000.0, jitter_ms / 1000.0, loss_pct / 100.0)
        except TypeError as exc:  # not numbers (LinkShape checks the ranges itself)
            raise DrillError(f"degrade_link: {exc}") from exc
        self.link.degrade(shape)
        return self.link.status()

    def restore_link(self) -> dict[str, Any]:
        """Undo :meth:`degrade_link` (idempotent): the configured latency, jitter and loss."""
        self.link.restore()
        return self.link.status()

    def cut_off_clients(self, region: RegionKey) -> dict[str, Any]:
        """Partition a region from its clients: connections to its load balancer are dropped
        without an answer. The region itself runs on (its health checks, its database, the
        link to the other region); the alarm, which checks from outside, sees it down."""
        lb = self.lb[region]
        changed = not lb.cut_off
        lb.cut_off_clients()
        if changed:
            self.truth.append("clients_cut_off", lb.name, region=region)
        return {"cut_off": True, "changed": changed}

    def rejoin_clients(self, region: RegionKey) -> dict[str, Any]:
        """Undo :meth:`cut_off_clients` (idempotent)."""
        lb = self.lb[region]
        changed = lb.cut_off
        lb.rejoin_clients()
        if changed:
            self.truth.append("clients_rejoined", lb.name, region=region)
        return {"cut_off": False, "changed": changed}

    @staticmethod
    def _replica_status(cur: Any) -> dict[str, Any] | None:
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cur.description]
        return dict(zip(names, row, strict=True))

    # --- failover ----------------------------------------------------------------------------

    def promote_replica(self) -> dict[str, Any]:
        """Promote the DR replica (keeping what had arrived); one step of the failover."""
        return self.automation.promote()

    def switch_dns(self, to: RegionKey) -> dict[str, Any]:
        """Point the failover record at a region's load balancer."""
        self.dns.switch(to)
        return {"active": self.dns.active}

    def failover_step(self, step: str) -> dict[str, Any]:
        """One step of the manual failover: promote, scale, wait_healthy, switch_dns."""
        return self.automation.step(step)

    def invoke_dr(self, payload: dict[str, Any] | None = None, wait: bool = True) -> dict[str, Any]:
        """The DR Lambda: run the whole failover (payload as the runbook's)."""
        return self.automation.invoke(payload or {}, wait=wait)

    def set_mode(self, mode: str) -> dict[str, Any]:
        """``automated``: the alarm runs the DR automation; ``manual``: it only notifies."""
        if mode not in ("automated", "manual"):
            raise ValueError(f"mode must be automated or manual, not {mode!r}")
        self.mode = mode
        return {"mode": mode}

    def _on_alarm(self) -> None:
        if self.mode != "automated":
            return
        if self.aws is not None and self.aws.function is not None:
            # through the AWS API: alarm -> SNS -> the DR function's code, after the delay
            self.aws.notify_alarm(self.settings.timings.automation_delay, "no healthy target")
        else:
            self.automation.after_alarm()  # after timings.automation_delay

    def test_notification(self) -> dict[str, Any]:
        """Send a test message through the alarm's notification path to its subscribers."""
        return self.monitor.send_test_notification()

    def failback(self) -> dict[str, Any]:
        """Return service to the primary region and DR to pilot light."""
        return self.automation.failback()


# --- control API -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: ControlServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """``GET /status`` and ``GET /alarm``."""
        name = self.path.strip("/")
        if name not in ("status", "alarm"):
            self._send(404, {"error": f"unknown: {self.path}"})
            return
        self._call(name, {})

    def do_POST(self) -> None:
        """``POST /op/<name>`` with JSON keyword arguments."""
        name = self.path.removeprefix("/op/")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            kwargs = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        if name not in OPS or not isinstance(kwargs, dict):
            self._send(404, {"error": f"unknown op '{name}'"})
            return
        self._call(name, kwargs)

    def _call(self, name: str, kwargs: dict[str, Any]) -> None:
        if name not in QUIET_OPS:
            # the stack's own record of a trigger's arrival, before anything is done
            self.server.sandbox.truth.append("control_request", "control", call=name, args=kwargs)
        try:
            if name not in QUIET_OPS and name not in ("reboot_db", "shutdown"):
                # a change waits for a reboot in progress to end: its start in the background
                # must not race a region down, a failback or a reset
                self.server.sandbox.wait_rebooted()
            result = getattr(self.server.sandbox, name)(**kwargs)
        except (DrillError, TypeError, ValueError, KeyError) as exc:
            self._send(400, {"error": f"{type(exc).__name__}: {exc}"})
            return
        except Exception as exc:
            self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._send(200, {"ok": True, "result": result})


class ControlServer(ThreadingHTTPServer):
    """The control API on loopback."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        super().__init__(address, _Handler)
        self.sandbox = sandbox


def watch_owner(
    owner: reaper.ProcessId,
    shutdown: threading.Event,
    interval_s: float = reaper.POLL_S,
    look: reaper.Probe = reaper.probe,
) -> threading.Thread:
    """Ask for a shutdown (``shutdown``) once ``owner`` is gone, checked every ``interval_s``
    (a daemon thread, returned started)."""

    def watch() -> None:
        while not shutdown.wait(interval_s):
            if not reaper.is_alive(owner, look):
                print(
                    f"supervisor: owner pid {owner.pid} is gone: shutting down",
                    file=sys.stderr,
                    flush=True,
                )
                shutdown.set()

    thread = threading.Thread(target=watch, name="drdrill-owner-watch", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until asked to shut down (control API), SIGTERM, or its owner's end."""
    parser = argparse.ArgumentParser(prog="python -m drdrill.sandbox.supervisor")
    parser.add_argument("--settings", required=True, help="JSON of SandboxSettings")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument(
        "--owner-pid", type=int, help="shut down once this process is gone (a drill run's)"
    )
    parser.add_argument(
        "--owner-start", type=float, help="the owner's start time (reaper.ProcessId.start)"
    )
    args = parser.parse_args(argv)
    if (args.owner_pid is None) != (args.owner_start is None):
        parser.error("--owner-pid and --owner-start go together")
    settings = SandboxSettings.model_validate_json(Path(args.settings).read_text())
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    # the block's lock, held for this process's whole life, before anything is started
    block_lock = BlockLock(settings.block, run_dir)
    try:
        block_lock.acquire()
    except DrillError as exc:
        print(exc, file=sys.stderr, flush=True)  # the last line: control.up reports it
        return EXIT_TAKEN if isinstance(exc, BlockTaken) else 1
    sandbox = Sandbox(settings, run_dir)
    signal.signal(signal.SIGTERM, lambda *_: sandbox.shutdown_requested.set())
    signal.signal(signal.SIGINT, lambda *_: sandbox.shutdown_requested.set())
    if args.owner_pid is not None:
        # a drill run's sandbox goes with the run, however it ends (checked from now on: an
        # owner gone while the stack comes up is noticed once it is up)
        watch_owner(reaper.ProcessId(args.owner_pid, args.owner_start), sandbox.shutdown_requested)
    control = ControlServer(("127.0.0.1", settings.port("control")), sandbox)
    try:
        sandbox.up()
    except BaseException as exc:
        print(f"supervisor: up failed: {exc}", file=sys.stderr, flush=True)
        sandbox.down()
        control.server_close()
        return 1
    (run_dir / "supervisor.pid").write_text(str(os.getpid()))
    thread = threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    print("ready", flush=True)
    while not sandbox.shutdown_requested.wait(0.2):
        pass
    control.shutdown()
    control.server_close()
    sandbox.down()
    (run_dir / "supervisor.pid").unlink(missing_ok=True)
    block_lock.release()
    time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
