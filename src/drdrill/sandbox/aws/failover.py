"""The failover's side of the sandbox's AWS API: the DR Lambda, its log, and the records AWS
keeps of what the DR automation did.

The DR automation is the sandbox's own (:mod:`drdrill.sandbox.automation`, whose steps the
ground truth reads); here it is reached and reported the way AWS reaches and reports a Lambda:

- ``Invoke`` of the DR function runs it (RequestResponse) and answers with its result, with
  ``X-Amz-Function-Error`` when it failed;
- the health alarm's ``ActionsEnabled`` is the sandbox's failover mode (``EnableAlarmActions``
  makes the alarm run the automation, as alarm -> SNS -> Lambda does);
- each step leaves the record AWS would keep, at the step's own moment: the function's log
  (``START RequestId``, the Route53 ``ChangeInfo`` it prints, ``END``/``REPORT``), the RDS event
  of the promotion on the DR instance (and the instance no longer a replica), the record change
  in Route53 (``GetChange`` answers its real ``SubmittedAt``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from moto.backends import get_backend

from drdrill.sandbox.aws.endpoint import Call, HookedApp
from drdrill.sandbox.aws.provision import record_rds_event
from drdrill.sandbox.aws.reconcile import ACCOUNT

#: change id (bare) -> when it was submitted
_SUBMITTED: dict[str, datetime] = {}


def _get_change(self: Any) -> Any:
    """moto's GetChange stamps ``SubmittedAt`` with the time of the question; Route53 gives the
    time of the change: answered from the changes the sandbox made, through moto's serializer."""
    from moto.core.responses import ActionResult

    change_id = str(self._get_param("Id")).removeprefix("/change/")
    submitted = _SUBMITTED.get(change_id, datetime.now(UTC))
    return ActionResult(
        {"ChangeInfo": {"Id": f"/change/{change_id}", "Status": "INSYNC", "SubmittedAt": submitted}}
    )


def _install_get_change() -> None:
    from moto.route53.responses import Route53

    Route53.get_change = _get_change  # type: ignore[method-assign]


