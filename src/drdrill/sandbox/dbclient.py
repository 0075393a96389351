"""How the sandbox's own programs connect to its databases: without offering TLS.

The sandbox's MariaDB servers serve no TLS (``have_ssl`` is ``DISABLED``: they start without
certificates, on loopback). PyMySQL 1.2 and later offer TLS by default and, to offer it, build
a default SSL context for every connection, loading the system's CA bundle: ~40 ms of CPU a
connection (``benchmarks/bench_db_connect.py``), which on a busy machine slowed every new DR
task and put ~0.1 s into each promotion's connect. This module is the one place that decides
it for the sandbox's connections: the supervisor's (:meth:`MariaDBServer.connect`), the app's
pool and the sandbox target's reads of the truth. The user-facing :class:`MySqlEndpoint`
keeps PyMySQL's default, since a real RDS may serve TLS.

Kept light (the app imports it in every task it starts).
"""

from __future__ import annotations

from typing import Final

from drdrill.probes.writes import MySqlEndpoint

#: whether the sandbox's clients offer TLS to its databases
OFFER_TLS: Final = False


def endpoint(
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    *,
    connect_timeout_s: float = 1.0,
    read_timeout_s: float = 2.0,
    write_timeout_s: float = 2.0,
) -> MySqlEndpoint:
    """A sandbox database as a :class:`MySqlEndpoint` whose connections offer no TLS."""
    return MySqlEndpoint(
        host,
        port,
        user,
        password,
        database,
        connect_timeout_s=connect_timeout_s,
        read_timeout_s=read_timeout_s,
        write_timeout_s=write_timeout_s,
        tls=OFFER_TLS,
    )
