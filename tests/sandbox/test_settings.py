"""The sandbox's per-block addresses and ports of the ground-truth parts: the DNS clients' source
addresses, the syslog and pager ports, and the new timings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drdrill.sandbox.settings import MAX_BLOCK, SandboxSettings


def test_each_block_has_client_addresses_of_its_own() -> None:
    seen: dict[str, int] = {}
    for block in range(MAX_BLOCK + 1):
        configured = SandboxSettings(block=block)
        moved = SandboxSettings().with_block(block)  # a pytest-xdist worker's addresses
        for settings in (configured, moved):
            ips = [settings.client_ip(role) for role in ("probes", "writer", "drill")]
            assert ips == [f"127.{block}.4.{host}" for host in (11, 12, 13)]
            for ip in ips:
                assert seen.setdefault(ip, block) == block, f"{ip} in blocks {seen[ip]}, {block}"
    regions = {
        s.region(k).subnet
        for block in range(MAX_BLOCK + 1)
        for s in (SandboxSettings(block=block), SandboxSettings().with_block(block))
        for k in ("primary", "dr")
    }
    assert not {ip.rsplit(".", 1)[0] for ip in seen} & regions


def test_a_region_on_the_clients_subnet_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"the DNS clients' subnet 127\.3\.4 of block 3"):
        SandboxSettings.model_validate(
            {"block": 3, "dr": {"name": "x", "subnet": "127.3.4", "desired": 0}}
        )


def test_syslog_and_pager_ports_move_with_the_block() -> None:
    base, moved = SandboxSettings(), SandboxSettings(block=20)
    assert (base.port("syslog"), base.port("pager")) == (28991, 28992)
    assert (moved.port("syslog"), moved.port("pager")) == (32991, 32992)
    ports = [moved.port(name) for name in ("db", "lb", "lb_stats", "dns", "control")]
    assert not {32991, 32992} & set(ports)


def test_timings_default_to_no_automation_delay_and_a_20_ms_observer() -> None:
    timings = SandboxSettings().timings
    assert (timings.automation_delay, timings.observer_interval) == (0.0, 0.02)
    assert SandboxSettings.model_validate(
        {"timings": {"automation_delay": "2s"}}
    ).timings.automation_delay == pytest.approx(2.0)
    with pytest.raises(ValidationError):
        SandboxSettings.model_validate({"timings": {"observer_interval": 0}})
