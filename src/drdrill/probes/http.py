"""Continuous HTTP probes: many endpoints sampled concurrently on a fixed time grid.

A :class:`ProbeRunner` runs its own asyncio loop in a background thread. Every ``interval_s`` on
a grid anchored at the start (``t0 + k * interval_s`` on the monotonic clock, so lateness never
accumulates) it sends one GET to each endpoint. Each request has its own timeout and requests
overlap: a hanging one holds its own connection while the next sample opens or reuses another,
so a slow endpoint delays neither its own next sample nor anyone else's.

Samples are kept in per-endpoint columns (35 bytes a sample; no bodies) and handed out as
:class:`~drdrill.probes.stats.Sample` values. Outages are derived as results come in, in send
order, and reported to an ``on_event`` callback as they start and end.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import re
import resource
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, TypeAlias
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc

from drdrill.errors import DrillError, InputError
from drdrill.probes.stats import (
    DEFAULT_RECOVERY_SAMPLES,
    ERROR_CHECK_FAILED,
    ERROR_CLASSES,
    ERROR_CONNECT,
    ERROR_DNS,
    ERROR_OTHER,
    ERROR_PROTOCOL,
    ERROR_REFUSED,
    ERROR_RESET,
    ERROR_TIMEOUT,
    ERROR_TLS,
    EndpointStats,
    GoodSince,
    Outage,
    OutageEvent,
    OutageTracker,
    Sample,
    all_good_since,
    endpoint_stats,
    first_good_run,
)

__all__ = [
    "MIN_INTERVAL_S",
    "AiohttpClient",
    "Check",
    "Endpoint",
    "EndpointStats",
    "GoodSince",
    "HttpClient",
    "HttpClientFactory",
    "Outage",
    "OutageEvent",
    "ProbeFailure",
    "ProbeRunner",
    "Sample",
]

log = logging.getLogger(__name__)

#: the shortest sampling interval accepted (100 Hz an endpoint).
MIN_INTERVAL_S = 0.01
#: the default per-request timeout.
DEFAULT_TIMEOUT_S = 1.0
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
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError("url", f"{self.url!r} is not an http:// or https:// URL with a host")
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


_ERROR_CODES = {name: code for code, name in enumerate(ERROR_CLASSES, start=1)}
_CODE_GOOD = 0
_CODE_PENDING = 255


class _Columns:
    """One endpoint's samples as typed arrays: compact, in send order, filled on completion."""

    __slots__ = ("complete", "due", "epoch", "error", "latency", "mono", "status")

    def __init__(self) -> None:
        self.due = array("d")
        self.mono = array("d")
        self.epoch = array("d")
        self.latency = array("d")
        self.status = array("H")  # 0: no response
        self.error = array("B")  # 0: good; 255: still in flight; else 1 + index in ERROR_CLASSES
        self.complete = 0  # rows before this index all have a result

    def reserve(self, due: float, mono: float, epoch: float) -> int:
        self.due.append(due)
        self.mono.append(mono)
        self.epoch.append(epoch)
        self.latency.append(0.0)
        self.status.append(0)
        self.error.append(_CODE_PENDING)
        return len(self.mono) - 1

    def sample(self, row: int) -> Sample:
        code = self.error[row]
        status = self.status[row]
        return Sample(
            due_mono=self.due[row],
            send_mono=self.mono[row],
            send_epoch=self.epoch[row],
            status=status or None,
            latency_s=self.latency[row],
            error=None if code == _CODE_GOOD else ERROR_CLASSES[code - 1],
        )


class _EndpointState:
    __slots__ = ("columns", "endpoint", "tracker")

    def __init__(self, endpoint: Endpoint, recovery_samples: int) -> None:
        self.endpoint = endpoint
        self.columns = _Columns()
        self.tracker = OutageTracker(endpoint.url, recovery_samples)


