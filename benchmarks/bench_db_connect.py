"""What a new database connection costs the sandbox, as its components open it.

Run: ``.venv/bin/python benchmarks/bench_db_connect.py [--connects N]``, from the repository
root (needs ``mariadbd``; it starts one of its own on a free port and removes it afterwards).

Opens N connections as the app's user over TCP, three ways, and prints the median and 95th
percentile of the time to connect, and the CPU the process spent a connection:

- ``sandbox``: as the supervisor opens them (``MariaDBServer.connect``: no TLS offered, the
  sandbox's databases serve none; ``drdrill.sandbox.dbclient`` decides it);
- ``app endpoint``: as the app's pool and the sandbox target open them
  (``dbclient.endpoint``, a ``MySqlEndpoint`` with ``tls=False``);
- ``PyMySQL default``: ``pymysql.connect`` with nothing said about TLS. From PyMySQL 1.2 on that
  offers TLS and builds a default SSL context for it, loading the system's CA bundle, on every
  connection, even to a server that has none.

Nothing is asserted (tests/sandbox/test_mariadb.py checks that the sandbox's connections offer
no TLS); this prints the figures the commit and docs/benchmarks.md quote.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import pymysql

from drdrill.sandbox import dbclient
from drdrill.sandbox.mariadb import MariaDBConfig, MariaDBServer, setup_primary


def _time(connect: Callable[[], Any], n: int) -> tuple[list[float], float]:
    """Wall time of each of ``n`` connects (closed at once) and CPU time a connect."""
    walls = []
    cpu = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        conn = connect()
        walls.append(time.perf_counter() - started)
        conn.close()
    return walls, (time.process_time() - cpu) / n


def main() -> None:
    """Start a MariaDB of its own, time the three ways, print a line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--connects", type=int, default=50)
    args = parser.parse_args()
    server = MariaDBServer(MariaDBConfig(name="bench-connect"))
    try:
        server.start(timeout=30)
        setup_primary(server)
        c = server.config
        endpoint = dbclient.endpoint(c.host, c.port, c.app_user, c.app_password, c.database)
        ways: dict[str, Callable[[], Any]] = {
            "sandbox": lambda: server.connect("app"),
            "app endpoint": endpoint.connect,
            "PyMySQL default": lambda: pymysql.connect(
                host=c.host, port=c.port, user=c.app_user, password=c.app_password
            ),
        }
        print(f"PyMySQL {pymysql.VERSION_STRING}, {args.connects} connects each")
        print(f"{'way':18} {'median':>9} {'p95':>9} {'CPU/connect':>12}")
        for name, connect in ways.items():
            walls, cpu = _time(connect, args.connects)
            walls.sort()
            p95 = walls[min(len(walls) - 1, int(0.95 * len(walls)))]
            print(
                f"{name:18} {statistics.median(walls) * 1000:7.2f}ms {p95 * 1000:7.2f}ms "
                f"{cpu * 1000:10.2f}ms"
            )
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
