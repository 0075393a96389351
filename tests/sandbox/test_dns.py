"""The failover DNS server on real UDP/TCP sockets on loopback, queried with dnspython: the
active record with its TTL, switching, NXDOMAIN/NODATA/REFUSED, a stop that frees the port, and
the log of every answer with its client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from drdrill.probes.resolve import ResolveError, resolve_a
from drdrill.sandbox.dns import DnsError, FailoverDns
from drdrill.sandbox.truth import TruthLog

NAME = "app.visitor-analytics.test"
RECORDS = {"primary": "127.0.1.2", "dr": "127.0.2.2"}


@pytest.fixture
def truth(tmp_path: Path) -> TruthLog:
    return TruthLog(tmp_path / "truth.jsonl")


@pytest.fixture
def server(truth: TruthLog) -> Iterator[FailoverDns]:
    dns_server = FailoverDns("127.0.0.1", 0, NAME, RECORDS, ttl=2, truth=truth)
    dns_server.start()
    try:
        yield dns_server
    finally:
        dns_server.stop()


def query(
    server: FailoverDns, name: str, rdtype: str = "A", tcp: bool = False
) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(message, "127.0.0.1", port=server.port, timeout=1.0)


def test_answers_the_active_record_with_its_ttl_and_switches(
    server: FailoverDns, truth: TruthLog
) -> None:
    assert server.port > 0 and server.is_running()
    assert resolve_a(NAME, "127.0.0.1", server.port) == ("127.0.1.2", 2)
    assert resolve_a(NAME.upper() + ".", "127.0.0.1", server.port) == ("127.0.1.2", 2)
    response = query(server, NAME)
    assert response.flags & dns.flags.AA and not response.flags & dns.flags.RA

    assert server.switch("dr") is True
    assert server.active == "dr" and server.active_ip == "127.0.2.2" and server.serial == 2
    assert resolve_a(NAME, "127.0.0.1", server.port) == ("127.0.2.2", 2)
    assert server.switch("dr") is False  # already there: no event
    [event] = [e for e in truth.read() if e.event == "dns_record_switched"]
    assert event.event == "dns_record_switched" and event.component == "route53"
    assert event.attrs == {
        "name": NAME,
        "from": "primary",
        "to": "dr",
        "ip": "127.0.2.2",
        "ttl": 2,
        "serial": 2,
    }
    assert server.switch("primary") is True
    assert resolve_a(NAME, "127.0.0.1", server.port)[0] == "127.0.1.2"
    with pytest.raises(DnsError, match="cannot switch"):
        server.switch("eu-west-3")  # type: ignore[arg-type]


def test_tcp_answers_the_same(server: FailoverDns) -> None:
    response = query(server, NAME, tcp=True)
    [rrset] = response.answer
    assert rrset.ttl == 2 and [r.address for r in rrset] == ["127.0.1.2"]


def test_other_names_types_and_zones(server: FailoverDns) -> None:
    missing = query(server, "nope.visitor-analytics.test")
    assert missing.rcode() == dns.rcode.NXDOMAIN and not missing.answer
    [soa] = missing.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa[0].minimum == 2  # negative-caching TTL
    with pytest.raises(ResolveError, match="NXDOMAIN") as caught:
        resolve_a("nope.visitor-analytics.test", "127.0.0.1", server.port)
    assert isinstance(caught.value, OSError)

    nodata = query(server, NAME, "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority

    apex = query(server, "visitor-analytics.test", "SOA")
    assert apex.answer[0][0].serial == 1
    server.switch("dr")
    assert query(server, "visitor-analytics.test", "SOA").answer[0][0].serial == 2

    elsewhere = query(server, "example.com")
    assert elsewhere.rcode() == dns.rcode.REFUSED and not elsewhere.answer
    # a label-wise suffix, not a string suffix
    assert query(server, "xvisitor-analytics.test").rcode() == dns.rcode.REFUSED
    assert server.query_count == 7  # every query above, the resolve_a one included


def test_every_answer_is_one_side_and_a_switch_is_atomic(server: FailoverDns) -> None:
    seen: list[str] = []
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(40):
                seen.append(resolve_a(NAME, "127.0.0.1", server.port)[0])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    server.switch("dr")
    for thread in threads:
        thread.join()
    assert not errors
    assert set(seen) <= {"127.0.1.2", "127.0.2.2"} and len(seen) == 160
    assert resolve_a(NAME, "127.0.0.1", server.port)[0] == "127.0.2.2"


def test_stop_frees_the_port_and_queries_time_out(truth: TruthLog) -> None:
    server = FailoverDns("127.0.0.1", 0, NAME, RECORDS, ttl=5, truth=truth, active="dr")
    server.start()
    port = server.port
    assert resolve_a(NAME, "127.0.0.1", port) == ("127.0.2.2", 5)
    server.stop()
    assert not server.is_running()
    with pytest.raises(ResolveError, match="timed out"):
        resolve_a(NAME, "127.0.0.1", port, timeout=0.3)
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))  # would raise EADDRINUSE if still held
    server.stop()  # idempotent
    server.start()  # and it serves again, on the port it picked first: clients know it
    try:
        assert server.port == port
        assert resolve_a(NAME, "127.0.0.1", server.port)[0] == "127.0.2.2"
    finally:
        server.stop()


def test_a_taken_port_is_an_error(server: FailoverDns) -> None:
    other = FailoverDns("127.0.0.1", server.port, NAME, RECORDS, ttl=1)
    with pytest.raises(DnsError, match="cannot bind"):
        other.start()
    assert not other.is_running()
    assert resolve_a(NAME, "127.0.0.1", server.port)[0] == "127.0.1.2"  # not stolen


@pytest.mark.parametrize(
    ("name", "records", "message"),
    [
        ("app", RECORDS, "needs a parent zone"),
        (NAME, {"primary": "127.0.1.2"}, "must be exactly"),
        (NAME, {"primary": "127.0.1.2", "dr": "::1"}, "is not IPv4"),
    ],
)
def test_bad_settings_are_refused(name: str, records: dict[str, str], message: str) -> None:
    with pytest.raises(DnsError, match=message):
        FailoverDns("127.0.0.1", 0, name, records, ttl=1)


def test_every_answer_is_logged_with_its_client_and_ttl(
    server: FailoverDns, truth: TruthLog
) -> None:
    """Each reply the server sends is one ``dns_answer`` line: who asked (source address and
    port), what it was told and for how long, stamped between the client's send and receipt."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.9.4.11", 0))
    client_port = sock.getsockname()[1]
    sent = time.monotonic()
    response, _ = dns.query.udp_with_fallback(
        dns.message.make_query(NAME, dns.rdatatype.A),
        "127.0.0.1",
        timeout=1.0,
        port=server.port,
        udp_sock=sock,
    )
    received = time.monotonic()
    sock.close()
    assert response.answer[0][0].address == "127.0.1.2"
    [answer] = truth.since(sent, "dns_answer")
    assert answer.component == "route53"
    assert answer.attrs == {
        "client_ip": "127.9.4.11",
        "client_port": client_port,
        "proto": "udp",
        "name": NAME,
        "qtype": "A",
        "rcode": "NOERROR",
        "answer": "127.0.1.2",
        "ttl": 2,
    }
    assert sent <= answer.mono <= received

    server.switch("dr")
    after = time.monotonic()
    query(server, NAME, tcp=True)
    query(server, "nope.visitor-analytics.test")
    query(server, "example.org")
    logged = [e.attrs for e in truth.since(after, "dns_answer")]
    assert [(a["proto"], a["rcode"], a["answer"], a["ttl"]) for a in logged] == [
        ("tcp", "NOERROR", "127.0.2.2", 2),
        ("udp", "NXDOMAIN", None, None),
        ("udp", "REFUSED", None, None),
    ]
    assert {a["client_ip"] for a in logged} == {"127.0.0.1"}


def test_answers_are_not_logged_when_told_not_to(truth: TruthLog) -> None:
    quiet = FailoverDns("127.0.0.1", 0, NAME, RECORDS, ttl=2, truth=truth, log_answers=False)
    quiet.start()
    try:
        assert resolve_a(NAME, "127.0.0.1", quiet.port)[0] == "127.0.1.2"
    finally:
        quiet.stop()
    assert truth.read() == []
