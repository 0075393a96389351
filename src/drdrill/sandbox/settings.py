"""Settings of the embedded two-region sandbox (``targets.sandbox`` in drdrill.yaml).

Every address is on loopback, one /24 a region (primary 127.0.1.x, DR 127.0.2.x); every port is
configurable. ``block`` shifts all ports so that several sandboxes run side by side; under
pytest-xdist each worker drills its own (:meth:`SandboxSettings.for_worker`: its own block, run
folder and address block).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drdrill.config import ConfigPath, PositiveSeconds, Seconds
from drdrill.targets.base import FailoverMode, Region

#: the two regions, named as every target names them (one region type)
RegionKey = Region
#: the drill's DNS clients, each sending its queries from its own address so that the sandbox's
#: DNS server's log tells them apart: the probes, the RPO writer, the drill's own DNS polls
DnsClientRole = Literal["probes", "writer", "drill"]
#: host part of each client's address in :attr:`SandboxSettings.client_subnet`
CLIENT_HOSTS: dict[str, int] = {"probes": 11, "writer": 12, "drill": 13}
#: the clients' /24 is ``127.<block>.4``: the block (not the moved addresses) picks it, so that
#: two blocks never share a client address even when both keep the configured addresses
CLIENT_NET = 4

#: blocks are this many ports apart
BLOCK_PORTS = 200
#: the highest block; with the default ports its highest port is 28999 + 40 * 200 = 36999
MAX_BLOCK = 40
#: task ports run from ``task_base`` up to this many above it (primary 0-49, DR 50-99)
TASK_PORT_SPAN = 100
_HIGHEST_PORT = 65535
_WORKER_ID = re.compile(r"gw(\d+)")


def worker_index(worker: str) -> int:
    """The index of a pytest-xdist worker id: ``gw3`` -> 3; ValueError for anything else."""
    match = _WORKER_ID.fullmatch(worker)
    if match is None:
        raise ValueError(f"'{worker}' is not a pytest-xdist worker id (gw0, gw1, ...)")
    return int(match.group(1))


def _shift_second_octet(address: str, by: int) -> str:
    """``127.0.1`` shifted by 3 -> ``127.3.1`` (a subnet or a full address)."""
    parts = address.split(".")
    octet = int(parts[1]) + by
    if not 0 <= octet <= 255:
        raise ValueError(f"'{address}' moved by {by} blocks: second octet {octet}, not 0-255")
    return ".".join([parts[0], str(octet), *parts[2:]])


class _Model(BaseModel):
    #: strict, as the config's own models: a boolean is no number (``dns_ttl: true``)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RegionSettings(_Model):
    """One region: its name, its loopback /24, and its service's desired count."""

    name: str
    subnet: str
    desired: int = Field(ge=0, le=20)
    #: how many tasks the DR automation scales this region's service to
    scale_to: int = Field(default=2, ge=1, le=20)

    @field_validator("subnet")
    @classmethod
    def _loopback_subnet(cls, value: str) -> str:
        address = ipaddress.ip_address(f"{value}.1")
        if not address.is_loopback:
            raise ValueError(f"'{value}' is not a loopback /24 (127.x.y)")
        return value

    def ip(self, host: int) -> str:
        """The address ``<subnet>.<host>``."""
        return f"{self.subnet}.{host}"

    @property
    def link_ip(self) -> str:
        """Where this region reaches the other region's database: the inter-region link's end
        in this region (``.6``; the database itself is ``.5``, the load balancer ``.2``)."""
        return self.ip(6)

    @property
    def s3_ip(self) -> str:
        """Where S3's copies between the regions cross the link (``.7``, with the AWS API's
        port): the link's end in the primary region, the receiver of the copies in DR."""
        return self.ip(7)


class Ports(_Model):
    """Base ports; the block offset is added to each."""

    db: int = Field(default=23306, ge=1, le=_HIGHEST_PORT)
    lb: int = Field(default=28080, ge=1, le=_HIGHEST_PORT)
    lb_stats: int = Field(default=28404, ge=1, le=_HIGHEST_PORT)
    task_base: int = Field(default=28100, ge=1, le=_HIGHEST_PORT)
    dns: int = Field(default=25353, ge=1, le=_HIGHEST_PORT)
    control: int = Field(default=28999, ge=1, le=_HIGHEST_PORT)
    #: UDP, on 127.0.0.1: where the load balancers send their syslog lines (ground truth)
    syslog: int = Field(default=28991, ge=1, le=_HIGHEST_PORT)
    #: HTTP, on 127.0.0.1: the pager that subscribes to the alarm's notifications
    pager: int = Field(default=28992, ge=1, le=_HIGHEST_PORT)
    #: HTTP, on 127.0.0.1: the AWS API endpoint (moto, kept true to the processes)
    aws: int = Field(default=28993, ge=1, le=_HIGHEST_PORT)

    def highest(self, name: str) -> int:
        """The highest port a base gives within one block (tasks take a span above theirs)."""
        base: int = getattr(self, name)
        return base + (TASK_PORT_SPAN - 1 if name == "task_base" else 0)


