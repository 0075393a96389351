"""Route53: the failover record set of the public name, its health checks, record changes and
what resolvers answer.

Route53 is a global service: its client is made for ``us-east-1`` whatever the stack's regions.
Emulators answer every change ``INSYNC`` at once (moto does, even for an unknown change id) and
report every health check healthy, so the waiting and the unhealthy paths only ever run
against real AWS (and the tests' loopback stand-in). moto's GetChange makes its answer up: any
id is INSYNC, submitted at the moment of the GetChange itself.

A health check can be failed on purpose by inverting it (a region-down fault does, so that
Route53 answers the failover record's other side); its undo puts ``Inverted`` back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

import dns.exception
import dns.resolver
from botocore.exceptions import ClientError

from drdrill.errors import DrillError
from drdrill.probes.resolve import ResolveError
from drdrill.targets.aws.session import AwsClients
from drdrill.timeline import stamp_resolution

#: Route53's one region (its API lives in us-east-1 only).
ROUTE53_REGION = "us-east-1"
#: What :func:`change_record` returns in a dry run, when no change was sent.
DRY_RUN_CHANGE_ID = "dry-run"
#: Route53 counts a health check healthy when more than this share of its checkers say so.
HEALTHY_SHARE = 0.18

Role = Literal["PRIMARY", "SECONDARY"]
_ROLES: tuple[Role, ...] = ("PRIMARY", "SECONDARY")


@dataclass(frozen=True)
class FailoverRecord:
    """One record of a failover pair: its side, its answer and the health check behind it."""

    set_id: str
    role: Role
    type: str
    #: the record's values (empty for an alias record)
    values: tuple[str, ...]
    #: the alias target's DNS name (an ALB), when the record is an alias
    alias_target: str | None
    #: None for an alias record (it takes the target's TTL)
    ttl: int | None
    health_check_id: str | None


def _fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower() + "."


def _client(aws: AwsClients) -> Any:
    return aws.client("route53", ROUTE53_REGION)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _record_sets(aws: AwsClients, zone_id: str, name: str) -> Iterator[Mapping[str, Any]]:
    """The zone's record sets from ``name`` on (Route53 lists in name order)."""
    client = _client(aws)
    params: dict[str, Any] = {"HostedZoneId": zone_id, "StartRecordName": name}
    while True:
        try:
            page = client.list_resource_record_sets(**params)
        except ClientError as exc:
            if _code(exc) == "NoSuchHostedZone":
                raise DrillError(f"route53 hosted zone '{zone_id}' not found") from exc
            raise DrillError(f"route53 hosted zone '{zone_id}': {exc}") from exc
        yield from page.get("ResourceRecordSets", [])
        if not page.get("IsTruncated"):
            return
        params["StartRecordName"] = page["NextRecordName"]
        params.pop("StartRecordType", None)
        if "NextRecordType" in page:
            params["StartRecordType"] = page["NextRecordType"]
        if "NextRecordIdentifier" in page:
            params["StartRecordIdentifier"] = page["NextRecordIdentifier"]


def failover_records(aws: AwsClients, zone_id: str, name: str) -> list[FailoverRecord]:
    """The failover records of ``name`` in the zone (every type), PRIMARY first."""
    fqdn = _fqdn(name)
    records: list[FailoverRecord] = []
    seen = False
    for item in _record_sets(aws, zone_id, fqdn):
        if _fqdn(str(item["Name"])) != fqdn:
            # Route53 lists in name order from the start name: a new name after ours means
            # done. Before ours, go on: an emulator may ignore the start name.
            if seen:
                break
            continue
        seen = True
        role = item.get("Failover")
        if role not in _ROLES:
            continue
        alias = item.get("AliasTarget")
        ttl = item.get("TTL")
        records.append(
            FailoverRecord(
                set_id=str(item.get("SetIdentifier", "")),
                role=cast(Role, role),
                type=str(item["Type"]),
                values=tuple(str(r["Value"]) for r in item.get("ResourceRecords", [])),
                alias_target=str(alias["DNSName"]) if alias else None,
                ttl=int(ttl) if ttl is not None else None,
                health_check_id=item.get("HealthCheckId"),
            )
        )
    records.sort(key=lambda r: (_ROLES.index(r.role), r.type, r.set_id))
    return records


def health_status(reports: list[str]) -> str:
    """``HEALTHY`` or ``UNHEALTHY`` from the checkers' status reports, as Route53 decides
    (healthy when more than 18 % of checkers report ``Success``); ``UNKNOWN`` with none."""
    if not reports:
        return "UNKNOWN"
    successes = sum(1 for r in reports if r.startswith("Success"))
    return "HEALTHY" if successes / len(reports) > HEALTHY_SHARE else "UNHEALTHY"


