"""The public name as clients have it, against real DNS servers on loopback standing in for the
public name servers (no sandbox): the failover record served by the sandbox's FailoverDns on
127.0.0.1, the load balancers' names by a dnslib zone server on 127.0.0.2 (the same port; the
first refuses names outside its zone, and the resolver asks the next, as with several name
servers). RPO writes go to real HTTP servers on loopback standing in for each region's ALB.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver

from drdrill.probes.resolve import ResolveError
from drdrill.probes.writes import Marker, WriteRejected
from drdrill.sandbox.aws.provision import ProvisionedStack
from drdrill.sandbox.dns import FailoverDns
from drdrill.targets.aws.resolver import DnsLookup, PublicNameSink
from drdrill.targets.aws.target import AwsTarget

from .aws_target import aws_target

PRIMARY_LB = ("127.0.1.2", "127.0.1.3")  # an ALB has an address a zone
DR_LB = "127.0.2.2"


@dataclass
class PublicDns:
    """The stand-in name servers: where they listen, and the failover record's server."""

    record: FailoverDns
    servers: list[str]
    port: int
    name: str
    alb_names: dict[str, str] = field(default_factory=dict)


def _quiet(*_: Any) -> None:
    """dnslib's logger prints every query."""


@pytest.fixture
def public_dns(stack: ProvisionedStack) -> Iterator[PublicDns]:
    """The failover record (TTL 0: every lookup asks) and both regions' ALB names."""
    name = stack.record_name.rstrip(".")
    record = FailoverDns(
        "127.0.0.1", 0, name, {"primary": PRIMARY_LB[0], "dr": DR_LB}, 0, log_answers=False
    )
    record.start()
    p, d = stack.settings.primary.alb.dns_name, stack.settings.dr.alb.dns_name
    assert p and d
    zone = "\n".join(
        [
            *(f"{p.rstrip('.')}. 60 IN A {ip}" for ip in PRIMARY_LB),
            f"{d.rstrip('.')}. 60 IN A {DR_LB}",
        ]
    )
    albs = DNSServer(
        ZoneResolver(zone),
        port=record.port,
        address="127.0.0.2",
        tcp=False,
        logger=DNSLogger(logf=_quiet),
    )
    albs.start_thread()
    try:
        yield PublicDns(record, ["127.0.0.1", "127.0.0.2"], record.port, name, {"primary": p})
    finally:
        albs.stop()
        record.stop()


def _target(tmp_path: Path, stack: ProvisionedStack, dns: PublicDns, **aws: Any) -> AwsTarget:
    settings = {"name_servers": dns.servers, "port": dns.port, "timeout": 1.0}
    return aws_target(tmp_path, stack, dns=settings, **aws)


def test_region_of_an_address_from_each_load_balancers_name(
    stack: ProvisionedStack, public_dns: PublicDns, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack, public_dns)
    assert target.region_of(PRIMARY_LB[1]) == "primary"
    assert target.region_of(PRIMARY_LB[0]) == "primary"
    assert target.region_of(DR_LB) == "dr"
    assert target.region_of("192.0.2.1") is None
    assert target.region_of(None) is None
    # each ALB name was asked once: its answer is kept for its TTL (60 s)
    assert target.dns().query_count == 2


def test_the_public_name_as_a_client_and_as_asked_afresh(
    stack: ProvisionedStack, public_dns: PublicDns, tmp_path: Path
) -> None:
    target = _target(tmp_path, stack, public_dns)
    client = target.client_resolver("drill")
    assert client.lookup() == PRIMARY_LB[0]
    assert target.region_of(target.dns_answer()) == "primary"

    public_dns.record.switch("dr")  # the record's TTL is 0: clients ask again at once

    assert target.region_of(client.lookup()) == "dr"
    assert target.region_of(target.dns_answer()) == "dr"


def test_a_name_that_does_not_resolve_is_no_answer(
    stack: ProvisionedStack, public_dns: PublicDns, tmp_path: Path
) -> None:
    target = _target(
        tmp_path, stack, public_dns, route53={"record_name": f"nowhere.{public_dns.name}"}
    )
    assert target.client_resolver().lookup() is None


def test_answers_are_kept_for_exactly_their_ttl(public_dns: PublicDns) -> None:
    """On a fake clock: the record with a TTL of 30 s is asked again only when it ran out."""
    public_dns.record.ttl = 30
    now = [0.0]
    dns = DnsLookup(public_dns.servers, public_dns.port, clock=lambda: now[0])
    assert dns.addresses(public_dns.name) == (PRIMARY_LB[0],)
    public_dns.record.switch("dr")
    now[0] = 29.9
    assert dns.addresses(public_dns.name) == (PRIMARY_LB[0],)  # the client's copy
    now[0] = 30.0
    assert dns.addresses(public_dns.name) == (DR_LB,)
    assert dns.query_count == 2
    with pytest.raises(ResolveError):
        dns.addresses(f"nowhere.{public_dns.name}")


class _App(BaseHTTPRequestHandler):
    """The app's write endpoint behind one region's ALB: acknowledges each marker."""

    server: _AppServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.headers["Host"], body["marker"]))
        answer = {"ok": not self.server.refuse, "marker": body["marker"]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _AppServer(ThreadingHTTPServer):
    seen: list[tuple[str, int]]
    refuse: bool = False


@pytest.fixture
def apps() -> Iterator[dict[str, _AppServer]]:
    """An app on each region's ALB address, on one port."""
    primary = _AppServer((PRIMARY_LB[0], 0), _App)
    dr = _AppServer((DR_LB, primary.server_address[1]), _App)
    servers = {"primary": primary, "dr": dr}
    for server in servers.values():
        server.seen = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def test_rpo_writes_follow_the_name_as_a_client_does(
    public_dns: PublicDns, apps: dict[str, _AppServer]
) -> None:
    public_dns.record.ttl = 30
    port = apps["primary"].server_address[1]
    url = f"http://{public_dns.name}:{port}/api.php?action=write"
    now = [0.0]
    sink = PublicNameSink(
        url, DnsLookup(public_dns.servers, public_dns.port, clock=lambda: now[0]), 2
    )
    try:
        sink.write(Marker("run", 1, 0.0))
        public_dns.record.switch("dr")
        sink.write(Marker("run", 2, 0.0))  # within the TTL: still the primary
        now[0] = 30.0
        sink.write(Marker("run", 3, 0.0))
        apps["dr"].refuse = True
        with pytest.raises(WriteRejected, match="does not acknowledge"):
            sink.write(Marker("run", 4, 0.0))
    finally:
        sink.close()
    host = f"{public_dns.name}:{port}"  # the name, not the address, as a browser sends it
    assert apps["primary"].seen == [(host, 1), (host, 2)]
    assert apps["dr"].seen == [(host, 3), (host, 4)]


def test_the_write_url_is_writer_url_then_the_setting_then_the_public_name(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    name = stack.record_name.rstrip(".")
    assert aws_target(tmp_path, stack).write_url() == f"http://{name}/api.php?action=write"
    set_here = aws_target(tmp_path, stack, write_url="https://w.example.test/write")
    assert set_here.write_url() == "https://w.example.test/write"
    both = aws_target(
        tmp_path,
        stack,
        config={"writer": {"url": "http://writer.example.test/w"}},
        write_url="https://w.example.test/write",
    )
    assert both.write_url() == "http://writer.example.test/w"
    assert isinstance(both.write_sink(1.0), PublicNameSink)
