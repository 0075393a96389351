"""S3: a bucket's cross-region replication and where one object's replication stands.

Emulator limits: moto (5.2) stores a replication configuration but replicates nothing and
reports no ``ReplicationStatus`` on objects (so :func:`object_replication_status` is None
there); it also rewrites the rules it stores (a missing ``Priority`` becomes 1, a rule's
legacy ``Prefix`` becomes an empty ``Filter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients

_BUCKET_ARN = "arn:aws:s3:::"


@dataclass(frozen=True)
class ReplicationRule:
    """One replication rule: where it copies to, and whether it is on."""

    id: str
    #: ``Enabled`` or ``Disabled``
    status: str
    #: the destination bucket's name (not its ARN)
    destination_bucket: str


@dataclass(frozen=True)
class Replication:
    """A bucket's replication configuration."""

    #: the IAM role S3 replicates as
    role: str
    rules: tuple[ReplicationRule, ...]

    def enabled_destinations(self) -> list[str]:
        """The buckets an enabled rule copies to."""
        return sorted({r.destination_bucket for r in self.rules if r.status == "Enabled"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def bucket_name(bucket: str) -> str:
    """A bucket's name from its name or its ARN (``arn:aws:s3:::name``)."""
    return bucket.removeprefix(_BUCKET_ARN)


def replication(aws: AwsClients, region: str, bucket: str) -> Replication | None:
    """The bucket's replication configuration; None when it has none."""
    try:
        response = aws.client("s3", region).get_bucket_replication(Bucket=bucket)
    except ClientError as exc:
        code = _code(exc)
        if code == "ReplicationConfigurationNotFoundError":
            return None
        if code == "NoSuchBucket":
            raise DrillError(f"s3 bucket '{bucket}' not found") from exc
        raise DrillError(f"s3 bucket '{bucket}' replication: {exc}") from exc
    config: dict[str, Any] = response.get("ReplicationConfiguration", {})
    rules = tuple(
        ReplicationRule(
            id=str(rule.get("ID", "")),
            status=str(rule.get("Status", "")),
            destination_bucket=bucket_name(str(rule.get("Destination", {}).get("Bucket", ""))),
        )
        for rule in config.get("Rules", [])
    )
    return Replication(role=str(config.get("Role", "")), rules=rules)


def versioning(aws: AwsClients, region: str, bucket: str) -> str | None:
    """The bucket's versioning: ``Enabled``, ``Suspended``, or None when never turned on
    (replication needs it ``Enabled`` on both sides)."""
    try:
        response = aws.client("s3", region).get_bucket_versioning(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "NoSuchBucket":
            raise DrillError(f"s3 bucket '{bucket}' not found") from exc
        raise DrillError(f"s3 bucket '{bucket}' versioning: {exc}") from exc
    status = response.get("Status")
    return str(status) if status else None


def object_replication_status(aws: AwsClients, region: str, bucket: str, key: str) -> str | None:
    """The object's replication status: ``PENDING``, ``COMPLETED`` (or ``COMPLETE``),
    ``FAILED``, ``REPLICA`` (a copy); None when no rule covers it."""
    try:
        response = aws.client("s3", region).head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        # HEAD has no body: a missing bucket or key both come back as a bare 404
        if _code(exc) in ("404", "NoSuchKey", "NoSuchBucket"):
            raise DrillError(f"s3 object 's3://{bucket}/{key}' not found") from exc
        raise DrillError(f"s3 object 's3://{bucket}/{key}': {exc}") from exc
    status = response.get("ReplicationStatus")
    return str(status) if status else None