def health_check_status(aws: AwsClients, health_check_id: str) -> str:
    """The health check's status now: ``HEALTHY``, ``UNHEALTHY`` or ``UNKNOWN``."""
    try:
        response = _client(aws).get_health_check_status(HealthCheckId=health_check_id)
    except ClientError as exc:
        if _code(exc) == "NoSuchHealthCheck":
            raise DrillError(f"route53 health check '{health_check_id}' not found") from exc
        raise DrillError(f"route53 health check '{health_check_id}': {exc}") from exc
    reports = [
        str(obs.get("StatusReport", {}).get("Status", ""))
        for obs in response.get("HealthCheckObservations", [])
    ]
    return health_status(reports)


def change_record(
    aws: AwsClients,
    zone_id: str,
    name: str,
    rtype: str,
    values: list[str],
    ttl: int,
    *,
    set_id: str | None = None,
    failover: Role | None = None,
    health_check_id: str | None = None,
) -> str:
    """Create or replace (UPSERT) one record set; the change id to :func:`wait_insync` on."""
    fqdn = _fqdn(name)
    if failover is not None and failover not in _ROLES:
        raise DrillError(f"route53 record '{fqdn}': failover {failover!r} is not one of {_ROLES}")
    if failover is not None and not set_id:
        raise DrillError(f"route53 record '{fqdn}': a failover record needs a set id")
    if not values:
        raise DrillError(f"route53 record '{fqdn}': no values")
    record: dict[str, Any] = {
        "Name": fqdn,
        "Type": rtype,
        "TTL": ttl,
        "ResourceRecords": [{"Value": v} for v in values],
    }
    if set_id is not None:
        record["SetIdentifier"] = set_id
    if failover is not None:
        record["Failover"] = failover
    if health_check_id is not None:
        record["HealthCheckId"] = health_check_id
    batch = {
        "Comment": "drdrill",
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}],
    }
    try:
        response = _client(aws).change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=batch)
    except ClientError as exc:
        raise DrillError(f"route53 record '{fqdn}' in zone '{zone_id}': {exc}") from exc
    change_id = response.get("ChangeInfo", {}).get("Id")
    if change_id is None:
        if aws.dry_run:
            return DRY_RUN_CHANGE_ID
        raise DrillError(f"route53 record '{fqdn}': no change id in the response")
    return str(change_id)