class Timings(_Model):
    """Recovery dynamics: small by default so that a whole failover takes seconds."""

    health_check_interval: PositiveSeconds = 0.5
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=2, ge=1)
    alarm_period: PositiveSeconds = 0.5
    alarm_evaluation_periods: int = Field(default=3, ge=1)
    scheduler_delay: Seconds = 1.0
    #: how long a rebooted database stays down before it starts again (RDS takes its time;
    #: a crash reboot of a fraction of a second can fall between two probe samples, and a
    #: drill then says "the fault had no effect")
    db_reboot_downtime: Seconds = 0.0
    task_start_delay: Seconds = 0.0
    dns_ttl: int = Field(default=2, ge=0, le=3600)
    #: how long the DR automation waits after the alarm (automated mode) before it acts
    automation_delay: Seconds = 0.0
    #: how long S3 takes to copy a new asset to the DR region's bucket (cross-region replication)
    s3_replication_delay: Seconds = 0.2
    #: how often the independent observer samples each load balancer
    observer_interval: PositiveSeconds = 0.02
    #: how long one of the observer's requests may take before it counts as failed
    observer_timeout: PositiveSeconds = 0.5
    #: one-way latency of the link between the regions, each way (eu-west-1 to eu-central-1):
    #: every cross-region connection (replication) goes through it (drdrill.sandbox.link)
    inter_region_latency: Seconds = Field(default=0.025, le=10)
    #: uniform jitter around that latency (chunks stay in order)
    inter_region_jitter: Seconds = Field(default=0.0, le=10)
    #: the fraction of chunks lost and retransmitted (delivered 200 ms late)
    inter_region_loss: float = Field(default=0.0, ge=0, lt=1)


class SandboxSettings(_Model):
    """The ``targets.sandbox`` section."""

    run_dir: ConfigPath = Path(".drdrill/sandbox")
    app_name: str = "app.visitor-analytics.test"
    mode: FailoverMode = "manual"
    #: also serve the AWS API, kept true to the processes (the ``sandbox-aws`` target drills
    #: through it); off by default: its reconciler shares the supervisor's interpreter with the
    #: components whose records are the ground truth, and moto takes seconds to start
    aws_api: bool = False
    #: with ``aws_api``: Route53's failover routing answers the record on the health checks'
    #: statuses (the SECONDARY once the PRIMARY's check fails), as on AWS; off by default: the
    #: runbook's DNS Update is an explicit step (a record change), which routing would pre-empt
    route53_routing: bool = False
    block: int = Field(default=0, ge=0, le=MAX_BLOCK)
    primary: RegionSettings = RegionSettings(name="eu-west-1", subnet="127.0.1", desired=2)
    dr: RegionSettings = RegionSettings(name="eu-central-1", subnet="127.0.2", desired=0)
    dns_ip: str = "127.0.3.1"
    ports: Ports = Field(default_factory=Ports)
    timings: Timings = Field(default_factory=Timings)

    @model_validator(mode="after")
    def _ports_fit(self) -> SandboxSettings:
        for name in Ports.model_fields:
            top = self.ports.highest(name) + self.block * BLOCK_PORTS
            if top > _HIGHEST_PORT:
                raise ValueError(
                    f"ports.{name} reaches {top} in block {self.block}, over {_HIGHEST_PORT}"
                )
        return self

    @model_validator(mode="after")
    def _routing_needs_the_api(self) -> SandboxSettings:
        if self.route53_routing and not self.aws_api:
            raise ValueError("route53_routing: true needs aws_api: true (Route53 is the API's)")
        return self

    @model_validator(mode="after")
    def _clients_apart(self) -> SandboxSettings:
        taken = {self.primary.subnet, self.dr.subnet, self.dns_ip.rsplit(".", 1)[0]}
        if self.client_subnet in taken:
            raise ValueError(
                f"the DNS clients' subnet {self.client_subnet} of block {self.block} is also a "
                "region's or the DNS server's: move primary.subnet, dr.subnet or dns_ip"
            )
        return self

    @property
    def client_subnet(self) -> str:
        """The /24 the drill's DNS clients send from: ``127.<block>.4``, one a block."""
        return f"127.{self.block}.{CLIENT_NET}"

    def client_ip(self, role: DnsClientRole) -> str:
        """The source address of one of the drill's DNS clients (``127.<block>.4.11`` probes,
        ``.12`` the writer, ``.13`` the drill's own DNS polls)."""
        return f"{self.client_subnet}.{CLIENT_HOSTS[role]}"

    def with_block(self, block: int) -> SandboxSettings:
        """The same sandbox moved to another block: its ports, and its loopback addresses.

        Ports move by ``BLOCK_PORTS`` a block. Every address's second octet moves by as many
        blocks as the sandbox moved, so block 0's ``127.0.1`` becomes ``127.3.1`` in block 3
        (``127.B.y`` when the configured addresses are block 0's).
        """
        shift = block - self.block
        data: dict[str, Any] = self.model_dump()
        data["block"] = block
        for key in ("primary", "dr"):
            data[key]["subnet"] = _shift_second_octet(data[key]["subnet"], shift)
        data["dns_ip"] = _shift_second_octet(data["dns_ip"], shift)
        # validated again: the block's maximum and its ports' range are checked
        return SandboxSettings.model_validate(data)

    def for_worker(self, worker: str) -> SandboxSettings:
        """The sandbox of a pytest-xdist worker (``gw0``, ``gw1``, ...), beside everyone else's.

        Worker ``gwN`` takes block ``block + 1 + N`` (the configured block stays free for a
        run without workers) and the run folder ``<run_dir>-gwN``.
        """
        moved = self.with_block(self.block + 1 + worker_index(worker))
        return moved.model_copy(update={"run_dir": Path(f"{self.run_dir}-{worker}")})

    def region(self, key: RegionKey) -> RegionSettings:
        """The region by key."""
        return self.primary if key == "primary" else self.dr

    def port(self, name: str, offset: int = 0) -> int:
        """A port with this sandbox's block offset applied (blocks are 200 ports apart)."""
        base: int = getattr(self.ports, name)
        return base + self.block * BLOCK_PORTS + offset
