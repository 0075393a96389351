"""Client-side DNS against the real failover DNS server on loopback: answers kept for exactly
their TTL (fake clock; queries counted on the server), TTL 0, failures, URLs for http.client,
the aiohttp resolver end to end, and queries sent from a given source address."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest

from drdrill.errors import DrillError
from drdrill.probes.resolve import (
    Resolution,
    ResolveError,
    TtlCache,
    TtlResolver,
    ip_switches,
    resolve_a,
)
from drdrill.sandbox.dns import FailoverDns
from drdrill.sandbox.truth import TruthLog

NAME = "app.visitor-analytics.test"
PRIMARY = "127.0.0.1"  # where the tests' HTTP server listens
DR = "127.0.2.2"  # never connected to: only compared


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_dns(ttl: int) -> FailoverDns:
    server = FailoverDns("127.0.0.1", 0, NAME, {"primary": PRIMARY, "dr": DR}, ttl=ttl)
    server.start()
    return server


@pytest.fixture
def dns2() -> Iterator[FailoverDns]:
    server = make_dns(ttl=2)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns0() -> Iterator[FailoverDns]:
    server = make_dns(ttl=0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def web() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers with the Host header it got."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{self.headers['Host']} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_resolve_a_returns_ip_and_ttl(dns2: FailoverDns) -> None:
    assert resolve_a(NAME, "127.0.0.1", dns2.port) == (PRIMARY, 2)


def test_cache_keeps_an_answer_for_exactly_its_ttl(dns2: FailoverDns) -> None:
    clock = FakeClock()
    cache = TtlCache("127.0.0.1", dns2.port, clock=clock)
    assert cache.lookup(NAME) == PRIMARY
    assert dns2.query_count == 1
    dns2.switch("dr")
    clock.now += 1.999
    assert cache.lookup(NAME) == PRIMARY  # still within the TTL: the old answer
    assert cache.lookup(NAME.upper() + ".") == PRIMARY
    assert dns2.query_count == 1 and cache.cache_hits == 2
    clock.now += 0.001  # TTL reached
    assert cache.lookup(NAME) == DR
    assert dns2.query_count == 2 and cache.query_count == 2
    assert cache.history() == [
        Resolution(1000.0, NAME, PRIMARY, 2),
        Resolution(1002.0, NAME, DR, 2),
    ]
    assert [s.mono for s in cache.switches()] == [1000.0, 1002.0]
    cache.invalidate(NAME)
    assert cache.lookup(NAME) == DR and dns2.query_count == 3


def test_ttl_zero_asks_every_time(dns0: FailoverDns) -> None:
    cache = TtlCache("127.0.0.1", dns0.port, clock=FakeClock())
    for _ in range(3):
        assert cache.lookup(NAME) == PRIMARY
    assert dns0.query_count == 3 and cache.cache_hits == 0
    dns0.switch("dr")
    assert cache.lookup(NAME) == DR  # the very next lookup sees the switch
    assert [s.ip for s in cache.switches()] == [PRIMARY, DR]


def test_failures_are_recorded_not_cached_and_ip_literals_skip_dns(dns2: FailoverDns) -> None:
    cache = TtlCache("127.0.0.1", dns2.port, clock=FakeClock())
    for _ in range(2):
        with pytest.raises(ResolveError, match="NXDOMAIN") as caught:
            cache.lookup("nope.visitor-analytics.test")
    assert isinstance(caught.value, DrillError) and isinstance(caught.value, OSError)
    assert dns2.query_count == 2
    [first, _] = cache.history()
    assert first.ip is None and not first.ok and "NXDOMAIN" in (first.error or "")
    assert cache.lookup("127.0.0.1") == "127.0.0.1" and dns2.query_count == 2
    assert cache.switches() == []

    dns2.stop()
    quick = TtlCache("127.0.0.1", dns2.port, timeout=0.2)
    with pytest.raises(ResolveError, match="timed out"):
        quick.lookup(NAME)


def test_resolve_url_for_http_client(dns2: FailoverDns, web: int) -> None:
    cache = TtlCache("127.0.0.1", dns2.port)
    url = f"http://{NAME}:{web}/api.php?action=stats"
    resolved = cache.resolve_url(url)
    assert (resolved.name, resolved.ip, resolved.port, resolved.target) == (
        NAME,
        PRIMARY,
        web,
        "/api.php?action=stats",
    )
    assert resolved.host_header == f"{NAME}:{web}"
    assert resolved.ip_url == f"http://{PRIMARY}:{web}/api.php?action=stats"
    conn = http.client.HTTPConnection(resolved.ip, resolved.port, timeout=2)
    try:
        conn.request("GET", resolved.target, headers={"Host": resolved.host_header})
        assert conn.getresponse().read().decode() == f"{NAME}:{web} /api.php?action=stats"
    finally:
        conn.close()
    assert cache.resolve_url(f"http://{NAME}").target == "/"
    assert cache.resolve_url(f"http://{NAME}/").host_header == NAME
    with pytest.raises(ResolveError, match="no host"):
        cache.resolve_url("/relative/path")


def test_ip_switches_per_name() -> None:
    history = [
        Resolution(1.0, "a.test", "10.0.0.1", 5),
        Resolution(2.0, "b.test", "10.0.0.9", 5),
        Resolution(3.0, "a.test", "10.0.0.1", 5),
        Resolution(4.0, "a.test", None, 0, "timed out"),
        Resolution(5.0, "a.test", "10.0.0.2", 5),
    ]
    assert [r.mono for r in ip_switches(history)] == [1.0, 2.0, 5.0]
    assert [r.mono for r in ip_switches(history, "A.test.")] == [1.0, 5.0]


def test_aiohttp_connector_uses_the_resolver_and_its_ttl(dns2: FailoverDns, web: int) -> None:
    clock = FakeClock()
    resolver = TtlResolver("127.0.0.1", dns2.port, clock=clock)

    async def scenario() -> tuple[list[str], list[str]]:
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            bodies = []
            for _ in range(3):
                async with session.get(f"http://{NAME}:{web}/x") as response:
                    bodies.append(await response.text())
            with pytest.raises(aiohttp.ClientConnectorDNSError):
                await session.get(f"http://nope.visitor-analytics.test:{web}/")
        dns2.switch("dr")
        before = await resolver.lookup(NAME)
        clock.now += 2
        after = await resolver.lookup(NAME)
        return bodies, [before, after]

    bodies, ips = asyncio.run(scenario())
    assert bodies == [f"{NAME}:{web} /x"] * 3
    # three connections (force_close), one query for the name; one for the unknown name
    assert ips == [PRIMARY, DR]
    assert dns2.query_count == 3
    assert [r.ip for r in resolver.history()] == [PRIMARY, None, DR]


def test_concurrent_lookups_share_one_query(dns0: FailoverDns) -> None:
    resolver = TtlResolver("127.0.0.1", dns0.port)

    async def many() -> list[str]:
        return await asyncio.gather(*(resolver.lookup(NAME) for _ in range(20)))

    assert asyncio.run(many()) == [PRIMARY] * 20
    assert dns0.query_count == 1 and resolver.query_count == 1


def test_real_ttl_of_one_second_is_honoured() -> None:
    server = make_dns(ttl=1)
    try:
        resolver = TtlResolver("127.0.0.1", server.port)

        async def twice() -> None:
            await resolver.lookup(NAME)
            await resolver.lookup(NAME)
            assert server.query_count == 1
            await asyncio.sleep(1.05)
            await resolver.lookup(NAME)

        asyncio.run(twice())
        assert server.query_count == 2
        [first, second] = resolver.history()
        assert 1.0 <= second.mono - first.mono <= 2.0
    finally:
        server.stop()


def test_each_client_asks_from_its_own_source_address(tmp_path: Path) -> None:
    """The server's log of its answers names each client by the address it sent from: the
    one-shot query, the blocking cache and the aiohttp resolver, each from its own."""
    truth = TruthLog(tmp_path / "truth.jsonl")
    server = FailoverDns("127.0.0.1", 0, NAME, {"primary": PRIMARY, "dr": DR}, 2, truth)
    server.start()
    try:
        cache = TtlCache("127.0.0.1", server.port, source_ip="127.21.4.12")
        resolver = TtlResolver("127.0.0.1", server.port, source_ip="127.21.4.11")
        windows: dict[str, tuple[float, float]] = {}

        before = time.monotonic()
        assert resolve_a(NAME, "127.0.0.1", server.port, source_ip="127.21.4.13") == (PRIMARY, 2)
        windows["127.21.4.13"] = (before, time.monotonic())
        before = time.monotonic()
        assert cache.lookup(NAME) == PRIMARY
        windows["127.21.4.12"] = (before, time.monotonic())
        before = time.monotonic()
        assert asyncio.run(resolver.lookup(NAME)) == PRIMARY
        windows["127.21.4.11"] = (before, time.monotonic())
        assert cache.lookup(NAME) == PRIMARY  # cached: no query, no answer logged
    finally:
        server.stop()
    answers = truth.since(0.0, "dns_answer")
    assert sorted(a.attrs["client_ip"] for a in answers) == sorted(windows)
    for answer in answers:
        low, high = windows[answer.attrs["client_ip"]]
        assert low <= answer.mono <= high  # the server answered while that client waited
        assert (answer.attrs["answer"], answer.attrs["ttl"]) == (PRIMARY, 2)
    assert (cache.source_ip, resolver.source_ip) == ("127.21.4.12", "127.21.4.11")
