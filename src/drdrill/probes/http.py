"""Continuous HTTP probes: many endpoints sampled concurrently on a fixed time grid.

A :class:`ProbeRunner` runs a :class:`~drdrill.probes.sampler.ProbeLoop` (an asyncio loop that
sends one GET to each endpoint every ``interval_s`` on a grid anchored at the start, each
request with its own timeout, requests overlapping) and keeps what it reports:

- in ``mode="process"`` (the default) the loop runs in a worker process of its own
  (:mod:`drdrill.probes.worker`), so that a busy drill process (its threads, the GIL, pytest)
  cannot make the probes late; the worker streams each completed sample back and a reader
  thread here stores it. The client is described by a picklable :class:`ClientSpec`.
- in ``mode="thread"`` the loop runs in a thread of this process, as it used to; a Python
  ``client_factory`` can only be used this way.

Samples are kept in per-endpoint columns (44 bytes a sample; no bodies) and handed out as
:class:`~drdrill.probes.stats.Sample` values: each with its send and completion times, its
lateness against the grid and ``lag_s``, the worst lateness of the loop while it was in flight.
Outages are derived as results come in, in send order, and reported to an ``on_event``
callback as they start and end; each boundary is a bound (see :mod:`drdrill.probes.stats`).
The loop's own lateness is kept too: :meth:`ProbeRunner.lateness` and
:meth:`ProbeRunner.worst_lag`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from drdrill.defaults import MIN_INTERVAL_S
from drdrill.errors import InputError
from drdrill.probes.client import (
    DEFAULT_TIMEOUT_S,
    USER_AGENT,
    AiohttpClient,
    Check,
    ClientSpec,
    Endpoint,
    HttpClient,
    HttpClientFactory,
    ProbeFailure,
)
from drdrill.probes.sampler import Batch, ProbeLoop, SampleRecord, error_of
from drdrill.probes.stats import (
    DEFAULT_RECOVERY_SAMPLES,
    STARVED_LAG_FRACTION,
    Bound,
    EndpointStats,
    GoodSince,
    LoopLateness,
    Outage,
    OutageEvent,
    OutageTracker,
    Sample,
    all_good_since,
    endpoint_stats,
    first_good_run,
    is_starved,
    loop_lateness,
)
from drdrill.probes.worker import WorkerConfig, WorkerProcess

if TYPE_CHECKING:
    from drdrill.probes.resolve import Resolution, TtlResolver

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MIN_INTERVAL_S",
    "USER_AGENT",
    "AiohttpClient",
    "Bound",
    "Check",
    "ClientSpec",
    "Endpoint",
    "EndpointStats",
    "GoodSince",
    "HttpClient",
    "HttpClientFactory",
    "LoopLateness",
    "Outage",
    "OutageEvent",
    "ProbeFailure",
    "ProbeMode",
    "ProbeRunner",
    "Sample",
]

log = logging.getLogger(__name__)


#: where the probe loop runs: a worker process of its own, or a thread of this process.
ProbeMode = Literal["process", "thread"]

_CODE_PENDING = 255  # a row whose result has not come yet


class _Columns:
    """One endpoint's samples as typed arrays: compact, in send order, filled on completion.

    Rows come in completion order (a hanging request's after later ones), each at the row the
    loop gave it when sending, so a row may stay pending while later ones are filled.
    """

    __slots__ = ("complete", "due", "epoch", "error", "lag", "latency", "mono", "starved", "status")

    def __init__(self) -> None:
        self.due = array("d")
        self.mono = array("d")  # send time
        self.epoch = array("d")
        self.latency = array("d")
        self.lag = array("d")
        self.status = array("H")  # 0: no response
        self.error = array("B")  # 0: good; 255: pending; else 1 + index in ERROR_CLASSES
        self.starved = array("B")
        self.complete = 0  # rows before this index all have a result

    def put(self, record: SampleRecord, starved: bool) -> None:
        """Store one completed sample at its row."""
        row = record.row
        missing = row + 1 - len(self.mono)
        if missing > 0:
            for column in (self.due, self.mono, self.epoch, self.latency, self.lag):
                column.extend([0.0] * missing)
            self.status.extend([0] * missing)
            self.error.extend([_CODE_PENDING] * missing)
            self.starved.extend([0] * missing)
        self.due[row] = record.due
        self.mono[row] = record.send
        self.epoch[row] = record.epoch
        self.latency[row] = record.done - record.send
        self.lag[row] = record.lag
        self.status[row] = record.status
        self.error[row] = record.code
        self.starved[row] = starved

    def ready(self, row: int) -> bool:
        """Whether ``row`` has its result."""
        return row < len(self.error) and self.error[row] != _CODE_PENDING

    def sample(self, row: int) -> Sample:
        """The sample at ``row`` (which must have its result)."""
        status = self.status[row]
        return Sample(
            due_mono=self.due[row],
            send_mono=self.mono[row],
            send_epoch=self.epoch[row],
            status=status or None,
            latency_s=self.latency[row],
            error=error_of(self.error[row]),
            lag_s=self.lag[row],
            starved=bool(self.starved[row]),
        )


class _EndpointState:
    __slots__ = ("columns", "endpoint", "tracker")

    def __init__(self, endpoint: Endpoint, recovery_samples: int) -> None:
        self.endpoint = endpoint
        self.columns = _Columns()
        self.tracker = OutageTracker(endpoint.url, recovery_samples)


class ProbeRunner:
    """Samples every endpoint each ``interval_s`` until stopped, from a worker process (the
    default) or a background thread.

    ``client`` describes the HTTP client (default: aiohttp with the system resolver and
    kept-alive connections). ``client_factory`` is the older way, a Python callable building a
    client inside the loop: it cannot cross to a worker process, so it implies
    ``mode="thread"``. ``mode`` defaults to ``"process"`` unless a ``client_factory`` is given.

    ``stop()`` sends no new samples and then *waits* for the requests in flight, each of which
    ends by its own timeout at the latest; so it returns within the longest endpoint timeout
    (plus a grace period after which a worker that does not exit is killed), and every sample
    sent has its result. ``on_event`` is called for each outage start and end, in send order
    per endpoint (on the reader thread in process mode, on the probe thread in thread mode);
    it must be quick, and its errors are logged, never raised into the run. If the loop falls
    more than one interval behind, the grid points it missed are skipped and counted in
    :attr:`skipped_ticks`. A failure that the loop's own lateness may explain is classified
    starved with ``starved_fraction`` (:func:`~drdrill.probes.stats.is_starved`).
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        interval_s: float = 0.1,
        recovery_samples: int = DEFAULT_RECOVERY_SAMPLES,
        on_event: Callable[[OutageEvent], None] | None = None,
        *,
        client: ClientSpec | None = None,
        client_factory: HttpClientFactory | None = None,
        mode: ProbeMode | None = None,
        starved_fraction: float = STARVED_LAG_FRACTION,
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
        if client is not None and client_factory is not None:
            raise InputError("client", "give a client spec or a client factory, not both")
        if mode is None:
            mode = "thread" if client_factory is not None else "process"
        if mode not in ("process", "thread"):
            raise InputError("mode", f"{mode!r} is neither 'process' nor 'thread'")
        if mode == "process" and client_factory is not None:
            raise InputError(
                "client_factory", "a Python client factory runs in thread mode only; pass client="
            )
        if not (math.isfinite(starved_fraction) and starved_fraction > 0):
            raise InputError("starved_fraction", f"{starved_fraction} is not a positive fraction")
        self.endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self.interval_s = interval_s
        self.recovery_samples = recovery_samples
        self.mode: ProbeMode = mode
        self.client = client if client is not None else ClientSpec()
        self.starved_fraction = starved_fraction
        self._on_event = on_event
        self._client_factory = client_factory
        self._states = {e.url: _EndpointState(e, recovery_samples) for e in self.endpoints}
        self._by_index = list(self._states.values())
        self._lock = threading.Lock()
        self._grid_start_mono: float | None = None
        # the loop's lateness: heartbeat windows (due, ran) and each tick's lateness
        self._beat_due = array("d")
        self._beat_ran = array("d")
        self._beat_late = array("d")
        self._tick_late = array("d")
        self._starved = 0
        self._resolutions: list[Resolution] = []
        #: grid points skipped because the loop was more than one interval late.
        self.skipped_ticks = 0
        #: seconds from start() to the first grid point (the worker's spawn, in process mode)
        self.startup_s: float | None = None
        # process mode
        self._worker: WorkerProcess | None = None
        # thread mode
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling; returns once the first grid point is scheduled."""
        if self._thread is not None or self._worker is not None:
            raise RuntimeError("probe runner already started")
        if self.mode == "process":
            self._worker = WorkerProcess(
                WorkerConfig(self.endpoints, self.interval_s, self.client, os.getpid()),
                self._ingest,
            )
            self._grid_start_mono = self._worker.start()
            self.startup_s = self._worker.startup_s
            return
        begun = time.monotonic()
        self._thread = threading.Thread(target=self._run_thread, name="drdrill-probes", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        self.startup_s = time.monotonic() - begun

    def stop(self) -> None:
        """Stop sampling and wait for the requests in flight (each at most its timeout).

        Called from an ``on_event`` callback it only asks the loop to stop (it cannot wait for
        the thread it runs on); a later ``stop()`` from elsewhere waits.
        """
        if self._worker is not None:
            self._worker.stop(max(e.timeout_s for e in self.endpoints))
            return
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                loop.call_soon_threadsafe(stopping.set)
        if thread is not threading.current_thread():  # not from an on_event callback
            thread.join()

    @property
    def running(self) -> bool:
        """Whether the probe loop (its worker process or thread) is alive."""
        if self._worker is not None:
            return self._worker.alive
        return self._thread is not None and self._thread.is_alive()

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id in process mode, once started."""
        return None if self._worker is None else self._worker.pid

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
            end = columns.complete
            first = 0 if since_mono is None else bisect_left(columns.mono, since_mono, 0, end)
            return [columns.sample(row) for row in range(first, end)]

    def _samples_around(self, url: str, t_mono: float) -> list[Sample]:
        # the samples from ``t_mono`` on, and the counting one before: it bounds the restore
        columns = self._state(url).columns
        with self._lock:
            end = columns.complete
            first = bisect_left(columns.mono, t_mono, 0, end) - 1
            while first > 0 and columns.starved[first]:
                first -= 1
            return [columns.sample(row) for row in range(max(0, first), end)]

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
        """Availability, outages, latency and starved samples of every endpoint, in order."""
        return [
            endpoint_stats(e.url, e.name, self.samples(e.url), self.recovery_samples)
            for e in self.endpoints
        ]

    def first_good_after(self, url: str, t_mono: float, n: int) -> Sample | None:
        """The first sample of ``url`` sent at or after ``t_mono`` that starts ``n`` good ones."""
        return first_good_run(self.samples(url, t_mono), t_mono, n)

    def all_good_since(self, t_mono: float, n_consecutive: int) -> GoodSince | None:
        """The first moment at or after ``t_mono`` from which every endpoint was on a run of
        ``n_consecutive`` good samples, as a bound (``mono`` its upper end, ``uncertainty_s``
        its width); ``None`` if not (yet) reached."""
        return all_good_since(
            [self._samples_around(e.url, t_mono) for e in self.endpoints], t_mono, n_consecutive
        )

    def lateness(self) -> LoopLateness:
        """How late the probe loop has run so far (heartbeats, ticks) and the starved count."""
        with self._lock:
            beats = self._beat_late.tolist()
            ticks = self._tick_late.tolist()
            skipped, starved = self.skipped_ticks, self._starved
        return loop_lateness(beats, ticks, self.interval_s, skipped, starved)

    def worst_lag(self, start_mono: float, end_mono: float) -> float:
        """The worst lateness of the probe loop at any moment in ``[start_mono, end_mono]``, in
        seconds (0.0 if none was reported there).

        A stall is known once the loop runs again; anything after :attr:`lag_known_until_mono`
        has not been reported yet, so a caller widening a measurement by this should ask for a
        span that ended before it.
        """
        with self._lock:
            first = bisect_right(self._beat_ran, start_mono)
            last = bisect_left(self._beat_due, end_mono)
            return max(self._beat_late[first:last], default=0.0)

    @property
    def lag_known_until_mono(self) -> float | None:
        """Until when the loop's lateness has been reported (its last heartbeat), or None."""
        with self._lock:
            return self._beat_ran[-1] if self._beat_ran else None

    def resolutions(self) -> list[Resolution]:
        """Every answer (and failure) the probes' own TTL resolver got, oldest first: what
        ``TtlResolver.history()`` gives, from whichever process the resolver lives in. Empty
        without a ``ClientSpec.resolver`` (a ``client_factory``'s resolver is its own)."""
        with self._lock:
            return list(self._resolutions)

    def dns_switches(self, name: str | None = None) -> list[Resolution]:
        """The answers whose address differs from the one before (the first one included):
        when the probes moved from one address to another, as ``TtlResolver.switches()``."""
        from drdrill.probes.resolve import ip_switches  # dnspython: only when it is needed

        return ip_switches(self.resolutions(), name)

    def _state(self, url: str) -> _EndpointState:
        try:
            return self._states[url]
        except KeyError:
            raise InputError("url", f"{url!r} is not probed by this runner") from None

    # -- what the loop reports ---------------------------------------------------------------------

    def _ingest(self, batch: Batch) -> None:
        """Store a batch from the loop, derive outages in send order, then emit their events."""
        events: list[OutageEvent] = []
        with self._lock:
            for due, ran, skipped in batch.ticks:
                self._tick_late.append(ran - due)
                self.skipped_ticks += skipped
            for due, ran in batch.heartbeats:
                self._beat_due.append(due)
                self._beat_ran.append(ran)
                self._beat_late.append(ran - due)
            touched: dict[int, _EndpointState] = {}
            for record in batch.samples:
                state = self._by_index[record.endpoint_no]
                starved = is_starved(
                    error_of(record.code),
                    record.lag,
                    state.endpoint.timeout_s,
                    self.starved_fraction,
                )
                self._starved += starved
                state.columns.put(record, starved)
                touched[record.endpoint_no] = state
            for state in touched.values():
                columns = state.columns
                # outages are derived in send order: advance over every row now known
                while columns.ready(columns.complete):
                    event = state.tracker.feed(columns.sample(columns.complete))
                    columns.complete += 1
                    if event is not None:
                        events.append(event)
            self._resolutions.extend(batch.resolutions)
        for event in events:
            self._emit(event)

    def _emit(self, event: OutageEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("outage event callback failed on %s", event.kind)

    # -- thread mode -------------------------------------------------------------------------------

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._thread_main())
        except BaseException as exc:  # handed to start() or logged, never lost
            if not self._started.is_set():
                self._startup_error = exc
            else:
                log.exception("probe runner failed")
        finally:
            self._started.set()
            loop.close()

    async def _thread_main(self) -> None:
        self._stopping = asyncio.Event()
        resolvers: list[TtlResolver | None] = []
        factory = self._client_factory

        def make_client(limit: int) -> HttpClient:
            if factory is not None:
                return factory(limit)
            client, resolver = self.client.build(limit)
            resolvers.append(resolver)
            return client

        def started(t0: float) -> None:
            self._grid_start_mono = t0
            self._started.set()

        probe = ProbeLoop(
            self.endpoints,
            self.interval_s,
            make_client,
            self._ingest,
            on_started=started,
            resolver=lambda: resolvers[0] if resolvers else None,
        )
        await probe.run(self._stopping)
