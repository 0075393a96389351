"""The sandbox's Route53: an authoritative DNS server answering the app's name with a failover
record set (a primary and a DR address) and a TTL.

:class:`FailoverDns` runs dnslib's server classes in threads of this process, on UDP and TCP at
the same port. It answers, authoritatively (``aa``, no recursion offered):

- ``A`` (or ``ANY``) for the name: the active side's address, with the record's TTL;
- any other type for the name, or any type at the zone apex but ``SOA``: NOERROR with no
  answer (NODATA) and the zone's SOA, whose ``minimum`` is the TTL (negative caching);
- ``SOA`` at the apex: the SOA, whose serial goes up on every switch;
- another name inside the zone (the name's parent domain unless told): NXDOMAIN with the SOA;
- a name outside the zone: REFUSED (an authoritative server that is not a resolver);
- an opcode other than QUERY: NOTIMP.

Health-checked failover is *not* automatic: the DR automation (or a runbook step) calls
:meth:`FailoverDns.switch`. DNS is global like Route53, so a region outage does not touch it:
there is no freeze. Each switch is logged as ground truth: ``dns_record_switched`` with
``name``, ``from``, ``to``, ``ip``, ``ttl`` and ``serial``.

Every answer is logged too (``log_answers``, on when there is a truth log): ``dns_answer`` with
``client_ip``, ``client_port``, ``proto``, ``name``, ``qtype``, ``rcode``, ``answer`` (the
address, or None when the reply has none) and ``ttl``, stamped as the reply is handed to the
socket. The drill's clients send from addresses of their own (the sandbox settings'
``client_ip``), so the log says which client was told what, and when.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socketserver
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

from dnslib import QTYPE, RCODE, RR, SOA, A, DNSLabel
from dnslib.server import BaseResolver, DNSServer

from drdrill.errors import DrillError
from drdrill.sandbox.truth import TruthLog
from drdrill.targets.base import Region

#: The two sides of the failover record set (the regions' keys in the sandbox settings).
SIDES: tuple[Region, ...] = get_args(Region)
#: How often the server threads look for a stop request (a stop waits at most this long).
_POLL_S = 0.05
_PORT_ATTEMPTS = 5


class DnsError(DrillError):
    """A DNS server that could not be configured, started or switched."""


@dataclass(frozen=True)
class _Answer:
    """What the record set says now; replaced as a whole so that readers need no lock."""

    side: Region
    ip: str
    serial: int


def _fqdn(name: str) -> str:
    return name.strip().rstrip(".").lower()


class _UdpServer(socketserver.UDPServer):
    # One thread answers every query in turn (a reply takes microseconds); and no
    # SO_REUSEADDR: on UDP it would let a second server bind the same port and steal queries.
    allow_reuse_address = False


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True  # TIME_WAIT only, on TCP
    daemon_threads = True


class _QuietLogger:
    """dnslib logs every query with print(); a server in a test run or a drill stays quiet."""

    def log_recv(self, handler: Any, data: bytes) -> None:
        """Not logged."""

    def log_send(self, handler: Any, data: bytes) -> None:
        """Not logged."""

    def log_request(self, handler: Any, request: Any) -> None:
        """Not logged."""

    def log_reply(self, handler: Any, reply: Any) -> None:
        """Not logged."""

    def log_truncated(self, handler: Any, reply: Any) -> None:
        """Not logged."""

    def log_error(self, handler: Any, error: Exception) -> None:
        """Not logged (a malformed packet gets no reply, like on a real server)."""

    def log_data(self, dnsobj: Any) -> None:
        """Not logged."""


class _FailoverResolver(BaseResolver):  # type: ignore[misc]  # dnslib has no type hints
    """Answers from the owner's current record set; called from the server threads."""

    def __init__(self, owner: FailoverDns) -> None:
        self._owner = owner

    def resolve(self, request: Any, handler: Any) -> Any:
        """The reply to one query (see the module docstring for the rules)."""
        return self._owner._reply(request, handler)


