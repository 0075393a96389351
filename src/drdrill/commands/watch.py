"""``drdrill watch``: probe URLs on a fixed grid, print outages as they happen, then a summary.

Live lines (one an outage start, one an outage end, UTC times) go to stdout, or to stderr with
``--json`` so that stdout holds only the final JSON object. The run ends after ``--duration``
seconds, or on Ctrl-C or SIGTERM, and prints its summary either way (exit status 0: stopping
a watch is the normal way to end it). In the summary an outage still open at the end has
``end_utc``, ``duration_s`` and ``end_uncertainty_s`` null: its end is not known, and a
duration up to "now" would read as a measured value.

Each boundary is printed as the latest moment it can have happened (the completion of the first
sample on the other side) with the span before it in which it lies (back to the send of the
last sample on this side): the true time is in ``[utc - uncertainty, utc]``. The probe loop runs
in a thread of this process (nothing else runs here), and reports how late it ran.

Everything it prints goes out through :func:`emit`, redacted (:mod:`drdrill.redact`): a URL
given with ``user:password@`` or a signed query (``?token=``, ``X-Amz-Signature=``) is shown
with those masked and the rest as given.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from drdrill.defaults import DEFAULT_TIMEOUT_S, MIN_INTERVAL_S
from drdrill.errors import InputError
from drdrill.probes.stats import DEFAULT_RECOVERY_SAMPLES
from drdrill.redact import redact, redact_data

if TYPE_CHECKING:
    from drdrill.probes.http import Endpoint, EndpointStats, LoopLateness, Outage, OutageEvent


HELP_INTERVAL = f"seconds between samples of each URL (default 0.1, at least {MIN_INTERVAL_S})"
HELP_DURATION = "seconds to watch (default: until Ctrl-C)"
HELP_TIMEOUT = f"seconds before a request counts as failed (default {DEFAULT_TIMEOUT_S:g})"
HELP_RECOVERY = f"consecutive good samples that end an outage (default {DEFAULT_RECOVERY_SAMPLES})"
HELP_STATUS = "accepted status code; repeat or comma-separate for several (default 200)"
HELP_JSON = "print one JSON summary object on stdout; live outage lines go to stderr"
EPILOG = (
    "An outage runs from the first failed sample to the first of N consecutive good ones. "
    "Each boundary is printed as the latest moment it can be (the completion of the first "
    "sample on the other side) with its uncertainty: it lies in the span that many seconds "
    "before. Availability is the percentage of good samples among those that count (a "
    "timeout while the probe loop itself was late is 'starved' and counts neither way); "
    "latency percentiles are over good samples only. In --json, an outage still open at the "
    "end has end_utc, duration_s and end_uncertainty_s null."
)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """The validated command line of ``drdrill watch``."""

    endpoints: tuple[Endpoint, ...]
    interval_s: float
    duration_s: float | None
    recovery_samples: int
    as_json: bool
    #: a DNS server (ip, port) to resolve names through, honouring each answer's TTL
    resolver: tuple[str, int] | None = None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``drdrill watch``."""
    parser = sub.add_parser(
        "watch",
        help="probe URLs continuously and report outages",
        description="Probe URLs on a fixed time grid and report outages, availability, latency.",
        epilog=EPILOG,
    )
    parser.add_argument("urls", nargs="+", metavar="URL", help="http:// or https:// URL to probe")
    # numbers are read as text so that a bad one gives our one-line InputError, not argparse's
    parser.add_argument("--interval", default="0.1", metavar="S", help=HELP_INTERVAL)
    parser.add_argument("--duration", default=None, metavar="S", help=HELP_DURATION)
    parser.add_argument("--timeout", default=str(DEFAULT_TIMEOUT_S), metavar="S", help=HELP_TIMEOUT)
    parser.add_argument(
        "--recovery-samples", default=str(DEFAULT_RECOVERY_SAMPLES), metavar="N", help=HELP_RECOVERY
    )
    parser.add_argument(
        "--expect-status", action="append", default=None, metavar="CODE", help=HELP_STATUS
    )
    parser.add_argument("--json", action="store_true", dest="as_json", help=HELP_JSON)
    parser.add_argument(
        "--resolver",
        default=None,
        metavar="IP:PORT",
        help="resolve names through this DNS server, honouring each answer's TTL, with a new "
        "connection each sample: what a user sees across a DNS failover (e.g. the sandbox's "
        "127.0.3.1:25353)",
    )
    parser.set_defaults(run=run)


