"""S3 adapter against the moto server: a versioned bucket in each region, the primary one
replicating to the DR one.

moto stores the replication configuration but copies nothing and puts no ``ReplicationStatus``
on objects: ``object_replication_status`` is None there (the PENDING/COMPLETED path runs only
on AWS). It also rewrites stored rules (a missing Priority becomes 1, a legacy Prefix an
empty Filter), which the tests do not depend on.
"""

from __future__ import annotations

import uuid

import pytest

from drdrill.errors import DrillError
from drdrill.targets.aws import s3
from drdrill.targets.aws.s3 import Replication, ReplicationRule
from drdrill.targets.aws.session import AwsClients

PRIMARY = "eu-west-1"
DR = "eu-central-1"
ROLE = "arn:aws:iam::123456789012:role/visitor-analytics-s3-replication"


def _bucket(aws: AwsClients, region: str, *, versioned: bool = True) -> str:
    name = f"visitor-analytics-{region}-{uuid.uuid4().hex[:8]}"
    client = aws.client("s3", region)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def replicated(aws: AwsClients) -> tuple[str, str]:
    """(primary bucket, dr bucket): an enabled rule to the DR bucket, a disabled one too."""
    source, target = _bucket(aws, PRIMARY), _bucket(aws, DR)
    aws.client("s3", PRIMARY).put_bucket_replication(
        Bucket=source,
        ReplicationConfiguration={
            "Role": ROLE,
            "Rules": [
                {
                    "ID": "everything-to-dr",
                    "Status": "Enabled",
                    "Priority": 2,
                    "Filter": {"Prefix": ""},
                    "DeleteMarkerReplication": {"Status": "Enabled"},
                    "Destination": {"Bucket": f"arn:aws:s3:::{target}"},
                },
                {
                    "ID": "exports-paused",
                    "Status": "Disabled",
                    "Priority": 1,
                    "Filter": {"Prefix": "exports/"},
                    "DeleteMarkerReplication": {"Status": "Disabled"},
                    "Destination": {
                        "Bucket": f"arn:aws:s3:::{target}",
                        "StorageClass": "STANDARD_IA",
                    },
                },
            ],
        },
    )
    return source, target


def test_replication_reads_role_and_rules(aws: AwsClients, replicated: tuple[str, str]) -> None:
    source, target = replicated
    config = s3.replication(aws, PRIMARY, source)
    assert config == Replication(
        role=ROLE,
        rules=(
            ReplicationRule("everything-to-dr", "Enabled", target),
            ReplicationRule("exports-paused", "Disabled", target),
        ),
    )
    assert config.enabled_destinations() == [target]


def test_a_bucket_without_replication_has_none(
    aws: AwsClients, replicated: tuple[str, str]
) -> None:
    _, target = replicated
    assert s3.replication(aws, DR, target) is None


def test_both_buckets_are_versioned(aws: AwsClients, replicated: tuple[str, str]) -> None:
    source, target = replicated
    assert (s3.versioning(aws, PRIMARY, source), s3.versioning(aws, DR, target)) == (
        "Enabled",
        "Enabled",
    )
    assert s3.versioning(aws, DR, _bucket(aws, DR, versioned=False)) is None
    aws.client("s3", PRIMARY).put_bucket_versioning(
        Bucket=source, VersioningConfiguration={"Status": "Suspended"}
    )
    assert s3.versioning(aws, PRIMARY, source) == "Suspended"


def test_an_unknown_bucket_is_an_error(aws: AwsClients) -> None:
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    with pytest.raises(DrillError, match=f"s3 bucket '{missing}' not found"):
        s3.replication(aws, PRIMARY, missing)
    with pytest.raises(DrillError, match=f"s3 bucket '{missing}' not found"):
        s3.versioning(aws, PRIMARY, missing)


def test_object_replication_status_on_moto_is_none(
    aws: AwsClients, replicated: tuple[str, str]
) -> None:
    source, target = replicated
    client = aws.client("s3", PRIMARY)
    client.put_object(Bucket=source, Key="marker/0001.json", Body=b'{"id": 1}')
    # moto neither sets ReplicationStatus nor copies the object to the DR bucket
    assert s3.object_replication_status(aws, PRIMARY, source, "marker/0001.json") is None
    listed = aws.client("s3", DR).list_objects_v2(Bucket=target)
    assert listed.get("KeyCount") == 0


def test_object_replication_status_of_a_missing_object_is_an_error(
    aws: AwsClients, replicated: tuple[str, str]
) -> None:
    source, _ = replicated
    with pytest.raises(DrillError, match=f"s3 object 's3://{source}/nope' not found"):
        s3.object_replication_status(aws, PRIMARY, source, "nope")


def test_bucket_name_strips_the_arn() -> None:
    assert s3.bucket_name("arn:aws:s3:::dr-bucket") == "dr-bucket"
    assert s3.bucket_name("dr-bucket") == "dr-bucket"
