"""What ``targets.aws`` names rather than identifies, looked up once a run.

A config may give the hosted zone by ``route53.zone_name``, a region's target group by
``alb.target_group_name`` and its load balancer by ``alb.name`` (whose DNS name is then looked
up) instead of ids and ARNs. :class:`StackNames` looks each up the first time it is needed
(ListHostedZonesByName, DescribeTargetGroups, DescribeLoadBalancers: reads, sent even in a dry
run) and keeps the answer for the run; a name that matches nothing is one line naming the file
and the key, and every later use fails at once with the same line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from drdrill.errors import ConfigError
from drdrill.targets.aws.session import AwsClients, OneLineFailure
from drdrill.targets.aws.settings import AwsSettings, RegionSettings
from drdrill.targets.base import Region

#: Route53's one region (its API lives in us-east-1 only)
ROUTE53_REGION = "us-east-1"


class UnresolvedName(ConfigError, OneLineFailure):
    """A name in ``targets.aws`` that matches nothing in the account (or cannot be looked up)."""


def _error(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "")), " ".join(str(error.get("Message", exc)).split())


class StackNames:
    """The stack's ids from its names, each looked up once (thread-safe)."""

    def __init__(
        self,
        aws: AwsClients,
        settings: AwsSettings,
        config_path: str,
        terraform_outputs: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """Names from ``settings`` (of the config at ``config_path``, for the messages), looked
        up through ``aws``; ``terraform_outputs`` is the last source of an ALB's DNS name."""
        self._aws = aws
        self._settings = settings
        self._path = config_path
        self._terraform = terraform_outputs
        self._lock = threading.Lock()
        self._found: dict[str, str | None] = {}
        self._failed: dict[str, UnresolvedName] = {}

    def _once(self, key: str, look_up: Callable[[], str | None]) -> str | None:
        with self._lock:
            failed = self._failed.get(key)
            if failed is not None:
                # a fresh exception: one raised again would carry every earlier traceback
                raise UnresolvedName(failed.where, failed.message)
            if key not in self._found:
                try:
                    self._found[key] = look_up()
                except UnresolvedName as exc:
                    self._failed[key] = exc
                    raise
            return self._found[key]

    def _unresolved(self, key: str, message: str) -> UnresolvedName:
        return UnresolvedName(f"{self._path}: targets.aws.{key}", message)

    def _region(self, key: Region) -> RegionSettings:
        return self._settings.primary if key == "primary" else self._settings.dr

    # --- route53 -------------------------------------------------------------------------------

    def zone_id(self) -> str | None:
        """The failover record's hosted zone: ``route53.zone_id``, else the zone named
        ``route53.zone_name`` (the public one, where a private zone has the same name); None
        when neither is given."""
        r53 = self._settings.route53
        if r53.zone_id is not None:
            return r53.zone_id
        name = r53.zone_name
        if name is None:
            return None
        return self._once("route53.zone_name", lambda: self._zone_by_name(name))

    def _zone_by_name(self, name: str) -> str:
        client = self._aws.client("route53", ROUTE53_REGION)
        zones: list[Mapping[str, Any]] = []
        params: dict[str, Any] = {"DNSName": name}
        while True:
            try:
                page = client.list_hosted_zones_by_name(**params)
            except ClientError as exc:
                code, text = _error(exc)
                raise self._unresolved(
                    "route53.zone_name", f"cannot look up hosted zone '{name}': {code}: {text}"
                ) from None
            listed = page.get("HostedZones", [])
            # zones come in name order from DNSName on: the matches first, then other names
            zones.extend(z for z in listed if str(z.get("Name", "")).lower() == name)
            if not page.get("IsTruncated") or any(
                str(z.get("Name", "")).lower() != name for z in listed
            ):
                break
            params = {"DNSName": page["NextDNSName"], "HostedZoneId": page["NextHostedZoneId"]}
        public = [z for z in zones if not z.get("Config", {}).get("PrivateZone", False)]
        chosen = public if public else zones
        ids = [str(z["Id"]).removeprefix("/hostedzone/") for z in chosen]
        if not ids:
            raise self._unresolved("route53.zone_name", f"no hosted zone named '{name}'")
        if len(ids) > 1:
            raise self._unresolved(
                "route53.zone_name",
                f"{len(ids)} hosted zones are named '{name}' ({', '.join(ids)}): give "
                "route53.zone_id instead",
            )
        return ids[0]

    # --- load balancers ----------------------------------------------------------------------

    def target_group_arn(self, region: Region) -> str | None:
        """A region's target group: ``alb.target_group_arn``, else the group named
        ``alb.target_group_name``; None when neither is given."""
        r = self._region(region)
        if r.alb.target_group_arn is not None:
            return r.alb.target_group_arn
        name = r.alb.target_group_name
        if name is None:
            return None
        key = f"{region}.alb.target_group_name"
        return self._once(key, lambda: self._target_group(key, r.region, name))

    def _target_group(self, key: str, region: str, name: str) -> str:
        try:
            answer = self._aws.client("elbv2", region).describe_target_groups(Names=[name])
        except ClientError as exc:
            code, text = _error(exc)
            if code == "TargetGroupNotFound":
                raise self._unresolved(key, f"no target group named '{name}' in {region}") from None
            raise self._unresolved(
                key, f"cannot look up target group '{name}' in {region}: {code}: {text}"
            ) from None
        groups = answer.get("TargetGroups", [])
        if not groups:
            raise self._unresolved(key, f"no target group named '{name}' in {region}")
        return str(groups[0]["TargetGroupArn"])

    def alb_dns(self, region: Region) -> str | None:
        """A region's ALB DNS name: ``alb.dns_name``, else terraform's ``<primary|dr>_alb_dns``
        output (the stack's own record of it), else the DNS name of the load balancer named
        ``alb.name``; None without any."""
        r = self._region(region)
        if r.alb.dns_name is not None:
            return r.alb.dns_name
        output = self._terraform().get(f"{region}_alb_dns") if self._terraform else None
        if output:
            return output
        name = r.alb.name
        if name is None:
            return None
        key = f"{region}.alb.name"
        return self._once(key, lambda: self._load_balancer_dns(key, r.region, name))

    def _load_balancer_dns(self, key: str, region: str, name: str) -> str:
        try:
            answer = self._aws.client("elbv2", region).describe_load_balancers(Names=[name])
        except ClientError as exc:
            code, text = _error(exc)
            if code == "LoadBalancerNotFound":
                raise self._unresolved(
                    key, f"no load balancer named '{name}' in {region}"
                ) from None
            raise self._unresolved(
                key, f"cannot look up load balancer '{name}' in {region}: {code}: {text}"
            ) from None
        balancers = answer.get("LoadBalancers", [])
        if not balancers or not balancers[0].get("DNSName"):
            raise self._unresolved(key, f"no load balancer named '{name}' in {region}")
        return str(balancers[0]["DNSName"])
