"""Lambda: invoke the DR automation function (the runbook's option 3) and read its answer.

On moto the function's code runs only in Docker. Without a Docker engine, moto (5.2) answers
an invoke with ``FunctionError: Handled`` and a plain-text payload ``error running docker:
...``; with its simple backend (``{"lambda": {"use_docker": false}}``) it answers the request
payload back, or a queued result, and never a function error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients

# Longest part of a function's error message worth a one-line error.
_MAX_MESSAGE = 500


def error_message(raw: bytes) -> str:
    """The message of a function error payload: ``errorType: errorMessage`` from the JSON
    Lambda sends for an exception, else the payload's text as it is."""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "errorMessage" in data:
        kind = data.get("errorType")
        message = str(data["errorMessage"])
        text = f"{kind}: {message}" if kind else message
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    return text


@dataclass(frozen=True)
class Invocation:
    """One synchronous invocation we made: when it was sent and answered (our wall clock), the
    request id Lambda gave it (its log's ``START RequestId``), and its answer or error."""

    function: str
    request_id: str | None
    #: when the request left (the invocation cannot have started before)
    utc: datetime
    #: when the answer came back
    answered_utc: datetime
    answer: dict[str, Any] | None
    #: the function's error (``FunctionError``: its message), None when it answered
    error: str | None = None

    @property
    def resolution_s(self) -> float:
        """Where in the round trip the invocation started is not known: the whole of it."""
        return (self.answered_utc - self.utc).total_seconds()


def invoke(aws: AwsClients, region: str, function: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Invoke ``function`` synchronously with ``payload``; its decoded JSON answer.

    A function error (an exception in the function, a timeout) raises :class:`DrillError`
    with the function's message. A function that returns nothing (``null``) gives ``{}``;
    an answer that is not a JSON object is an error. In a dry run nothing is invoked and
    the answer is ``{}``.
    """
    done = invoke_function(aws, region, function, payload)
    if done.error is not None:
        raise DrillError(done.error)
    return done.answer or {}


def invoke_function(
    aws: AwsClients, region: str, function: str, payload: dict[str, Any]
) -> Invocation:
    """Invoke ``function`` synchronously with ``payload``: the :class:`Invocation`, with the
    function's error in it rather than raised (it was invoked all the same). A call Lambda
    refused (no such function, no permission) raises :class:`DrillError`, as does an answer
    that is not a JSON object."""
    sent = datetime.now(UTC)
    try:
        response = aws.client("lambda", region).invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode("utf-8"),
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise DrillError(f"lambda function '{function}' not found in {region}") from exc
        raise DrillError(f"lambda function '{function}' in {region}: {exc}") from exc
    stream = response.get("Payload")
    raw: bytes = stream.read() if stream is not None else b""
    answered = datetime.now(UTC)
    request_id = response.get("ResponseMetadata", {}).get("RequestId")

    def done(answer: dict[str, Any] | None, error: str | None = None) -> Invocation:
        return Invocation(function, request_id, sent, answered, answer, error)

    if response.get("FunctionError"):
        return done(
            None,
            f"lambda function '{function}' failed ({response['FunctionError']}): "
            f"{error_message(raw)}",
        )
    if not raw.strip():
        return done({})
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise DrillError(
            f"lambda function '{function}' answered no json: {error_message(raw)}"
        ) from exc
    if data is None:
        return done({})
    if not isinstance(data, dict):
        raise DrillError(
            f"lambda function '{function}' answered a json {type(data).__name__}, not an object"
        )
    return done(data)
