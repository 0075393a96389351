"""The public name as clients have it: DNS answers kept for their TTL, which region an address
is, and RPO writes through the name.

Clients of the app resolve its public name (the Route53 failover record) and keep each answer
for its TTL, so a DNS failover reaches them only after the TTL: the drill's resolvers do the
same. They ask the configured name servers (``targets.aws.dns``: the hosted zone's own, or a
resolver's), else the system's, with dnspython.

An address belongs to the region whose load balancer's DNS name resolves to it (an ALB has an
address per zone, and they change): each ALB name is resolved in turn and kept for its TTL.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from drdrill.probes.resolve import ResolveError
from drdrill.probes.writes import Marker, WriteRejected, WriterError
from drdrill.targets.aws import route53
from drdrill.targets.base import Region

_REGIONS: tuple[Region, Region] = ("primary", "dr")


def _name(value: str) -> str:
    return value.strip().rstrip(".").lower()


class DnsLookup:
    """A names' addresses from the given name servers (or the system resolver), each answer
    kept for exactly its TTL on ``clock`` (TTL 0: asked every time). Failures are not cached.
    Safe to share between threads; two threads that miss at once both ask."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        port: int = 53,
        *,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Ask ``nameservers`` on ``port`` (None or empty: the system resolver)."""
        self.nameservers = list(nameservers) if nameservers else None
        self.port = port
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[str, ...], float]] = {}
        self._queries = 0

    @property
    def query_count(self) -> int:
        """Questions sent to the name servers (cache misses)."""
        return self._queries

    def addresses(self, name: str) -> tuple[str, ...]:
        """``name``'s A record addresses (sorted; empty when it has none); raises
        :class:`~drdrill.probes.resolve.ResolveError` when it does not resolve."""
        key = _name(name)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            self._queries += 1
        answer = route53.resolve_ttl(key, self.nameservers, self.port, lifetime_s=self.timeout_s)
        with self._lock:
            self._cache[key] = (answer.addresses, self._clock() + answer.ttl)
        return answer.addresses


class PublicNameLookup:
    """The public name as one client resolves it (a :class:`~drdrill.targets.base.ClientLookup`):
    each answer kept for its TTL."""

    def __init__(self, name: str, dns: DnsLookup, role: str = "drill") -> None:
        """``name`` through ``dns``, for the client ``role`` (a label: on AWS every client asks
        from this host)."""
        self.name = name
        self.dns = dns
        self.role = role

    def lookup(self) -> str | None:
        """The address the client would connect to now (None: the name does not resolve)."""
        try:
            found = self.dns.addresses(self.name)
        except ResolveError:
            return None
        return found[0] if found else None


class RegionAddresses:
    """Which region's load balancer an address belongs to, from each ALB's DNS name."""

    def __init__(self, dns: DnsLookup, alb_names: Mapping[Region, str | None]) -> None:
        """Each region's ALB DNS name (None: a region without one is never matched)."""
        self.dns = dns
        self.alb_names = dict(alb_names)

    def region_of(self, address: str | None) -> Region | None:
        """The region whose ALB name resolves (now, or within its TTL) to ``address``."""
        if not address:
            return None
        for region in _REGIONS:
            name = self.alb_names.get(region)
            if not name:
                continue
            try:
                found = self.dns.addresses(name)
            except ResolveError:
                continue  # a name that does not resolve now is no region's address
            if address in found:
                return region
        return None


class _PinnedHttp(http.client.HTTPConnection):
    """An HTTP connection to a name, made to the address it was resolved to (the Host header
    keeps the name)."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        """Connect to the pinned address."""
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHttps(http.client.HTTPSConnection):
    """An HTTPS connection to a name, made to the address it was resolved to; the certificate
    is checked against the name."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self.address = address

    def connect(self) -> None:
        """Connect to the pinned address, then TLS for the name."""
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class PublicNameSink:
    """RPO markers through the app's write endpoint by its public name, as a client writes:
    the name resolved through ``dns`` (each answer kept for its TTL) before every write, one
    keep-alive connection per address. A marker is acknowledged only on a 2xx answer whose JSON
    body is ``{"ok": true, "marker": <id>}`` (the same rule as
    :class:`~drdrill.probes.writes.HttpSink`)."""

    def __init__(self, url: str, dns: DnsLookup, timeout_s: float) -> None:
        """Write to ``url`` (http or https), each socket operation bounded by ``timeout_s``."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WriterError(f"http sink: {url!r} is not an http(s) url")
        self.url = url
        self.dns = dns
        self.timeout_s = timeout_s
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def write(self, marker: Marker) -> None:
        """POST one marker to the address the name has now; raise unless it is acknowledged."""
        found = self.dns.addresses(self._host)
        if not found:
            raise ResolveError(f"dns name '{self._host}': no address")
        address = found[0]
        body = json.dumps(
            {"run": marker.run_id, "marker": marker.marker_id, "ts": marker.sent_utc}
        ).encode()
        reused = address in self._conns
        try:
            status, data = self._post(address, body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # the usual keep-alive race: the server closed the connection we reused
            if not reused:
                raise
            status, data = self._post(address, body)
        if not 200 <= status < 300:
            raise WriteRejected(f"http write {marker.marker_id} to {self.url}: status {status}")
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if not (
            isinstance(answer, dict)
            and answer.get("ok") is True
            and answer.get("marker") == marker.marker_id
        ):
            raise WriteRejected(
                f"http write {marker.marker_id} to {self.url}: answer does not acknowledge it: "
                f"{data[:100]!r}"
            )

    def close(self) -> None:
        """Close every connection."""
        for address in list(self._conns):
            self._drop(address)

    def _post(self, address: str, body: bytes) -> tuple[int, bytes]:
        conn = self._conns.get(address)
        if conn is None:
            cls = _PinnedHttps if self._https else _PinnedHttp
            conn = self._conns[address] = cls(self._host, self._port, address, self.timeout_s)
        try:
            conn.request(
                "POST", self._path, body=body, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            self._drop(address)
            raise
        if resp.will_close:
            self._drop(address)
        return resp.status, data

    def _drop(self, address: str) -> None:
        conn = self._conns.pop(address, None)
        if conn is not None:
            conn.close()
