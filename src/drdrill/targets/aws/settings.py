"""Settings of the AWS target (``targets.aws`` in drdrill.yaml).

The stack is the runbook's pilot-light pair: an ECS service behind an ALB in each region, an RDS
MySQL primary with a cross-region read replica, a DR automation function, health alarms with an
SNS topic, S3 buckets with cross-region replication and a Route53 failover record. Every name
defaults to the runbook's (cluster and service ``visitor-analytics``, replica
``visitor-analytics-db-replica``, function ``visitor-analytics-dr-automation``, regions eu-west-1
and eu-central-1); what the runbook does not name (ARNs, buckets, the hosted zone) has no default.

A region's settings are merged key by key over that region's defaults, so ``dr: {region:
us-east-1}`` keeps the DR replica's default name rather than taking the primary's.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from drdrill.config import DrillConfig, PositiveSeconds, Seconds
from drdrill.errors import ConfigError

if TYPE_CHECKING:
    # boto3 is imported by the clients only: the config loader validates this section
    # without the [aws] extra
    from drdrill.targets.aws.session import AwsClients

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+")
#: a terraform_outputs value whose first word is this program is a command line, else a file
TERRAFORM_COMMAND = "terraform"


class _Model(BaseModel):
    #: strict, as the config's own models: a boolean is no number (``http_port: true``) and
    #: a number no boolean (``localstack: 1``)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _region_name(value: str) -> str:
    if not _REGION.fullmatch(value):
        raise ValueError(f"'{value}' is not an aws region name (like eu-west-1)")
    return value


def _arn(value: str | None, service: str) -> str | None:
    if value is not None and not (_ARN.fullmatch(value) and value.split(":")[2] == service):
        raise ValueError(f"'{value}' is not a {service} arn")
    return value


def _fqdn(value: str | None) -> str | None:
    """DNS names as Route53 answers them: lower case, with the final dot."""
    if value is None:
        return None
    name = value.strip().lower()
    if not name or name == ".":
        raise ValueError("empty dns name")
    return name if name.endswith(".") else f"{name}."


class EcsSettings(_Model):
    """The region's ECS service."""

    cluster: str = Field(default="visitor-analytics", min_length=1)
    service: str = Field(default="visitor-analytics", min_length=1)
    #: how many tasks the DR automation scales this service to in a failover (unset: the
    #: primary service's desired count before the drill)
    scale_to: int | None = Field(default=None, ge=1)


class AlbSettings(_Model):
    """The region's load balancer: its target group (by ARN or by name) and its DNS name."""

    #: the load balancer's own name (to look its DNS name up, or to create it in an emulator)
    name: str | None = None
    target_group_arn: str | None = None
    target_group_name: str | None = None
    dns_name: str | None = None

    @field_validator("target_group_arn")
    @classmethod
    def _tg_arn(cls, value: str | None) -> str | None:
        return _arn(value, "elasticloadbalancing")

    @model_validator(mode="after")
    def _one_target_group(self) -> AlbSettings:
        if self.target_group_arn is not None and self.target_group_name is not None:
            raise ValueError("give target_group_arn or target_group_name, not both")
        return self


class RdsSettings(_Model):
    """The region's database instance: the primary's writer, or the DR region's read replica."""

    instance_id: str = Field(min_length=1)


class AlarmSettings(_Model):
    """The region's CloudWatch alarms."""

    #: the alarm that detects the outage (the Detection phase ends when it enters ALARM)
    health: str | None = None
    #: alarms that abort a drill when they enter ALARM (stop conditions)
    guards: list[str] = Field(default_factory=list)


class S3Settings(_Model):
    """The region's bucket: the primary's replicates into the DR region's."""

    bucket: str | None = None


