"""The HTTP side of the probes: what a good response is, the endpoints, and the client.

:class:`Check` and :class:`Endpoint` describe what is probed; :class:`HttpClient` is what sends
the requests (:class:`AiohttpClient` in drdrill). A client is described by a
:class:`ClientSpec`, a small picklable value, so that the probe loop can build its client in a
process of its own (:mod:`drdrill.probes.worker`); :meth:`ClientSpec.build` is the one place
that turns the description into a client.
"""

from __future__ import annotations

import errno
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

import aiohttp
import aiohttp.abc

from drdrill.defaults import DEFAULT_TIMEOUT_S
from drdrill.errors import DrillError, InputError
from drdrill.probes.stats import (
    ERROR_CONNECT,
    ERROR_DNS,
    ERROR_OTHER,
    ERROR_PROTOCOL,
    ERROR_REFUSED,
    ERROR_RESET,
    ERROR_TLS,
)
from drdrill.urls import url_problem

if TYPE_CHECKING:
    from drdrill.probes.resolve import TtlResolver

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "USER_AGENT",
    "AiohttpClient",
    "Check",
    "ClientSpec",
    "Endpoint",
    "HttpClient",
    "HttpClientFactory",
    "ProbeFailure",
]

#: the default per-request timeout.
#: what the probes say they are in server logs.
USER_AGENT = "drdrill-probe/1"

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"

_MISSING = object()


def _json_at(document: object, path: str) -> object:
    """The value at a dotted ``path`` ("data.items.0.status"), or ``_MISSING``."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _json_equal(actual: object, expected: object) -> bool:
    # JSON true is not the number 1, though Python's True == 1
    return actual == expected and isinstance(actual, bool) == isinstance(expected, bool)


@dataclass(frozen=True, slots=True)
class Check:
    """What makes a response good: its status, and optionally its body.

    ``status`` is the set of accepted codes; ``contains`` a substring and ``regex`` a pattern
    searched in the body decoded as UTF-8; ``json_field`` a dotted path into the JSON body with
    the value it must equal (``("data.status", "ok")``; list items by index, ``"items.0.ok"``).
    """

    status: frozenset[int] = frozenset({200})
    contains: str | None = None
    regex: str | None = None
    json_field: tuple[str, JsonValue] | None = None
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the codes and compile the pattern once."""
        if not self.status:
            raise InputError("check.status", "at least one accepted status code is needed")
        bad = sorted(code for code in self.status if not 100 <= code <= 599)
        if bad:
            raise InputError("check.status", f"{bad[0]} is not an HTTP status code")
        if self.json_field is not None and not self.json_field[0]:
            raise InputError("check.json_field", "empty JSON path")
        if self.regex is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.regex))
            except re.error as exc:
                raise InputError("check.regex", f"{self.regex!r} does not compile: {exc}") from exc

    @property
    def reads_body(self) -> bool:
        """Whether the check looks at the body at all."""
        return self.contains is not None or self.regex is not None or self.json_field is not None

    def passes(self, status: int, body: bytes) -> bool:
        """Whether a response with ``status`` and ``body`` is good."""
        if status not in self.status:
            return False
        if not self.reads_body:
            return True
        text = body.decode("utf-8", errors="replace")
        if self.contains is not None and self.contains not in text:
            return False
        if self._pattern is not None and self._pattern.search(text) is None:
            return False
        if self.json_field is not None:
            path, expected = self.json_field
            try:
                document = json.loads(text)
            except ValueError:
                return False
            if not _json_equal(_json_at(document, path), expected):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One URL to probe, the check its responses must pass, and each request's timeout."""

    url: str
    name: str = ""
    check: Check = field(default_factory=Check)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        """Refuse what is not an http(s) URL with a host; the name defaults to the URL."""
        problem = url_problem(self.url)
        if problem is not None:
            raise InputError("url", problem)
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise InputError("timeout", f"{self.timeout_s} s is not a positive timeout")
        if not self.name:
            object.__setattr__(self, "name", self.url)


