"""DNS Update is measured as clients see it, so it can miss its objective.

A real DNS server on loopback (the sandbox's failover record) switches to DR while a client that
honours the TTL still holds the primary's answer: the client sees DR only when that answer
expires. Measured from the switch to the client's first DR answer, the phase takes the rest of
the TTL, and misses an objective shorter than that. Polling the authoritative server instead (what
the drills did before) would have seen the switch at once and called it met.
"""

from __future__ import annotations

import time

from drdrill.measure import Measurements, Status
from drdrill.objectives import parse_runbook_text
from drdrill.observe import poll_until
from drdrill.probes.resolve import TtlCache, resolve_a
from drdrill.sandbox.dns import FailoverDns
from drdrill.timeline import Timeline

NAME = "app.visitor-analytics.test"
RECORDS = {"primary": "127.0.1.2", "dr": "127.0.2.2"}
RUNBOOK = """
## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **DNS Update** | 1 second | | as clients see it |
"""
TTL_S = 2


def test_a_client_holding_the_old_answer_makes_dns_update_miss() -> None:
    objectives = parse_runbook_text(RUNBOOK, "runbook.md")
    server = FailoverDns("127.0.0.1", 0, NAME, RECORDS, ttl=TTL_S)
    server.start()
    try:
        client = TtlCache("127.0.0.1", server.port)
        assert client.lookup(NAME) == RECORDS["primary"]  # cached for the TTL from now
        cached_at = time.monotonic()
        line = Timeline()
        switched = line.mark("dns_record_changed")
        server.switch("dr")
        # the authoritative server answers DR at once: not what a client sees
        authoritative, _ttl = resolve_a(NAME, "127.0.0.1", server.port)
        assert authoritative == RECORDS["dr"]
        answered = poll_until(
            line,
            "dns_answers_dr",
            lambda: client.lookup(NAME) == RECORDS["dr"],
            timeout_s=10,
            interval_s=0.05,
            since=switched,
        )
    finally:
        server.stop()
    measure = Measurements(line, objectives)
    result = measure.phase("DNS Update", switched, answered)
    # the client moved when its cached answer expired, TTL_S after it was cached
    expired = cached_at + TTL_S
    assert answered.mono - answered.uncertainty_s <= expired + 0.05
    assert result.status is Status.MISSED, result
    assert result.low > 1.0
