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
sandbox does not run is left to moto.

Each check also has a status as Route53 decides it: it turns after ``FailureThreshold``
consecutive results the other way, and ``Inverted`` flips it. Those statuses route the
failover record's answers only with ``targets.sandbox.route53_routing`` (:class:`FailoverRouting`):
otherwise the record changes that the runbook's scripts and the DR function make do, as the
runbook's explicit DNS Update step has it.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

RegionKey = Literal["primary", "dr"]

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
        #: each check's status as Route53 decides it (before ``Inverted``), and how many
        #: results in a row said otherwise
        self._healthy: dict[str, bool] = {}
        self._against: dict[str, int] = {}
        #: more work after each round of requests (the failover routing)
        self.each_pass: list[Callable[[], None]] = []
        #: the failover routing on these checks, when the sandbox routes on them
        self.routing: FailoverRouting | None = None
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
            for work in list(self.each_pass):
                work()

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
            seen = Observation(status, datetime.now(UTC))
            with self._lock:
                self._seen[check_id] = seen
                was = self._healthy.get(check_id)
                if was is None or was == seen.success:
                    self._healthy[check_id] = seen.success  # the first result sets it
                    self._against[check_id] = 0
                    continue
                self._against[check_id] = self._against.get(check_id, 0) + 1
                if self._against[check_id] >= int(check.failure_threshold or 3):
                    self._healthy[check_id] = seen.success
                    self._against[check_id] = 0

    def healthy(self, check: Any) -> bool | None:
        """The check's status as Route53 routes on it (``Inverted`` applied), or None when its
        endpoint has not been requested."""
        with self._lock:
            status = self._healthy.get(str(check.id))
        return None if status is None else status != bool(getattr(check, "inverted", False))

    def observation(self, check_id: str) -> Observation | None:
        """The last request to that check's endpoint, or None when none was made."""
        with self._lock:
            return self._seen.get(check_id)


class FailoverRouting:
    """Route53's failover routing of the record, on the checks' statuses: the ``PRIMARY``
    record's target while its health check is healthy, else the ``SECONDARY``'s while its own
    is, else the ``PRIMARY``'s (with every check unhealthy Route53 answers as if all were
    healthy). A record without a health check counts as healthy. ``switch(region, why)`` points
    the sandbox's DNS at a region (a no-op when it answers it already)."""

    def __init__(
        self,
        records: Callable[[], list[Any]],
        checks: Callable[[], Mapping[str, Any]],
        checkers: HealthCheckers,
        regions: Mapping[str, RegionKey],
        switch: Callable[[RegionKey, str], object],
    ) -> None:
        """``records()``: moto's record sets of the failover record (``failover``,
        ``alias_target``, ``health_check_id``); ``checks()``: moto's health checks by id;
        ``regions``: each load balancer's DNS name -> its region."""
        self._records = records
        self._checks = checks
        self.checkers = checkers
        self.regions = {name.rstrip(".").lower(): key for name, key in regions.items()}
        self._switch = switch
        self._lock = threading.Lock()

    def _target(self, record: Any) -> RegionKey | None:
        alias = getattr(record, "alias_target", None) or {}
        name = str(alias.get("DNSName", "") if isinstance(alias, dict) else "")
        return self.regions.get(name.rstrip(".").lower())

    def _healthy(self, record: Any) -> bool:
        check_id = getattr(record, "health_check_id", None)
        if not check_id:
            return True
        check = self._checks().get(str(check_id))
        if check is None:
            return True
        status = self.checkers.healthy(check)
        return status is not False  # not requested yet: Route53 starts a check healthy

    def answer(self) -> tuple[RegionKey, str] | None:
        """The region the record answers now and why, or None without a PRIMARY to route."""
        roles = {str(getattr(r, "failover", "") or "").upper(): r for r in self._records()}
        primary, secondary = roles.get("PRIMARY"), roles.get("SECONDARY")
        first = None if primary is None else self._target(primary)
        if primary is None or first is None:
            return None
        if self._healthy(primary):
            return first, "the PRIMARY record's health check is healthy"
        second = None if secondary is None else self._target(secondary)
        if secondary is not None and second is not None and self._healthy(secondary):
            return second, "the PRIMARY record's health check is unhealthy"
        return first, "every health check is unhealthy: Route53 answers the PRIMARY"

    def on_record_change(self, zone: str, changes: list[dict[str, Any]]) -> None:
        """A record change takes effect at once (after the DR function's own reading of it)."""
        self.evaluate()

    def evaluate(self) -> None:
        """Point the DNS where the record answers now."""
        with self._lock:
            found = self.answer()
            if found is not None:
                self._switch(*found)


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
