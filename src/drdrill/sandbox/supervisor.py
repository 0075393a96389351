"""The sandbox supervisor: one process that owns every component of the two-region stack.

``drdrill sandbox up`` starts it detached (``python -m drdrill.sandbox.supervisor``); it starts
the databases, load balancers, services, DNS and the health monitor as its children and serves a
small JSON control API on loopback that the target, the runbook's scripts and ``drdrill sandbox``
use. Every operation is a method of :class:`Sandbox`; the control API calls them by name.
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
from typing import Any

from drdrill.errors import DrillError
from drdrill.sandbox.automation import DrAutomation
from drdrill.sandbox.dns import FailoverDns
from drdrill.sandbox.ecs import ServiceScheduler
from drdrill.sandbox.haproxy import HAProxyLB
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    attach_replica,
    replication_status,
    setup_primary,
)
from drdrill.sandbox.monitor import HealthMonitor
from drdrill.sandbox.settings import RegionKey, SandboxSettings
from drdrill.sandbox.truth import TruthLog

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
    }
)


class Sandbox:
    """The running stack: both regions, DNS, the monitor and the DR automation."""

    def __init__(self, settings: SandboxSettings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.truth = TruthLog(run_dir / "truth.jsonl")
        self._lock = threading.RLock()
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
                )
            )
            self.lb[key] = HAProxyLB(
                name=f"alb-{key}",
                bind_ip=region.ip(2),
                port=settings.port("lb"),
                run_dir=run_dir / f"alb-{key}",
                timings=timings,
                truth=self.truth,
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
        self.monitor = HealthMonitor(
            name="visitor-analytics-primary-health",
            ip=settings.primary.ip(2),
            port=settings.port("lb"),
            period_s=timings.alarm_period,
            evaluation_periods=timings.alarm_evaluation_periods,
            sns_log=run_dir / "sns-notifications.log",
            truth=self.truth,
            on_alarm=self._on_alarm,
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
        attach_replica(primary, replica, timeout=30)
        self.truth.append(
            "replication_started", "rds", primary=primary.label, replica=replica.label
        )
        for key in REGIONS:
            self.lb[key].start()
        self.dns.start()
        for key in REGIONS:
            self.ecs[key].start()
        self.monitor.start()
        self.truth.append("sandbox_up", "supervisor", pid=os.getpid())

    def shutdown(self) -> dict[str, Any]:
        """Ask the supervisor to stop everything and exit."""
        self.shutdown_requested.set()
        return {"shutting_down": True}

    def down(self) -> None:
        """Stop every component; no process and no port left behind."""
        steps: list[Callable[[], None]] = [self.monitor.stop, self.automation.stop]
        steps += [self.ecs[k].shutdown for k in REGIONS]
        steps += [self.lb[k].stop for k in REGIONS]
        steps += [self.dns.stop]
        for key in REGIONS:
            steps += [self._thaw_db(key), self.db[key].stop]
        for step in steps:
            try:
                step()
            except Exception as exc:
                print(f"supervisor: {step!r}: {exc}", file=sys.stderr)
        self.truth.append("sandbox_down", "supervisor")

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
                    "pid": db.pid,
                    "read_only": db.read_only,
                    "replication": repl,
                },
                "alb": {
                    "address": f"{lb.bind_ip}:{lb.port}",
                    "running": lb.is_running(),
                    "pid": lb.pid,
                    "healthy": lb.healthy_count() if lb_up else 0,
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
            "failover": self.automation.state,
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

    def reboot_db(self, region: RegionKey, mode: str = "clean") -> dict[str, Any]:
        """Reboot a region's database (clean: shutdown and start; crash: kill -9 and start)."""
        db = self.db[region]
        self.truth.append("db_reboot_started", f"rds-{region}", mode=mode)
        if mode == "crash":
            db.kill()
        else:
            db.stop()
        self.truth.append("db_down", f"rds-{region}", mode=mode)
        db.start(wait=True, timeout=60)
        self.truth.append("db_available", f"rds-{region}")
        return {"region": region, "mode": mode, "pid": db.pid}

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
                    db.start(wait=True, timeout=60)
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
        if self.mode == "automated":
            self.automation.invoke({"trigger": "alarm", "reason": "health alarm"}, wait=False)

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
        try:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until asked to shut down (control API) or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m drdrill.sandbox.supervisor")
    parser.add_argument("--settings", required=True, help="JSON of SandboxSettings")
    parser.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    settings = SandboxSettings.model_validate_json(Path(args.settings).read_text())
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(settings, run_dir)
    signal.signal(signal.SIGTERM, lambda *_: sandbox.shutdown_requested.set())
    signal.signal(signal.SIGINT, lambda *_: sandbox.shutdown_requested.set())
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
    time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
