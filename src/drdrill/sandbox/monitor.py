"""CloudWatch + SNS of the sandbox: a health alarm on the primary region's load balancer.

Every ``alarm_period`` the monitor asks the primary load balancer's health endpoint; after
``alarm_evaluation_periods`` failures in a row the alarm goes to ALARM, a notification is
appended to the SNS log and delivered to each subscriber (an HTTP endpoint such as the pager,
:mod:`drdrill.sandbox.pager`, which logs its receipt itself), and in automated mode the DR
automation is invoked. The alarm's state changes are kept as a history with their times, like
CloudWatch's alarm history.

A stack's alarm (``wait_until_healthy``) starts in ``INSUFFICIENT_DATA``, as a new CloudWatch
alarm does, and evaluates nothing until its first passing check: a stack still coming up (its
load balancer not yet listening, its tasks not yet healthy) is no failure. It goes to OK on that
first pass, without a notification; from then on every failed check counts.

Delivery is SNS-like: in the background (a slow subscriber delays nothing), a POST of the
message as JSON; a failure is logged as ``sns_delivery_failed``. :meth:`HealthMonitor.
send_test_notification` sends a marked test message through the same path and waits for it.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drdrill.sandbox.truth import TruthLog

#: the state of an alarm that has not been evaluated yet (CloudWatch's name for it)
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


@dataclass(frozen=True)
class AlarmChange:
    """One entry of the alarm's history."""

    state: str
    utc: datetime
    mono: float
    reason: str


def deliver(url: str, message: dict[str, Any], timeout: float = 2.0) -> str | None:
    """POST ``message`` as JSON to a subscriber; None when it answered 200, else why not."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    try:
        data = json.dumps(message).encode()
        headers = {"Content-Type": "application/json"}
        conn.request("POST", parts.path or "/", body=data, headers=headers)
        response = conn.getresponse()
        response.read()
        return None if response.status == 200 else f"status {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    finally:
        conn.close()


def check_health(ip: str, port: int, timeout: float) -> bool:
    """Whether ``GET /health-simple.php`` answers 200 within ``timeout``."""
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", "/health-simple.php")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class HealthMonitor:
    """The health alarm: OK -> ALARM after N failed checks, back to OK after a good one.

    With ``wait_until_healthy`` it starts in ``INSUFFICIENT_DATA`` and counts no failed check
    until a check has passed once (then OK); without, it starts in OK and counts every one.
    """

    def __init__(
        self,
        name: str,
        ip: str,
        port: int,
        period_s: float,
        evaluation_periods: int,
        sns_log: Path,
        truth: TruthLog,
        on_alarm: Callable[[], None] | None = None,
        subscribers: Sequence[str] = (),
        wait_until_healthy: bool = False,
    ) -> None:
        """``subscribers``: URLs each notification is POSTed to; ``wait_until_healthy``: start
        in ``INSUFFICIENT_DATA`` and evaluate nothing until the first passing check."""
        self.name = name
        self.ip = ip
        self.port = port
        self.period_s = period_s
        self.evaluation_periods = evaluation_periods
        self.sns_log = sns_log
        self.truth = truth
        self.on_alarm = on_alarm
        self.subscribers = list(subscribers)
        self.state = INSUFFICIENT_DATA if wait_until_healthy else "OK"
        self.history: list[AlarmChange] = []
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start checking in a background thread."""
        self._thread = threading.Thread(target=self._run, name=f"monitor-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            healthy = check_health(self.ip, self.port, timeout=min(self.period_s, 1.0))
            self._evaluate(healthy)
            next_due += self.period_s
            self._stop.wait(max(0.0, next_due - time.monotonic()))

    def _evaluate(self, healthy: bool) -> None:
        with self._lock:
            if healthy:
                self._failures = 0
                if self.state == INSUFFICIENT_DATA:
                    self._change("OK", "first passing health check: the stack is up")
                elif self.state != "OK":
                    self._change("OK", "health check passed")
                return
            if self.state == INSUFFICIENT_DATA:
                return  # still coming up: not evaluated until it has passed once
            self._failures += 1
            if self.state != "ALARM" and self._failures >= self.evaluation_periods:
                self._change("ALARM", f"{self._failures} consecutive failed health checks")
                fire = True
            else:
                fire = False
        if fire:
            self._notify()
            if self.on_alarm is not None:
                self.on_alarm()

    def _change(self, state: str, reason: str) -> None:
        event = self.truth.append(
            "alarm_state_changed",
            f"cloudwatch-{self.name}",
            old=self.state,
            new=state,
            reason=reason,
        )
        self.history.append(AlarmChange(state, event.utc, event.mono, reason))
        self.state = state

    def _message(self, state: str, test: bool) -> dict[str, Any]:
        return {
            "AlarmName": self.name,
            "NewStateValue": state,
            "StateChangeTime": datetime.now(UTC).isoformat(),
            "MessageId": uuid.uuid4().hex,
            "Test": test,
        }

    def _notify(self) -> None:
        message = self._message("ALARM", test=False)
        self.sns_log.parent.mkdir(parents=True, exist_ok=True)
        with self.sns_log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(message) + "\n")
        self.truth.append(
            "sns_notification_sent", "sns", alarm=self.name, message_id=message["MessageId"]
        )
        for url in self.subscribers:
            threading.Thread(
                target=self._deliver, args=(url, message), name="sns-delivery", daemon=True
            ).start()

    def _deliver(self, url: str, message: dict[str, Any]) -> str | None:
        failed = deliver(url, message)
        if failed is not None:
            self.truth.append(
                "sns_delivery_failed",
                "sns",
                alarm=self.name,
                subscriber=url,
                message_id=message["MessageId"],
                error=failed,
            )
        return failed

    def send_test_notification(self) -> dict[str, Any]:
        """Send a test message (``Test``: true) to every subscriber through the delivery path;
        returns its id and each subscriber's failure (None: it answered 200)."""
        message = self._message("TEST", test=True)
        self.truth.append(
            "sns_notification_sent",
            "sns",
            alarm=self.name,
            message_id=message["MessageId"],
            test=True,
        )
        results = {url: self._deliver(url, message) for url in self.subscribers}
        return {"message_id": message["MessageId"], "subscribers": results}

    def reset(self) -> None:
        """Back to OK with no failures counted (after failback)."""
        with self._lock:
            self._failures = 0
            if self.state != "OK":
                self._change("OK", "reset")