def _resolver(text: str | None) -> tuple[str, int] | None:
    """``IP:PORT`` of a DNS server (``[v6]:PORT`` for IPv6), checked."""
    import ipaddress

    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = str(ipaddress.ip_address(host))
        number = int(port)
    except ValueError:
        raise InputError("--resolver", f"{text!r} is not IP:PORT") from None
    if not sep or not 1 <= number <= 65535:
        raise InputError("--resolver", f"{text!r}: port must be 1-65535")
    return ip, number


#: the largest values taken: a probe's timeout of 5 minutes, a sample an hour, 30 days of
#: watching, 10,000 good samples to call an endpoint recovered
MAX_TIMEOUT_S = 300.0
MAX_INTERVAL_S = 3600.0
MAX_DURATION_S = 30 * 86400.0
MAX_RECOVERY_SAMPLES = 10_000


def _seconds(text: str, where: str, minimum: float = 0.0, maximum: float = math.inf) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(where, f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(where, f"{text} s is not a positive number of seconds")
    if value < minimum:
        raise InputError(where, f"{text} s is under the {minimum:g} s minimum")
    if value > maximum:
        raise InputError(where, f"{text} s is over the {maximum:g} s maximum")
    return value


def _statuses(values: list[str] | None) -> frozenset[int]:
    if not values:
        return frozenset({200})
    codes: set[int] = set()
    for value in values:
        for part in value.split(","):
            try:
                code = int(part)
            except ValueError:
                raise InputError("--expect-status", f"{part!r} is not a status code") from None
            if not 100 <= code <= 599:
                raise InputError("--expect-status", f"{code} is not an HTTP status code")
            codes.add(code)
    return frozenset(codes)


def parse_options(args: argparse.Namespace) -> WatchOptions:
    """Validate the command line; bad values raise :class:`InputError` naming the option."""
    from drdrill.probes.http import Check, Endpoint

    interval = _seconds(args.interval, "--interval", MIN_INTERVAL_S, MAX_INTERVAL_S)
    duration = (
        None if args.duration is None else _seconds(args.duration, "--duration", 0, MAX_DURATION_S)
    )
    timeout = _seconds(args.timeout, "--timeout", 0, MAX_TIMEOUT_S)
    try:
        recovery = int(args.recovery_samples)
    except ValueError:
        raise InputError(
            "--recovery-samples", f"{args.recovery_samples!r} is not a count"
        ) from None
    if not 1 <= recovery <= MAX_RECOVERY_SAMPLES:
        raise InputError("--recovery-samples", f"{recovery} is not 1-{MAX_RECOVERY_SAMPLES}")
    check = Check(status=_statuses(args.expect_status))
    endpoints = tuple(Endpoint(url, check=check, timeout_s=timeout) for url in args.urls)
    if len({e.url for e in endpoints}) != len(endpoints):
        raise InputError("URL", "a URL is given twice")
    resolver = _resolver(args.resolver)
    return WatchOptions(endpoints, interval, duration, recovery, args.as_json, resolver)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_event(event: OutageEvent) -> str:
    """One live line for an outage start or end."""
    outage = event.outage
    if event.kind == "started":
        since = (
            "down since probing began"
            if outage.start_uncertainty_s is None
            else f"within the {outage.start_uncertainty_s:.3f} s before"
        )
        return (
            f"{iso_utc(outage.start_utc)} outage started {outage.endpoint}: "
            f"{outage.first_error} ({since})"
        )
    assert outage.end_utc is not None and outage.duration_s is not None
    return (
        f"{iso_utc(outage.end_utc)} outage ended   {outage.endpoint}: "
        f"{_duration(outage)}, {outage.failed_samples} failed samples "
        f"(within the {outage.end_uncertainty_s:.3f} s before)"
    )


def _duration(outage: Outage) -> str:
    assert outage.duration_s is not None
    if outage.duration_uncertainty_s is None:
        return f"at least {outage.duration_s:.3f} s"
    return f"{outage.duration_s:.3f} ± {outage.duration_uncertainty_s:.3f} s"


def _outage_json(outage: Outage) -> dict[str, object]:
    return {
        "start_utc": iso_utc(outage.start_utc),
        "end_utc": None if outage.end_utc is None else iso_utc(outage.end_utc),
        "duration_s": outage.duration_s,
        "duration_uncertainty_s": outage.duration_uncertainty_s,
        "start_uncertainty_s": outage.start_uncertainty_s,
        "end_uncertainty_s": outage.end_uncertainty_s,
    }


def _ms_or_none(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def summary_json(stats: list[EndpointStats], lateness: LoopLateness) -> dict[str, object]:
    """The ``--json`` summary: one entry an endpoint, in the order given, and the probe loop's
    own lateness."""
    return {
        "endpoints": [
            {
                "url": s.url,
                "samples": s.samples,
                "starved_samples": s.starved_samples,
                "availability": s.availability,
                "outages": [_outage_json(o) for o in s.outages],
                "latency_ms": {
                    "p50": s.latency_p50_ms,
                    "p95": s.latency_p95_ms,
                    "p99": s.latency_p99_ms,
                },
            }
            for s in stats
        ],
        "probe_loop": {
            "late_max_ms": _ms_or_none(lateness.max_s),
            "late_p99_ms": _ms_or_none(lateness.p99_s),
            "ticks_more_than_an_interval_late": lateness.late_ticks,
            "skipped_ticks": lateness.skipped_ticks,
            "starved_samples": lateness.starved_samples,
        },
    }


def summary_text(stats: list[EndpointStats], lateness: LoopLateness) -> str:
    """The human summary: per endpoint its figures, then one line an outage; the probe loop's
    lateness last."""
    lines: list[str] = []
    for s in stats:
        availability = "-" if s.availability is None else f"{s.availability:.3f}%"
        starved = f"  starved {s.starved_samples}" if s.starved_samples else ""
        lines.append(s.url)
        lines.append(
            f"  samples {s.samples}  availability {availability}  outages {len(s.outages)}  "
            f"latency p50 {_ms(s.latency_p50_ms)}  p95 {_ms(s.latency_p95_ms)}  "
            f"p99 {_ms(s.latency_p99_ms)}{starved}"
        )
        for o in s.outages:
            start = (
                "start unknown"
                if o.start_uncertainty_s is None
                else f"start uncertainty {o.start_uncertainty_s:.3f} s"
            )
            if o.end_utc is None:
                lines.append(f"  outage {iso_utc(o.start_utc)} -> still open ({start})")
            else:
                lines.append(
                    f"  outage {iso_utc(o.start_utc)} -> {iso_utc(o.end_utc)}  "
                    f"{_duration(o)} ({start}, end uncertainty {o.end_uncertainty_s:.3f} s)"
                )
    lines.append(lateness.describe())
    return "\n".join(lines)


def emit(output: str | Mapping[str, object], stream: TextIO) -> None:
    """Print a line (or the ``--json`` object, as one line of JSON) with its secrets masked:
    the one way out of ``drdrill watch``, its live lines, summary and messages alike."""
    text = redact(output) if isinstance(output, str) else json.dumps(redact_data(output))
    print(text, file=stream, flush=True)


class _Terminated(Exception):
    """SIGTERM, turned into an exception so the summary still prints."""


@contextmanager
def _sigterm_ends_the_wait() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; nothing to install
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait(duration_s: float | None) -> None:
    deadline = None if duration_s is None else time.monotonic() + duration_s
    while True:
        remaining = 3600.0 if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(remaining, 3600.0))


def run(args: argparse.Namespace) -> int:
    """Watch until the duration ends or Ctrl-C, then print the summary; exit status 0, or 1
    when an endpoint never answered well (every sample of it failed)."""
    from drdrill.probes.client import ClientSpec
    from drdrill.probes.http import ProbeRunner

    options = parse_options(args)
    live: TextIO = sys.stderr if options.as_json else sys.stdout

    def print_event(event: OutageEvent) -> None:
        emit(format_event(event), live)

    runner = ProbeRunner(
        options.endpoints,
        interval_s=options.interval_s,
        recovery_samples=options.recovery_samples,
        on_event=print_event,
        mode="thread",
        client=None
        if options.resolver is None
        else ClientSpec(resolver=options.resolver, fresh_connections=True),
    )
    until = "Ctrl-C" if options.duration_s is None else f"{options.duration_s:g} s or Ctrl-C"
    emit(
        f"watching {len(options.endpoints)} URL(s) every {options.interval_s:g} s until {until}",
        sys.stderr,
    )
    runner.start()
    try:
        with _sigterm_ends_the_wait():
            _wait(options.duration_s)
    except (KeyboardInterrupt, _Terminated):
        emit("stopping: waiting for requests in flight", sys.stderr)
    finally:
        runner.stop()
    stats, lateness = runner.stats(), runner.lateness()
    if options.as_json:
        emit(summary_json(stats, lateness), sys.stdout)
    else:
        emit(summary_text(stats, lateness), sys.stdout)
    never = [s.url for s in stats if s.samples > 0 and s.good_samples == 0]
    if never:
        emit(f"drdrill watch: never came up: {', '.join(never)}", sys.stderr)
        return 1
    return 0
