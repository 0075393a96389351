"""One client factory for every AWS service the drills touch.

It honours ``endpoint_url`` (a moto server in CI; also the ``AWS_ENDPOINT_URL`` environment
variable, which boto3 reads itself), a named profile and an assumed role, or builds every client
through localstack-client's session (``localstack``: LocalStack's edge port, its test
credentials). Every call goes through a :class:`CallLog`: what a run asked of AWS (for the IAM
policy test and the dry-run plan). In dry-run mode calls that change anything are not sent: they
are logged and answered with an empty response.

What makes AWS unusable for the rest of a run (an endpoint that does not answer, no credentials,
credentials AWS refuses, a service LocalStack's plan does not include) is an
:class:`AwsUnavailable`: one line, remembered, so that every later call it concerns fails at once
with the same line rather than retrying for seconds in every drill.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import botocore.awsrequest
import pytest
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoAuthTokenError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)

from drdrill.errors import DrillError

if TYPE_CHECKING:
    # what mypy sees: pytest's ``fail.Exception`` is an attribute, which it takes for no type
    _PytestFailure = Exception
else:
    _PytestFailure = pytest.fail.Exception

#: how long to wait for a connection: AWS answers in well under a second, and an endpoint that
#: does not should cost the run a few seconds once, not botocore's default minute an attempt
CONNECT_TIMEOUT_S = 5.0
#: attempts a call, the first included (standard mode: throttles, 5xx answers and failed
#: connections are tried again, with backoff)
MAX_ATTEMPTS = 3
#: where the LocalStack auth token is read from (never from a config file)
LOCALSTACK_TOKEN_VAR = "LOCALSTACK_AUTH_TOKEN"
#: error codes with which AWS refuses the credentials themselves, whatever the call
CREDENTIAL_CODES = frozenset(
    {
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
#: LocalStack's answer for a service or an action outside its plan (or its emulation): "The API
#: for service 'ecs' is either not included in your current license plan ..."
_LOCALSTACK_PLAN = re.compile(r"license plan|pro feature|auth(entication)? token", re.IGNORECASE)
_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    NoAuthTokenError,
    SSOError,
)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class OneLineFailure(DrillError, _PytestFailure):
    """A failure whose message says everything: pytest shows that one line, no traceback.

    It is pytest's ``fail.Exception`` with ``pytrace`` off as well as a DrillError, so a drill
    that meets it fails with its line (as ``pytest.fail(..., pytrace=False)`` would) and
    ``except DrillError`` still catches it outside pytest.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # what pytest's fail.Exception carries: its message, and whether to show a traceback
        self.msg = message
        self.pytrace = False


class AwsUnavailable(OneLineFailure):
    """AWS cannot be used for the rest of the run: the endpoint does not answer, there are no
    credentials or AWS refuses them, or LocalStack's plan lacks the service."""


#: API operations whose IAM action has another name
ACTION_ALIASES = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "s3:GetBucketReplication": "s3:GetReplicationConfiguration",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:DeleteObjects": "s3:DeleteObjectVersion",
}

