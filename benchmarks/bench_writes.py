"""RPO figures on real MariaDB: write latency at a few rates, and kill -9 + promotion trials.

Run: ``.venv/bin/python benchmarks/bench_writes.py [--trials 5] [--rate 100]``. Prints JSON lines:

- ``pair``: how long a primary + GTID replica pair takes to come up (template datadir copy);
- ``steady``: for each rate, markers sent vs the grid, skipped slots, ack latency p50/p95/max;
- ``trial``: per kill -9 trial, acknowledged / lost / landed-unacknowledged markers, the
  data-loss window, and the promotion's catch-up and total time; then a ``summary``.

Ground truth for the trials: every acknowledged id is checked on the promoted replica with its
own query, independently of :func:`verify_markers`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from drdrill.probes.lag import percentile
from drdrill.probes.writes import (
    MarkerWriter,
    MySqlEndpoint,
    MySqlSink,
    ensure_marker_table,
    read_present_markers,
    verify_markers,
)
from drdrill.sandbox.mariadb import (
    MariaDBConfig,
    MariaDBServer,
    promote_replica,
    start_pair,
    unavailable_reason,
    wait_for_replica,
)


def _endpoint(server: MariaDBServer) -> MySqlEndpoint:
    c = server.config
    return MySqlEndpoint(c.host, c.port, c.app_user, c.app_password, c.database)


def _pair() -> tuple[MariaDBServer, MariaDBServer, float]:
    started = time.monotonic()
    primary, replica = start_pair(
        MariaDBConfig(name="primary", server_id=1), MariaDBConfig(name="replica", server_id=2)
    )
    return primary, replica, time.monotonic() - started


def steady(rates: list[float], seconds: float) -> None:
    """Marker latency and grid keeping at each rate against a healthy primary."""
    primary, replica, up_s = _pair()
    print(json.dumps({"pair": {"up_s": round(up_s, 3)}}))
    try:
        with primary.connect("app") as conn:
            ensure_marker_table(conn)
        for rate in rates:
            writer = MarkerWriter(MySqlSink(_endpoint(primary).connect), rate, f"steady-{rate}")
            writer.start()
            time.sleep(seconds)
            log = writer.stop()
            lat = [r.latency_s * 1000 for r in log.records if r.acknowledged]
            print(
                json.dumps(
                    {
                        "steady": {
                            "rate_hz": rate,
                            "grid_slots": int(seconds * rate),
                            "sent": log.sent,
                            "acknowledged": len(log.acknowledged_ids),
                            "skipped_slots": len(log.skipped_slots),
                            "ack_ms_p50": round(percentile(lat, 50) or 0.0, 2),
                            "ack_ms_p95": round(percentile(lat, 95) or 0.0, 2),
                            "ack_ms_max": round(max(lat, default=0.0), 2),
                        }
                    }
                )
            )
    finally:
        primary.cleanup()
        replica.cleanup()


def trial(n: int, rate: float, before_kill_s: float) -> dict[str, Any]:
    """Write, kill -9 the primary, promote the replica, count what the markers say."""
    primary, replica, _ = _pair()
    run_id = f"trial-{n}"
    try:
        with primary.connect("app") as conn:
            ensure_marker_table(conn)
        wait_for_replica(primary, replica, timeout=10)
        writer = MarkerWriter(MySqlSink(_endpoint(primary).connect), rate, run_id)
        writer.start()
        time.sleep(before_kill_s)
        primary.kill()
        time.sleep(0.2)
        log = writer.stop()
        promotion = promote_replica(replica, timeout=10)
        with replica.connect("app") as conn:
            result = verify_markers(log, read_present_markers(conn, run_id))
            missing = 0
            with conn.cursor() as cur:
                for marker_id in log.acknowledged_ids:
                    cur.execute(
                        "SELECT COUNT(*) FROM drdrill_markers WHERE run_id=%s AND marker_id=%s",
                        (run_id, marker_id),
                    )
                    missing += cur.fetchone()[0] == 0
        return {
            "trial": n,
            "sent": result.sent,
            "acknowledged": result.acknowledged,
            "lost_acknowledged": result.lost_acknowledged,
            "cross_check_missing": missing,
            "unacknowledged_landed": result.unacknowledged_landed,
            "data_loss_window_s": round(result.data_loss_window_s, 4),
            "caught_up": promotion.caught_up,
            "promotion_catch_up_s": round(promotion.catch_up_s, 4),
            "promotion_total_s": round(promotion.total_s, 4),
        }
    finally:
        primary.cleanup()
        replica.cleanup()


def main() -> None:
    """Run the steady-rate figures, then the kill -9 trials."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0, help="marker rate for the trials")
    parser.add_argument("--seconds", type=float, default=2.0, help="per steady rate")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"bench_writes: {reason}")
    steady([50.0, 100.0, 200.0], args.seconds)
    rows = []
    for n in range(1, args.trials + 1):
        row = trial(n, args.rate, before_kill_s=1.0)
        rows.append(row)
        print(json.dumps({"trial": row}))
    lost = [r["lost_acknowledged"] for r in rows]
    print(
        json.dumps(
            {
                "summary": {
                    "trials": len(rows),
                    "rate_hz": args.rate,
                    "lost_acknowledged": lost,
                    "lost_max": max(lost, default=0),
                    "lost_mean": round(statistics.fmean(lost), 2) if lost else 0.0,
                    "cross_check_agrees": all(
                        r["cross_check_missing"] == r["lost_acknowledged"] for r in rows
                    ),
                    "window_max_s": max((r["data_loss_window_s"] for r in rows), default=0.0),
                }
            }
        )
    )


if __name__ == "__main__":
    main()
