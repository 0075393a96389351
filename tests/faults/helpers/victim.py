"""A victim process for fault tests: prints ``ready <VICTIM_MARK>`` and sleeps until killed.

usage: victim.py TOKEN [--ignore-term] [--children N]

TOKEN only makes the command line unique, so that a test finds its own victim by argv.
``--ignore-term`` ignores SIGTERM (to see a stop escalate to SIGKILL); ``--children N`` starts N
sleeping children first (to freeze a process tree).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    """Set up as asked, say ready, sleep forever."""
    token, options = argv[0], argv[1:]
    if "--ignore-term" in options:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    children: list[subprocess.Popen[bytes]] = []
    if "--children" in options:
        count = int(options[options.index("--children") + 1])
        for number in range(count):
            child = subprocess.Popen(
                [sys.executable, __file__, f"{token}-child{number}"], stdout=subprocess.PIPE
            )
            assert child.stdout is not None
            child.stdout.readline()  # wait until the child is up
            children.append(child)
    print(f"ready {os.environ.get('VICTIM_MARK', '')}".strip(), flush=True)
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
