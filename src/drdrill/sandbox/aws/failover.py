"""The failover's side of the sandbox's AWS API: the DR Lambda, the calls that fail over, and
the records AWS keeps of them.

- ``Invoke`` of the DR function, or a notification to its SNS topic, runs the function's code
  (:mod:`drdrill.sandbox.aws.dr_lambda`: boto3 calls back to this endpoint) in a process of its
  own, as Lambda runs a function apart from the API (:mod:`drdrill.sandbox.aws.lambda_runtime`),
  and logs it as Lambda does (``START RequestId``, its lines, ``END``/``REPORT``); an Invoke
  answers with its result, with ``X-Amz-Function-Error`` when it raised;
- ``PromoteReadReplica`` of the DR replica, and a Route53 change of the failover record, act on
  the sandbox through its automation's steps (:mod:`drdrill.sandbox.automation`, whose records
  the ground truth reads);
- the health alarm's ``ActionsEnabled`` is the sandbox's failover mode;
- what the automation does, however it was asked, leaves the record AWS would keep: the RDS
  event of the promotion (and the instance no longer a replica), the record change in Route53
  (``GetChange`` answers its real ``SubmittedAt``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from moto.backends import get_backend

from drdrill.sandbox.aws import dr_lambda
from drdrill.sandbox.aws.endpoint import ApiError, Call, HookedApp, current_call
from drdrill.sandbox.aws.provision import record_rds_event
from drdrill.sandbox.aws.reconcile import ACCOUNT, hold_while

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


#: the sandbox's functions by (region, name): what an SNS lambda subscription delivers to
_FUNCTIONS: dict[tuple[str, str], DrFunction] = {}


def _install_sns_delivery() -> None:
    """moto delivers an SNS message to a ``lambda`` subscription by running the function in
    Docker; a sandbox function runs its code here instead, asynchronously as SNS invokes."""
    from moto.awslambda.models import LambdaBackend

    if getattr(LambdaBackend, "_drdrill_installed", False):
        return
    moto_send = LambdaBackend.send_sns_message

    def send_sns_message(
        self: Any,
        function_name: str,
        message: str,
        subject: str | None = None,
        qualifier: str | None = None,
    ) -> None:
        function = _FUNCTIONS.get((self.region_name, function_name.rsplit(":", 1)[-1]))
        if function is None:
            moto_send(self, function_name, message, subject=subject, qualifier=qualifier)
            return
        function.deliver_sns(message, subject)

    LambdaBackend.send_sns_message = send_sns_message  # type: ignore[method-assign]
    LambdaBackend._drdrill_installed = True  # type: ignore[attr-defined]


#: told of every record change made through the API: (zone id, moto's change list)
_CHANGE_LISTENERS: list[Callable[[str, list[dict[str, Any]]], None]] = []


def listen_to_record_changes(listener: Callable[[str, list[dict[str, Any]]], None]) -> None:
    """Call ``listener(zone, changes)`` after each ``ChangeResourceRecordSets`` moto accepted
    (after the listeners added before it)."""
    _install_route53()
    _CHANGE_LISTENERS.append(listener)


def stop_listening(listener: Callable[[str, list[dict[str, Any]]], None]) -> None:
    """Undo :func:`listen_to_record_changes`."""
    if listener in _CHANGE_LISTENERS:
        _CHANGE_LISTENERS.remove(listener)


def install_cross_region_replica_delete() -> None:
    """moto's ``DeleteDBInstance`` of a cross-region read replica: its source lists the
    replica by ARN, and moto removed it by identifier (a ValueError, answered as a 500): the
    DR replica deleted to be rebuilt failed that way. Removed by whichever of the two it has."""
    from moto.rds.models import DBInstance

    if getattr(DBInstance, "_drdrill_remove_replica", False):
        return

    def remove_replica(self: Any, replica: Any) -> None:
        for key in (replica.db_instance_identifier, replica.db_instance_arn):
            if key in self.replicas:
                self.replicas.remove(key)
                return

    DBInstance.remove_replica = remove_replica  # type: ignore[method-assign]
    DBInstance._drdrill_remove_replica = True  # type: ignore[attr-defined]


def _install_route53() -> None:
    """``GetChange`` with the change's real ``SubmittedAt``; ``ChangeResourceRecordSets``
    with a change id of its own (moto answers one fixed id to every change) and its moment,
    after the sandbox has acted on the change (:data:`_CHANGE_LISTENERS`)."""
    from moto.core.responses import ActionResult
    from moto.route53.responses import Route53

    if getattr(Route53, "_drdrill_installed", False):
        return
    moto_change = Route53.change_resource_record_sets

    def change_resource_record_sets(self: Any) -> Any:
        submitted = datetime.now(UTC)
        result = moto_change(self)  # refuses a bad batch before the sandbox acts on it
        zone = str(self._get_param("HostedZoneId"))
        changes = self._get_param("ChangeBatch.Changes") or []
        for listener in list(_CHANGE_LISTENERS):
            listener(zone, list(changes))
        change = "C" + uuid.uuid4().hex[:13].upper()
        _SUBMITTED[change] = submitted
        del result
        info = {"Id": f"/change/{change}", "Status": "PENDING", "SubmittedAt": submitted}
        return ActionResult({"ChangeInfo": info})

    Route53.change_resource_record_sets = change_resource_record_sets  # type: ignore[method-assign]
    Route53.get_change = _get_change  # type: ignore[method-assign]
    Route53._drdrill_installed = True  # type: ignore[attr-defined]


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
        set_mode: Callable[[str], Any],
        route53: Callable[[], Any],
        primary_alb: tuple[str, str],
        step: Callable[[str, str], Any],
        dns_changed: Callable[[str, str], Any],
        code: Mapping[str, str],
        credentials: Mapping[str, str],
        endpoint_url: str,
        primary_id: str = "",
        failback_step: Callable[[str, str], Any] | None = None,
        writer_region: Callable[[], str] | None = None,
    ) -> None:
        """``set_mode`` sets the failover mode; ``route53()`` is a Route53 client of the
        endpoint; ``dr_alb`` and ``primary_alb`` the load balancers' (DNS name, hosted zone
        id); ``alarm`` the health alarm's (region, name). ``step(name, via)`` runs one step of
        the automation for a call of the API (``PromoteReadReplica`` of the DR replica runs
        ``promote``); ``dns_changed(side, via)`` points the sandbox's DNS at ``primary`` or
        ``dr`` when a Route53 change through the API points the failover record there.
        ``code`` is the function's environment; its code runs in a process of its own
        (:mod:`~drdrill.sandbox.aws.lambda_runtime`) with ``credentials`` against
        ``endpoint_url``. ``primary_id`` is the primary's instance, ``failback_step(name,
        via)`` runs one step of a failback for the RDS calls of an aws-CLI failback
        (``DeleteDBInstance``, ``CreateDBInstanceReadReplica``, ``PromoteReadReplica`` of the
        primary), ``writer_region()`` says which region's database takes the writes."""
        self.region, self.function = region, function
        self.dr_region, self.replica_id = dr_region, replica_id
        self.primary_id = primary_id
        self._failback_step, self._writer_region = failback_step, writer_region
        self.zone_id, self.record_name, self.dr_alb = zone_id, record_name, dr_alb
        self.primary_alb = primary_alb
        self.alarm = alarm
        self._step, self._dns_changed = step, dns_changed
        #: set while the automation's own record change is in flight (not a change to act on)
        self._own_change = threading.Event()
        self.code, self.endpoint_url = dict(code), endpoint_url
        self._credentials = dict(credentials)
        self._running = threading.Lock()
        instance = get_backend("rds")[ACCOUNT][dr_region].databases[replica_id]
        #: what the DR replica replicates from (its source again after a failback)
        self.source_arn = instance.source_db_instance_identifier
        self._set_mode, self._route53 = set_mode, route53
        self._stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._actions: bool | None = None
        self.errors: list[str] = []
        _install_route53()
        _install_sns_delivery()
        _CHANGE_LISTENERS.append(self._on_record_change)
        _FUNCTIONS[(region, function)] = self
        app.respond("lambda", "Invoke", self._on_invoke)
        app.before("rds", "PromoteReadReplica", self._on_promote)
        if failback_step is not None and writer_region is not None and primary_id:
            app.before("rds", "DeleteDBInstance", self._on_delete)
            app.after("rds", "CreateDBInstanceReadReplica", self._on_create_replica)
            app.note("rds", "CreateDBInstanceReadReplica")  # in the API's log, as it arrives
        app.note("route53", "ChangeResourceRecordSets")
        app.note("sns", "Publish")  # the alarm's notification (the automated Decision's truth)

    def close(self) -> None:
        """Stop listening to record changes (the endpoint is going down)."""
        with contextlib.suppress(ValueError):
            _CHANGE_LISTENERS.remove(self._on_record_change)
        if _FUNCTIONS.get((self.region, self.function)) is self:
            del _FUNCTIONS[(self.region, self.function)]

    # --- calls of the API that fail over (an aws-CLI runbook script's) -------------------------

    def _on_promote(self, call: Call) -> None:
        """``PromoteReadReplica`` of the DR replica promotes it for real, in the background as
        RDS does: ``modifying`` until the database takes writes, then ``available`` and no
        longer a replica (the automation's records). Of the primary's instance rebuilt as a
        replica of DR (a failback): the failback's ``promote_primary``. Other instances: moto
        answers."""
        db_id = str(call.params.get("DBInstanceIdentifier", ""))
        if call.region == self.region and db_id == self.primary_id:
            self._failback_call(call, "promote_primary", "modifying", must_be_replica=True)
            return
        if call.region != self.dr_region or db_id != self.replica_id:
            return
        instance: Any = get_backend("rds")[ACCOUNT][self.dr_region].databases[self.replica_id]
        if not instance.source_db_instance_identifier:
            raise ApiError("InvalidDBInstanceState", f"DB instance {db_id} is not a read replica.")
        step, via = self._step, self._via(call)

        def promote() -> None:
            try:
                step("promote", via)
            except Exception as exc:
                self.errors = [*self.errors[-9:], f"promote {db_id}: {type(exc).__name__}: {exc}"]

        hold_while(instance, "modifying", promote)

    # --- calls of the API that fail back (an aws-CLI failback script's) ------------------------

    def _ours(self, call: Call) -> str | None:
        """``primary`` or ``dr`` when the call names one of the sandbox's two databases."""
        db_id = str(call.params.get("DBInstanceIdentifier", ""))
        if call.region == self.region and db_id == self.primary_id:
            return "primary"
        if call.region == self.dr_region and db_id == self.replica_id:
            return "dr"
        return None

    def _on_delete(self, call: Call) -> None:
        """``DeleteDBInstance`` of one of the sandbox's databases: moto forgets the instance (the
        failback creates it again as a read replica, under the same name); the process stays,
        to be rebuilt. The database that takes the writes is refused: the sandbox keeps it."""
        side = self._ours(call)
        if side is None or self._writer_region is None:
            return
        if side == self._writer_region():
            raise ApiError(
                "InvalidDBInstanceState",
                f"the sandbox does not delete {call.params.get('DBInstanceIdentifier')}: it "
                "takes the writes (fail over or back first)",
            )

    def _on_create_replica(self, call: Call) -> None:
        """``CreateDBInstanceReadReplica`` naming one of the sandbox's databases, from the other
        region's: that ``mariadbd`` rebuilt for real as a replica of the other, in the
        background (``creating`` until it replicates): the failback's ``rebuild_primary`` or
        ``rebuild_dr``."""
        side = self._ours(call)
        if side is None:
            return
        step = "rebuild_primary" if side == "primary" else "rebuild_dr"
        self._failback_call(call, step, "creating", must_be_replica=False)

    def _failback_call(self, call: Call, step: str, status: str, must_be_replica: bool) -> None:
        """Run the failback's ``step`` in the background, the instance ``status`` meanwhile."""
        run = self._failback_step
        if run is None:
            return
        db_id = str(call.params.get("DBInstanceIdentifier", ""))
        instance: Any = get_backend("rds")[ACCOUNT][call.region].databases.get(db_id)
        if instance is None:
            return  # moto answers its own error
        if must_be_replica and not instance.source_db_instance_identifier:
            raise ApiError("InvalidDBInstanceState", f"DB instance {db_id} is not a read replica.")
        via = self._via(call)

        def work() -> None:
            try:
                run(step, via)
            except Exception as exc:
                self.errors = [*self.errors[-9:], f"{step} {db_id}: {type(exc).__name__}: {exc}"]

        hold_while(instance, status, work)

    def _on_record_change(self, zone: str, changes: list[dict[str, Any]]) -> None:
        """A change of the failover record through the API: the sandbox's DNS answers the
        region its alias now points at (the automation's own change is already acted on)."""
        if self._own_change.is_set():
            return
        if zone.removeprefix("/hostedzone/") != self.zone_id.removeprefix("/hostedzone/"):
            return
        for change in changes:
            record = change.get("ResourceRecordSet") or {}
            if change.get("Action") not in ("UPSERT", "CREATE"):
                continue
            if str(record.get("Name", "")).rstrip(".") != self.record_name.rstrip("."):
                continue
            if record.get("Failover", "PRIMARY") != "PRIMARY":
                continue  # the secondary record answers only when the primary's check fails
            alias = str((record.get("AliasTarget") or {}).get("DNSName", "")).rstrip(".").lower()
            if alias == self.dr_alb[0].rstrip(".").lower():
                self._dns_changed("dr", self._via(current_call()))
            elif alias == self.primary_alb[0].rstrip(".").lower():
                self._dns_changed("primary", self._via(current_call()))

    def _via(self, call: Call | None) -> str:
        """Who sent a call, in the ground truth: ``dr-lambda`` when it was signed with the
        function's own credentials (its execution role's, as on AWS, where CloudTrail tells a
        function's calls by them), else ``aws-api`` (a script, the CLI, a drill)."""
        key = self._credentials.get("AWS_ACCESS_KEY_ID")
        return "dr-lambda" if call is not None and call.access_key == key else "aws-api"

    # --- the Lambda -----------------------------------------------------------------------------

    def _on_invoke(self, call: Call, body: bytes) -> tuple[int, dict[str, str], bytes]:
        name = str(call.params.get("FunctionName", "")).rsplit(":", 1)[-1]
        if name != self.function or call.region != self.region:
            raise LookupError  # not ours: moto answers
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {}
        result = self.run_code(payload if isinstance(payload, dict) else {})
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if "errorType" in result:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return 200, headers, json.dumps(result, default=str).encode()

    def deliver_sns(self, message: str, subject: str | None) -> None:
        """An SNS notification to the function (its topic's ``lambda`` subscription): the
        code runs in the background with the event SNS sends, as an asynchronous invocation."""
        event = {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "Sns": {
                        "Type": "Notification",
                        "MessageId": str(uuid.uuid4()),
                        "Subject": subject,
                        "Message": message,
                        "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    },
                }
            ]
        }
        threading.Thread(
            target=self.run_code, args=(event,), name=f"{self.function}-sns", daemon=True
        ).start()

    def run_code(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """One invocation of the function's code (one at a time, as with a reserved
        concurrency of 1): its log (``START``, what it logs, ``END``/``REPORT``) and its result;
        a failure's result is Lambda's ``errorMessage``/``errorType``."""
        with self._running:
            request = str(uuid.uuid4())
            started = time.monotonic()
            self._log([f"START RequestId: {request} Version: $LATEST"], datetime.now(UTC))
            try:
                result, failed = self._invoke(event)
            except Exception as exc:  # the runtime itself failed (it could not start)
                result = {"errorMessage": str(exc), "errorType": type(exc).__name__}
                failed = True
            if failed:
                self._log(
                    [f"[ERROR] {result['errorType']}: {result['errorMessage']}"],
                    datetime.now(UTC),
                )
            millis = (time.monotonic() - started) * 1000
            self._log(
                [
                    f"END RequestId: {request}",
                    f"REPORT RequestId: {request}\tDuration: {millis:.2f} ms",
                ],
                datetime.now(UTC),
            )
            return result

    def _invoke(self, event: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The function's code run once in its own process (as Lambda runs it, apart from the
        API it calls), each line it logs put in its log as it comes: (its result, whether it
        failed)."""
        env = {
            # the function's configuration and what Lambda's runtime gives it; nothing of this
            # process's environment (no profile, no user's AWS config)
            "PATH": os.environ.get("PATH", os.defpath),
            **self._credentials,
            **self.code,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_LAMBDA_FUNCTION_NAME": self.function,
        }
        errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below, after the run)
        runtime = subprocess.Popen(
            [sys.executable, "-m", "drdrill.sandbox.aws.lambda_runtime"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
        )
        assert runtime.stdin is not None and runtime.stdout is not None
        runtime.stdin.write(json.dumps(event, default=str))
        runtime.stdin.close()
        outcome: tuple[dict[str, Any], bool] | None = None
        for raw in runtime.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # not the runtime's: a library printing on stdout
            if "log" in line:
                self._log([str(line["log"])], datetime.now(UTC))
            elif "result" in line:
                outcome = (line["result"] if isinstance(line["result"], dict) else {}, False)
            elif "error" in line:
                outcome = (dict(line["error"]), True)
        runtime.wait()
        with errors:
            errors.seek(0)
            said = errors.read().strip().splitlines()
        if outcome is None:  # it died before saying how it ended
            last = (said or [f"exit status {runtime.returncode}"])[-1]
            outcome = ({"errorMessage": last, "errorType": "Runtime.ExitError"}, True)
        return outcome

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
        if event == "rds_promotion_requested":
            record_rds_event(
                self.dr_region,
                self.replica_id,
                "Promoted Read Replica to a stand-alone database instance.",
                "read replica",
                when,
            )
        elif event == "primary_writable" and self.primary_id:
            # a failback's promotion: the primary's instance no longer a replica of DR
            primary = get_backend("rds")[ACCOUNT][self.region].databases.get(self.primary_id)
            if primary is not None:
                primary.is_replica = False
                primary.source_db_instance_identifier = None
        elif event == "replica_writable":
            instance = get_backend("rds")[ACCOUNT][self.dr_region].databases[self.replica_id]
            instance.is_replica = False
            instance.source_db_instance_identifier = None
        elif event == "dr_reseeded":
            # failback: DR a read replica of the primary again (pilot light)
            dr = get_backend("rds")[ACCOUNT][self.dr_region].databases.get(self.replica_id)
            if dr is not None:
                dr.is_replica = True
                dr.source_db_instance_identifier = self.source_arn
        elif event == "dns_switch_requested" and attrs.get("via") is None:
            self._own_change.set()
            try:
                self._change_record(when, str(attrs.get("to", "dr")))
            finally:
                self._own_change.clear()

    def _change_record(self, when: datetime, to: str) -> None:
        """The primary failover record pointed at ``to``'s load balancer, as the automation's
        own DNS step (a failover through drdrill's control API) or the failback asks: the
        record stays what clients resolve, with the change's real moment."""
        alb = self.primary_alb if to == "primary" else self.dr_alb
        info = dr_lambda.point_record_at(
            self._route53(), self.zone_id, self.record_name, alb, f"DR: to {to}"
        )
        _SUBMITTED[str(info["Id"]).removeprefix("/change/")] = when

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
