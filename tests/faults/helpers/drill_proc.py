"""A drill process for recovery tests: freezes a victim, then waits to be signalled or killed.

usage: drill_proc.py --journal PATH --run-id ID --victim PID [--name NAME]

It uses the injector the way a fixture does: inject, then ``revert_all`` in ``finally``, inside
``handle_signals`` so that SIGTERM and SIGHUP unwind like Ctrl-C. It prints ``injected`` once the
victim is frozen, one line per revert outcome, and ``interrupted: ...``; exit status 130.
"""

from __future__ import annotations

import argparse
import sys
import time

from drdrill.faults.base import FaultInjector, handle_signals
from drdrill.faults.journal import Journal
from drdrill.faults.process import FreezeProcess


def main() -> int:
    """Freeze the victim and wait; revert on the way out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--victim", type=int, required=True)
    parser.add_argument("--name")
    args = parser.parse_args()
    injector = FaultInjector(Journal(args.journal), args.run_id)
    try:
        with handle_signals():
            try:
                injector.inject(FreezeProcess.of(args.victim, name=args.name))
                print("injected", flush=True)
                while True:
                    time.sleep(0.05)
            finally:
                for outcome in injector.revert_all():
                    print(outcome.line(), flush=True)
    except KeyboardInterrupt as exc:  # DrillInterrupted is one too
        print(f"interrupted: {str(exc) or 'SIGINT'}", flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
