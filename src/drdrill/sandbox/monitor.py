"""CloudWatch + SNS of the sandbox: a health alarm on the primary region's load balancer.

Every ``alarm_period`` the monitor asks the primary load balancer's health endpoint; after
``alarm_evaluation_periods`` failures in a row the alarm goes to ALARM, a notification is
appended to the SNS log, and in automated mode the DR automation is invoked. The alarm's state
changes are kept as a history with their times, like CloudWatch's alarm history.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drdrill.sandbox.truth import TruthLog


@dataclass(frozen=True)
class AlarmChange:
    """One entry of the alarm's history."""

    state: str
    utc: datetime
    mono: float
    reason: str


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
    """The health alarm: OK -> ALARM after N failed checks, back to OK after a good one."""

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
    ) -> None:
        self.name = name
        self.ip = ip
        self.port = port
        self.period_s = period_s
        self.evaluation_periods = evaluation_periods
        self.sns_log = sns_log
        self.truth = truth
        self.on_alarm = on_alarm
        self.state = "OK"
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
                if self.state != "OK":
                    self._change("OK", "health check passed")
                return
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

    def _notify(self) -> None:
        message = {
            "AlarmName": self.name,
            "NewStateValue": "ALARM",
            "StateChangeTime": datetime.now(UTC).isoformat(),
        }
        self.sns_log.parent.mkdir(parents=True, exist_ok=True)
        with self.sns_log.open("a", encoding="utf-8") as log:
            log.write(json.dumps(message) + "\n")
        self.truth.append("sns_notification_sent", "sns", alarm=self.name)

    def reset(self) -> None:
        """Back to OK with no failures counted (after failback)."""
        with self._lock:
            self._failures = 0
            if self.state != "OK":
                self._change("OK", "reset")