class DrFunction:
    """The DR automation as the ``<primary>.lambda_function`` of the API, and its records."""

    def __init__(
        self,
        app: HookedApp,
        *,
        region: str,
        function: str,
        dr_region: str,
        replica_id: str,
        zone_id: str,
        record_name: str,
        dr_alb: tuple[str, str],
        alarm: tuple[str, str],
        invoke: Callable[[dict[str, Any]], dict[str, Any]],
        set_mode: Callable[[str], Any],
        route53: Callable[[], Any],
    ) -> None:
        """``invoke`` runs the sandbox's automation (waiting for it); ``set_mode`` sets the
        failover mode; ``route53()`` is a Route53 client of the endpoint; ``dr_alb`` the DR
        load balancer's (DNS name, hosted zone id); ``alarm`` the health alarm's (region,
        name)."""
        self.region, self.function = region, function
        self.dr_region, self.replica_id = dr_region, replica_id
        self.zone_id, self.record_name, self.dr_alb = zone_id, record_name, dr_alb
        self.alarm = alarm
        instance = get_backend("rds")[ACCOUNT][dr_region].databases[replica_id]
        #: what the DR replica replicates from (its source again after a failback)
        self.source_arn = instance.source_db_instance_identifier
        self._invoke, self._set_mode, self._route53 = invoke, set_mode, route53
        self._lock = threading.Lock()
        self._request: str | None = None
        self._stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._actions: bool | None = None
        self.errors: list[str] = []
        _install_get_change()
        app.respond("lambda", "Invoke", self._on_invoke)

    # --- the Lambda -----------------------------------------------------------------------------

    def _on_invoke(self, call: Call, body: bytes) -> tuple[int, dict[str, str], bytes]:
        name = str(call.params.get("FunctionName", "")).rsplit(":", 1)[-1]
        if name != self.function or call.region != self.region:
            raise LookupError  # not ours: moto answers
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {}
        result = self._invoke(payload if isinstance(payload, dict) else {})
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if result.get("status") == "failed":
            headers["X-Amz-Function-Error"] = "Unhandled"
        return 200, headers, json.dumps(result, default=str).encode()

    def _log(self, lines: list[str], when: datetime) -> None:
        backend = get_backend("logs")[ACCOUNT][self.region]
        group = f"/aws/lambda/{self.function}"
        if group not in backend.groups:
            backend.create_log_group(group, {})
        streams = backend.groups[group].streams
        if self._stream not in streams:
            backend.create_log_stream(group, self._stream)
        millis = int(when.timestamp() * 1000)
        backend.put_log_events(
            group, self._stream, [{"timestamp": millis, "message": line} for line in lines]
        )

    # --- what the automation did, as AWS records it ------------------------------------------

    def on_automation(self, event: str, attrs: Mapping[str, Any], when: datetime) -> None:
        """One step of the sandbox's automation (its truth event), recorded as AWS would."""
        try:
            self._record(event, attrs, when)
        except Exception as exc:  # a record we could not write must not stop the failover
            self.errors = [*self.errors[-9:], f"{event}: {type(exc).__name__}: {exc}"]

    def _record(self, event: str, attrs: Mapping[str, Any], when: datetime) -> None:
        if event == "automation_invoked" and attrs.get("trigger") != "manual-script":
            with self._lock:
                self._request = str(uuid.uuid4())
            self._log([f"START RequestId: {self._request} Version: $LATEST"], when)
        elif event == "rds_promotion_requested":
            record_rds_event(
                self.dr_region,
                self.replica_id,
                "Promoted Read Replica to a stand-alone database instance.",
                "read replica",
                when,
            )
        elif event == "replica_writable":
            instance = get_backend("rds")[ACCOUNT][self.dr_region].databases[self.replica_id]
            instance.is_replica = False
            instance.source_db_instance_identifier = None
        elif event == "dr_reseeded":
            # failback: DR a read replica of the primary again (pilot light)
            rds = get_backend("rds")[ACCOUNT]
            instance = rds[self.dr_region].databases[self.replica_id]
            instance.is_replica = True
            instance.source_db_instance_identifier = self.source_arn
        elif event == "dns_switch_requested":
            self._change_record(when)
        elif event in ("failover_completed", "failover_failed") and self._request:
            self._log(
                [f"END RequestId: {self._request}", f"REPORT RequestId: {self._request}"], when
            )
            self._request = None

    def _change_record(self, when: datetime) -> None:
        """The primary failover record pointed at DR, as the automation's DNS step asks; the
        change id goes to the function's log, where the AWS target finds it."""
        answer = self._route53().change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={
                "Comment": "DR failover",
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": self.record_name,
                            "Type": "A",
                            "SetIdentifier": "primary",
                            "Failover": "PRIMARY",
                            "AliasTarget": {
                                "HostedZoneId": self.dr_alb[1],
                                "DNSName": self.dr_alb[0],
                                "EvaluateTargetHealth": True,
                            },
                        },
                    }
                ],
            },
        )
        info = answer["ChangeInfo"]
        change = str(info["Id"]).removeprefix("/change/")
        _SUBMITTED[change] = when
        line = json.dumps({"ChangeInfo": {"Id": f"/change/{change}", "Status": "PENDING"}})
        self._log([line], when)

    # --- the failover mode ----------------------------------------------------------------------

    def sync_mode(self) -> None:
        """The health alarm's ActionsEnabled, as set through the API, is the failover mode."""
        region, name = self.alarm
        alarm = get_backend("cloudwatch")[ACCOUNT][region].alarms.get(name)
        if alarm is None:
            return
        enabled = bool(alarm.actions_enabled)
        if enabled != self._actions:
            if self._actions is not None:  # the first look only learns the state
                self._set_mode("automated" if enabled else "manual")
            self._actions = enabled

    def match_mode(self, mode: str) -> None:
        """Make the alarm's ActionsEnabled show the sandbox's mode (at start)."""
        region, name = self.alarm
        alarm = get_backend("cloudwatch")[ACCOUNT][region].alarms.get(name)
        if alarm is not None:
            alarm.actions_enabled = mode == "automated"
            self._actions = alarm.actions_enabled
