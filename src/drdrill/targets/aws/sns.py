"""SNS: who an alarm's topic notifies (a readiness check: the on-call team is subscribed)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients

# What SNS puts in place of a subscription's ARN while it does not deliver yet.
_NOT_DELIVERING = ("PendingConfirmation", "Deleted")


def subscriptions(aws: AwsClients, region: str, topic_arn: str) -> list[str]:
    """The endpoints the topic delivers to (e-mail addresses, URLs, ARNs), in SNS's order.

    A subscription still waiting for its confirmation delivers nothing and is left out.
    """
    paginator = aws.client("sns", region).get_paginator("list_subscriptions_by_topic")
    endpoints: list[str] = []
    try:
        for page in paginator.paginate(TopicArn=topic_arn):
            subs: list[dict[str, Any]] = page.get("Subscriptions", [])
            for sub in subs:
                # match the topic ourselves: emulators may ignore the filter
                if sub.get("TopicArn", topic_arn) != topic_arn:
                    continue
                if sub.get("SubscriptionArn") in _NOT_DELIVERING:
                    continue
                endpoints.append(str(sub["Endpoint"]))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NotFound":
            raise DrillError(f"sns topic '{topic_arn}' not found") from exc
        raise DrillError(f"sns topic '{topic_arn}': {exc}") from exc
    return endpoints
