"""The client factory: what makes AWS unusable is one line, found once and remembered; clients
through localstack-client; all against loopback servers (a moto server, or a small HTTP server
answering as AWS or LocalStack do)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from drdrill.errors import DrillError
from drdrill.targets.aws.session import (
    CONNECT_TIMEOUT_S,
    MAX_ATTEMPTS,
    AwsClients,
    AwsUnavailable,
)


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials of no account (every endpoint here is on loopback): each test has its own,
    rather than those a moto fixture happened to set earlier in the session."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


LICENSE_MESSAGE = (
    "The API for service 'ecs' is either not included in your current license plan or has not "
    "yet been emulated by LocalStack. Please refer to "
    "https://docs.localstack.cloud/references/coverage for more details."
)


@dataclass
class Answers:
    """A loopback server's canned answer and the requests it got."""

    status: int
    content_type: str
    body: bytes
    requests: list[str] = field(default_factory=list)


def _serve(answers: Answers) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answers.requests.append(self.headers.get("X-Amz-Target") or self.path)
            self.send_response(answers.status)
            self.send_header("Content-Type", answers.content_type)
            self.send_header("Content-Length", str(len(answers.body)))
            self.end_headers()
            self.wfile.write(answers.body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def denying() -> Iterator[tuple[str, Answers]]:
    """STS answering as it does to expired credentials."""
    body = (
        b"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
        b"<Message>The security token included in the request is expired</Message>"
        b"</Error><RequestId>1</RequestId></ErrorResponse>"
    )
    answers = Answers(403, "text/xml", body)
    for url in _serve(answers):
        yield url, answers


@pytest.fixture
def unlicensed() -> Iterator[tuple[str, Answers]]:
    """LocalStack's edge port answering for a service outside its plan."""
    body = json.dumps({"__type": "InternalFailure", "message": LICENSE_MESSAGE}).encode()
    answers = Answers(501, "application/x-amz-json-1.1", body)
    for url in _serve(answers):
        yield url, answers


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # never ask an instance metadata service (no test reaches past loopback)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_clients_give_up_on_an_endpoint_in_seconds_not_minutes(moto_endpoint: str) -> None:
    client = AwsClients(endpoint_url=moto_endpoint).client("ecs", "eu-west-1")
    assert client.meta.config.connect_timeout == CONNECT_TIMEOUT_S <= 5
    assert client.meta.config.retries == {"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}


def test_an_unreachable_endpoint_is_one_line_and_later_calls_fail_at_once() -> None:
    url = _closed_port_url()
    aws = AwsClients(endpoint_url=url)
    with pytest.raises(AwsUnavailable) as first:
        aws.client("ecs", "eu-west-1").list_clusters()
    line = str(first.value)
    assert line == (
        f'aws endpoint unreachable: Could not connect to the endpoint URL: "{url}/" '
        "(ecs ListClusters in eu-west-1)"
    )
    # pytest shows it as its one line (a failure without a traceback); still a DrillError
    assert isinstance(first.value, pytest.fail.Exception) and not first.value.pytrace
    assert isinstance(first.value, DrillError)
    # another service and region on the same endpoint: the same line, and no call made
    logged = len(aws.log.calls)
    with pytest.raises(AwsUnavailable) as later:
        aws.client("rds", "eu-central-1").describe_db_instances()
    assert str(later.value) == line
    assert len(aws.log.calls) == logged
    assert aws.unavailable() == [line]


def test_no_credentials_is_one_line_for_the_whole_run(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_credentials(monkeypatch, tmp_path)
    aws = AwsClients(endpoint_url=moto_endpoint)
    with pytest.raises(AwsUnavailable) as first:
        aws.client("sts", "eu-west-1").get_caller_identity()
    assert str(first.value) == (
        "no usable aws credentials: Unable to locate credentials (give targets.aws.profile, "
        "or set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )
    # a client not made yet is not even made
    with pytest.raises(AwsUnavailable, match=r"^no usable aws credentials: "):
        aws.client("s3", "eu-central-1")


def test_a_missing_profile_names_the_key(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_credentials(monkeypatch, tmp_path)
    aws = AwsClients(endpoint_url=moto_endpoint, profile="dr-exercise")
    with pytest.raises(AwsUnavailable) as caught:
        aws.client("sts", "eu-west-1")
    assert str(caught.value) == (
        "targets.aws.profile: The config profile (dr-exercise) could not be found "
        "(see ~/.aws/config)"
    )


def test_refused_credentials_are_remembered_for_their_region(
    denying: tuple[str, Answers],
) -> None:
    url, answers = denying
    aws = AwsClients(endpoint_url=url)
    with pytest.raises(AwsUnavailable) as first:
        aws.client("sts", "eu-west-1").get_caller_identity()
    assert str(first.value) == (
        "aws refused the credentials (sts GetCallerIdentity in eu-west-1): ExpiredToken: "
        "The security token included in the request is expired"
    )
    asked = len(answers.requests)
    with pytest.raises(AwsUnavailable):
        aws.client("cloudwatch", "eu-west-1").describe_alarms()
    assert len(answers.requests) == asked  # not asked again in that region
    # an opt-in region may refuse what the others take: another region is asked
    with pytest.raises(AwsUnavailable, match=r"\(sts GetCallerIdentity in eu-central-1\)"):
        aws.client("sts", "eu-central-1").get_caller_identity()
    assert len(answers.requests) == asked + 1


def test_a_service_outside_localstacks_plan_names_the_token(
    unlicensed: tuple[str, Answers], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, answers = unlicensed
    monkeypatch.delenv("LOCALSTACK_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws = AwsClients(endpoint_url=url, localstack=True)
    with pytest.raises(AwsUnavailable) as first:
        aws.client("ecs", "eu-west-1").describe_services(cluster="c", services=["s"])
    assert str(first.value) == (
        "localstack does not serve ecs (ecs DescribeServices in eu-west-1): "
        "LOCALSTACK_AUTH_TOKEN is not set: LocalStack emulates ecs in its paid plans only: "
        + LICENSE_MESSAGE
    )
    asked = len(answers.requests)
    with pytest.raises(AwsUnavailable):
        aws.client("ecs", "eu-central-1").list_clusters()
    assert len(answers.requests) == asked  # the service is not asked again this run


def test_with_a_token_the_plan_is_what_is_missing(
    unlicensed: tuple[str, Answers], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = unlicensed
    token = "ls-not-a-real-token-1234"
    monkeypatch.setenv("LOCALSTACK_AUTH_TOKEN", token)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws = AwsClients(endpoint_url=url, localstack=True)
    with pytest.raises(AwsUnavailable) as caught:
        aws.client("ecs", "eu-west-1").list_clusters()
    message = str(caught.value)
    assert message.startswith(
        "localstack does not serve ecs (ecs ListClusters in eu-west-1): the plan of the "
        "LOCALSTACK_AUTH_TOKEN LocalStack runs with does not include it"
    )
    assert token not in message and token not in repr(aws)


def test_localstack_clients_sign_with_localstacks_credentials(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No AWS credentials anywhere: plain clients cannot sign, localstack-client's can."""
    _no_credentials(monkeypatch, tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(AwsUnavailable, match="Unable to locate credentials"):
        AwsClients(endpoint_url=moto_endpoint).client("sts", "eu-west-1").get_caller_identity()
    aws = AwsClients(endpoint_url=moto_endpoint, localstack=True)
    for region in ("eu-west-1", "eu-central-1"):
        client = aws.client("sts", region)
        assert client.meta.region_name == region  # a session a region: its clients' region
        assert client.meta.endpoint_url == moto_endpoint
    assert aws.account_id("eu-west-1") == "123456789012"
    assert [c.operation for c in aws.log.calls] == ["GetCallerIdentity"]
    aws.account_id("eu-west-1")  # once a run
    assert len(aws.log.calls) == 1


def test_a_role_that_cannot_be_assumed_is_one_line_for_the_whole_run(moto_endpoint: str) -> None:
    url = _closed_port_url()
    role = "arn:aws:iam::123456789012:role/drdrill"
    aws = AwsClients(endpoint_url=url, role_arn=role)
    with pytest.raises(AwsUnavailable) as first:
        aws.client("ecs", "eu-west-1")
    assert str(first.value).startswith(
        f"cannot assume targets.aws.role_arn {role}: aws endpoint unreachable: "
        f'Could not connect to the endpoint URL: "{url}/"'
    )
    with pytest.raises(AwsUnavailable) as later:
        aws.client("rds", "eu-central-1")
    assert str(later.value) == str(first.value)