#: operation name prefixes that only read
READ_PREFIXES = ("Describe", "List", "Get", "Head", "Filter", "Lookup", "Search", "Test")


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
    """Clients per (service, region), made once, all logged.

    ``localstack`` builds them through localstack-client's session, which points every service
    at LocalStack's edge port (``endpoint_url``'s host and port when given; else
    ``AWS_ENDPOINT_URL``, ``LOCALSTACK_HOST`` or ``localhost:4566``, as localstack-client reads
    them) and signs with LocalStack's test credentials: ``profile`` and ``role_arn`` then play
    no part.
    """

    endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    dry_run: bool = False
    localstack: bool = False
    log: CallLog = field(default_factory=CallLog)
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _session: boto3.Session | None = field(default=None, repr=False)
    #: what made AWS unusable, by scope (:func:`_scopes`): every later call in it fails at once
    _unavailable: dict[str, AwsUnavailable] = field(default_factory=dict, repr=False)
    _account: str | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def session(self) -> boto3.Session:
        """The boto3 session (the assumed role's, when one is configured)."""
        if self._session is None:
            self._raise_known("", "", None)
            try:
                self._session = self._new_session()
            except ProfileNotFound as exc:
                raise self._remember(
                    "*", f"targets.aws.profile: {_one_line(exc)} (see ~/.aws/config)"
                ) from exc
        return self._session

    def _new_session(self) -> boto3.Session:
        base = boto3.Session(profile_name=self.profile)
        if not self.role_arn:
            return base
        sts = base.client("sts", endpoint_url=self.endpoint_url, config=self._config())
        try:
            creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="drdrill")["Credentials"]
        except (ClientError, BotoCoreError) as exc:
            # the role is the run's only way in: nothing else can work without it
            known = self._classify(exc, "sts", "", "AssumeRole", self.endpoint_url)
            message = known[1] if known is not None else _one_line(exc)
            raise self._remember(
                "*", f"cannot assume targets.aws.role_arn {self.role_arn}: {message}"
            ) from exc
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    @staticmethod
    def _config() -> Config:
        return Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        )

    def client(self, service: str, region: str) -> Any:
        """A client for ``service`` in ``region``; every call it makes is logged.

        AwsUnavailable at once when an earlier call found AWS unusable for it.
        """
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._raise_known(service, region, None)
                client = self._new_client(service, region)
                host = urlsplit(str(client.meta.endpoint_url)).netloc
                events = client.meta.events
                events.register("before-parameter-build", self._record(service, region, host))
                events.register("before-call", self._short_circuit)
                events.register("after-call", self._on_answer(service, region, host))
                events.register("after-call-error", self._on_error(service, region, host))
                self._clients[key] = client
            return self._clients[key]

    def _new_client(self, service: str, region: str) -> Any:
        if self.localstack:
            # imported here: only LocalStack users need it at run time
            from localstack_client.session import (  # type: ignore[import-untyped]
                Session as LocalStackSession,
            )

            host = urlsplit(self.endpoint_url).netloc if self.endpoint_url else None
            # one session a region: localstack-client's session fixes the region of its clients
            return LocalStackSession(region_name=region, localstack_host=host or None).client(
                service, config=self._config()
            )
        return self.session().client(
            service, region_name=region, endpoint_url=self.endpoint_url, config=self._config()
        )

    def account_id(self, region: str) -> str:
        """The account the clients act in (STS GetCallerIdentity), asked once a run."""
        with self._lock:
            if self._account is None:
                answer = self.client("sts", region).get_caller_identity()
                self._account = str(answer["Account"])
            return self._account

    def unavailable(self) -> list[str]:
        """Each line that made AWS unusable this run (empty while every call may go on)."""
        with self._lock:
            return [failure.msg for failure in self._unavailable.values()]

    # --- what a call meets ---------------------------------------------------------------------

    def _sends(self, operation: str) -> bool:
        return not (self.dry_run and not is_read_only(operation))

    def _record(self, service: str, region: str, host: str) -> Callable[..., None]:
        def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
            # before anything is logged or sent: a call AWS cannot answer is not made at all
            self._raise_known(service, region, host)
            operation = str(model.name)
            self.log.add(AwsCall(service, region, operation, dict(params), self._sends(operation)))

        return hook

    def _short_circuit(self, model: Any, **_: Any) -> Any:
        """In a dry run, answer a changing call with an empty response and send nothing."""
        if self._sends(str(model.name)):
            return None
        return botocore.awsrequest.AWSResponse("dry-run", 200, {}, None), {}

    def _on_answer(self, service: str, region: str, host: str) -> Callable[..., None]:
        """An error answer that makes AWS unusable becomes an AwsUnavailable (remembered)."""

        def hook(http_response: Any, parsed: Mapping[str, Any], model: Any, **_: Any) -> None:
            if int(http_response.status_code) < 300:
                return
            error = ClientError(dict(parsed), str(model.name))
            failure = self._failure_of(error, service, region, str(model.name), host)
            if failure is not None:
                raise failure

        return hook

    def _on_error(self, service: str, region: str, host: str) -> Callable[..., None]:
        """A call that could not be made at all (no connection, no credentials)."""

        def hook(exception: BaseException, event_name: str, **_: Any) -> None:
            operation = event_name.rsplit(".", 1)[-1]
            failure = self._failure_of(exception, service, region, operation, host)
            if failure is not None:
                raise failure from exception

        return hook

    def _failure_of(
        self,
        exc: BaseException,
        service: str,
        region: str,
        operation: str,
        host: str | None,
    ) -> AwsUnavailable | None:
        """The AwsUnavailable ``exc`` means, remembered for its scope; None for an error that
        concerns this call only (a missing resource, a denied action, a throttle)."""
        known = self._classify(exc, service, region, operation, host)
        return None if known is None else self._remember(*known)

    def _classify(
        self,
        exc: BaseException,
        service: str,
        region: str,
        operation: str,
        host: str | None,
    ) -> tuple[str, str] | None:
        """The scope (:func:`_scopes`) and the line of what ``exc`` makes unusable, or None."""
        where = f"{service} {operation} in {region}" if region else f"{service} {operation}"
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
            hint = ""
            if self.localstack:
                hint = (
                    "; is LocalStack running? it starts only with "
                    f"{LOCALSTACK_TOKEN_VAR} set"
                    + ("" if os.environ.get(LOCALSTACK_TOKEN_VAR) else ", and it is not set here")
                )
            return f"endpoint {host}", f"aws endpoint unreachable: {_one_line(exc)} ({where}){hint}"
        if isinstance(exc, _CREDENTIAL_ERRORS):
            fix = ""
            if isinstance(exc, NoCredentialsError):
                fix = (
                    " (give targets.aws.profile, or set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY)"
                )
            return "*", f"no usable aws credentials: {_one_line(exc)}{fix}"
        if not isinstance(exc, ClientError):
            return None
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        text = _one_line(error.get("Message", ""))
        if code in CREDENTIAL_CODES:
            # per region: an opt-in region refuses credentials that the others take
            return f"region {region}", f"aws refused the credentials ({where}): {code}: {text}"
        if self.localstack and _LOCALSTACK_PLAN.search(text):
            if os.environ.get(LOCALSTACK_TOKEN_VAR):
                missing = (
                    f"the plan of the {LOCALSTACK_TOKEN_VAR} LocalStack runs with does not "
                    "include it (or LocalStack was started without that token)"
                )
            else:
                missing = (
                    f"{LOCALSTACK_TOKEN_VAR} is not set: LocalStack emulates {service} in its "
                    "paid plans only"
                )
            return (
                f"service {service}",
                f"localstack does not serve {service} ({where}): {missing}: {text}",
            )
        return None

    def _remember(self, scope: str, message: str) -> AwsUnavailable:
        with self._lock:
            known = self._unavailable.get(scope)
            if known is None:
                known = self._unavailable[scope] = AwsUnavailable(message)
            # a fresh exception a time: one raised again would pile up every earlier traceback
            return AwsUnavailable(known.msg)

    def _raise_known(self, service: str, region: str, host: str | None) -> None:
        with self._lock:
            for scope in _scopes(service, region, host):
                known = self._unavailable.get(scope)
                if known is not None:
                    raise AwsUnavailable(known.msg)


def _scopes(service: str, region: str, host: str | None) -> list[str]:
    """What an unusable AWS may concern: everything (no credentials), one endpoint (it does not
    answer), one region (it refuses the credentials), one service (LocalStack's plan)."""
    scopes = ["*"]
    if host:
        scopes.append(f"endpoint {host}")
    if region:
        scopes.append(f"region {region}")
    if service:
        scopes.append(f"service {service}")
    return scopes
