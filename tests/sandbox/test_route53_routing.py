"""Route53's failover routing in the sandbox (``targets.sandbox.route53_routing``; block 19).

A real ``drdrill sandbox up`` with the AWS API and the routing on: the record's answers follow
the health checks' statuses, as a real checker requesting each load balancer finds them, with no
record change. Every call is boto3 against the endpoint; every answer is a real DNS query to
the sandbox's DNS server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import dns.message
import dns.query
import dns.rdatatype
import pytest
from tests.sandbox.sandbox_project import ROOT, SANDBOX_MARKS, short_folder, write_config

pytestmark = SANDBOX_MARKS

BLOCK = 19
CLUSTER = SERVICE = "visitor-analytics"


def _drdrill(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drdrill.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[dict[str, Any]]:
    with short_folder("drdrill-r53-") as folder:
        config = write_config(
            folder, block=BLOCK, sandbox_extra="aws_api: true\n    route53_routing: true"
        )
        up = _drdrill("sandbox", "up", "--config", str(config))
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            answer = _drdrill("sandbox", "status", "--json", "--config", str(config))
            yield {"config": config, "status": json.loads(answer.stdout)}
        finally:
            _drdrill("sandbox", "down", "--config", str(config))


def _client(status: dict[str, Any], service: str, region: str) -> Any:
    aws = status["aws"]
    return boto3.Session(
        aws_access_key_id=aws["env"]["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws["env"]["AWS_SECRET_ACCESS_KEY"],
    ).client(service, region_name=region, endpoint_url=aws["endpoint_url"])


def _resolve(status: dict[str, Any]) -> str:
    """The record's A answer, asked of the sandbox's DNS server."""
    host, port = status["dns"]["address"].rsplit(":", 1)
    name = status["aws"]["target"]["route53"]["record_name"]
    query = dns.message.make_query(name, dns.rdatatype.A)
    reply = dns.query.udp(query, host, port=int(port), timeout=2.0)
    return str(reply.answer[0][0].address)


def _until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def _routed(status: dict[str, Any]) -> list[dict[str, Any]]:
    truth = Path(status["run_dir"]) / "truth.jsonl"
    events = [json.loads(line) for line in truth.read_text().splitlines()]
    return [e for e in events if e["event"] == "route53_routed"]


def test_the_record_answers_dr_while_the_primarys_health_check_fails(
    sandbox: dict[str, Any],
) -> None:
    """With DR running a task (its check healthy), the primary's service scaled to nothing: its
    load balancer answers 503, the primary's health check fails (three results in a row) and
    the record answers DR's load balancer, with no record change; scaled back, it answers the
    primary again. Inverting the primary's check sends it to DR too, as the AWS target's
    region-down fault means it to. With DR in pilot light (no task: its check fails too) the
    record answers the primary whatever its check says, as Route53 does."""
    status = sandbox["status"]
    primary_ip = status["regions"]["primary"]["alb"]["address"].split(":")[0]
    dr_ip = status["regions"]["dr"]["alb"]["address"].split(":")[0]
    assert _resolve(status) == primary_ip
    primary = _client(status, "ecs", "eu-west-1")
    dr = _client(status, "ecs", "eu-central-1")
    route53 = _client(status, "route53", "us-east-1")
    zone = route53.list_hosted_zones_by_name(
        DNSName=status["aws"]["target"]["route53"]["record_name"].split(".", 1)[1]
    )["HostedZones"][0]["Id"]
    sets = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    check = next(r["HealthCheckId"] for r in sets if r.get("Failover") == "PRIMARY")

    # pilot light: both checks unhealthy, the record answers the PRIMARY
    route53.update_health_check(HealthCheckId=check, Inverted=True)
    try:
        time.sleep(2.0)  # several rounds of checks
        assert _resolve(status) == primary_ip
    finally:
        route53.update_health_check(HealthCheckId=check, Inverted=False)

    dr.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=1)
    try:
        primary.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
        try:
            _until("the record answers DR", lambda: _resolve(status) == dr_ip)
        finally:
            primary.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=2)
        _until("the record answers the primary again", lambda: _resolve(status) == primary_ip)
        routed = _routed(status)
        assert [e["to"] for e in routed] == ["dr", "primary"], routed
        assert routed[0]["why"] == "the PRIMARY record's health check is unhealthy"
        assert routed[1]["why"] == "the PRIMARY record's health check is healthy"

        route53.update_health_check(HealthCheckId=check, Inverted=True)
        try:
            _until("an inverted primary check answers DR", lambda: _resolve(status) == dr_ip)
        finally:
            route53.update_health_check(HealthCheckId=check, Inverted=False)
        _until("the record answers the primary once more", lambda: _resolve(status) == primary_ip)
    finally:
        dr.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
