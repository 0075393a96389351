"""The ``sandbox`` target: the embedded two-region stack, seen only through its control API.

Suites use the capability methods here (faults, failover triggers, observations); they never
touch the supervisor's internals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pymysql
from pydantic import ValidationError

from drdrill.config import DrillConfig, EndpointConfig
from drdrill.errors import ConfigError
from drdrill.faults.sandbox import PauseReplication, RebootDb, RegionDown, StopTasks
from drdrill.probes.http import AiohttpClient, HttpClient
from drdrill.probes.resolve import TtlCache, TtlResolver, resolve_a
from drdrill.probes.writes import HttpSink, Marker, WriteSink
from drdrill.sandbox import control
from drdrill.sandbox.settings import RegionKey, SandboxSettings
from drdrill.sandbox.truth import TruthEvent, TruthLog
from drdrill.timeline import Event, Source, Timeline

#: the runbook's scripts, in the repository's scripts/ folder
SCRIPTS = Path(__file__).resolve().parents[4] / "scripts"


class SandboxTarget:
    """A running sandbox (started on demand, taken down at the end if we started it)."""

    name = "sandbox"
    needs_destructive_flag = False

    def __init__(self, config: DrillConfig) -> None:
        self.config = config
        settings, run_dir = control.load_settings(config)
        worker = os.environ.get("PYTEST_XDIST_WORKER")
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
        """Bring the sandbox up unless it runs (then it is left running at the end)."""
        if not self.client.alive():
            control.up(self.settings, self.run_dir)
            self._started_here = True

    def stop(self) -> None:
        """Take the sandbox down if this run brought it up."""
        if self._started_here:
            control.down(self.settings, self.run_dir)
            self._started_here = False

    def reset(self) -> None:
        """A fresh stack at its baseline (primary serving, DR at pilot light)."""
        control.down(self.settings, self.run_dir)
        control.up(self.settings, self.run_dir)
        self._started_here = True

    def at_baseline(self) -> bool:
        """Whether the stack is as ``up`` left it: both regions up, primary serving, no alarm."""
        status = self.status()
        regions = status["regions"]
        return (
            all(r["state"] == "up" for r in regions.values())
            and status["failover"] == "primary"
            and status["dns"]["active"] == "primary"
            and regions["primary"]["ecs"]["running"] == self.settings.primary.desired
            and regions["dr"]["ecs"]["desired"] == self.settings.dr.desired
            and status["alarm"]["state"] == "OK"
        )

    def ensure_baseline(self) -> None:
        """Reset the stack unless it is at its baseline."""
        if not self.client.alive() or not self.at_baseline():
            self.reset()

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

    def http_client_factory(self, max_connections: int) -> HttpClient:
        """Probe clients that resolve the public name through the sandbox DNS, honouring its TTL.

        Each sample is a new client on a new connection, so that the probes follow the DNS
        record as new clients do (a kept-alive connection would stay on the old region).
        """
        resolver = TtlResolver(*self.dns_server)
        self.resolvers.append(resolver)
        return AiohttpClient(max_connections, resolver=resolver, fresh_connections=True)

    def write_sink(self, timeout_s: float) -> WriteSink:
        """RPO markers through the public name (resolved with its TTL, like a client)."""
        cache = TtlCache(*self.dns_server)
        self.caches.append(cache)
        return DnsHttpSink(self.write_url(), cache, timeout_s)

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
        return pymysql.connect(
            host=self.settings.region(region).ip(5),
            port=self.settings.port("db"),
            user="app",
            password="drdrill-app",
            database="app",
            connect_timeout=2,
            read_timeout=5,
            write_timeout=5,
            autocommit=True,
        )

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

    # --- actions -----------------------------------------------------------------------------

    def scale(self, region: RegionKey, desired: int) -> None:
        """Change a service's desired count."""
        self.client.call("scale", region=region, desired=desired)

    def set_mode(self, mode: Literal["automated", "manual"]) -> None:
        """Whether the alarm runs the DR automation by itself."""
        self.client.call("set_mode", mode=mode)

    def invoke_dr(self, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Invoke the DR automation like the runbook's Lambda (synchronous)."""
        body = dict(payload or {"trigger": "manual", "reason": "disaster_recovery"})
        result: dict[str, Any] = self.client.call("invoke_dr", payload=body, wait=True)
        return result

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

    def replication_running(self) -> bool:
        """The DR replica's IO and SQL threads both run."""
        replication = self.status()["regions"]["dr"]["rds"]["replication"]
        return bool(replication and replication.get("io") and replication.get("sql"))

    def replica_lag(self, timeline: Timeline, seconds: float = 2.0) -> tuple[float, float] | None:
        """The worst heartbeat lag over ``seconds`` (value, uncertainty), sampled every 0.1 s."""
        import time

        from drdrill.probes.lag import HeartbeatLagSampler, ensure_heartbeat_table

        with self.db_connection("primary") as conn:
            ensure_heartbeat_table(conn)
        sampler = HeartbeatLagSampler(
            lambda: self.db_connection("primary"), lambda: self.db_connection("dr"), 0.1
        )
        sampler.start()
        timeline.mark("lag_sampling_started")
        time.sleep(seconds)
        sampler.stop()
        stats = sampler.stats()
        if stats.max_s is None:
            return None
        return stats.max_s, stats.max_uncertainty_s or 0.0

    def primary_record_healthy(self) -> bool:
        """DNS answers the primary's load balancer, which has healthy targets."""
        return (
            self.dns_answer() == self.region_ip("primary") and self.healthy_targets("primary") > 0
        )

    def alarm_notifies(self) -> bool:
        """Whether the alarm has a notification target (the SNS log it appends to)."""
        return bool(self.status()["alarm"].get("notifies"))

    def running_tasks(self, region: RegionKey) -> int:
        """Running tasks of a region's service."""
        return int(self._light()["regions"][region]["ecs"]["running"])

    def dns_answer(self) -> str:
        """The address the sandbox DNS gives for the public name now."""
        ip, _ttl = resolve_a(self.settings.app_name, *self.dns_server)
        return ip

    def region_ip(self, region: RegionKey) -> str:
        """A region's load balancer address (what DNS answers when it is active)."""
        return self.settings.region(region).ip(2)

    def put_client_dns_switches(self, timeline: Timeline, since: float) -> list[Event]:
        """Put on the timeline when the clients' resolvers got each new address since ``since``.

        The times are exact (the resolvers log every answer): ground truth of the DNS failover
        as clients saw it.
        """
        events = []
        clients = [("probes", r) for r in self.resolvers] + [("writer", c) for c in self.caches]
        for client, resolver in clients:
            for switch in resolver.switches()[1:]:  # the first answer is no switch
                if switch.mono < since:
                    continue
                events.append(
                    timeline.observe(
                        "client_dns_switched",
                        switch.mono,
                        0.0,
                        Source.REPORTED,
                        ip=switch.ip,
                        client=client,
                    )
                )
        return events

    def truth_since(self, mono: float, event: str | None = None) -> list[TruthEvent]:
        """Ground truth the sandbox logged since ``mono``."""
        return self.truth.since(mono, event)

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
