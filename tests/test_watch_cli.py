"""``drdrill watch``: bad input, the JSON summary, Ctrl-C, and a known outage found end to end.

The acceptance test runs ``drdrill watch`` as a subprocess against a loopback server (in this
process) that refuses connections for 2 s, and checks that the server's UTC ground truth lies in
each boundary the command prints: ``utc - uncertainty - 10 ms <= true <= utc + 10 ms`` (the
10 ms for the server's switch itself: closing or opening its listener and its thread), and that
each boundary is at most two intervals (0.05 s) + 50 ms wide. Both processes read the same
system clock (``time.time()``, read next to the monotonic send time in the probe and at the
switch in the server), so no extra slack is added for UTC against monotonic time.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from drdrill.cli import main

DRDRILL = [sys.executable, "-m", "drdrill.cli"]
SLACK_S = 0.010


class _Handler(BaseHTTPRequestHandler):
    server: _CountingServer

    def do_GET(self) -> None:
        self.server.owner.requests += 1
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: RefusingServer


class RefusingServer:
    """A stdlib HTTP server on 127.0.0.1 that stops listening for a while, on demand.

    ``refuse()``/``listen()`` return the POSIX time of the switch: the listening socket is shut
    down (Linux refuses connections from that instant) and later reopened on the same port.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.port = 0
        self._server: _CountingServer | None = None
        self.listen()

    def listen(self) -> float:
        """(Re)open the listener; return the POSIX time from which connections are accepted."""
        server = _CountingServer(("127.0.0.1", self.port), _Handler)
        now = time.time()
        server.owner = self
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        self._server = server
        return now

    def refuse(self) -> float:
        """Stop listening; return the POSIX time from which connections are refused."""
        server = self._server
        assert server is not None
        now = time.time()
        server.socket.shutdown(socket.SHUT_RDWR)
        server.shutdown()
        server.server_close()
        self._server = None
        return now

    @property
    def url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.port}/"

    def wait_requests(self, n: int, timeout_s: float = 20.0) -> None:
        """Block until ``n`` requests in all have come."""
        deadline = time.monotonic() + timeout_s
        while self.requests < n:
            assert time.monotonic() < deadline, f"only {self.requests} requests came"
            time.sleep(0.005)

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self.refuse()


@pytest.fixture
def server() -> Iterator[RefusingServer]:
    refusing = RefusingServer()
    try:
        yield refusing
    finally:
        refusing.close()


