"""The on-call's pager: the alarm's SNS subscriber, a process of its own on loopback.

``python -m drdrill.sandbox.pager --host IP --port P --truth PATH --name NAME`` prints
``listening on IP:PORT`` once it accepts connections (with ``--any-port-if-taken``, on a free
port when P is taken). ``POST /notify`` with an SNS-like JSON
body (``AlarmName``, ``NewStateValue``, ``MessageId``, ``Test``) is a delivery: the pager
appends ``sns_delivered`` {alarm, subscriber, state, message_id, test} to the truth log when it
has read the body, before it answers ``200 {"received": MessageId}``. Its record of receipt is
its own: the notifying side cannot write it. It exits on SIGTERM, or when ``--parent-pid`` is
no longer its parent (no orphans).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from drdrill.sandbox.truth import TruthLog

#: the path notifications are posted to
NOTIFY_PATH = "/notify"


class PagerHandler(BaseHTTPRequestHandler):
    """``POST /notify``: one delivery."""

    server: PagerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the truth log is the record."""

    def do_POST(self) -> None:
        """Log the delivery, then acknowledge it."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self._reply(400, {"error": "body is not a JSON object"})
            return
        if self.path != NOTIFY_PATH:
            self._reply(404, {"error": f"unknown: {self.path}"})
            return
        message_id = str(body.get("MessageId", ""))
        self.server.truth.append(
            "sns_delivered",
            f"pager-{self.server.name}",
            alarm=str(body.get("AlarmName", "")),
            subscriber=self.server.name,
            state=str(body.get("NewStateValue", "")),
            message_id=message_id,
            test=bool(body.get("Test", False)),
        )
        self._reply(200, {"received": message_id})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class PagerServer(ThreadingHTTPServer):
    """The pager's HTTP server, with its name and truth log."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], name: str, truth: TruthLog) -> None:
        super().__init__(address, PagerHandler)
        self.name = name
        self.truth = truth


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM (or the parent's death)."""
    parser = argparse.ArgumentParser(prog="python -m drdrill.sandbox.pager", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--truth", required=True, type=Path)
    parser.add_argument("--name", default="oncall-pager")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument(
        "--any-port-if-taken",
        action="store_true",
        help="listen on a free port when --port is taken (the ready line names it)",
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    truth = TruthLog(args.truth)
    try:
        server = PagerServer((args.host, args.port), args.name, truth)
    except OSError as exc:
        if not args.any_port_if_taken:
            print(f"pager: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        # a port of the block may be held by a client's ephemeral port (blocks >= 19 reach the
        # kernel's ephemeral range): a free port serves as well, the ready line says which
        server = PagerServer((args.host, 0), args.name, truth)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    print(f"listening on {host!s}:{port}", flush=True)
    while not stop.wait(0.2):
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            break
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
