"""Client-side DNS for probes: ask one DNS server for a name's A record and honour its TTL.

A drill's clients must see a DNS failover the way real clients do: each keeps the answer for
its TTL and asks again afterwards. So probes do not use the system resolver (which knows
nothing of the sandbox's DNS server and may cache on its own); they use:

- :func:`resolve_a` / :func:`resolve_a_async`: one query, no cache;
- :class:`TtlResolver`: an aiohttp resolver, ``aiohttp.TCPConnector(resolver=TtlResolver(...),
  use_dns_cache=False)`` (aiohttp's own cache would keep answers 10 s whatever their TTL);
- :class:`TtlCache`: the same for blocking clients (``http.client``): :meth:`TtlCache.lookup`
  a name, or :meth:`TtlCache.resolve_url` a URL into the address to connect to and the
  ``Host`` header to send.

Every query can be sent from a given source address (``source_ip``; loopback has all of
127.0.0.0/8), so that a DNS server that logs its answers tells the clients apart.

Both caches keep an answer for exactly its TTL on their ``clock`` (TTL 0: ask every time), do
not cache failures, and never serve a stale answer when the server fails. Each query they send
is recorded as a :class:`Resolution` (when the answer came, the address, the TTL, or the
error), so a drill can see when its clients switched (:func:`ip_switches`); cache hits are
counted, not recorded. With the default clock (``time.monotonic``, the system-wide
CLOCK_MONOTONIC on Linux) the times compare directly with the ground truth and the timeline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.asyncquery
import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from aiohttp.abc import AbstractResolver, ResolveResult

from drdrill.errors import DrillError

#: How many queries a cache remembers (a 10-minute drill at 100 queries/s stays under it).
DEFAULT_HISTORY = 100_000
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ResolveError(DrillError, OSError):
    """A name that did not resolve: NXDOMAIN, no A record, a refusal, a timeout.

    Also an ``OSError``, which is what aiohttp expects of a resolver: a connection attempt then
    fails with ``aiohttp.ClientConnectorDNSError`` (a probe's ``dns`` error class).
    """


@dataclass(frozen=True)
class Resolution:
    """One query a cache sent: when its answer (or failure) came, on the cache's clock."""

    mono: float
    name: str
    #: the address answered, or None when the query failed
    ip: str | None
    ttl: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The query returned an address."""
        return self.ip is not None


@dataclass(frozen=True)
class ResolvedUrl:
    """A URL whose host name was resolved: where to connect and what to call the host."""

    url: str
    scheme: str
    name: str
    ip: str
    port: int
    #: the request target: path and query (``/`` when the URL has none)
    target: str

    @property
    def host_header(self) -> str:
        """The ``Host`` header the server expects: the name (and a non-default port)."""
        if _DEFAULT_PORTS.get(self.scheme) == self.port:
            return self.name
        return f"{self.name}:{self.port}"

    @property
    def ip_url(self) -> str:
        """The URL with the address in place of the name."""
        return f"{self.scheme}://{self.ip}:{self.port}{self.target}"


def ip_switches(history: Iterable[Resolution], name: str | None = None) -> list[Resolution]:
    """The successful resolutions whose address differs from the one before (the first one
    included): when the clients moved from one address to another."""
    switches: list[Resolution] = []
    last: dict[str, str] = {}
    for item in history:
        if item.ip is None or (name is not None and item.name != _normal(name)):
            continue
        if last.get(item.name) != item.ip:
            switches.append(item)
            last[item.name] = item.ip
    return switches


def resolve_a(
    name: str,
    server_ip: str,
    port: int,
    timeout: float = 1.0,
    *,
    source_ip: str | None = None,
) -> tuple[str, int]:
    """Ask ``server_ip:port`` for ``name``'s A record (UDP, TCP when truncated): (ip, ttl).

    ``source_ip``: the address the query is sent from (any free port of it).
    """
    name = _normal(name)
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        response, _ = dns.query.udp_with_fallback(
            query, server_ip, timeout=timeout, port=port, source=source_ip
        )
    except (dns.exception.DNSException, OSError) as exc:
        raise _failure(name, server_ip, port, exc) from exc
    return _answer(name, server_ip, port, response)


async def resolve_a_async(
    name: str,
    server_ip: str,
    port: int,
    timeout: float = 1.0,
    *,
    source_ip: str | None = None,
) -> tuple[str, int]:
    """:func:`resolve_a` without blocking the event loop."""
    name = _normal(name)
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        response, _ = await dns.asyncquery.udp_with_fallback(
            query, server_ip, timeout=timeout, port=port, source=source_ip
        )
    except (dns.exception.DNSException, OSError) as exc:
        raise _failure(name, server_ip, port, exc) from exc
    return _answer(name, server_ip, port, response)


class _TtlBase:
    """The cache and the query history shared by the sync and the async resolver."""

    def __init__(
        self,
        server_ip: str,
        port: int,
        *,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        history_limit: int = DEFAULT_HISTORY,
        source_ip: str | None = None,
    ) -> None:
        """Ask ``server_ip:port`` (from ``source_ip`` when given); each query waits up to
        ``timeout`` seconds."""
        self.server_ip = server_ip
        self.port = port
        self.timeout = timeout
        #: the address queries are sent from (None: the system's choice)
        self.source_ip = source_ip
        self._clock = clock
        # The lock keeps the cache and history consistent for readers on other threads
        # (a drill reading the history while probes resolve); it is never held over I/O.
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float]] = {}  # name -> (ip, expires at)
        self._history: deque[Resolution] = deque(maxlen=history_limit)
        self._queries = 0
        self._hits = 0

    @property
    def query_count(self) -> int:
        """Queries sent to the server (cache misses)."""
        return self._queries

    @property
    def cache_hits(self) -> int:
        """Lookups answered from the cache."""
        return self._hits

    def history(self) -> list[Resolution]:
        """Every query sent so far (the last ``history_limit``), oldest first."""
        with self._lock:
            return list(self._history)

    def switches(self, name: str | None = None) -> list[Resolution]:
        """:func:`ip_switches` of this cache's history."""
        return ip_switches(self.history(), name)

    def invalidate(self, name: str | None = None) -> None:
        """Forget one cached answer, or all of them."""
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(_normal(name), None)

    def _fresh(self, name: str) -> str | None:
        with self._lock:
            entry = self._cache.get(name)
            if entry is not None and self._clock() < entry[1]:
                self._hits += 1
                return entry[0]
            self._queries += 1
            return None

    def _store(self, name: str, ip: str, ttl: int) -> None:
        with self._lock:
            now = self._clock()
            # TTL 0: recorded, never reused
            self._cache[name] = (ip, now + ttl)
            self._history.append(Resolution(now, name, ip, ttl))

    def _failed(self, name: str, exc: ResolveError) -> None:
        with self._lock:
            self._cache.pop(name, None)
            self._history.append(Resolution(self._clock(), name, None, 0, str(exc)))


class TtlCache(_TtlBase):
    """Blocking name lookups through one DNS server, each answer kept for its TTL.

    Safe to share between threads; two threads that miss at once both query.
    """

    def lookup(self, name: str) -> str:
        """``name``'s address (an IP literal is returned as is); raises :class:`ResolveError`."""
        name = _normal(name)
        if _is_ip(name):
            return name
        cached = self._fresh(name)
        if cached is not None:
            return cached
        try:
            ip, ttl = resolve_a(
                name, self.server_ip, self.port, self.timeout, source_ip=self.source_ip
            )
        except ResolveError as exc:
            self._failed(name, exc)
            raise
        self._store(name, ip, ttl)
        return ip

    def resolve_url(self, url: str) -> ResolvedUrl:
        """Where to connect for ``url``: for ``http.client``, connect to ``(ip, port)`` and
        send ``target`` with ``headers={"Host": host_header}``."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise ResolveError(f"url {url!r} has no host")
        scheme = parts.scheme.lower() or "http"
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
        except ValueError as exc:
            raise ResolveError(f"url {url!r}: {exc}") from exc
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        name = _normal(parts.hostname)
        return ResolvedUrl(url, scheme, name, self.lookup(name), port, target)


class TtlResolver(_TtlBase, AbstractResolver):
    """An aiohttp resolver through one DNS server, each answer kept for its TTL.

    Pass it as ``aiohttp.TCPConnector(resolver=..., use_dns_cache=False)``; the connector does
    not close a resolver it was given (:meth:`close` is a no-op anyway). Meant for one event
    loop: concurrent lookups of a name whose answer expired share one query.
    """

    def __init__(
        self,
        server_ip: str,
        port: int,
        *,
        timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        history_limit: int = DEFAULT_HISTORY,
        source_ip: str | None = None,
    ) -> None:
        """Ask ``server_ip:port`` (from ``source_ip`` when given); each query waits up to
        ``timeout`` seconds."""
        super().__init__(
            server_ip,
            port,
            timeout=timeout,
            clock=clock,
            history_limit=history_limit,
            source_ip=source_ip,
        )
        self._inflight: dict[str, asyncio.Future[str]] = {}

    async def lookup(self, name: str) -> str:
        """``name``'s address (an IP literal is returned as is); raises :class:`ResolveError`."""
        name = _normal(name)
        if _is_ip(name):
            return name
        pending = self._inflight.get(name)
        if pending is None:
            cached = self._fresh(name)
            if cached is not None:
                return cached
            pending = asyncio.ensure_future(self._query(name))
            self._inflight[name] = pending
            pending.add_done_callback(lambda done: self._settled(name, done))
        # shielded: a caller that gives up (its request timed out) does not cancel the query
        # that other callers wait for
        return await asyncio.shield(pending)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """aiohttp's entry point: one IPv4 address for ``host``."""
        if family == socket.AF_INET6:
            raise ResolveError(f"dns name '{host}': only A records (IPv4) are served here")
        ip = await self.lookup(host)
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
        ]

    async def close(self) -> None:
        """Nothing to release (every query uses its own socket)."""

    async def _query(self, name: str) -> str:
        try:
            ip, ttl = await resolve_a_async(
                name, self.server_ip, self.port, self.timeout, source_ip=self.source_ip
            )
        except ResolveError as exc:
            self._failed(name, exc)
            raise
        self._store(name, ip, ttl)
        return ip

    def _settled(self, name: str, done: asyncio.Future[str]) -> None:
        if self._inflight.get(name) is done:
            del self._inflight[name]
        if not done.cancelled():
            done.exception()  # retrieved: no "exception was never retrieved" when all gave up


def _normal(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _failure(name: str, server_ip: str, port: int, exc: BaseException) -> ResolveError:
    timed_out = isinstance(exc, dns.exception.Timeout)
    what = "timed out" if timed_out else f"{type(exc).__name__}: {exc}"
    return ResolveError(f"dns name '{name}' via {server_ip}:{port}: {what}")


def _answer(name: str, server_ip: str, port: int, response: dns.message.Message) -> tuple[str, int]:
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        raise ResolveError(f"dns name '{name}' via {server_ip}:{port}: {dns.rcode.to_text(rcode)}")
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.A:
            for rdata in rrset:
                return str(rdata.address), int(rrset.ttl)
    raise ResolveError(f"dns name '{name}' via {server_ip}:{port}: no A record")
