"""The DR function's code (``drdrill.sandbox.aws.dr_lambda``) on its own: what it refuses and
who it says invoked it. Its failover end to end runs against the sandbox's AWS API in
tests/sandbox/test_sandbox_aws.py."""

from __future__ import annotations

import logging

import pytest

from drdrill.sandbox.aws.dr_lambda import REQUIRED, FailoverFailed, failover, trigger_of


class _NoCalls:
    """A session whose clients must never be used (the function refuses before any call)."""

    def client(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the function called AWS with an incomplete environment")


def test_an_incomplete_environment_is_refused_naming_what_lacks() -> None:
    env = {key: "x" for key in REQUIRED if key not in ("HOSTED_ZONE_ID", "DR_DESIRED")}
    with pytest.raises(FailoverFailed) as caught:
        failover({}, env, _NoCalls(), logging.getLogger("test"))
    assert str(caught.value) == "the function's environment lacks DR_DESIRED, HOSTED_ZONE_ID"


@pytest.mark.parametrize(
    ("event", "trigger"),
    [
        ({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{}"}}]}, "alarm"),
        ({"trigger": "manual", "reason": "disaster_recovery"}, "manual"),
        ({}, "manual"),
        ({"Records": "not a list", "trigger": "lambda"}, "lambda"),
    ],
)
def test_the_trigger_is_the_alarm_for_an_sns_notification_else_the_payloads(
    event: dict[str, object], trigger: str
) -> None:
    assert trigger_of(event) == trigger
