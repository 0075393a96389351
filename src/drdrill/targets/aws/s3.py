"""S3: a bucket's cross-region replication, where one object's replication stands, and the
marker objects the static assets drill writes, looks for and deletes.

Emulator limits: moto (5.2) stores a replication configuration but replicates nothing and
reports no ``ReplicationStatus`` on objects (so :func:`object_replication_status` is None
there); it also rewrites the rules it stores (a missing ``Priority`` becomes 1, a rule's
legacy ``Prefix`` becomes an empty ``Filter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws import cloudwatch
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


@dataclass(frozen=True)
class ObjectHead:
    """What HeadObject says of one object."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    #: ``PENDING``, ``COMPLETED`` (or ``COMPLETE``), ``FAILED`` on a source, ``REPLICA`` on a
    #: copy; None when no rule covers it (or the API does not say: moto)
    replication_status: str | None
    last_modified: datetime | None


#: HEAD has no body: a missing key comes back as a bare 404 (a 403 when the caller may not list
#: the bucket, which S3 then does not tell from a forbidden key)
_MISSING = ("404", "NoSuchKey")


def head_object(aws: AwsClients, region: str, bucket: str, key: str) -> ObjectHead | None:
    """The object as HeadObject gives it; None when the bucket has no such key."""
    try:
        response = aws.client("s3", region).head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = _code(exc)
        if code in _MISSING:
            return None
        if code in ("403", "AccessDenied"):
            raise DrillError(
                f"s3 object 's3://{bucket}/{key}': access denied (HeadObject needs s3:GetObject, "
                "and s3:ListBucket to tell a missing key from a forbidden one)"
            ) from exc
        raise DrillError(f"s3 object 's3://{bucket}/{key}': {exc}") from exc
    status = response.get("ReplicationStatus")
    version = response.get("VersionId")
    etag = response.get("ETag")
    modified = response.get("LastModified")
    return ObjectHead(
        bucket=bucket,
        key=key,
        version_id=str(version) if version else None,
        etag=str(etag) if etag else None,
        replication_status=str(status) if status else None,
        last_modified=modified if isinstance(modified, datetime) else None,
    )


def object_replication_status(aws: AwsClients, region: str, bucket: str, key: str) -> str | None:
    """The object's replication status: ``PENDING``, ``COMPLETED`` (or ``COMPLETE``),
    ``FAILED``, ``REPLICA`` (a copy); None when no rule covers it."""
    # a missing bucket answers HEAD with the same bare 404 as a missing key
    head = head_object(aws, region, bucket, key)
    if head is None:
        raise DrillError(f"s3 object 's3://{bucket}/{key}' not found")
    return head.replication_status


def put_object(
    aws: AwsClients,
    region: str,
    bucket: str,
    key: str,
    body: bytes,
    content_type: str = "application/json",
) -> str | None:
    """Write an object; its version id (None in an unversioned bucket, or in a dry run)."""
    try:
        response = aws.client("s3", region).put_object(
            Bucket=bucket, Key=key, Body=body, ContentType=content_type
        )
    except ClientError as exc:
        raise DrillError(f"s3 put 's3://{bucket}/{key}': {exc}") from exc
    version = response.get("VersionId")
    return str(version) if version else None


def _rule_prefix(rule: dict[str, Any]) -> str | None:
    """The key prefix a rule covers by itself; None when it selects objects by tag as well
    (objects the drill writes would need those tags)."""
    if "Filter" not in rule:
        return str(rule.get("Prefix", ""))  # the legacy form: a prefix beside the rule
    selection: dict[str, Any] = rule.get("Filter") or {}
    if "Tag" in selection:
        return None
    if "And" in selection:
        both: dict[str, Any] = selection["And"] or {}
        return None if both.get("Tags") else str(both.get("Prefix", ""))
    return str(selection.get("Prefix", ""))


