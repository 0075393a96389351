"""Route53 adapter against the moto server; ``resolve`` against the sandbox's DNS server.

moto answers every change INSYNC at once and every health check healthy, so the waiting loop
and the unhealthy status are also run against a tiny loopback stand-in for the Route53 API
(below) that answers the two read calls the way AWS documents them.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from drdrill.errors import DrillError
from drdrill.probes.resolve import ResolveError
from drdrill.sandbox.dns import FailoverDns
from drdrill.targets.aws import route53
from drdrill.targets.aws.route53 import FailoverRecord
from drdrill.targets.aws.session import AwsClients

R53 = "us-east-1"


def _zone(aws: AwsClients) -> tuple[str, str]:
    """A fresh hosted zone: (id, domain)."""
    domain = f"drill-{uuid.uuid4().hex[:8]}.test."
    client = aws.client("route53", R53)
    zone = client.create_hosted_zone(Name=domain, CallerReference=uuid.uuid4().hex)
    return str(zone["HostedZone"]["Id"]), domain


def _health_check(aws: AwsClients, ip: str) -> str:
    check = aws.client("route53", R53).create_health_check(
        CallerReference=uuid.uuid4().hex,
        HealthCheckConfig={
            "IPAddress": ip,
            "Port": 80,
            "Type": "HTTP",
            "ResourcePath": "/health-simple.php",
            "RequestInterval": 30,
            "FailureThreshold": 3,
        },
    )
    return str(check["HealthCheck"]["Id"])


@pytest.fixture
def failover_zone(aws: AwsClients) -> tuple[str, str, str]:
    """A zone with app.<domain> as a PRIMARY/SECONDARY failover pair, both health-checked,
    plus an unrelated record; (zone id, app name, primary health check id)."""
    zone_id, domain = _zone(aws)
    app = f"app.{domain}"
    primary_check = _health_check(aws, "192.0.2.10")
    dr_check = _health_check(aws, "192.0.2.20")
    aws.client("route53", R53).change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": app,
                        "Type": "A",
                        "SetIdentifier": "primary-eu-west-1",
                        "Failover": "PRIMARY",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.10"}],
                        "HealthCheckId": primary_check,
                    },
                },
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": app,
                        "Type": "A",
                        "SetIdentifier": "dr-eu-central-1",
                        "Failover": "SECONDARY",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "192.0.2.20"}],
                        "HealthCheckId": dr_check,
                    },
                },
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"www.{domain}",
                        "Type": "A",
                        "TTL": 300,
                        "ResourceRecords": [{"Value": "192.0.2.99"}],
                    },
                },
            ]
        },
    )
    return zone_id, app, primary_check


def test_failover_records_reads_the_pair_primary_first(
    aws: AwsClients, failover_zone: tuple[str, str, str]
) -> None:
    zone_id, app, primary_check = failover_zone
    records = route53.failover_records(aws, zone_id, app.rstrip(".").upper())
    assert [r.role for r in records] == ["PRIMARY", "SECONDARY"]
    primary, secondary = records
    assert primary == FailoverRecord(
        set_id="primary-eu-west-1",
        role="PRIMARY",
        type="A",
        values=("192.0.2.10",),
        alias_target=None,
        ttl=60,
        health_check_id=primary_check,
    )
    assert secondary.values == ("192.0.2.20",)
    assert secondary.health_check_id not in (None, primary_check)


def test_failover_records_of_a_plain_or_missing_name_are_empty(
    aws: AwsClients, failover_zone: tuple[str, str, str]
) -> None:
    zone_id, app, _ = failover_zone
    domain = app.split(".", 1)[1]
    assert route53.failover_records(aws, zone_id, f"www.{domain}") == []
    assert route53.failover_records(aws, zone_id, f"nothing.{domain}") == []


def test_failover_records_of_an_unknown_zone_is_an_error(aws: AwsClients) -> None:
    with pytest.raises(DrillError, match="route53 hosted zone 'ZNOSUCHZONE' not found"):
        route53.failover_records(aws, "ZNOSUCHZONE", "app.example.test")


def test_health_check_status_on_moto_is_healthy(
    aws: AwsClients, failover_zone: tuple[str, str, str]
) -> None:
    _, _, primary_check = failover_zone
    # moto reports one fixed "Success: HTTP Status Code: 200" observation for any check
    assert route53.health_check_status(aws, primary_check) == "HEALTHY"


def test_health_check_status_of_an_unknown_check_is_an_error(aws: AwsClients) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(DrillError, match=f"route53 health check '{missing}' not found"):
        route53.health_check_status(aws, missing)


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        ([], "UNKNOWN"),
        (["Success: HTTP Status Code 200, OK"] * 3, "HEALTHY"),
        (["Failure: Connection timed out."] * 8, "UNHEALTHY"),
        # Route53's rule: healthy when more than 18 % of checkers report success
        (["Success: HTTP Status Code 200, OK"] * 2 + ["Failure: timed out"] * 8, "HEALTHY"),
        (["Success: HTTP Status Code 200, OK"] * 1 + ["Failure: timed out"] * 9, "UNHEALTHY"),
    ],
)
def test_health_status_follows_the_route53_share_rule(reports: list[str], expected: str) -> None:
    assert route53.health_status(reports) == expected


def test_change_record_moves_the_primary_and_wait_insync_returns(
    aws: AwsClients, failover_zone: tuple[str, str, str]
) -> None:
    zone_id, app, primary_check = failover_zone
    provisioned = len(aws.log.calls)
    change_id = route53.change_record(
        aws,
        zone_id,
        app,
        "A",
        ["192.0.2.30"],
        30,
        set_id="primary-eu-west-1",
        failover="PRIMARY",
        health_check_id=primary_check,
    )
    assert change_id
    slept: list[float] = []
    route53.wait_insync(aws, change_id, timeout_s=10, interval_s=1, sleep=slept.append)
    # moto answers INSYNC at the first GetChange: no wait
    assert slept == []
    assert [c.operation for c in aws.log.calls[provisioned:]] == [
        "ChangeResourceRecordSets",
        "GetChange",
    ]
    primary = route53.failover_records(aws, zone_id, app)[0]
    assert (primary.values, primary.ttl, primary.health_check_id) == (
        ("192.0.2.30",),
        30,
        primary_check,
    )
    assert route53.failover_records(aws, zone_id, app)[1].values == ("192.0.2.20",)


def test_change_record_creates_a_plain_record(aws: AwsClients) -> None:
    zone_id, domain = _zone(aws)
    route53.change_record(aws, zone_id, f"status.{domain}", "A", ["192.0.2.5"], 120)
    listed = aws.client("route53", R53).list_resource_record_sets(HostedZoneId=zone_id)
    found = [r for r in listed["ResourceRecordSets"] if r["Name"] == f"status.{domain}"]
    assert [(r["Type"], r["TTL"], r["ResourceRecords"]) for r in found] == [
        ("A", 120, [{"Value": "192.0.2.5"}])
    ]
    assert "Failover" not in found[0] and "SetIdentifier" not in found[0]


def test_change_record_refuses_a_failover_record_without_set_id(aws: AwsClients) -> None:
    with pytest.raises(DrillError, match="needs a set id"):
        route53.change_record(
            aws, "Z1", "app.example.test", "A", ["192.0.2.1"], 60, failover="PRIMARY"
        )
    assert aws.log.calls == []


def test_change_record_in_a_dry_run_sends_nothing(
    moto_endpoint: str, aws: AwsClients, failover_zone: tuple[str, str, str]
) -> None:
    zone_id, app, _ = failover_zone
    dry = AwsClients(endpoint_url=moto_endpoint, dry_run=True)
    change_id = route53.change_record(
        dry,
        zone_id,
        app,
        "A",
        ["192.0.2.66"],
        60,
        set_id="primary-eu-west-1",
        failover="PRIMARY",
    )
    assert change_id == route53.DRY_RUN_CHANGE_ID
    route53.wait_insync(dry, change_id, sleep=_never)
    assert [(c.operation, c.sent) for c in dry.log.calls] == [("ChangeResourceRecordSets", False)]
    assert route53.failover_records(aws, zone_id, app)[0].values == ("192.0.2.10",)


def _never(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s")


# - the loopback stand-in: what AWS answers while a change propagates, and an unhealthy check -

_XMLNS = "https://route53.amazonaws.com/doc/2013-04-01/"


class _Route53Stub(BaseHTTPRequestHandler):
    """GetChange: PENDING for the first ``pending`` calls, then INSYNC. GetHealthCheckStatus:
    the observations in ``statuses``."""

    server: _StubServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path.startswith("/2013-04-01/change/"):
            change = self.path.rsplit("/", 1)[1]
            self.server.change_calls += 1
            status = "PENDING" if self.server.change_calls <= self.server.pending else "INSYNC"
            body = (
                f'<GetChangeResponse xmlns="{_XMLNS}"><ChangeInfo><Id>/change/{change}</Id>'
                f"<Status>{status}</Status><SubmittedAt>2026-01-01T00:00:00Z</SubmittedAt>"
                "</ChangeInfo></GetChangeResponse>"
            )
        elif self.path.endswith("/status"):
            observations = "".join(
                f"<HealthCheckObservation><Region>eu-west-1</Region><IPAddress>192.0.2.{i}"
                f"</IPAddress><StatusReport><Status>{status}</Status><CheckedTime>"
                "2026-01-01T00:00:00Z</CheckedTime></StatusReport></HealthCheckObservation>"
                for i, status in enumerate(self.server.statuses, start=1)
            )
            body = (
                f'<GetHealthCheckStatusResponse xmlns="{_XMLNS}"><HealthCheckObservations>'
                f"{observations}</HealthCheckObservations></GetHealthCheckStatusResponse>"
            )
        else:
            self.send_error(404)
            return
        data = ('<?xml version="1.0" encoding="UTF-8"?>' + body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _StubServer(ThreadingHTTPServer):
    pending = 0
    change_calls = 0
    statuses: tuple[str, ...] = ()
    paths: list[str]


@pytest.fixture
def stub(moto_endpoint: str) -> Iterator[_StubServer]:
    """The stand-in on 127.0.0.1, port 0 (moto_endpoint: for the fake credentials it sets)."""
    server = _StubServer(("127.0.0.1", 0), _Route53Stub)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


def _stub_clients(server: _StubServer) -> AwsClients:
    host, port = server.server_address[:2]
    return AwsClients(endpoint_url=f"http://{host!s}:{port}")


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_insync_polls_while_pending(stub: _StubServer) -> None:
    stub.pending = 3
    clock = _FakeClock()
    route53.wait_insync(
        _stub_clients(stub),
        "/change/C42",
        timeout_s=60,
        interval_s=5,
        sleep=clock.sleep,
        clock=clock,
    )
    assert stub.change_calls == 4
    assert clock.sleeps == [5, 5, 5]
    assert stub.paths[0] == "/2013-04-01/change/C42"


def test_wait_insync_times_out_on_the_injected_clock(stub: _StubServer) -> None:
    stub.pending = 1000
    clock = _FakeClock()
    with pytest.raises(DrillError, match="route53 change 'C7' still PENDING after 12 s"):
        route53.wait_insync(
            _stub_clients(stub),
            "C7",
            timeout_s=12,
            interval_s=5,
            sleep=clock.sleep,
            clock=clock,
        )
    # 5 + 5 + the 2 s left, then the last look
    assert clock.sleeps == [5, 5, 2]
    assert stub.change_calls == 4


def test_health_check_status_reads_failures_as_unhealthy(stub: _StubServer) -> None:
    stub.statuses = ("Failure: Connection timed out.",) * 7 + ("Success: HTTP 200",)
    assert route53.health_check_status(_stub_clients(stub), "hc-1") == "UNHEALTHY"
    assert stub.paths == ["/2013-04-01/healthcheck/hc-1/status"]


# - resolve, against the sandbox's authoritative server on loopback (never a real resolver) -


@pytest.fixture
def dns_server() -> Iterator[FailoverDns]:
    """app.drill.test -> 127.0.1.10 (primary) or 127.0.2.10 (dr), TTL 5, on 127.0.0.1."""
    server = FailoverDns(
        "127.0.0.1", 0, "app.drill.test", {"primary": "127.0.1.10", "dr": "127.0.2.10"}, ttl=5
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_resolve_follows_a_switch(dns_server: FailoverDns) -> None:
    ns = ["127.0.0.1"]
    assert route53.resolve("app.drill.test", ns, port=dns_server.port) == ["127.0.1.10"]
    dns_server.switch("dr")
    # no cache: the next call sees the new answer
    assert route53.resolve("app.drill.test.", ns, port=dns_server.port) == ["127.0.2.10"]
    assert dns_server.query_count == 2


def test_resolve_a_name_without_a_record_is_empty(dns_server: FailoverDns) -> None:
    # the zone apex has an SOA but no A record: NODATA
    assert route53.resolve("drill.test", ["127.0.0.1"], port=dns_server.port) == []


def test_resolve_nxdomain_and_refused_are_errors(dns_server: FailoverDns) -> None:
    with pytest.raises(ResolveError, match=r"dns name 'other\.drill\.test' does not exist"):
        route53.resolve("other.drill.test", ["127.0.0.1"], port=dns_server.port)
    # outside the zone the server refuses (it is not a resolver)
    with pytest.raises(ResolveError, match="no server answered it"):
        route53.resolve("app.elsewhere.test", ["127.0.0.1"], port=dns_server.port)


def test_resolve_times_out_on_a_silent_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with pytest.raises(ResolveError, match=r"no answer within 0\.3 s"):
            route53.resolve("app.drill.test", ["127.0.0.1"], port=port, lifetime_s=0.3)
