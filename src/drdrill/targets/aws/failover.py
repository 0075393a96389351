"""The failover's ``reported`` events on AWS: each action of the DR automation, from the record
AWS itself keeps of it, with that record's own time and resolution.

- ``automation_invoked``: the DR Lambda's invocation, from its CloudWatch Logs (the runtime's
  ``START RequestId`` line, to the millisecond), and the invocations drdrill made itself (from
  the moment the request left, within the round trip) when the log has not got them yet;
- ``rds_promotion_requested``: RDS's event on the DR instance (``DescribeEvents``) of the
  promotion (:data:`~drdrill.targets.aws.rds.PROMOTION_MESSAGE`);
- ``ecs_scale_requested``: the DR service's ``has started N tasks`` events, and the
  ``UpdateService`` calls drdrill made itself on it;
- ``dns_switch_requested``: the record change's ``SubmittedAt`` as Route53 gives it
  (``GetChange``), for each change id the automation let out: in the scripts' output, in the
  Lambda's answers and in its log (the ``/change/C...`` the API returns, which the aws CLI
  prints and a function logs when it prints its response). An automation that lets out no
  change id is still timed: from Route53's record set, asked at each look, as the first look
  whose PRIMARY failover record is an alias of the DR load balancer
  (:class:`RecordSwitchSeen`: between that look and the one before, so as wide as the gap).

What AWS recorded of the primary region, which the ECS task failure and RDS reboot drills put
beside what they observed (:data:`PLATFORM_RECORDS`):

- ``task_stopped`` / ``task_started``: ECS's ``stoppedAt`` / ``startedAt`` of the primary
  service's tasks (running and recently stopped ones);
- ``db_restarted``: RDS's event on the primary instance of its return from a reboot
  (:data:`~drdrill.targets.aws.rds.RESTART_MESSAGE`).

AWS's times are wall-clock times: a drill's monotonic ``since`` is mapped onto the wall clock
the way :meth:`~drdrill.timeline.Timeline.report` maps back. A record counts when its time,
widened by its resolution, is at or after ``since``. Each kind is asked of AWS at most once
every :attr:`FailoverRecords.min_interval_s` (a drill polls fast; each record carries its own
time, so a later look costs no accuracy).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from drdrill.errors import DrillError
from drdrill.targets.aws import ecs, lambda_, logs, rds, route53
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings
from drdrill.timeline import Clock

#: the records a failover drill reads
RECORDS = (
    "automation_invoked",
    "rds_promotion_requested",
    "ecs_scale_requested",
    "dns_switch_requested",
)
#: what the platform recorded of the primary region during a drill (ECS's task times, RDS's
#: events): the ECS task failure and RDS reboot drills read these
PLATFORM_RECORDS = ("task_stopped", "task_started", "db_restarted")
#: the filter pattern of a function's log lines that carry a Route53 change id
CHANGE_PATTERN = '"/change/"'


class Reported(Protocol):
    """A record with its time and how finely it is known."""

    @property
    def utc(self) -> datetime:
        """When AWS (or we) stamped it."""

    @property
    def resolution_s(self) -> float:
        """How far from ``utc`` the action may really have been."""


@dataclass(frozen=True)
class ScaleRequest:
    """An ``UpdateService`` drdrill sent itself: from when the request left, within its round
    trip."""

    region: str
    cluster: str
    service: str
    desired: int
    utc: datetime
    answered_utc: datetime

    @property
    def resolution_s(self) -> float:
        """The round trip: where in it ECS took the request is not known."""
        return (self.answered_utc - self.utc).total_seconds()


@dataclass(frozen=True)
class RecordSwitchSeen:
    """The failover record seen pointing at DR in Route53's record set, and not at the look
    before: the switch lies between the two looks."""

    #: the look before, when the record did not point at DR (or the drill's start)
    utc: datetime
    #: the look that saw it on DR
    seen_utc: datetime

    @property
    def resolution_s(self) -> float:
        """The gap between the two looks."""
        return (self.seen_utc - self.utc).total_seconds()


@dataclass(frozen=True)
class _Cached:
    at: float
    found: tuple[Reported, ...]


class FailoverRecords:
    """The records of one target's stack, and what drdrill itself did to it."""

    #: the least time between two looks at one kind of record in AWS
    min_interval_s = 1.0
    #: how long after the record is seen on DR a change id may still come and be used instead
    change_id_grace_s = 5.0

    def __init__(
        self,
        aws: AwsClients,
        settings: AwsSettings,
        clock: Clock | None = None,
        record_on_dr: Callable[[], bool] | None = None,
    ) -> None:
        """Records of the stack ``settings`` describe, read through ``aws``; ``record_on_dr``
        says whether Route53's failover record points at DR now (the fallback of
        ``dns_switch_requested`` when the automation lets out no change id)."""
        self.aws = aws
        self.settings = settings
        self.clock = clock or Clock()
        self.record_on_dr = record_on_dr
        self._record_looks: list[tuple[datetime, bool]] = []
        self._lock = threading.Lock()
        self._invocations: list[lambda_.Invocation] = []
        self._scales: list[ScaleRequest] = []
        self._change_ids: dict[str, str] = {}  # change id -> where it was seen
        self._cache: dict[tuple[str, float], _Cached] = {}

    # --- what drdrill did itself -------------------------------------------------------------

    def note_invocation(self, invocation: lambda_.Invocation) -> None:
        """An invocation of the DR automation drdrill made (and the change ids it answered)."""
        with self._lock:
            self._invocations.append(invocation)
        if invocation.answer:
            self.note_output(repr(invocation.answer), f"lambda {invocation.function}'s answer")

    def note_scale(self, request: ScaleRequest) -> None:
        """An ``UpdateService`` drdrill sent."""
        with self._lock:
            self._scales.append(request)

    def note_output(self, text: str, where: str) -> None:
        """Route53 change ids in ``text`` (a script's output, a function's answer)."""
        with self._lock:
            for change in route53.change_ids(text):
                self._change_ids.setdefault(change, where)

    # --- reading -----------------------------------------------------------------------------

    def since(self, mono: float, record: str) -> list[Reported]:
        """The records named ``record`` at or after the monotonic time ``mono``, oldest first."""
        readers: dict[str, Callable[[datetime], list[Reported]]] = {
            "automation_invoked": self._automation_invoked,
            "rds_promotion_requested": self._promotion_requested,
            "ecs_scale_requested": self._scale_requested,
            "dns_switch_requested": self._dns_switch_requested,
            "task_stopped": lambda since: list(self._task_times(since)[1]),
            "task_started": lambda since: list(self._task_times(since)[0]),
            "db_restarted": self._db_restarted,
        }
        reader = readers.get(record)
        if reader is None:
            known = ", ".join((*RECORDS, *PLATFORM_RECORDS))
            raise DrillError(f"aws target: no record '{record}' (known: {known})")
        key = (record, mono)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached.at < self.min_interval_s:
            return list(cached.found)
        since = self.clock.utc_at(mono)
        # a record stamped to the second may show a time up to a second before the action
        window = since - timedelta(seconds=1)
        found = [r for r in reader(window) if r.utc + timedelta(seconds=r.resolution_s) >= since]
        found.sort(key=lambda r: r.utc)
        with self._lock:
            self._cache[key] = _Cached(now, tuple(found))
        return found

    def dr_function(self) -> tuple[str, str] | None:
        """The DR automation function and its region: the primary's setting, else the DR's."""
        s = self.settings
        if s.primary.lambda_function:
            return s.primary.region, s.primary.lambda_function
        if s.dr.lambda_function:
            return s.dr.region, s.dr.lambda_function
        return None

    def _automation_invoked(self, since: datetime) -> list[Reported]:
        found: list[Reported] = []
        function = self.dr_function()
        logged: set[str] = set()
        if function is not None:
            region, name = function
            for start in logs.lambda_starts(self.aws, region, name, since):
                found.append(start)
                logged.add(start.request_id)
        with self._lock:
            own = list(self._invocations)
        # our own invocation only while its START line is not in the log (it is more exact)
        found.extend(i for i in own if i.request_id not in logged)
        return found

    def _promotion_requested(self, since: datetime) -> list[Reported]:
        dr = self.settings.dr
        return list(rds.promotion_events(self.aws, dr.region, dr.rds.instance_id, since))

    def _scale_requested(self, since: datetime) -> list[Reported]:
        dr = self.settings.dr
        found: list[Reported] = list(
            ecs.tasks_started_events(self.aws, dr.region, dr.ecs.cluster, dr.ecs.service, since)
        )
        with self._lock:
            found.extend(
                s
                for s in self._scales
                if (s.region, s.cluster, s.service) == (dr.region, dr.ecs.cluster, dr.ecs.service)
                and s.desired > 0
            )
        return found

    def _task_times(self, since: datetime) -> tuple[list[ecs.TaskTime], list[ecs.TaskTime]]:
        p = self.settings.primary
        return ecs.task_times(self.aws, p.region, p.ecs.cluster, p.ecs.service, since)

    def _db_restarted(self, since: datetime) -> list[Reported]:
        p = self.settings.primary
        return list(rds.restart_events(self.aws, p.region, p.rds.instance_id, since))

    def _dns_switch_requested(self, since: datetime) -> list[Reported]:
        function = self.dr_function()
        if function is not None:
            region, name = function
            group = logs.lambda_log_group(name)
            for line in logs.lines(self.aws, region, group, since, CHANGE_PATTERN):
                self.note_output(line.message, f"{group} {line.stream}")
        with self._lock:
            ids = list(self._change_ids)
        if ids or self.record_on_dr is None:
            return [route53.get_change(self.aws, change) for change in ids]
        return self._record_switch_seen(since)

    def _record_switch_seen(self, since: datetime) -> list[Reported]:
        """The first look since ``since`` that saw the record on DR, bounded by the look
        before it (or ``since``, when the first look already saw it)."""
        assert self.record_on_dr is not None
        on_dr = self.record_on_dr()
        now = datetime.now(UTC)
        with self._lock:
            self._record_looks.append((now, on_dr))
            looks = [(at, on) for at, on in self._record_looks if at >= since]
        before = since
        for at, on in looks:
            if on:
                # the change id, more exact, may follow the switch (a log line is late): the
                # record's own look counts once none came within the grace
                if (now - at).total_seconds() < self.change_id_grace_s:
                    return []
                return [RecordSwitchSeen(before, at)]
            before = at
        return []
