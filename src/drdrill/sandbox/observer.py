"""An independent observer of the sandbox's load balancers, for ground truth.

The rule: this file imports nothing but the standard library and shares no code with drdrill
(not its probes, HTTP clients, checks, clocks or log writers). It is run by file path with
``python -I`` (no site packages, no script directory on the path), so it cannot import drdrill
even by accident; a test checks its imports. Its checks are its own reading of the runbook's
three post-failover checks, each a plain ``http.client`` GET on a new connection:

- ``/health-simple.php`` answers 200;
- ``/`` answers 200 with "Visitor Analytics" in the body;
- ``/api.php?action=stats`` answers 200 with a JSON object whose ``status`` is ``"ok"``.

Every ``--interval`` (20 ms) it samples each target (a load balancer, named on the command line
as ``NAME=IP:PORT``): the three checks in turn, stopping at the first that fails. A sample
passes when all three pass. Each sample runs in a thread of its own, so one that hangs until its
timeout does not hold back the samples after it, and samples are judged in the order they were
sent, whatever order they complete in. It appends to ``--out`` (JSON lines):

- ``observer_started`` {pid, targets, interval_s, timeout_s};
- ``initial`` {target, state, mono, utc}: the first sample's state;
- ``transition`` {target, from, to, lo_mono, hi_mono, lo_utc, hi_utc, detail}: the state
  changed between ``lo`` (the send of the last sample in the old state) and ``hi`` (the
  earliest completion among the first :data:`CONFIRM` samples in the new state, or fewer when
  it changed again before); ``detail`` says which check failed; logged once so confirmed;
- ``judged`` {target, sent_mono}: every sample of the target sent up to ``sent_mono`` is judged
  (its transitions, if any, are above); written every :data:`JUDGED_EVERY_S` of send time;
- ``observer_stopped`` {samples, late}: how many samples each target took, and how many
  started late by more than one interval (the apparatus's own lateness) and by how much at most.

``mono`` is ``time.monotonic()`` (CLOCK_MONOTONIC, the axis of drdrill's timeline and truth
log), ``utc`` ISO 8601 wall-clock time. It exits on SIGTERM, or when ``--parent-pid`` is no
longer its parent.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

HOME_TEXT = "Visitor Analytics"
PATHS = ("/health-simple.php", "/", "/api.php?action=stats")


def _utc(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat()


def _get(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """One GET on a new connection: (status, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _judge(path: str, status: int, body: bytes) -> str | None:
    """Why a check failed, or None when it passed."""
    if status != 200:
        return f"{path}: status {status}"
    if path == "/" and HOME_TEXT.encode() not in body:
        return f"/: no '{HOME_TEXT}'"
    if path.startswith("/api.php"):
        try:
            data = json.loads(body)
        except ValueError:
            return f"{path}: not JSON"
        if not isinstance(data, dict) or data.get("status") != "ok":
            return f"{path}: status is not ok"
    return None


def sample(host: str, port: int, timeout: float) -> str | None:
    """The three checks in turn; why the first failing one failed, or None when all pass."""
    for path in PATHS:
        try:
            status, body = _get(host, port, path, timeout)
        except (OSError, http.client.HTTPException) as exc:
            return f"{path}: {type(exc).__name__}: {exc}"[:200]
        why = _judge(path, status, body)
        if why is not None:
            return why
    return None


class Log:
    """JSON lines appended with one write each (O_APPEND), from several threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, record: dict[str, object]) -> None:
        """Append one line."""
        line = (json.dumps(record) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


#: samples of one target in flight at once at most: a sample that hangs (a database restarting
#: behind the load balancer) does not hold back the ones after it, as it would in a sequential
#: loop, where one timed-out check made the observer blind for up to three timeouts
MAX_IN_FLIGHT = 16
#: how often (in send time) a target's ``judged`` line says how far its samples are judged
JUDGED_EVERY_S = 0.2
#: samples in a new state that confirm a change; its upper bound is their earliest completion
CONFIRM = 3


@dataclass
class _Result:
    """One sample's outcome: sent and done as (monotonic, wall) pairs, and why it failed."""

    sent: tuple[float, float]
    done: tuple[float, float]
    why: str | None


class Watch:
    """Samples one target every ``interval`` seconds and logs its transitions.

    Samples are sent on a grid, each in a thread of its own (up to :data:`MAX_IN_FLIGHT` at
    once), and judged in the order they were sent, whatever order they complete in: a sample
    sent later that passed says the target was back although an earlier one still hangs.
    """

    def __init__(
        self, name: str, host: str, port: int, interval: float, timeout: float, log: Log
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.log = log
        self.samples = 0
        self.late = 0
        self.late_max = 0.0
        self._lock = threading.Lock()
        self._results: dict[int, _Result] = {}
        self._next = 0  # the sequence number of the next sample to judge
        self._state: str | None = None
        self._last_sent: tuple[float, float] | None = None  # of the sample judged last
        self._judged_logged = float("-inf")  # the send time the last ``judged`` line gave
        self._pending: dict[str, object] | None = None  # a change waiting for its confirmation
        self._confirming = 0  # samples in the new state judged so far

    def run(self, stop: threading.Event) -> None:
        """Sample until ``stop`` is set; then wait for the samples in flight."""
        slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        threads: list[threading.Thread] = []
        seq = 0
        due = time.monotonic()
        while not stop.is_set():
            slots.acquire()  # all in flight: the next sample waits, and counts as late
            sent = (time.monotonic(), time.time())
            lateness = sent[0] - due
            if lateness > self.interval:
                self.late += 1
                self.late_max = max(self.late_max, lateness)
            thread = threading.Thread(
                target=self._sample, args=(seq, sent, slots), name=f"{self.name}-{seq}"
            )
            thread.daemon = True
            thread.start()
            threads = [t for t in threads if t.is_alive()] + [thread]
            seq += 1
            due += self.interval
            now = time.monotonic()
            if due < now:
                due = now  # a sample that started late: the next one starts now, not in a burst
            stop.wait(due - now)
        for thread in threads:
            thread.join(self.timeout * len(PATHS) + 1.0)

    def _sample(
        self, seq: int, sent: tuple[float, float], slots: threading.BoundedSemaphore
    ) -> None:
        try:
            why = sample(self.host, self.port, self.timeout)
            done = (time.monotonic(), time.time())
            with self._lock:
                self.samples += 1
                self._results[seq] = _Result(sent, done, why)
                while self._next in self._results:  # judge in send order
                    self._judge(self._results.pop(self._next))
                    self._next += 1
        finally:
            slots.release()

    def _judge(self, result: _Result) -> None:
        """The next sample in send order: log the first state, or a change of state.

        A change is logged once :data:`CONFIRM` samples in the new state are judged (or the
        state changes again first): its upper bound is the earliest completion among them.
        Each of them proves the new state by its completion, and a request sent as a database
        came back may hang a while and pass, while the next one passes at once.
        """
        now_state = "pass" if result.why is None else "fail"
        if self._state is None:
            self.log.write(
                {
                    "event": "initial",
                    "target": self.name,
                    "state": now_state,
                    "mono": result.done[0],
                    "utc": _utc(result.done[1]),
                    "detail": result.why,
                }
            )
        elif now_state != self._state and self._last_sent is not None:
            self._flush()  # a change that did not last CONFIRM samples is logged as it was
            # between the send of the last sample in the old state and the completion of this
            # one (sent after it, so the interval is never empty)
            self._pending = {
                "event": "transition",
                "target": self.name,
                "from": self._state,
                "to": now_state,
                "lo_mono": self._last_sent[0],
                "hi_mono": result.done[0],
                "lo_utc": _utc(self._last_sent[1]),
                "hi_utc": _utc(result.done[1]),
                "detail": result.why,
            }
            self._confirming = 1
        elif self._pending is not None:
            if result.done[0] < float(self._pending["hi_mono"]):  # type: ignore[arg-type]
                self._pending["hi_mono"] = result.done[0]
                self._pending["hi_utc"] = _utc(result.done[1])
            self._confirming += 1
            if self._confirming >= CONFIRM:
                self._flush()
        self._state = now_state
        self._last_sent = result.sent
        if self._pending is None and result.sent[0] - self._judged_logged >= JUDGED_EVERY_S:
            # a reader asking "what was the state at T" waits for this to pass T: a sample sent
            # before T may still hang, and the samples after it wait for it to be judged
            self.log.write({"event": "judged", "target": self.name, "sent_mono": result.sent[0]})
            self._judged_logged = result.sent[0]

    def _flush(self) -> None:
        """Log the change waiting for its confirming samples, if any."""
        if self._pending is not None:
            self.log.write(self._pending)
            self._pending = None

    def finish(self) -> None:
        """Log what is still waiting (the observer stops)."""
        with self._lock:
            self._flush()


def _target(text: str) -> tuple[str, str, int]:
    name, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not name or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=IP:PORT, got {text!r}")
    return name, host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Observe until SIGTERM (or the parent's death)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--target", type=_target, action="append", required=True)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--out", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log = Log(args.out)
    watches = [Watch(n, h, p, args.interval, args.timeout, log) for n, h, p in args.target]
    log.write(
        {
            "event": "observer_started",
            "pid": os.getpid(),
            "targets": {w.name: f"{w.host}:{w.port}" for w in watches},
            "interval_s": args.interval,
            "timeout_s": args.timeout,
            "mono": time.monotonic(),
            "utc": _utc(time.time()),
        }
    )
    threads = [
        threading.Thread(target=w.run, args=(stop,), name=f"observe-{w.name}", daemon=True)
        for w in watches
    ]
    for thread in threads:
        thread.start()
    print("observing " + " ".join(f"{w.name}={w.host}:{w.port}" for w in watches), flush=True)
    while not stop.wait(0.2):
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            stop.set()
    for thread in threads:
        thread.join(args.timeout * len(PATHS) + 1.0)
    for watch in watches:
        watch.finish()
    log.write(
        {
            "event": "observer_stopped",
            "samples": {w.name: w.samples for w in watches},
            "late": {w.name: {"count": w.late, "max_s": round(w.late_max, 4)} for w in watches},
            "mono": time.monotonic(),
            "utc": _utc(time.time()),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
