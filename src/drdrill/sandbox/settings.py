"""Settings of the embedded two-region sandbox (``targets.sandbox`` in drdrill.yaml).

Every address is on loopback, one /24 a region (primary 127.0.1.x, DR 127.0.2.x); every port is
configurable. ``block`` shifts all ports so that several sandboxes (one a pytest-xdist worker)
run side by side.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drdrill.config import Seconds

RegionKey = Literal["primary", "dr"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class Ports(_Model):
    """Base ports; the block offset is added to each."""

    db: int = 23306
    lb: int = 28080
    lb_stats: int = 28404
    task_base: int = 28100
    dns: int = 25353
    control: int = 28999


class Timings(_Model):
    """Recovery dynamics: small by default so that a whole failover takes seconds."""

    health_check_interval: Seconds = 0.5
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=2, ge=1)
    alarm_period: Seconds = 0.5
    alarm_evaluation_periods: int = Field(default=3, ge=1)
    scheduler_delay: Seconds = 1.0
    task_start_delay: Seconds = 0.0
    dns_ttl: int = Field(default=2, ge=0, le=3600)


class SandboxSettings(_Model):
    """The ``targets.sandbox`` section."""

    run_dir: Path = Path(".drdrill/sandbox")
    app_name: str = "app.visitor-analytics.test"
    mode: Literal["automated", "manual"] = "manual"
    block: int = Field(default=0, ge=0, le=40)
    primary: RegionSettings = RegionSettings(name="eu-west-1", subnet="127.0.1", desired=2)
    dr: RegionSettings = RegionSettings(name="eu-central-1", subnet="127.0.2", desired=0)
    dns_ip: str = "127.0.3.1"
    ports: Ports = Field(default_factory=Ports)
    timings: Timings = Field(default_factory=Timings)

    def region(self, key: RegionKey) -> RegionSettings:
        """The region by key."""
        return self.primary if key == "primary" else self.dr

    def port(self, name: str, offset: int = 0) -> int:
        """A port with this sandbox's block offset applied (blocks are 200 ports apart)."""
        base: int = getattr(self.ports, name)
        return base + self.block * 200 + offset
