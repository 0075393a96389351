"""The sandbox's inter-region link and write path, measured on a sandbox of its own (block 12).

Run: ``.venv/bin/python benchmarks/bench_link.py [--seconds 5] [--samples 40]``. Prints:

- the RPO writer through the public name (DNS, HAProxy, the app, MariaDB) at 200 writes a
  second: sent, acknowledged, skipped slots, and the achieved rate;
- replication delay across the link: a row committed on the primary until the DR replica has
  it (polled every 2 ms on its own connection), at the configured latency and degraded to
  100 ms one way; the delay cannot be below one crossing of the link.

Nothing is asserted: figures for docs/benchmarks.md, with the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from drdrill.config import load_config
from drdrill.probes.lag import percentile
from drdrill.probes.writes import MarkerWriter
from drdrill.sandbox import control
from drdrill.targets.sandbox import SandboxTarget

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 12
TABLE = "bench_link"


def _target(folder: Path) -> SandboxTarget:
    config = folder / "drdrill.yaml"
    config.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
journal: {folder / "journal.jsonl"}
report_dir: {folder / "reports"}
targets:
  sandbox:
    run_dir: {folder / "sandbox"}
    block: {BLOCK}
"""
    )
    return SandboxTarget(load_config(config))


def _writer(target: SandboxTarget, seconds: float, rate_hz: float) -> None:
    sink = target.write_sink(1.0)
    writer = MarkerWriter(sink, run_id=f"bench-{os.getpid()}", rate_hz=rate_hz)
    writer.start()
    time.sleep(seconds)
    log = writer.stop()
    acked = sum(1 for r in log.records if r.acknowledged)
    print(
        f"writer through the public name at {rate_hz:g}/s for {seconds:g} s: {log.sent} sent, "
        f"{acked} acknowledged, {len(log.skipped_slots)} slots skipped, "
        f"{acked / seconds:.0f} acknowledged/s"
    )


def _replication_delays(target: SandboxTarget, samples: int) -> list[float]:
    delays = []
    with target._db("primary") as primary, target._db("dr") as replica:
        with primary.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INT PRIMARY KEY)")
            cur.execute(f"DELETE FROM {TABLE}")
        primary.commit()
        time.sleep(0.5)
        for i in range(samples):
            with primary.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} VALUES (%s)", (i,))
            primary.commit()
            committed = time.monotonic()
            while True:
                replica.commit()  # a new snapshot
                with replica.cursor() as cur:
                    cur.execute(f"SELECT 1 FROM {TABLE} WHERE id = %s", (i,))
                    if cur.fetchone():
                        break
                time.sleep(0.002)
            delays.append(time.monotonic() - committed)
            time.sleep(0.05)
    return delays


def _print_delays(label: str, delays: list[float]) -> None:
    ms = sorted(d * 1000 for d in delays)
    print(
        f"replication delay, {label}: n={len(ms)} min {ms[0]:.1f} ms, "
        f"p50 {statistics.median(ms):.1f} ms, p95 {percentile(ms, 95):.1f} ms, max {ms[-1]:.1f} ms"
    )


def main() -> None:
    """Bring a sandbox up, measure, take it down."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="drdrill-link-") as tmp:
        target = _target(Path(tmp))
        if target.client.alive():
            raise SystemExit(f"a sandbox already runs in block {BLOCK}: not ours to drive")
        target.start()
        try:
            link = target.status()["link"]
            _writer(target, args.seconds, 200)
            _print_delays(
                f"link {link['latency_ms']:g} ms one way",
                _replication_delays(target, args.samples),
            )
            fault = target.degrade_link(latency_ms=100)
            fault.inject()
            try:
                _print_delays(
                    "link degraded to 100 ms one way",
                    _replication_delays(target, args.samples),
                )
            finally:
                fault.revert()
        finally:
            control.down(target.settings, target.run_dir)
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