def replicated_prefixes(aws: AwsClients, region: str, bucket: str, destination: str) -> list[str]:
    """The key prefixes an enabled rule of ``bucket`` replicates into ``destination`` by prefix
    alone, shortest first (``""``: the whole bucket); empty when there is none."""
    try:
        response = aws.client("s3", region).get_bucket_replication(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "ReplicationConfigurationNotFoundError":
            return []
        raise DrillError(f"s3 bucket '{bucket}' replication: {exc}") from exc
    rules: list[dict[str, Any]] = response.get("ReplicationConfiguration", {}).get("Rules", [])
    prefixes = {
        prefix
        for rule in rules
        if rule.get("Status") == "Enabled"
        and bucket_name(str(rule.get("Destination", {}).get("Bucket", ""))) == destination
        and (prefix := _rule_prefix(rule)) is not None
    }
    return sorted(prefixes, key=lambda p: (len(p), p))


def _versions(aws: AwsClients, region: str, bucket: str, prefix: str) -> list[dict[str, str]]:
    """Every version and delete marker under ``prefix``, as DeleteObjects takes them."""
    found: list[dict[str, str]] = []
    pages = aws.client("s3", region).get_paginator("list_object_versions")
    try:
        for page in pages.paginate(Bucket=bucket, Prefix=prefix):
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                entry = {"Key": str(item["Key"])}
                if item.get("VersionId"):
                    entry["VersionId"] = str(item["VersionId"])
                found.append(entry)
    except ClientError as exc:
        raise DrillError(f"s3 list 's3://{bucket}/{prefix}': {exc}") from exc
    return found


#: DeleteObjects takes at most this many keys a call
_DELETE_BATCH = 1000
#: listings a delete makes at most: objects that land while it deletes (a replica arriving) are
#: deleted by the next round
_DELETE_ROUNDS = 3


def delete_prefix(aws: AwsClients, region: str, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker of every object under ``prefix`` (a versioned
    bucket keeps a plain delete as one more version); how many went.

    Deleting a version by its id is not replicated, so the DR bucket's copies are deleted by
    a call of their own. An empty ``prefix`` is refused: this never empties a bucket.
    """
    if not prefix:
        raise DrillError(f"s3 bucket '{bucket}': refusing to delete without a key prefix")
    client = aws.client("s3", region)
    deleted = 0
    for _ in range(_DELETE_ROUNDS):
        found = _versions(aws, region, bucket, prefix)
        if not found:
            break
        for start in range(0, len(found), _DELETE_BATCH):
            batch = found[start : start + _DELETE_BATCH]
            try:
                response = client.delete_objects(
                    Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except ClientError as exc:
                raise DrillError(f"s3 delete under 's3://{bucket}/{prefix}': {exc}") from exc
            errors: list[dict[str, Any]] = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise DrillError(
                    f"s3 delete under 's3://{bucket}/{prefix}': {len(errors)} not deleted, "
                    f"first '{first.get('Key')}': {first.get('Code')} {first.get('Message')}"
                )
            deleted += len(batch)
    return deleted


def replication_latency(
    aws: AwsClients, region: str, source: str, start: datetime, end: datetime
) -> float | None:
    """S3's ``ReplicationLatency`` (AWS/S3, seconds) from ``source``, the largest in the minutes
    from ``start`` to ``end`` over its enabled rules; None when no rule has a datapoint there
    (replication metrics are off, or not yet published: CloudWatch gets them minutes late).
    ``region`` is the source bucket's."""
    config = replication(aws, region, source)
    if config is None:
        return None
    found: list[float] = []
    for rule in config.rules:
        if rule.status != "Enabled":
            continue
        dimensions = {
            "SourceBucket": source,
            "DestinationBucket": rule.destination_bucket,
            "RuleId": rule.id,
        }
        value = cloudwatch.maximum_between(
            aws, region, "AWS/S3", "ReplicationLatency", dimensions, start, end
        )
        if value is not None:
            found.append(value)
    return max(found) if found else None
