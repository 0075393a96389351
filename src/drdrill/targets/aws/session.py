"""One client factory for every AWS service the drills touch.

It honours ``endpoint_url`` (a moto server in CI, LocalStack for teams with a token; also the
``AWS_ENDPOINT_URL`` environment variable, which boto3 reads itself), a named profile and an
assumed role. Every call goes through a :class:`CallLog`: what a run asked of AWS (for the
IAM policy test and the dry-run plan). In dry-run mode calls that change anything are not sent:
they are logged and answered with an empty response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.awsrequest
from botocore.config import Config

#: API operations whose IAM action has another name
ACTION_ALIASES = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "s3:GetBucketReplication": "s3:GetReplicationConfiguration",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
}

#: operation name prefixes that only read
READ_PREFIXES = ("Describe", "List", "Get", "Lookup", "Search", "Test")


def is_read_only(operation: str) -> bool:
    """Whether an API operation (``DescribeServices``) changes nothing."""
    return operation.startswith(READ_PREFIXES)


@dataclass(frozen=True)
class AwsCall:
    """One API call a run made (or, in a dry run, would have made)."""

    service: str
    region: str
    operation: str
    params: dict[str, Any]
    sent: bool

    @property
    def action(self) -> str:
        """The IAM action: ``ecs:StopTask``."""
        prefix = {"elbv2": "elasticloadbalancing"}.get(self.service, self.service)
        action = f"{prefix}:{self.operation}"
        return ACTION_ALIASES.get(action, action)

    def describe(self) -> str:
        """One line for the dry-run plan."""
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        verb = "" if self.sent else "would call "
        return f"{verb}{self.service}.{self.operation}({params}) in {self.region}"


@dataclass
class CallLog:
    """Every call, in order; thread-safe."""

    calls: list[AwsCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, call: AwsCall) -> None:
        """Record a call."""
        with self._lock:
            self.calls.append(call)

    def actions(self) -> set[str]:
        """The IAM actions used."""
        with self._lock:
            return {c.action for c in self.calls}


@dataclass
class AwsClients:
    """Clients per (service, region), made once, all logged."""

    endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    dry_run: bool = False
    log: CallLog = field(default_factory=CallLog)
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _session: boto3.Session | None = field(default=None, repr=False)

    def session(self) -> boto3.Session:
        """The boto3 session (the assumed role's, when one is configured)."""
        if self._session is None:
            base = boto3.Session(profile_name=self.profile)
            if self.role_arn:
                sts = base.client("sts", endpoint_url=self.endpoint_url)
                creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="drdrill")[
                    "Credentials"
                ]
                base = boto3.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"],
                )
            self._session = base
        return self._session

    def client(self, service: str, region: str) -> Any:
        """A client for ``service`` in ``region``; every call it makes is logged."""
        key = (service, region)
        if key not in self._clients:
            client = self.session().client(
                service,
                region_name=region,
                endpoint_url=self.endpoint_url,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            )
            client.meta.events.register("before-parameter-build", self._record(service, region))
            client.meta.events.register("before-call", self._short_circuit)
            self._clients[key] = client
        return self._clients[key]

    def _sends(self, operation: str) -> bool:
        return not (self.dry_run and not is_read_only(operation))

    def _record(self, service: str, region: str) -> Callable[..., None]:
        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            operation = str(model.name)
            self.log.add(AwsCall(service, region, operation, dict(params), self._sends(operation)))

        return hook

    def _short_circuit(self, model: Any, **_: Any) -> Any:
        """In a dry run, answer a changing call with an empty response and send nothing."""
        if self._sends(str(model.name)):
            return None
        return botocore.awsrequest.AWSResponse("dry-run", 200, {}, None), {}
