"""STS adapter against the moto server (its default account is 123456789012)."""

from __future__ import annotations

import socket

import pytest

from drdrill.errors import DrillError
from drdrill.targets.aws import sts
from drdrill.targets.aws.session import AwsClients


def test_account_id_is_motos_default_account(aws: AwsClients) -> None:
    assert sts.account_id(aws) == "123456789012"
    assert [(c.service, c.operation, c.sent) for c in aws.log.calls] == [
        ("sts", "GetCallerIdentity", True)
    ]


def test_account_id_is_asked_even_in_a_dry_run(moto_endpoint: str) -> None:
    # a read: the allow-list check must run before a dry run prints its plan
    dry = AwsClients(endpoint_url=moto_endpoint, dry_run=True)
    assert sts.account_id(dry, "eu-central-1") == "123456789012"
    assert [c.sent for c in dry.log.calls] == [True]


def test_no_endpoint_is_an_error(moto_endpoint: str) -> None:
    # moto_endpoint: for its fake credentials; the port below was free a moment ago
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = AwsClients(endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.raises(DrillError, match="aws endpoint unreachable: Could not connect"):
        sts.account_id(gone)
