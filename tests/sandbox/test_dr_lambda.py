"""The DR function's code (``drdrill.sandbox.aws.dr_lambda``) on its own: what it refuses and
who it says invoked it. Its failover end to end runs against the sandbox's AWS API in
tests/sandbox/test_sandbox_aws.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

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


def test_the_runtime_runs_the_handler_in_a_process_of_its_own_and_reports_its_error() -> None:
    """``python -m drdrill.sandbox.aws.lambda_runtime``: the event on stdin, the handler's log
    and outcome as JSON lines on stdout; an incomplete environment is the function's error,
    before any call (no endpoint is reachable here: a call would fail differently)."""
    env = {"PATH": os.environ.get("PATH", ""), "DR_REGION": "eu-central-1"}
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-m", "drdrill.sandbox.aws.lambda_runtime"],
        input=json.dumps({"trigger": "manual"}),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    error = lines[-1]["error"]
    assert error["errorType"] == "FailoverFailed"
    assert error["errorMessage"].startswith("the function's environment lacks DB_REPLICA, CLUSTER")
