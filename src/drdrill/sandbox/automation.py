"""The DR automation (the runbook's Lambda) and failback, run inside the supervisor.

A failover has four steps, each logged to the ground truth when asked and when done: promote
the DR replica, scale the DR service up, wait for healthy targets behind the DR load balancer,
switch the failover DNS record. The automated script and the Lambda run them all; the manual
script runs them one at a time through :meth:`DrAutomation.step`.

On the alarm (automated mode) it waits ``timings.automation_delay`` before it acts
(:meth:`DrAutomation.after_alarm`), as a slow Lambda or a throttled invocation would. When it
starts acting, whatever invoked it, it logs ``automation_invoked`` {trigger} (then the
``failover_triggered`` the drills read as the stack's reported record).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drdrill.errors import DrillError
from drdrill.sandbox.mariadb import promote_replica, wait_for_replica
from drdrill.sandbox.reseed import freeze_writes, reseed_replica

if TYPE_CHECKING:
    from drdrill.sandbox.settings import RegionKey
    from drdrill.sandbox.supervisor import Sandbox

STEPS = ("promote", "scale", "wait_healthy", "switch_dns")


class DrAutomation:
    """Failover and failback of a :class:`Sandbox`; one at a time."""

    def __init__(self, sandbox: Sandbox, healthy_timeout_s: float = 60.0) -> None:
        self.sandbox = sandbox
        self.healthy_timeout_s = healthy_timeout_s
        self.state = "primary"
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._waiting: threading.Thread | None = None
        self._stopping = threading.Event()
        self._done: set[str] = set()
        #: told of each step as it is recorded (event, attributes, when): the AWS API's records
        self.listeners: list[Callable[[str, dict[str, Any], datetime], None]] = []

    def _truth(self, event: str, **attrs: Any) -> None:
        recorded = self.sandbox.truth.append(event, "dr-automation", **attrs)
        for listener in list(self.listeners):
            listener(event, attrs, recorded.utc)

    def after_alarm(self) -> None:
        """The alarm's invocation: after ``timings.automation_delay``, in the background."""
        delay = self.sandbox.settings.timings.automation_delay

        def delayed() -> None:
            if self._stopping.wait(delay):
                return  # the sandbox is going down
            self.invoke({"trigger": "alarm", "reason": "health alarm"}, wait=True)

        self._waiting = threading.Thread(target=delayed, name="dr-automation-alarm", daemon=True)
        self._waiting.start()

    def invoke(self, payload: dict[str, Any], wait: bool = True) -> dict[str, Any]:
        """Run the whole failover (the Lambda); with ``wait`` False, in the background."""
        trigger = str(payload.get("trigger", "manual"))
        with self._lock:
            if self.state in ("failing_over", "dr"):
                return {"status": "already", "state": self.state}
            self.state = "failing_over"
            self._done.clear()
        self._truth("automation_invoked", trigger=trigger)
        self._truth("failover_triggered", trigger=trigger, reason=payload.get("reason"))
        if wait:
            return self._run_all()
        self._thread = threading.Thread(target=self._run_all, name="dr-automation", daemon=True)
        self._thread.start()
        return {"status": "started"}

    def _run_all(self) -> dict[str, Any]:
        try:
            for name in STEPS:
                self._step(name)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._truth("failover_failed", error=self.last_error)
            with self._lock:
                self.state = "failed"
            return {"status": "failed", "FunctionError": "Unhandled", "error": self.last_error}
        return {"status": "completed", "state": self.state}

    def step(self, name: str, via: str = "manual-script") -> dict[str, Any]:
        """One step of the manual failover; ``via`` names who asked in the ground truth
        (``manual-script``: drdrill's step API; ``aws-api``: a call to the sandbox's AWS API,
        such as an aws-CLI script's ``promote-read-replica``)."""
        if name not in STEPS:
            raise DrillError(f"unknown failover step '{name}' (steps: {', '.join(STEPS)})")
        self._begin_steps(via)
        return self._step(name)

    def _begin_steps(self, via: str) -> None:
        with self._lock:
            if self.state == "primary":
                self.state = "failing_over"
                self._done.clear()
                first = True
            else:
                first = False
        if first:
            self._truth("automation_invoked", trigger=via)
            self._truth("failover_triggered", trigger=via, reason="step by step")

    def dns_changed(self, to: str, via: str = "aws-api") -> dict[str, Any]:
        """The failover record pointed at ``to`` (``primary`` or ``dr``) by someone else than
        the automation (a Route53 change through the sandbox's AWS API): the sandbox's DNS
        answers it from now on. Pointing it at DR counts as the failover's DNS step."""
        if to == "dr":
            self._begin_steps(via)
            if "switch_dns" in self._done:
                return {"step": "switch_dns", "status": "already done"}
        self._truth("dns_switch_requested", to=to, via=via)
        self.sandbox.dns.switch("primary" if to == "primary" else "dr")
        if to == "dr":
            if self.sandbox.writer_region == "dr":
                # the runbook's last step, after the promotion: the failover is complete, though
                # the API's caller scaled the DR service itself (not through these steps)
                self._done.update(STEPS)
            self._mark_done("switch_dns")
        return {"active": self.sandbox.dns.active}

    def _step(self, name: str) -> dict[str, Any]:
        if name in self._done:
            return {"step": name, "status": "already done"}
        result = getattr(self, f"_do_{name}")()
        self._mark_done(name)
        return {"step": name, **result}

    def _mark_done(self, name: str) -> None:
        self._done.add(name)
        if self._done >= set(STEPS):
            with self._lock:
                self.state = "dr"
            self._truth("failover_completed")

    def promote(self) -> dict[str, Any]:
        """Promote the DR replica on its own (also a fault: a split brain if misused)."""
        return self._do_promote()

    def _do_promote(self) -> dict[str, Any]:
        sandbox = self.sandbox
        self._truth("rds_promotion_requested")
        result = promote_replica(sandbox.db["dr"], timeout=30)
        self._truth(
            "replica_writable",
            caught_up=result.caught_up,
            applied=result.applied_gtid,
            total_s=result.total_s,
        )
        sandbox.writer_region = "dr"
        return {"promotion": result.to_json()}

    def _do_scale(self) -> dict[str, Any]:
        sandbox = self.sandbox
        target = sandbox.settings.dr.scale_to
        self._truth("ecs_scale_requested", region="dr", desired=target)
        sandbox.ecs["dr"].set_desired(target)
        return {"desired": target}

    def _do_wait_healthy(self) -> dict[str, Any]:
        sandbox = self.sandbox
        target = sandbox.settings.dr.scale_to
        deadline = time.monotonic() + self.healthy_timeout_s
        while sandbox.lb["dr"].healthy_count() < target:
            if time.monotonic() > deadline:
                raise DrillError(
                    f"dr load balancer has {sandbox.lb['dr'].healthy_count()} healthy targets "
                    f"of {target} after {self.healthy_timeout_s:g} s"
                )
            time.sleep(0.05)
        self._truth("dr_targets_healthy", healthy=target)
        return {"healthy": target}

    def _do_switch_dns(self) -> dict[str, Any]:
        self._truth("dns_switch_requested", to="dr")
        self.sandbox.dns.switch("dr")
        return {"active": self.sandbox.dns.active}

    def failback(self) -> dict[str, Any]:
        """Return service to the primary region and DR to pilot light.

        1. the primary region's processes back; its service at 0 (its tasks held the old data);
        2. the old primary rebuilt as a replica of the DR database (writes made during DR come
           back with it), then its service scaled up again, healthy on the replica;
        3. switchover: DR read-only, the primary caught up, promoted, the DNS record switched;
        4. after one TTL (clients have moved), DR to pilot light: service at 0, its database
           rebuilt as a replica of the primary.
        """
        with self._lock:
            if self.state != "dr" and not self._failed_over():
                raise DrillError(f"failback needs a completed failover (state: {self.state})")
            if self.sandbox.link.partitioned:
                # the old primary is rebuilt from DR across the link: nothing would arrive
                raise DrillError("failback needs the regions joined: heal the partition first")
            self.state = "failing_back"
        try:
            return self._failback()
        except Exception:
            with self._lock:
                self.state = "dr"
            raise

    def _failed_over(self) -> bool:
        """Whether the stack serves from DR, however it got there (a failover through the AWS
        API may scale the DR service itself, so not every step passes through here): the DR
        database takes the writes and the name answers DR."""
        return self.sandbox.writer_region == "dr" and self.sandbox.dns.active == "dr"

    def _failback(self) -> dict[str, Any]:
        sandbox = self.sandbox
        timings = sandbox.settings.timings
        started = time.monotonic()
        self._truth("failback_started")
        if sandbox.region_state["primary"] != "up":
            sandbox.region_up("primary")
        sandbox.ecs["primary"].set_desired(0)
        self._reseed("primary", "dr", "primary_reseeded")
        want = sandbox.settings.primary.desired
        sandbox.ecs["primary"].set_desired(want)
        self._wait_healthy("primary", want)
        self._truth("writes_frozen", region="dr")
        freeze_writes(sandbox.db["dr"])
        self._promote_primary()
        self._truth("dns_switch_requested", to="primary")
        sandbox.dns.switch("primary")
        time.sleep(timings.dns_ttl + 0.5)  # clients holding the DR answer move on
        sandbox.ecs["dr"].set_desired(sandbox.settings.dr.desired)
        self._rebuild_dr()
        self._truth("failback_completed", total_s=round(time.monotonic() - started, 3))
        return {"status": "completed", "seconds": round(time.monotonic() - started, 3)}

    def _reseed(self, region: RegionKey, source: RegionKey, event: str) -> float:
        """A region's database rebuilt as a replica of the other's (``event`` in the truth)."""
        sandbox = self.sandbox
        sandbox.harvest_db_log(region)  # a reseed wipes its general log
        seconds = reseed_replica(sandbox.db[region], sandbox.db[source], via=sandbox.across(region))
        self._truth(event, seconds=round(seconds, 3))
        return seconds

    def _promote_primary(self, **attrs: Any) -> None:
        """The rebuilt primary, once it has applied what DR sent, takes the writes."""
        sandbox = self.sandbox
        wait_for_replica(sandbox.db["dr"], sandbox.db["primary"], timeout=30)
        promote_replica(sandbox.db["primary"], timeout=30)
        sandbox.writer_region = "primary"
        self._truth("primary_writable", **attrs)

    def _rebuild_dr(self) -> float:
        """DR's database rebuilt as a replica of the primary: pilot light again, done."""
        seconds = self._reseed("dr", "primary", "dr_reseeded")
        with self._lock:
            self.state = "primary"
            self._done.clear()
        return seconds

    def failback_step(self, name: str, via: str = "aws-api") -> dict[str, Any]:
        """One step of a failback that someone else runs through the sandbox's AWS API (an
        aws-CLI failback script), each for the RDS call that asks for it:

        - ``rebuild_primary`` (``CreateDBInstanceReadReplica`` of the primary's instance from
          DR's): the primary region's processes back, the old primary rebuilt as a replica of
          the DR database (the writes made during DR come back with it);
        - ``promote_primary`` (``PromoteReadReplica`` of it): once it has applied what arrived,
          it takes writes; the DR database is left as it is (the script stops DR's service
          first, and rebuilds DR next);
        - ``rebuild_dr`` (``CreateDBInstanceReadReplica`` of DR's instance from the primary's):
          the DR database rebuilt as a replica of the primary; the failback is done.

        The script scales the services and points the record itself (``UpdateService``,
        ``ChangeResourceRecordSets``). ``via`` names who asked in the ground truth.
        """
        sandbox = self.sandbox
        if name == "rebuild_primary":
            with self._lock:
                if self.state not in ("dr", "failing_back") and not self._failed_over():
                    raise DrillError(f"failback needs a completed failover (state: {self.state})")
                if sandbox.link.partitioned:
                    raise DrillError("failback needs the regions joined: heal the partition first")
                self.state = "failing_back"
            self._truth("failback_started", via=via)
            if sandbox.region_state["primary"] != "up":
                sandbox.region_up("primary")
            seconds = self._reseed("primary", "dr", "primary_reseeded")
            return {"step": name, "seconds": round(seconds, 3)}
        if name == "promote_primary":
            if self.state != "failing_back":
                raise DrillError(f"the primary is rebuilt as a replica first (state: {self.state})")
            self._promote_primary(via=via)
            return {"step": name}
        if name == "rebuild_dr":
            if sandbox.writer_region != "primary":
                raise DrillError("DR is rebuilt from the primary once the primary takes writes")
            seconds = self._rebuild_dr()
            self._truth("failback_completed", via=via)
            return {"step": name, "seconds": round(seconds, 3)}
        raise DrillError(f"unknown failback step '{name}'")

    def _wait_healthy(self, region: str, want: int) -> None:
        lb = self.sandbox.lb["primary" if region == "primary" else "dr"]
        deadline = time.monotonic() + self.healthy_timeout_s
        while lb.healthy_count() < want:
            if time.monotonic() > deadline:
                raise DrillError(
                    f"{region} load balancer has {lb.healthy_count()} healthy targets of {want} "
                    f"after {self.healthy_timeout_s:g} s"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Cancel a delayed invocation; wait briefly for a background failover to finish."""
        self._stopping.set()
        for thread in (self._waiting, self._thread):
            if thread is not None:
                thread.join(timeout=5)