class FailoverDns:
    """An authoritative failover record set for one name, served on ``bind_ip:port``."""

    def __init__(
        self,
        bind_ip: str,
        port: int,
        name: str,
        records: Mapping[str, str],
        ttl: int,
        truth: TruthLog | None = None,
        active: Region = "primary",
        *,
        zone: str | None = None,
        component: str = "route53",
        tcp: bool = True,
        log_answers: bool = True,
    ) -> None:
        """``records`` maps ``"primary"`` and ``"dr"`` to IPv4 addresses; ``port=0`` picks a
        free port on the first start (the same one for UDP and TCP) and keeps it."""
        self.bind_ip = bind_ip
        self._requested_port = port
        self.port = port
        self.name = _fqdn(name)
        if self.name.count(".") < 1:
            raise DnsError(f"dns name {name!r} needs a parent zone (e.g. app.example.test)")
        self.zone = _fqdn(zone) if zone is not None else self.name.split(".", 1)[1]
        if not (self.name == self.zone or self.name.endswith("." + self.zone)):
            raise DnsError(f"dns name '{self.name}' is not in zone '{self.zone}'")
        if set(records) != set(SIDES):
            raise DnsError(f"dns records must be exactly {list(SIDES)}, got {sorted(records)}")
        self.records: dict[Region, str] = {}
        for side in SIDES:
            try:
                self.records[side] = str(ipaddress.IPv4Address(records[side]))
            except ValueError as exc:
                raise DnsError(f"dns record '{side}': {records[side]!r} is not IPv4") from exc
        if active not in SIDES:
            raise DnsError(f"dns active side {active!r} is not one of {list(SIDES)}")
        if not 0 <= ttl <= 2**31 - 1:
            raise DnsError(f"dns ttl {ttl} out of range")
        self.ttl = ttl
        self.truth = truth
        self.component = component
        self.tcp = tcp
        self.log_answers = log_answers
        self._answer = _Answer(active, self.records[active], serial=1)
        self._switch_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._queries = 0
        self._servers: list[Any] = []  # dnslib DNSServer objects
        self._threads: list[threading.Thread] = []
        self._label = DNSLabel(self.name)
        self._zone_label = DNSLabel(self.zone)
        self._static: dict[DNSLabel, tuple[str, int]] = {}  # name -> (address, ttl)

    def __repr__(self) -> str:
        return f"<FailoverDns {self.name} -> {self.active} on {self.address}>"

    def __enter__(self) -> FailoverDns:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # - state -

    @property
    def active(self) -> Region:
        """The side the name points at now."""
        return self._answer.side

    @property
    def active_ip(self) -> str:
        """The address the name resolves to now."""
        return self._answer.ip

    @property
    def serial(self) -> int:
        """The zone's SOA serial: 1, plus one a switch."""
        return self._answer.serial

    @property
    def address(self) -> str:
        """``bind_ip:port``."""
        return f"{self.bind_ip}:{self.port}"

    @property
    def query_count(self) -> int:
        """Queries answered since construction (all names and types, UDP and TCP)."""
        return self._queries

    def is_running(self) -> bool:
        """The server threads are serving."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def switch(self, to: Region) -> bool:
        """Point the name at ``to``'s address; False (and no event) when it already does."""
        if to not in SIDES:
            raise DnsError(f"dns: cannot switch to {to!r}: not one of {list(SIDES)}")
        with self._switch_lock:
            before = self._answer
            if before.side == to:
                return False
            after = _Answer(to, self.records[to], before.serial + 1)
            # stamped before the new answer is served, so that no answer of it precedes it
            mono, utc = time.monotonic(), datetime.now(UTC)
            self._answer = after
            if self.truth is not None:
                attrs = {"from": before.side, "to": to}  # "from" is a keyword
                self.truth.append_at(
                    "dns_record_switched",
                    self.component,
                    mono,
                    utc,
                    name=self.name,
                    ip=after.ip,
                    ttl=self.ttl,
                    serial=after.serial,
                    **attrs,
                )
        return True

    # - life cycle -

    def start(self) -> None:
        """Bind UDP (and TCP) and serve from background threads; no-op while running."""
        if self._threads:
            return
        attempts = _PORT_ATTEMPTS if self._requested_port == 0 else 1
        for attempt in range(attempts):
            try:
                self._bind(self._requested_port)
                break
            except OSError as exc:
                self._close_servers()
                # port 0: UDP got a port whose TCP twin was taken; try another
                if attempt == attempts - 1:
                    raise DnsError(f"dns server cannot bind {self.address}: {exc}") from exc
        self._requested_port = self.port  # kept: clients know the port across a restart
        for server, proto in zip(self._servers, ("udp", "tcp"), strict=False):
            thread = threading.Thread(
                target=server.server.serve_forever,
                kwargs={"poll_interval": _POLL_S},
                name=f"dns-{proto}-{self.port}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def add_static(self, name: str, ip: str, ttl: int = 60) -> None:
        """Also answer ``name`` (outside the zone too) with ``ip``: the load balancers' own
        DNS names, as the sandbox's AWS API reports them, resolve to their regions' addresses."""
        self._static[DNSLabel(_fqdn(name))] = (str(ipaddress.IPv4Address(ip)), ttl)

    def stop(self) -> None:
        """Stop serving and close the sockets (the port is free when this returns)."""
        for server in self._servers:
            if any(t.is_alive() for t in self._threads):
                server.server.shutdown()
        for thread in self._threads:
            thread.join(5.0)
        self._threads = []
        self._close_servers()

    # - internals -

    def _bind(self, port: int) -> None:
        logger = _QuietLogger()
        resolver = _FailoverResolver(self)
        udp = DNSServer(resolver, self.bind_ip, port, logger=logger, server=_UdpServer)
        self._servers = [udp]
        self.port = int(udp.server.server_address[1])
        if self.tcp:
            tcp = DNSServer(resolver, self.bind_ip, self.port, logger=logger, server=_TcpServer)
            self._servers.append(tcp)

    def _close_servers(self) -> None:
        for server in self._servers:
            with contextlib.suppress(OSError):
                server.server.server_close()
        self._servers = []

    def _soa(self, answer: _Answer) -> Any:
        # refresh, retry, expire are not used by anyone here; minimum is the negative TTL
        times = (answer.serial, 60, 30, 600, self.ttl)
        rdata = SOA(f"ns1.{self.zone}.", f"hostmaster.{self.zone}.", times)
        return RR(self._zone_label, QTYPE.SOA, rdata=rdata, ttl=self.ttl)

    def _reply(self, request: Any, handler: Any = None) -> Any:
        with self._count_lock:
            self._queries += 1
        answer = self._answer  # one snapshot for the whole reply
        reply = self._build(request, answer)
        if self.truth is not None and self.log_answers:
            self._log_answer(request, reply, handler)
        return reply

    def _log_answer(self, request: Any, reply: Any, handler: Any) -> None:
        client = getattr(handler, "client_address", None) or ("", 0)
        address = next((rr for rr in reply.rr if rr.rtype == QTYPE.A), None)
        assert self.truth is not None
        self.truth.append(
            "dns_answer",
            self.component,
            client_ip=str(client[0]),
            client_port=int(client[1]),
            proto=str(getattr(handler, "protocol", "")),
            name=str(request.q.qname).rstrip(".").lower(),
            qtype=QTYPE.get(request.q.qtype, str(request.q.qtype)),
            rcode=RCODE.get(reply.header.rcode, str(reply.header.rcode)),
            answer=str(address.rdata) if address is not None else None,
            ttl=int(address.ttl) if address is not None else None,
        )

    def _build(self, request: Any, answer: _Answer) -> Any:
        reply = request.reply(ra=0, aa=1)
        if request.header.opcode != 0:  # QUERY
            reply.header.aa = 0
            reply.header.rcode = RCODE.NOTIMP
            return reply
        qname = request.q.qname
        qtype = request.q.qtype
        static = self._static.get(qname)
        if static is not None:
            if qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(static[0]), ttl=static[1]))
            return reply
        if qname == self._label:
            if qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(self._label, QTYPE.A, rdata=A(answer.ip), ttl=self.ttl))
            else:
                reply.add_auth(self._soa(answer))
        elif qname == self._zone_label:
            if qtype in (QTYPE.SOA, QTYPE.ANY):
                reply.add_answer(self._soa(answer))
            else:
                reply.add_auth(self._soa(answer))
        elif qname.matchSuffix(self._zone_label):
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(self._soa(answer))
        else:
            reply.header.aa = 0
            reply.header.rcode = RCODE.REFUSED
        return reply
