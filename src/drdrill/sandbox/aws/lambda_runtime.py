"""The DR function's runtime: one invocation of ``dr_lambda.handler`` in a process of its own.

Lambda runs a function apart from the AWS API it calls. The sandbox's API ran the function's
code in a thread of its own process, so the function's boto3 clients (it polls every 0.05 s
while it waits) took the interpreter from everything else that process serves: the API itself,
the sandbox's DNS server, its health checkers. On a busy runner the drills' probes then waited
on DNS answers while the function ran, which no real Route53 does because a Lambda is busy.

Run as ``python -m drdrill.sandbox.aws.lambda_runtime``, with the function's environment (its
configuration, the sandbox's credentials and ``AWS_ENDPOINT_URL``), the event as JSON on
stdin. It calls ``dr_lambda.handler(event, None)``, the entry point AWS runs, and writes JSON
lines on stdout as they happen: ``{"log": line}`` for each line the function logs, then
``{"result": ...}`` or ``{"error": {"errorMessage", "errorType"}}``. Its start-up (importing
boto3, ~0.4 s here) is the function's cold start.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any, TextIO

from drdrill.sandbox.aws import dr_lambda


class _Lines(logging.Handler):
    """Each record one ``{"log": line}`` line on ``out``, written as it is logged."""

    def __init__(self, write: Any) -> None:
        super().__init__(logging.INFO)
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        self._write({"log": f"[{record.levelname}]\t{record.getMessage()}"})


def run(event: dict[str, Any], out: TextIO) -> int:
    """One invocation of the handler with ``event``, its log and outcome on ``out``."""
    lock = threading.Lock()

    def write(line: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(line, default=str) + "\n")
            out.flush()

    log = dr_lambda.LOG
    log.handlers, log.propagate, log.level = [_Lines(write)], False, logging.INFO
    try:
        write({"result": dr_lambda.handler(event, None)})
    except Exception as exc:  # the function's error, as Lambda reports one
        write({"error": {"errorMessage": str(exc), "errorType": type(exc).__name__}})
    return 0


def main() -> int:
    """Read the event from stdin and run the function once."""
    return run(json.load(sys.stdin), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