def wait_insync(
    aws: AwsClients,
    change_id: str,
    *,
    timeout_s: float = 300.0,
    interval_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll the change until Route53 reports it ``INSYNC`` on all its name servers.

    ``clock`` measures the timeout (inject it with ``sleep`` to test without waiting).
    Returns at once for the dry-run change id, which was never sent.
    """
    if change_id == DRY_RUN_CHANGE_ID:
        return
    client = _client(aws)
    deadline = clock() + timeout_s
    while True:
        try:
            status = client.get_change(Id=change_id)["ChangeInfo"]["Status"]
        except ClientError as exc:
            if _code(exc) == "NoSuchChange":
                raise DrillError(f"route53 change '{change_id}' not found") from exc
            raise DrillError(f"route53 change '{change_id}': {exc}") from exc
        if status == "INSYNC":
            return
        remaining = deadline - clock()
        if remaining <= 0:
            raise DrillError(f"route53 change '{change_id}' still {status} after {timeout_s:g} s")
        sleep(min(interval_s, remaining))


@dataclass(frozen=True)
class DnsAnswer:
    """The A record addresses a name resolved to (sorted), and how long they may be kept."""

    addresses: tuple[str, ...]
    ttl: int


def resolve(
    name: str,
    nameservers: list[str] | None = None,
    port: int = 53,
    *,
    lifetime_s: float = 5.0,
) -> list[str]:
    """The A record addresses ``name`` resolves to (sorted); ``[]`` when it has none.

    ``nameservers=None`` asks the system resolver (``/etc/resolv.conf``); otherwise those
    servers on ``port``. Nothing is cached: each call asks again, so a drill sees a change as
    soon as the servers answer it. NXDOMAIN, a refusal or a timeout raise
    :class:`~drdrill.probes.resolve.ResolveError`.
    """
    return list(resolve_ttl(name, nameservers, port, lifetime_s=lifetime_s).addresses)


def resolve_ttl(
    name: str,
    nameservers: list[str] | None = None,
    port: int = 53,
    *,
    lifetime_s: float = 5.0,
) -> DnsAnswer:
    """:func:`resolve` with the answer's TTL (0 when there is no address): what a client may
    keep it for. Through a caching resolver the TTL is what is left of its cached copy."""
    if nameservers is None:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(nameservers)
    resolver.port = port
    where = "the system resolver" if nameservers is None else ", ".join(nameservers)
    where = f"{where} port {port}"
    try:
        answer = resolver.resolve(name, "A", lifetime=lifetime_s, search=False)
    except dns.resolver.NoAnswer:
        return DnsAnswer((), 0)
    except dns.resolver.NXDOMAIN as exc:
        raise ResolveError(f"dns name '{name}' does not exist ({where})") from exc
    except dns.resolver.LifetimeTimeout as exc:
        raise ResolveError(
            f"dns name '{name}': no answer within {lifetime_s:g} s ({where})"
        ) from exc
    except dns.resolver.NoNameservers as exc:
        raise ResolveError(f"dns name '{name}': no server answered it ({where})") from exc
    except dns.exception.DNSException as exc:
        raise ResolveError(f"dns name '{name}': {exc} ({where})") from exc
    ttl = int(answer.rrset.ttl) if answer.rrset is not None else 0
    return DnsAnswer(tuple(sorted(str(rdata.address) for rdata in answer)), ttl)


# --- health checks failed on purpose, and the record changes a failover made -----------------


def _health_check(aws: AwsClients, health_check_id: str) -> Mapping[str, Any]:
    try:
        answer = _client(aws).get_health_check(HealthCheckId=health_check_id)
    except ClientError as exc:
        if _code(exc) == "NoSuchHealthCheck":
            raise DrillError(f"route53 health check '{health_check_id}' not found") from exc
        raise DrillError(f"route53 health check '{health_check_id}': {exc}") from exc
    check: Mapping[str, Any] = answer.get("HealthCheck", {})
    return check


def health_check_inverted(aws: AwsClients, health_check_id: str) -> bool:
    """Whether the health check is inverted now (healthy when its endpoint fails)."""
    config = _health_check(aws, health_check_id).get("HealthCheckConfig", {})
    return bool(config.get("Inverted", False))


def set_health_check_inverted(aws: AwsClients, health_check_id: str, inverted: bool) -> None:
    """Invert the health check, or put it back: inverting a healthy check fails it, and
    Route53 answers the failover record's other side."""
    try:
        _client(aws).update_health_check(HealthCheckId=health_check_id, Inverted=inverted)
    except ClientError as exc:
        if _code(exc) == "NoSuchHealthCheck":
            raise DrillError(f"route53 health check '{health_check_id}' not found") from exc
        raise DrillError(f"route53 health check '{health_check_id}': {exc}") from exc


#: a Route53 change id as the API and the aws CLI print it (``"Id": "/change/C2682N5HXP0BZ4"``)
CHANGE_ID = re.compile(r"/change/([A-Za-z0-9]+)")


def change_ids(text: str) -> list[str]:
    """The Route53 change ids in ``text`` (a script's output, a function's log line or its
    answer), in order of appearance, each once."""
    return list(dict.fromkeys(CHANGE_ID.findall(text)))


@dataclass(frozen=True)
class RecordChange:
    """A change Route53 recorded: its id, its status and when it was submitted."""

    id: str
    status: str
    utc: datetime

    @property
    def resolution_s(self) -> float:
        """How finely Route53 stamped it: a millisecond, or a second without a fraction."""
        return stamp_resolution(self.utc)


def get_change(aws: AwsClients, change_id: str) -> RecordChange:
    """The change as Route53 recorded it (``GetChange``): its ``SubmittedAt`` is when the
    record change was asked for."""
    bare = change_id.removeprefix("/change/")
    try:
        info = _client(aws).get_change(Id=bare)["ChangeInfo"]
    except ClientError as exc:
        if _code(exc) == "NoSuchChange":
            raise DrillError(f"route53 change '{bare}' not found") from exc
        raise DrillError(f"route53 change '{bare}': {exc}") from exc
    submitted = info["SubmittedAt"]
    if isinstance(submitted, datetime):
        utc = submitted.astimezone(UTC) if submitted.tzinfo else submitted.replace(tzinfo=UTC)
    else:
        utc = datetime.fromisoformat(str(submitted)).astimezone(UTC)
    return RecordChange(str(info["Id"]).removeprefix("/change/"), str(info["Status"]), utc)