class ProbeRunner:
    """Samples every endpoint each ``interval_s`` from a background thread until stopped.

    ``stop()`` sends no new samples and then *waits* for the requests in flight, each of which
    ends by its own timeout at the latest; so it returns within the longest endpoint timeout, and
    every sample sent has its result. ``on_event`` is called on the probe thread for each outage
    start and end, in send order (an outage start is reported once every earlier sample of that
    endpoint is known, so at most one timeout late); it must be quick, and its errors are logged,
    never raised into the run. If the loop falls more than one interval behind (an overloaded
    machine), the grid points it missed are skipped and counted in :attr:`skipped_ticks`.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        interval_s: float = 0.1,
        recovery_samples: int = DEFAULT_RECOVERY_SAMPLES,
        on_event: Callable[[OutageEvent], None] | None = None,
        *,
        client_factory: HttpClientFactory = AiohttpClient,
    ) -> None:
        """Probe ``endpoints`` (distinct URLs) every ``interval_s`` (at least 10 ms)."""
        if not endpoints:
            raise InputError("endpoints", "no endpoint to probe")
        if not (math.isfinite(interval_s) and interval_s >= MIN_INTERVAL_S):
            raise InputError("interval", f"{interval_s} s is under the {MIN_INTERVAL_S} s minimum")
        if recovery_samples < 1:
            raise InputError("recovery_samples", f"{recovery_samples} is not at least 1")
        urls = [e.url for e in endpoints]
        duplicate = next((u for u in urls if urls.count(u) > 1), None)
        if duplicate is not None:
            raise InputError("endpoints", f"{duplicate!r} is listed twice")
        self.endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self.interval_s = interval_s
        self.recovery_samples = recovery_samples
        self._on_event = on_event
        self._client_factory = client_factory
        self._states = {e.url: _EndpointState(e, recovery_samples) for e in self.endpoints}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._grid_start_mono: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        #: grid points skipped because the loop was more than one interval late.
        self.skipped_ticks = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling; returns once the first grid point is scheduled."""
        if self._thread is not None:
            raise RuntimeError("probe runner already started")
        self._thread = threading.Thread(target=self._run_thread, name="drdrill-probes", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error

    def stop(self) -> None:
        """Stop sampling and wait for the requests in flight (each at most its timeout)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stopping.set)
        thread.join()

    @property
    def running(self) -> bool:
        """Whether the probe thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def grid_start_mono(self) -> float | None:
        """The monotonic time of grid point 0, once started."""
        return self._grid_start_mono

    def __enter__(self) -> ProbeRunner:
        """Start on entry."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on exit, even on an error."""
        self.stop()

    # -- queries (any thread) ----------------------------------------------------------------------

    def samples(self, url: str, since_mono: float | None = None) -> list[Sample]:
        """The samples of ``url`` whose result is known, in send order.

        While running, this stops before the first request still in flight, so a hanging
        request is never skipped over as if it had not been sent. With ``since_mono``, only the
        samples sent at or after it (found by bisection, so polling a long run stays cheap).
        """
        columns = self._state(url).columns
        with self._lock:
            first = 0 if since_mono is None else bisect_left(columns.mono, since_mono)
            return [columns.sample(row) for row in range(first, columns.complete)]

    def _samples_around(self, url: str, t_mono: float) -> list[Sample]:
        # the samples from ``t_mono`` on, and the one before: it bounds the uncertainty
        columns = self._state(url).columns
        with self._lock:
            first = max(0, bisect_left(columns.mono, t_mono) - 1)
            return [columns.sample(row) for row in range(first, columns.complete)]

    def sample_count(self, url: str) -> int:
        """How many samples of ``url`` have a result (cheaper than ``len(samples(url))``)."""
        columns = self._state(url).columns
        with self._lock:
            return columns.complete

    def outages(self, url: str) -> list[Outage]:
        """The outages of ``url`` derived so far, an open one last."""
        state = self._state(url)
        with self._lock:
            return state.tracker.outages

    def stats(self) -> list[EndpointStats]:
        """Availability, outages and latency of every endpoint, in the order given."""
        return [
            endpoint_stats(e.url, e.name, self.samples(e.url), self.recovery_samples)
            for e in self.endpoints
        ]

    def first_good_after(self, url: str, t_mono: float, n: int) -> Sample | None:
        """The first sample of ``url`` sent at or after ``t_mono`` that starts ``n`` good ones."""
        return first_good_run(self.samples(url, t_mono), t_mono, n)

    def all_good_since(self, t_mono: float, n_consecutive: int) -> GoodSince | None:
        """The first moment at or after ``t_mono`` from which every endpoint was on a run of
        ``n_consecutive`` good samples, with its uncertainty; ``None`` if not (yet) reached."""
        return all_good_since(
            [self._samples_around(e.url, t_mono) for e in self.endpoints], t_mono, n_consecutive
        )

    def _state(self, url: str) -> _EndpointState:
        try:
            return self._states[url]
        except KeyError:
            raise InputError("url", f"{url!r} is not probed by this runner") from None

    # -- the probe thread --------------------------------------------------------------------------

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # handed to start() or logged, never lost
            if not self._started.is_set():
                self._startup_error = exc
            else:
                log.exception("probe runner failed")
        finally:
            self._started.set()
            loop.close()

    def _connection_limit(self) -> int:
        # each endpoint can have ceil(timeout / interval) requests hanging at once, plus the new
        # one; the pool must never make a sample wait for a connection slot
        return sum(math.ceil(e.timeout_s / self.interval_s) + 2 for e in self.endpoints)

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        limit = self._connection_limit()
        soft_files, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft_files != resource.RLIM_INFINITY and limit > soft_files:
            # not raised here: a library should not change process limits behind one's back
            log.warning(
                "up to %d probe connections may hang at once but only %d files may be open "
                "(ulimit -n); samples past that fail as 'connect'",
                limit,
                soft_files,
            )
        client = self._client_factory(limit)
        try:
            t0 = loop.time()  # asyncio's clock is time.monotonic()
            self._grid_start_mono = t0
            self._handle = loop.call_at(t0, self._tick, client, t0, 0)
            self._started.set()
            await self._stopping.wait()
            self._handle.cancel()
            while self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
        finally:
            await client.aclose()

    def _tick(self, client: HttpClient, t0: float, k: int) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        behind = int((now - t0) / self.interval_s) - k
        if behind >= 1:
            # more than one interval late: skip the missed grid points rather than bunch up
            self.skipped_ticks += behind
            k += behind
        due = t0 + k * self.interval_s
        for state in self._states.values():
            task = loop.create_task(self._sample(client, state, due))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        self._handle = loop.call_at(t0 + (k + 1) * self.interval_s, self._tick, client, t0, k + 1)

    async def _sample(self, client: HttpClient, state: _EndpointState, due: float) -> None:
        endpoint = state.endpoint
        columns = state.columns
        send_mono = time.monotonic()
        send_epoch = time.time()
        with self._lock:
            row = columns.reserve(due, send_mono, send_epoch)
        status = 0
        error: str | None
        try:
            async with asyncio.timeout(endpoint.timeout_s):
                status, body = await client.get(endpoint.url)
            error = None if endpoint.check.passes(status, body) else ERROR_CHECK_FAILED
        except TimeoutError:
            error = ERROR_TIMEOUT
        except ProbeFailure as exc:
            error = exc.error
        except Exception as exc:  # a client bug must not stop the sampling
            log.warning("probe of %s failed unexpectedly: %r", endpoint.url, exc)
            error = ERROR_OTHER
        latency = time.monotonic() - send_mono
        events: list[OutageEvent] = []
        with self._lock:
            columns.latency[row] = latency
            columns.status[row] = status
            columns.error[row] = _CODE_GOOD if error is None else _ERROR_CODES[error]
            # outages are derived in send order: advance over every row now known
            while (
                columns.complete < len(columns.error)
                and columns.error[columns.complete] != _CODE_PENDING
            ):
                event = state.tracker.feed(columns.sample(columns.complete))
                columns.complete += 1
                if event is not None:
                    events.append(event)
        for event in events:
            self._emit(event)

    def _emit(self, event: OutageEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("outage event callback failed on %s", event.kind)
