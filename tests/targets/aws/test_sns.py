"""SNS adapter against the moto server: the alarm topic's subscribers.

moto confirms every subscription at once (it never answers ``PendingConfirmation``), so the
leaving-out of unconfirmed subscriptions is not exercised here.
"""

from __future__ import annotations

import uuid

import pytest

from drdrill.errors import DrillError
from drdrill.targets.aws import sns
from drdrill.targets.aws.session import AwsClients

PRIMARY = "eu-west-1"
DR = "eu-central-1"


def _topic(aws: AwsClients, region: str = PRIMARY) -> str:
    name = f"visitor-analytics-dr-alerts-{uuid.uuid4().hex[:8]}"
    return str(aws.client("sns", region).create_topic(Name=name)["TopicArn"])


def test_subscriptions_lists_the_topic_endpoints_only(aws: AwsClients) -> None:
    topic = _topic(aws)
    other = _topic(aws)
    client = aws.client("sns", PRIMARY)
    client.subscribe(TopicArn=topic, Protocol="email", Endpoint="oncall@example.test")
    client.subscribe(TopicArn=topic, Protocol="https", Endpoint="https://hooks.example.test/dr")
    client.subscribe(TopicArn=other, Protocol="email", Endpoint="someone-else@example.test")
    assert sns.subscriptions(aws, PRIMARY, topic) == [
        "oncall@example.test",
        "https://hooks.example.test/dr",
    ]
    assert sns.subscriptions(aws, PRIMARY, other) == ["someone-else@example.test"]


def test_a_topic_without_subscribers_has_none(aws: AwsClients) -> None:
    assert sns.subscriptions(aws, DR, _topic(aws, DR)) == []


def test_an_unsubscribed_endpoint_is_gone(aws: AwsClients) -> None:
    topic = _topic(aws)
    client = aws.client("sns", PRIMARY)
    arn = client.subscribe(TopicArn=topic, Protocol="email", Endpoint="old@example.test")[
        "SubscriptionArn"
    ]
    client.subscribe(TopicArn=topic, Protocol="email", Endpoint="new@example.test")
    client.unsubscribe(SubscriptionArn=arn)
    assert sns.subscriptions(aws, PRIMARY, topic) == ["new@example.test"]


def test_an_unknown_topic_is_an_error(aws: AwsClients) -> None:
    missing = f"arn:aws:sns:{PRIMARY}:123456789012:no-such-topic"
    with pytest.raises(DrillError, match=f"sns topic '{missing}' not found"):
        sns.subscriptions(aws, PRIMARY, missing)


def test_a_topic_is_regional(aws: AwsClients) -> None:
    topic = _topic(aws, PRIMARY)
    with pytest.raises(DrillError, match="not found"):
        sns.subscriptions(aws, DR, topic)
