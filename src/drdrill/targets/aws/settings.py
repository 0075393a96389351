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

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from drdrill.config import DrillConfig
from drdrill.errors import ConfigError
from drdrill.targets.aws.session import AwsClients

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:.+")
#: a terraform_outputs value whose first word is this program is a command line, else a file
TERRAFORM_COMMAND = "terraform"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    #: a JSON file of ``terraform output -json``, or a command line whose first word is terraform
    terraform_outputs: str | None = None
    primary: RegionSettings = Field(default_factory=lambda: RegionSettings(**PRIMARY_DEFAULTS))
    dr: RegionSettings = Field(default_factory=lambda: RegionSettings(**DR_DEFAULTS))
    route53: Route53Settings = Field(default_factory=Route53Settings)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    stop_conditions: StopConditionSettings = Field(default_factory=StopConditionSettings)

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

    @field_validator("endpoint_url")
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
        return AwsClients(
            endpoint_url=self.endpoint_url,
            profile=self.profile,
            role_arn=self.role_arn,
            dry_run=dry_run,
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
    return settings