class ProbeFailure(DrillError):
    """A request that failed before a response could be checked; ``error`` is its class."""

    def __init__(self, error: str, detail: str = "") -> None:
        """Fail with one of the error classes of :mod:`drdrill.probes.stats`."""
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error


class HttpClient(Protocol):
    """The HTTP side of a probe: overlapping GETs, each on a connection of its own."""

    async def get(self, url: str) -> tuple[int, bytes]:
        """GET ``url``; return status and body, or raise :class:`ProbeFailure`."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


#: builds a client inside the runner's loop; the argument is the connection limit needed.
HttpClientFactory: TypeAlias = Callable[[int], HttpClient]


def _os_error_class(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return ERROR_REFUSED
    if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
        return ERROR_RESET
    return ERROR_CONNECT


class AiohttpClient:
    """:class:`HttpClient` on an aiohttp session with a keep-alive pool, no proxies from env."""

    def __init__(
        self,
        max_connections: int,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        fresh_connections: bool = False,
    ) -> None:
        """Pool up to ``max_connections`` connections in all (idle ones are kept alive).

        ``resolver`` replaces the system resolver (e.g. a TTL-honouring one that asks the
        sandbox's DNS server). ``fresh_connections`` makes every sample a new client on a new
        connection: a kept-alive connection would stay on the old address after a DNS
        failover for as long as that server answers (even with 503s).
        """
        # no DNS cache of aiohttp's own (10 s by default): a new connection resolves the name
        # afresh, so a DNS failover shows as soon as the resolver gives the new answer
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            use_dns_cache=False,
            resolver=resolver,
            force_close=fresh_connections,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            # the runner times each request itself; aiohttp's default 5-minute timer is waste
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
        )

    async def get(self, url: str) -> tuple[int, bytes]:
        """GET without following redirects: a probe checks what the endpoint itself answers."""
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                # the body is read even when unchecked, so that the connection can be reused
                body = await response.read()
                return response.status, body
        except aiohttp.ClientConnectorDNSError as exc:
            raise ProbeFailure(ERROR_DNS, str(exc)) from exc
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise ProbeFailure(ERROR_TLS, str(exc)) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ProbeFailure(_os_error_class(exc), str(exc)) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise ProbeFailure(ERROR_RESET, str(exc)) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise ProbeFailure(ERROR_PROTOCOL, str(exc)) from exc
        except aiohttp.ClientOSError as exc:
            raise ProbeFailure(_os_error_class(exc), str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise ProbeFailure(ERROR_OTHER, f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        """Close the session and its pool."""
        await self._session.close()


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """How to build the probes' HTTP client, as a picklable value (it crosses to the worker).

    ``resolver`` is a DNS server ``(ip, port)`` to resolve names through, honouring each
    answer's TTL (:class:`~drdrill.probes.resolve.TtlResolver`) instead of the system
    resolver; ``resolver_source_ip`` the local address its queries are sent from.
    ``fresh_connections`` makes every sample a new connection, so that a probe follows a DNS
    failover as a new client would rather than staying on a kept-alive connection.
    """

    resolver: tuple[str, int] | None = None
    resolver_source_ip: str | None = None
    fresh_connections: bool = False

    def __post_init__(self) -> None:
        """Refuse a source address without a resolver to send from it."""
        if self.resolver_source_ip is not None and self.resolver is None:
            raise InputError("client.resolver_source_ip", "given without a resolver")

    def make_resolver(self) -> TtlResolver | None:
        """The TTL-honouring resolver this spec asks for, or ``None`` for the system's."""
        if self.resolver is None:
            return None
        from drdrill.probes.resolve import TtlResolver  # dnspython: only when it is needed

        ip, port = self.resolver
        return TtlResolver(ip, port, source_ip=self.resolver_source_ip)

    def build(self, max_connections: int) -> tuple[AiohttpClient, TtlResolver | None]:
        """The client (with up to ``max_connections`` connections) and its resolver, if any.

        Call it inside the event loop that will use the client (aiohttp binds to it).
        """
        resolver = self.make_resolver()
        client = AiohttpClient(
            max_connections, resolver=resolver, fresh_connections=self.fresh_connections
        )
        return client, resolver
