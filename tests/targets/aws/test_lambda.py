"""Lambda adapter against the moto server, which runs a function's code only in Docker.

There is no Docker engine here, and what moto answers then is what is tested:
- moto's default backend answers an invoke ``StatusCode 200, FunctionError "Handled"`` and a
  plain-text payload ``error running docker: ...``: the function-error path;
- moto's simple backend (switched on through the server's ``/moto-api/config``; restored after)
  runs no code: it answers the request payload back, or the next result queued through
  ``/moto-api/static/lambda-simple/response``: the answer-decoding path.
No engine runs the DR function's own code, so its real answers (and a JSON error payload with
``errorType``/``errorMessage``) are not produced by moto; :func:`error_message` is tested on
that documented shape directly.
"""

from __future__ import annotations

import importlib
import io
import json
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from drdrill.errors import DrillError
from drdrill.targets.aws import lambda_
from drdrill.targets.aws.session import AwsClients

PRIMARY = "eu-west-1"

_HANDLER = """
def handler(event, context):
    if event.get("trigger") == "explode":
        raise RuntimeError("replica visitor-analytics-db-dr not found")
    return {"status": "failover_started", "trigger": event.get("trigger")}
"""


def _moto_api(endpoint: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


def _docker_engine_reachable() -> bool:
    try:
        # the docker library moto itself uses (no type stubs: imported by name)
        docker: Any = importlib.import_module("docker")
        docker.from_env(timeout=2).ping()
    except Exception:  # no library, no socket, no permission: no engine for moto either
        return False
    return True


def _function(aws: AwsClients) -> str:
    """A fresh python function named like the runbook's DR automation."""
    suffix = uuid.uuid4().hex[:8]
    role = aws.client("iam", "us-east-1").create_role(
        RoleName=f"dr-automation-{suffix}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("lambda_function.py", _HANDLER)
    name = f"visitor-analytics-dr-automation-{suffix}"
    aws.client("lambda", PRIMARY).create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="lambda_function.handler",
        Code={"ZipFile": code.getvalue()},
        Timeout=60,
    )
    return name


@pytest.fixture
def simple_lambda(moto_endpoint: str) -> Iterator[str]:
    """moto's Lambda backend without Docker for one test; the server's config restored after
    (the server is shared by the session)."""
    before = _moto_api(moto_endpoint, "config", {})
    _moto_api(moto_endpoint, "config", {"lambda": {"use_docker": False}})
    try:
        yield moto_endpoint
    finally:
        _moto_api(moto_endpoint, "config", {"lambda": before["lambda"]})


def test_invoke_returns_the_decoded_answer(aws: AwsClients, simple_lambda: str) -> None:
    name = _function(aws)
    answer = {"status": "failover_started", "steps": ["promote", "scale", "dns"], "n": 3}
    _moto_api(
        simple_lambda,
        "static/lambda-simple/response",
        {"results": [json.dumps(answer)], "region": PRIMARY},
    )
    assert lambda_.invoke(aws, PRIMARY, name, {"trigger": "manual"}) == answer
    sent = [c.params for c in aws.log.calls if c.operation == "Invoke"]
    assert len(sent) == 1
    assert sent[0]["FunctionName"] == name
    assert json.loads(sent[0]["Payload"]) == {"trigger": "manual"}


def test_invoke_sends_the_payload_as_json(aws: AwsClients, simple_lambda: str) -> None:
    name = _function(aws)
    payload = {"trigger": "manual", "reason": "disaster_recovery", "dry": False, "n": [1, 2]}
    # with nothing queued the simple backend answers the request payload back
    assert lambda_.invoke(aws, PRIMARY, name, payload) == payload


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("null", {}), ("", {}), ('"started"', "a json str, not an object"), ("OK", "no json: OK")],
)
def test_invoke_answers_that_are_not_objects(
    aws: AwsClients, simple_lambda: str, answer: str, expected: dict[str, Any] | str
) -> None:
    name = _function(aws)
    if answer:
        _moto_api(
            simple_lambda,
            "static/lambda-simple/response",
            {"results": [answer], "region": PRIMARY},
        )
        request: dict[str, Any] = {"trigger": "manual"}
    else:
        request = {}  # "{}" is sent; the simple backend answers it back: an empty object
    if isinstance(expected, dict):
        assert lambda_.invoke(aws, PRIMARY, name, request) == expected
    else:
        with pytest.raises(DrillError, match=f"lambda function '{name}' answered {expected}"):
            lambda_.invoke(aws, PRIMARY, name, request)


def test_a_function_error_raises_with_its_message(aws: AwsClients) -> None:
    if _docker_engine_reachable():
        pytest.skip("a docker engine is reachable: moto would run the function in a container")
    name = _function(aws)
    with pytest.raises(DrillError) as caught:
        lambda_.invoke(aws, PRIMARY, name, {"trigger": "explode"})
    # moto without Docker: FunctionError "Handled", payload "error running docker: ..."
    assert str(caught.value).startswith(
        f"lambda function '{name}' failed (Handled): error running docker:"
    )


def test_an_unknown_function_is_an_error(aws: AwsClients) -> None:
    with pytest.raises(
        DrillError, match=f"lambda function 'no-such-function' not found in {PRIMARY}"
    ):
        lambda_.invoke(aws, PRIMARY, "no-such-function", {})


def test_invoke_in_a_dry_run_is_not_sent(moto_endpoint: str) -> None:
    dry = AwsClients(endpoint_url=moto_endpoint, dry_run=True)
    # the function need not exist: nothing reaches the server
    assert lambda_.invoke(dry, PRIMARY, "visitor-analytics-dr-automation", {"x": 1}) == {}
    assert [(c.operation, c.sent) for c in dry.log.calls] == [("Invoke", False)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # what Lambda sends for an unhandled exception in a python function
        (
            b'{"errorMessage": "replica not found", "errorType": "RuntimeError", '
            b'"requestId": "r-1", "stackTrace": ["  File \\"/var/task/f.py\\", line 3"]}',
            "RuntimeError: replica not found",
        ),
        # a timeout: no errorType
        (
            b'{"errorMessage": "2026-03-01T09:00:00.000Z r-1 Task timed out after 60.06 seconds"}',
            "2026-03-01T09:00:00.000Z r-1 Task timed out after 60.06 seconds",
        ),
        (b"error running docker: no socket\n", "error running docker: no socket"),
        (b"x" * 600, "x" * 500 + "..."),
    ],
)
def test_error_message(raw: bytes, expected: str) -> None:
    assert lambda_.error_message(raw) == expected