class DatabaseSettings(_Model):
    """How drdrill connects to the region's database itself: to ask it whether it takes writes
    (``@@global.read_only``) and to read the RPO markers back. The password is never printed
    nor logged: give the name of an environment variable that holds it (``password_env``), or
    the password itself (``password``)."""

    user: str = Field(min_length=1)
    password: SecretStr | None = None
    password_env: str | None = Field(default=None, min_length=1)
    #: the database (schema) the app writes to, where the RPO marker table is
    name: str = Field(default="visitor_analytics", min_length=1)
    #: unset: the instance's endpoint as RDS reports it; a tunnel's address otherwise
    host: str | None = Field(default=None, min_length=1)
    #: unset: the instance's port as RDS reports it
    port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("password", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        # a number in YAML is still a password, taken as text; anything else is refused here,
        # without the type error that would quote the input (the password) in its message
        if value is None or isinstance(value, str | SecretStr):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError("must be text (its value is not shown)")

    @model_validator(mode="after")
    def _one_password(self) -> DatabaseSettings:
        if (self.password is None) == (self.password_env is None):
            raise ValueError("give password or password_env (one of them)")
        return self

    def secret(self) -> str | None:
        """The password; None when ``password_env`` names a variable that is not set."""
        if self.password is not None:
            return self.password.get_secret_value()
        return os.environ.get(self.password_env or "")


class ScriptsSettings(_Model):
    """The team's own runbook scripts, each a command line (a relative program path is taken
    from the config file's folder); they run with the target's credentials, profile, region
    and endpoint in their environment."""

    #: runbook option 2, run unattended by the drills (``failover.sh --yes``)
    failover: str | None = None
    #: the failback, after a failover
    failback: str | None = None

    @field_validator("failover", "failback")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a command line: {exc}") from None
        if not words:
            raise ValueError("empty command line")
        return value


class DnsSettings(_Model):
    """Where drdrill resolves the public name and the load balancers' names, as clients do."""

    #: name servers to ask (addresses; the hosted zone's own, or a resolver's); empty: the
    #: system resolver
    name_servers: list[str] = Field(default_factory=list)
    port: int = Field(default=53, ge=1, le=65535)
    #: how long one lookup may take
    timeout: PositiveSeconds = 2.0

    @field_validator("name_servers")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for server in value:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ValueError(f"'{server}' is not an ip address") from None
        return value


class RegionSettings(_Model):
    """One region of the stack."""

    region: str
    ecs: EcsSettings = Field(default_factory=EcsSettings)
    alb: AlbSettings = Field(default_factory=AlbSettings)
    rds: RdsSettings
    #: the DR automation function (the runbook invokes it in the primary region)
    lambda_function: str | None = None
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    sns_topic_arn: str | None = None
    s3: S3Settings = Field(default_factory=S3Settings)
    #: drdrill's own connection to the region's database (unset: RDS's word only)
    database: DatabaseSettings | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return _region_name(value)

    @field_validator("sns_topic_arn")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return _arn(value, "sns")


class Route53Settings(_Model):
    """The failover record: its hosted zone (by id or by name) and its name."""

    zone_id: str | None = None
    zone_name: str | None = None
    record_name: str | None = None

    @field_validator("zone_id")
    @classmethod
    def _bare_id(cls, value: str | None) -> str | None:
        # the API answers "/hostedzone/Z123"; both spellings name the same zone
        return None if value is None else value.removeprefix("/hostedzone/")

    @field_validator("zone_name", "record_name")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return _fqdn(value)

    @model_validator(mode="after")
    def _one_zone(self) -> Route53Settings:
        if self.zone_id is not None and self.zone_name is not None:
            raise ValueError("give zone_id or zone_name, not both")
        return self


class BlastRadius(_Model):
    """How much of the stack one fault may take down."""

    max_tasks_percent: float = Field(default=50.0, gt=0, le=100)


def _guard_entry(value: str) -> str:
    """A guard alarm: a bare name, or ``arn:aws:cloudwatch:<region>:<account>:alarm:<name>``."""
    if not value.strip():
        raise ValueError("empty alarm name")
    if value.startswith("arn:"):
        parts = value.split(":", 6)
        if len(parts) != 7 or parts[2] != "cloudwatch" or parts[5] != "alarm" or not parts[6]:
            raise ValueError(f"'{value}' is not a cloudwatch alarm arn")
        _region_name(parts[3])
    return value


GuardAlarmName = Annotated[str, AfterValidator(_guard_entry)]


class StopConditionSettings(_Model):
    """What aborts a running drill (and reverts its faults)."""

    #: more guard alarms: names in the primary region, or alarm ARNs in any region
    guard_alarms: list[GuardAlarmName] = Field(default_factory=list)
    #: abort when the probes' availability falls below this percentage
    min_availability_percent: float | None = Field(default=None, ge=0, le=100)


_SUBNET = re.compile(r"subnet-[0-9a-f]+")
#: the longest an ``aws:network:disrupt-connectivity`` action may last (12 hours)
FIS_MAX_DISRUPTION_S = 12 * 3600.0


def _subnet_id(value: str) -> str:
    if not _SUBNET.fullmatch(value):
        raise ValueError(f"'{value}' is not a subnet id (like subnet-0abc123)")
    return value


SubnetId = Annotated[str, AfterValidator(_subnet_id)]


class FisSettings(_Model):
    """AWS Fault Injection Service: the role its experiments run as and how the region-down
    experiment disrupts the network (see docs/fis.md)."""

    #: the IAM role FIS assumes to run drdrill's experiments (required by fault_backend: fis
    #: and by ``drdrill fis export``)
    role_arn: str | None = None
    #: how long the region-down experiment cuts the primary's subnets off; drdrill stops the
    #: experiment (and so the disruption) when the drill ends, FIS ends it after this anyway
    disrupt_duration: Seconds = 1800.0
    #: ``all``: every packet in and out of the subnets; ``availability-zone``: traffic to the
    #: other zones of the VPC only
    disrupt_scope: Literal["all", "availability-zone"] = "all"
    #: more subnets to cut off in a region down, beside the ECS service's own (the database's)
    subnets: list[SubnetId] = Field(default_factory=list)
    #: how long an experiment may take to start its actions before the fault counts as failed
    start_timeout: PositiveSeconds = 120.0

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        return _arn(value, "iam")

    @field_validator("disrupt_duration")
    @classmethod
    def _duration(cls, value: float) -> float:
        # FIS takes whole seconds from one minute to 12 hours
        if not 60 <= value <= FIS_MAX_DISRUPTION_S or value != int(value):
            raise ValueError(f"{value:g} s is not a whole number of seconds from 1 min to 12 h")
        return value


PRIMARY_DEFAULTS: dict[str, Any] = {
    "region": "eu-west-1",
    "rds": {"instance_id": "visitor-analytics-db"},
    "lambda_function": "visitor-analytics-dr-automation",
    "alarms": {"health": "visitor-analytics-primary-health"},
}
DR_DEFAULTS: dict[str, Any] = {
    "region": "eu-central-1",
    "rds": {"instance_id": "visitor-analytics-db-replica"},
    "alarms": {"health": "visitor-analytics-dr-health"},
}


def _merge(defaults: Mapping[str, Any], given: object) -> object:
    """``given`` over ``defaults``, mapping by mapping (anything else is left to validation)."""
    if not isinstance(given, Mapping):
        return given
    merged: dict[str, Any] = dict(defaults)
    for key, value in given.items():
        default = defaults.get(key)
        merged[key] = _merge(default, value) if isinstance(default, Mapping) else value
    return merged


class GuardAlarm(_Model):
    """One guard alarm and the region it lives in."""

    region: str
    name: str


class AwsSettings(_Model):
    """The ``targets.aws`` section."""

    #: None: boto3's own choice (which honours AWS_ENDPOINT_URL); a moto or LocalStack url in CI
    endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    #: build the clients through localstack-client (LocalStack's edge port and test credentials:
    #: endpoint_url, else AWS_ENDPOINT_URL, else LOCALSTACK_HOST, else localhost:4566); unset:
    #: when AWS_ENDPOINT_URL or LOCALSTACK_HOST is set. Its token stays in LOCALSTACK_AUTH_TOKEN.
    localstack: bool | None = None
    #: a JSON file of ``terraform output -json``, or a command line whose first word is terraform
    terraform_outputs: str | None = None
    #: the team's runbook scripts (a drill's ``script`` trigger, the failback)
    scripts: ScriptsSettings = Field(default_factory=ScriptsSettings)
    #: how the public name and the load balancers' names are resolved
    dns: DnsSettings = Field(default_factory=DnsSettings)
    #: whether the stack behind the endpoint recovers by itself (replaces tasks, restarts
    #: and promotes databases): unset, it does on AWS and not on an emulator on loopback;
    #: ``true`` for an emulator with real dynamics (``drdrill sandbox``'s AWS API)
    real_recovery: bool | None = None
    #: the port the public name and the load balancers serve HTTP on (80 on AWS; an
    #: emulator's load balancers, the sandbox's among them, may listen elsewhere)
    http_port: int = Field(default=80, ge=1, le=65535)
    #: the app's write endpoint the RPO markers go to (unset: ``writer.url``, else
    #: ``http://<route53.record_name>/api.php?action=write``)
    write_url: str | None = None
    primary: RegionSettings = Field(default_factory=lambda: RegionSettings(**PRIMARY_DEFAULTS))
    dr: RegionSettings = Field(default_factory=lambda: RegionSettings(**DR_DEFAULTS))
    route53: Route53Settings = Field(default_factory=Route53Settings)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    stop_conditions: StopConditionSettings = Field(default_factory=StopConditionSettings)
    #: who injects the faults: drdrill through the service APIs (``api``), or AWS FIS
    #: experiments that drdrill generates from the same faults (``fis``)
    fault_backend: Literal["api", "fis"] = "api"
    fis: FisSettings = Field(default_factory=FisSettings)

    @model_validator(mode="before")
    @classmethod
    def _region_defaults(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            return data
        merged = dict(data)
        for key, defaults in (("primary", PRIMARY_DEFAULTS), ("dr", DR_DEFAULTS)):
            if key in merged:
                merged[key] = _merge(defaults, merged[key])
        return merged

    @field_validator("endpoint_url", "write_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' is not an http:// or https:// url")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        return _arn(value, "iam")

    @field_validator("terraform_outputs")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty terraform_outputs")
        return value

    @model_validator(mode="after")
    def _two_regions(self) -> AwsSettings:
        if self.primary.region == self.dr.region:
            raise ValueError(f"primary and dr are both in {self.primary.region}")
        return self

    @model_validator(mode="after")
    def _fis_role(self) -> AwsSettings:
        if self.fault_backend == "fis" and self.fis.role_arn is None:
            raise ValueError("fis.role_arn is required when fault_backend is fis")
        return self

    @property
    def regions(self) -> tuple[str, str]:
        """The primary region and the DR region."""
        return self.primary.region, self.dr.region

    def guard_alarms(self) -> tuple[GuardAlarm, ...]:
        """Every guard alarm with its region: each region's, then stop_conditions', deduplicated."""
        found: list[GuardAlarm] = []
        for region in (self.primary, self.dr):
            found.extend(
                GuardAlarm(region=region.region, name=name) for name in region.alarms.guards
            )
        for entry in self.stop_conditions.guard_alarms:
            if entry.startswith("arn:"):
                # arn:aws:cloudwatch:<region>:<account>:alarm:<name> (names may hold colons)
                parts = entry.split(":", 6)
                found.append(GuardAlarm(region=parts[3], name=parts[6]))
            else:
                found.append(GuardAlarm(region=self.primary.region, name=entry))
        return tuple(dict.fromkeys(found))

    def terraform_is_command(self) -> bool:
        """Whether terraform_outputs is a command line (its first word the ``terraform``
        program) rather than a file; ``terraform-outputs.json`` is a file."""
        if self.terraform_outputs is None:
            return False
        try:
            words = shlex.split(self.terraform_outputs)
        except ValueError:
            return False
        return bool(words) and Path(words[0]).name == TERRAFORM_COMMAND

    def clients(self, *, dry_run: bool = False) -> AwsClients:
        """The client factory these settings describe."""
        from drdrill.targets.aws.session import AwsClients

        return AwsClients(
            endpoint_url=self.endpoint_url,
            profile=self.profile,
            role_arn=self.role_arn,
            dry_run=dry_run,
            localstack=bool(self.localstack),
        )


def load_aws_settings(config: DrillConfig) -> AwsSettings:
    """The AWS settings of a stack config; one-line ConfigError naming ``file: targets.aws.<key>``.

    A terraform_outputs file is made absolute against the config file's folder.
    """
    try:
        settings = AwsSettings.model_validate(config.target_settings("aws"))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["targets", "aws", *(str(p) for p in first["loc"])])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "required"
        elif first["type"].endswith(("_type", "_parsing")):
            message = f"{message} (got {first['input']!r})"
        message = message.removeprefix("Value error, ")
        raise ConfigError(f"{config.path}: {key}", " ".join(message.split())) from None
    if settings.terraform_outputs is not None and not settings.terraform_is_command():
        path = config.resolve(Path(settings.terraform_outputs))
        settings = settings.model_copy(update={"terraform_outputs": str(path)})
    return with_localstack(settings, str(config.path), os.environ)


def with_localstack(settings: AwsSettings, path: str, environ: Mapping[str, str]) -> AwsSettings:
    """``settings`` on LocalStack when it says so, or says nothing and ``AWS_ENDPOINT_URL`` or
    ``LOCALSTACK_HOST`` is set in ``environ`` (the process's: localstack-client reads it too):
    ``localstack`` true and ``endpoint_url`` the edge port that localstack-client will call
    (so that the run, its report and its journal name it). Otherwise unchanged.

    ConfigError naming the key for what LocalStack cannot honour: a profile or a role
    (localstack-client signs with LocalStack's test credentials), an ``endpoint_url`` other than
    the one localstack-client would call (it takes ``AWS_ENDPOINT_URL`` first).
    """
    asked = settings.localstack
    if asked is None:
        asked = bool(environ.get("AWS_ENDPOINT_URL", "").strip()) or bool(
            environ.get("LOCALSTACK_HOST", "").strip()
        )
    if not asked:
        return settings
    # imported here: only a run on LocalStack needs it
    from localstack_client import config as localstack_config  # type: ignore[import-untyped]

    for key in ("profile", "role_arn"):
        if getattr(settings, key) is not None:
            raise ConfigError(
                f"{path}: targets.aws.{key}",
                "not used on localstack (localstack-client signs every call with LocalStack's "
                "test credentials): remove it, or set targets.aws.localstack: false",
            )
    given = settings.endpoint_url
    host = urlsplit(given).netloc if given else None
    try:
        endpoint = str(localstack_config.get_service_endpoint("sts", localstack_host=host))
    except RuntimeError as exc:
        # localstack-client's own parse of LOCALSTACK_HOST ("could not parse x into ...")
        raise ConfigError(f"{path}: LOCALSTACK_HOST", str(exc)) from None
    if given is not None and given.rstrip("/") != endpoint.rstrip("/"):
        raise ConfigError(
            f"{path}: targets.aws.endpoint_url",
            f"localstack-client would call {endpoint} instead (it takes AWS_ENDPOINT_URL, and "
            "USE_SSL for https): make them agree",
        )
    return settings.model_copy(update={"localstack": True, "endpoint_url": given or endpoint})