def watch(*args: str) -> subprocess.Popen[str]:
    """``drdrill watch ARGS`` as a subprocess, stdout and stderr captured."""
    return subprocess.Popen(
        [*DRDRILL, "watch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def utc(text: str) -> float:
    """A printed ISO-8601 UTC time as POSIX seconds."""
    assert text.endswith("Z"), text
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None and not moment.utcoffset()
    return moment.timestamp()


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["http://127.0.0.1:1/", "--interval", "0.005"], "--interval"),
        (["http://127.0.0.1:1/", "--interval", "0"], "--interval"),
        (["http://127.0.0.1:1/", "--interval", "-1"], "--interval"),
        (["http://127.0.0.1:1/", "--interval", "fast"], "--interval"),
        (["http://127.0.0.1:1/", "--duration", "0"], "--duration"),
        (["http://127.0.0.1:1/", "--duration", "nan"], "--duration"),
        (["http://127.0.0.1:1/", "--timeout", "-0.5"], "--timeout"),
        (["http://127.0.0.1:1/", "--recovery-samples", "0"], "--recovery-samples"),
        (["http://127.0.0.1:1/", "--recovery-samples", "two"], "--recovery-samples"),
        (["http://127.0.0.1:1/", "--recovery-samples", "1000000000"], "--recovery-samples"),
        (["http://127.0.0.1:1/", "--timeout", "1e308"], "--timeout"),
        (["http://127.0.0.1:1/", "--timeout", "inf"], "--timeout"),
        (["http://127.0.0.1:1/", "--interval", "1e9"], "--interval"),
        (["http://127.0.0.1:1/", "--duration", "1e308"], "--duration"),
        (["http://127.0.0.1:1/", "--expect-status", "99"], "--expect-status"),
        (["http://127.0.0.1:1/", "--expect-status", "200,x"], "--expect-status"),
        (["ftp://127.0.0.1/"], "url"),
        (["127.0.0.1:8080"], "url"),
        (["http://127.0.0.1:1/", "http://127.0.0.1:1/"], "URL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # a short duration, so that input wrongly accepted ends the run rather than hangs the test
    argv = ["watch", *args] if "--duration" in args else ["watch", *args, "--duration", "0.01"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"drdrill: error: {where}: ")
    assert captured.err.count("\n") == 1


def test_json_summary_of_a_healthy_run(
    server: RefusingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    other = f"http://127.0.0.1:{server.port}/other"
    code = main(
        [
            "watch",
            server.url,
            other,
            "--interval",
            "0.05",
            "--duration",
            "0.4",
            "--json",
            "--expect-status",
            "200,204",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds exactly one JSON object
    assert list(summary) == ["endpoints", "probe_loop"]
    assert [e["url"] for e in summary["endpoints"]] == [server.url, other]
    loop = summary["probe_loop"]
    assert loop["late_max_ms"] >= loop["late_p99_ms"] >= 0
    assert loop["starved_samples"] == 0
    for entry in summary["endpoints"]:
        assert set(entry) == {
            "url",
            "samples",
            "starved_samples",
            "availability",
            "outages",
            "latency_ms",
        }
        assert entry["starved_samples"] == 0
        assert entry["samples"] >= 5
        assert entry["availability"] == 100.0
        assert entry["outages"] == []
        latency = entry["latency_ms"]
        assert set(latency) == {"p50", "p95", "p99"}
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert "outage" not in captured.err


def test_text_summary_and_live_lines_of_a_dead_url(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    # an endpoint that never answered well is a failed watch
    assert main(["watch", dead, "--interval", "0.05", "--duration", "0.3"]) == 1
    captured = capsys.readouterr()
    assert captured.err.endswith(f"drdrill watch: never came up: {dead}\n")
    out = captured.out.splitlines()
    assert "outage started" in out[0] and "refused (down since probing began)" in out[0]
    assert out[1] == dead
    assert "availability 0.000%  outages 1" in out[2]
    assert out[3].endswith("-> still open (start unknown)")
    assert out[4].startswith("probe loop late by up to ")


def test_known_outage_is_found_by_the_command(server: RefusingServer) -> None:
    interval = 0.05
    process = watch(server.url, "--interval", str(interval), "--duration", "4", "--json")
    try:
        server.wait_requests(5)
        time.sleep(0.3)
        true_start = server.refuse()
        time.sleep(2.0)
        true_end = server.listen()
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    (entry,) = json.loads(out)["endpoints"]
    (outage,) = entry["outages"]
    for what, true in (("start", true_start), ("end", true_end)):
        high = utc(outage[f"{what}_utc"])
        width = outage[f"{what}_uncertainty_s"]
        assert high - width - SLACK_S <= true <= high + SLACK_S, (
            f"{what}: truth {(high - true) * 1000:.1f} ms before the upper end of a "
            f"{width * 1000:.1f} ms bound"
        )
        assert 0 < width <= 2 * interval + 0.05
    assert abs(outage["duration_s"] - (true_end - true_start)) <= (
        outage["duration_uncertainty_s"] + 2 * SLACK_S
    )
    assert 30 < entry["availability"] < 70  # 2 s down in a 4 s watch
    # live lines on stderr, one a boundary, with the same UTC times as the summary
    live = [line for line in err.splitlines() if " outage " in line]
    assert len(live) == 2
    assert live[0].startswith(f"{outage['start_utc']} outage started {server.url}: refused")
    assert live[1].startswith(f"{outage['end_utc']} outage ended ")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_still_prints_the_summary(server: RefusingServer, signum: int) -> None:
    process = watch(server.url, "--interval", "0.05")
    try:
        server.wait_requests(4)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == server.url
    assert "availability 100.000%  outages 0" in lines[1]
    assert "stopping" in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.3.1", "--resolver: '127.0.3.1' is not IP:PORT"),
        ("dns.example:53", "--resolver: 'dns.example:53' is not IP:PORT"),
        ("127.0.3.1:0", "--resolver: '127.0.3.1:0': port must be 1-65535"),
        ("127.0.3.1:70000", "--resolver: '127.0.3.1:70000': port must be 1-65535"),
    ],
)
def test_a_bad_resolver_is_one_line(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["watch", "http://127.0.0.1:9/", "--resolver", value]) == 2
    assert capsys.readouterr().err == f"drdrill: error: {message}\n"


def test_names_resolve_through_the_given_dns_server(
    server: RefusingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--resolver``: the URL's name is answered by a real DNS server on loopback (dnslib),
    not by the system; the name exists nowhere else."""
    from dnslib import QTYPE, RR, A
    from dnslib.server import BaseResolver, DNSServer

    host = urllib.parse.urlsplit(server.url)

    class Answer(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: Any, handler: Any) -> Any:
            reply = request.reply()
            if str(request.q.qname).rstrip(".") == "app.watch.test":
                reply.add_answer(RR("app.watch.test", QTYPE.A, rdata=A(host.hostname), ttl=2))
            return reply

    dns = DNSServer(Answer(), address="127.0.0.1", port=0)
    dns.start_thread()
    try:
        port = dns.server.server_address[1]
        url = f"http://app.watch.test:{host.port}/"
        code = main(
            [
                "watch",
                url,
                "--interval",
                "0.05",
                "--duration",
                "0.5",
                "--resolver",
                f"127.0.0.1:{port}",
            ]
        )
    finally:
        dns.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "availability 100.000%" in out


#: secrets planted in a watched URL: its password, a token and an AWS signature in its query
URL_PASSWORD = "PlantedWatchPw1x"
URL_TOKEN = "PlantedWatchTok2x"
URL_SIGNATURE = "PlantedWatchSig3x"
URL_SECRETS = (URL_PASSWORD, URL_TOKEN, URL_SIGNATURE)


def planted_url(port: int) -> tuple[str, str]:
    """A loopback URL on ``port`` with credentials and query secrets, and how watch must show
    it: those masked, the rest (user, host, port, path, other parameters) as given."""
    query = "token={token}&X-Amz-Signature={signature}&keep=1"
    url = f"http://ops:{{password}}@127.0.0.1:{port}/x?{query}"
    return (
        url.format(password=URL_PASSWORD, token=URL_TOKEN, signature=URL_SIGNATURE),
        url.format(password="***", token="***", signature="***"),
    )


def test_secrets_in_a_dead_url_are_masked_in_every_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url, shown = planted_url(sock.getsockname()[1])  # closed once the block ends
    process = watch(url, "--interval", "0.05", "--duration", "0.3")
    try:
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1, err
    leaks = [s for s in URL_SECRETS if s in out or s in err]
    assert not leaks, (leaks, out, err)
    lines = out.splitlines()
    assert f" outage started {shown}: refused (down since probing began)" in lines[0]
    assert lines[1] == shown  # the summary
    assert err.endswith(f"drdrill watch: never came up: {shown}\n")


def test_secrets_in_a_live_url_are_masked_in_live_lines_and_json(server: RefusingServer) -> None:
    url, shown = planted_url(server.port)
    process = watch(url, "--interval", "0.05", "--duration", "1", "--json")
    try:
        server.wait_requests(3)
        server.refuse()
        time.sleep(0.25)
        server.listen()
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    leaks = [s for s in URL_SECRETS if s in out or s in err]
    assert not leaks, (leaks, out, err)
    (entry,) = json.loads(out)["endpoints"]
    assert entry["url"] == shown
    assert len(entry["outages"]) == 1
    live = [line for line in err.splitlines() if " outage " in line]
    assert len(live) == 2, err
    assert f" outage started {shown}: refused" in live[0]
    assert f" outage ended   {shown}: " in live[1]
