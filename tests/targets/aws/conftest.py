"""A real moto server on loopback for the AWS adapters' tests (never real AWS)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from drdrill.sandbox.aws.provision import (
    ProvisionedStack,
    keep_tasks_running,
    provision_stack,
    set_tasks_transition,
    stack_settings,
)
from drdrill.targets.aws.session import AwsClients

PRIMARY = "eu-west-1"
DR = "eu-central-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A ThreadedMotoServer on 127.0.0.1 with fake credentials for the whole session."""
    server_mod = pytest.importorskip("moto.server")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": PRIMARY,
    }.items():
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str) -> AwsClients:
    """Clients against the moto server; their calls are logged."""
    return AwsClients(endpoint_url=moto_endpoint)


@pytest.fixture
def stack(moto_endpoint: str) -> Iterator[ProvisionedStack]:
    """The two-region stack provisioned in moto, its tasks kept running for the test."""
    before = keep_tasks_running(moto_endpoint)
    yield provision_stack(AwsClients(endpoint_url=moto_endpoint), stack_settings())
    set_tasks_transition(moto_endpoint, before)
