"""A drill project of its own for the tests that run the sandbox end to end.

Each test takes a block of its own (ports and loopback addresses) and a short temporary folder:
HAProxy refuses unix socket paths over 97 characters, which pytest's tmp_path can exceed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the probes' sampling interval in these projects (seconds)
INTERVAL = 0.05
#: the figures the failover and failback drills must put beside a ground truth
FAILOVER_WITH_TRUTH: dict[str, tuple[str, ...]] = {
    "test_region_failover": (
        "Detection",
        "Decision",
        "RDS Promotion",
        "ECS Scale-up",
        "Health Verification",
        "DNS Update",
        "Total RTO",
        "client downtime",
    ),
    "test_failback_after_failover": ("failback: primary writable", "failback: clients on primary"),
}


@contextmanager
def short_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder under /tmp with a short path, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_config(folder: Path, block: int, extra: str = "", sandbox_extra: str = "") -> Path:
    """``drdrill.yaml`` for the sandbox in ``block``, its run folder, journal and reports in
    ``folder``; ``extra`` adds top-level keys (e.g. ``drills: {oncall_delay: 4s}``),
    ``sandbox_extra`` keys of ``targets.sandbox`` (e.g. ``aws_api: true``)."""
    path = folder / "drdrill.yaml"
    path.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
probes: {{interval: {INTERVAL}, timeout: 0.5, recovery_samples: 3}}
writer: {{sink: http, rate_hz: 20, timeout: 1}}
journal: {folder / "journal.jsonl"}
report_dir: {folder / "reports"}
{extra}
targets:
  sandbox:
    run_dir: {folder / "sandbox"}
    block: {block}
    {sandbox_extra}
"""
    )
    return path
