"""Route53's health checkers, for the sandbox's health checks: each check's endpoint requested
for real, and ``GetHealthCheckStatus`` answered from what they saw.

moto answers ``GetHealthCheckStatus`` with one fixed "Success" observation, whatever the
endpoint does: a readiness check of the failover record's health (and a team's own script
that asks Route53 whether the primary is healthy) passed against a primary that was down.
Here a checker requests each health check's endpoint as Route53's checkers do (an HTTP GET of
its ``ResourcePath``, on a new connection, from outside the region: a region cut off from its
clients is cut off from the checkers too), every ``interval``, and the observation it reports
is its last request's outcome in Route53's words (``Success: HTTP Status Code 200, OK``,
``Failure: HTTP Status Code 503, ...``, ``Failure: Connection timed out...``).

A check's endpoint is a region's load balancer, found by the check's
``FullyQualifiedDomainName`` (the load balancer's DNS name, as provisioning sets it); the
request goes to the balancer's sandbox address, not to port 80. A check of an endpoint the
sandbox does not run is left to moto. What the checkers saw does not route DNS: the record
changes that the runbook's scripts and the DR function make do (see docs/targets.md).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: the checkers' address as Route53 reports it in an observation (a stand-in for its fleet)
CHECKER_IP = "127.0.0.1"
#: the region Route53 names for the sandbox's one checker
CHECKER_REGION = "us-east-1"


@dataclass(frozen=True)
class Observation:
    """One checker's last request: Route53's status text and when it was checked."""

    status: str
    checked: datetime

    @property
    def success(self) -> bool:
        """Whether the request succeeded."""
        return self.status.startswith("Success")


def request(host: str, port: int, path: str, timeout: float) -> str:
    """One health check request as Route53 makes it; its outcome in Route53's words (2xx and
    3xx succeed; anything else, or no answer within ``timeout``, fails)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        code, reason = response.status, response.reason
    except TimeoutError:
        return (
            "Failure: Connection timed out. The endpoint or the internet connection is down, "
            "or requests are being blocked by your firewall."
        )
    except ConnectionRefusedError:
        return "Failure: Connection refused. The endpoint is not listening on the port."
    except (OSError, http.client.HTTPException) as exc:
        return f"Failure: {type(exc).__name__}: {exc}"[:200]
    finally:
        conn.close()
    outcome = "Success" if 200 <= code < 400 else "Failure"
    return f"{outcome}: HTTP Status Code {code}, {reason}"


#: the checkers of the running sandbox, read by the patched ``GetHealthCheckStatus``
_CHECKERS: list[HealthCheckers] = []


class HealthCheckers:
    """Requests each sandbox health check's endpoint every ``interval`` in a thread of its own."""

    def __init__(
        self,
        checks: Callable[[], Mapping[str, Any]],
        endpoints: Mapping[str, tuple[str, int]],
        interval: float,
        timeout: float = 2.0,
    ) -> None:
        """``checks()``: moto's health checks by id (``fqdn``, ``resource_path``);
        ``endpoints``: each load balancer's DNS name -> its sandbox address (ip, port)."""
        self._checks = checks
        self.endpoints = {name.rstrip(".").lower(): addr for name, addr in endpoints.items()}
        self.interval = interval
        self.timeout = timeout
        self._seen: dict[str, Observation] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Check once, answer ``GetHealthCheckStatus`` from here on, keep checking."""
        _install()
        self.check_once()
        _CHECKERS.append(self)
        self._thread = threading.Thread(target=self._run, name="route53-checkers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking; moto answers again."""
        self._stop.set()
        if self in _CHECKERS:
            _CHECKERS.remove(self)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check_once()

    def endpoint_of(self, check: Any) -> tuple[str, int] | None:
        """The sandbox address a health check requests, or None when the sandbox runs none."""
        fqdn = str(getattr(check, "fqdn", "") or "").rstrip(".").lower()
        return self.endpoints.get(fqdn)

    def check_once(self) -> None:
        """One request to each health check's endpoint."""
        for check_id, check in list(self._checks().items()):
            address = self.endpoint_of(check)
            if address is None:
                continue
            status = request(*address, str(check.resource_path or "/"), self.timeout)
            with self._lock:
                self._seen[check_id] = Observation(status, datetime.now(UTC))

    def observation(self, check_id: str) -> Observation | None:
        """The last request to that check's endpoint, or None when none was made."""
        with self._lock:
            return self._seen.get(check_id)


def _install() -> None:
    """moto's ``GetHealthCheckStatus`` answers from the checkers for the checks they request."""
    from moto.core.responses import ActionResult
    from moto.route53.responses import Route53

    if getattr(Route53, "_drdrill_checkers_installed", False):
        return
    moto_status = Route53.get_health_check_status

    def get_health_check_status(self: Any) -> Any:
        check_id = str(self._get_param("HealthCheckId"))
        self.backend.get_health_check(check_id)  # NoSuchHealthCheck as moto answers it
        seen = next(
            (o for c in list(_CHECKERS) if (o := c.observation(check_id)) is not None), None
        )
        if seen is None:
            return moto_status(self)
        observation = {
            "Region": CHECKER_REGION,
            "IPAddress": CHECKER_IP,
            "StatusReport": {"Status": seen.status, "CheckedTime": seen.checked},
        }
        return ActionResult({"HealthCheckObservations": [observation]})

    Route53.get_health_check_status = get_health_check_status  # type: ignore[method-assign]
    Route53._drdrill_checkers_installed = True  # type: ignore[attr-defined]
