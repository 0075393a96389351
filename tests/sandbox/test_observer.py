"""The independent observer as a real process (``python -I observer.py``) against stdlib HTTP
servers standing in for load balancers: its transitions bracket the moment a target really
changed, every GET is a new connection, and it imports nothing but the standard library."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from drdrill.sandbox import observer
from drdrill.sandbox.mariadb import free_port
from drdrill.sandbox.observer_log import judged_until, read_transitions

pytestmark = pytest.mark.slow  # the observer as a real process, timed (~1-3 s each)

SCRIPT = Path(observer.__file__)
INTERVAL = 0.02


class FakeLb:
    """Serves the runbook's three endpoints; ``mode`` says how (changed by the test)."""

    def __init__(self) -> None:
        self.mode = "fail"
        self.hang_s = 0.4
        self.connections = 0
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def do_GET(self) -> None:
                owner.requests += 1
                if owner.mode == "hang":  # a database restarting behind it: a slow 503
                    time.sleep(owner.hang_s)
                    status, body = 503, "database unavailable"
                else:
                    status, body = owner.answer(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str) -> tuple[int, str]:
        mode = self.mode
        if mode == "fail":
            return 503, "no server available"
        if path == "/health-simple.php":
            return 200, "OK"
        if path == "/":
            # a 200 without the page's text fails the home check
            return 200, "<h1>Visitor Analytics</h1>" if mode != "blank-home" else "<h1>hello</h1>"
        status = "error" if mode == "stats-error" else "ok"
        return 200, json.dumps({"status": status})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_lb() -> Iterator[FakeLb]:
    lb = FakeLb()
    try:
        yield lb
    finally:
        lb.close()


def start_observer(out: Path, *targets: str, parent: int) -> subprocess.Popen[str]:
    args = [arg for target in targets for arg in ("--target", target)]
    args += ["--interval", str(INTERVAL), "--timeout", "0.5", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-I", str(SCRIPT), *args, "--parent-pid", str(parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("observing "), line
    return proc


def wait_for_line(out: Path, predicate: Callable[[Any], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        if any(predicate(x) for x in lines):
            return
        assert time.monotonic() < deadline, f"no such line in {out}: {lines[-3:]}"
        time.sleep(0.02)


def test_transitions_bracket_the_real_change(fake_lb: FakeLb, tmp_path: Path) -> None:
    out = tmp_path / "observer.jsonl"
    dead = free_port()
    proc = start_observer(
        out, f"lb-a=127.0.0.1:{fake_lb.port}", f"lb-b=127.0.0.1:{dead}", parent=os.getpid()
    )
    try:
        wait_for_line(out, lambda x: x.get("event") == "initial" and x["target"] == "lb-a")
        flips = []
        for mode in ("pass", "stats-error", "pass", "blank-home"):
            time.sleep(0.3)
            before = time.monotonic()
            fake_lb.mode = mode
            flips.append((mode, before, time.monotonic()))
            time.sleep(0.3)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    [initial, *changes] = read_transitions(out, target="lb-a")
    assert (initial.old, initial.new) == (None, "fail")
    assert [(c.old, c.new) for c in changes] == [
        ("fail", "pass"),
        ("pass", "fail"),
        ("fail", "pass"),
        ("pass", "fail"),
    ]
    for change, (mode, before, after) in zip(changes, flips, strict=True):
        # lo: the send of the last sample in the old state; hi: the end of the first new one
        assert change.lo_mono <= after and before <= change.hi_mono, (mode, change)
        assert change.lo_utc <= change.hi_utc
        print(f"{mode}: bracket {1000 * change.uncertainty_s:.1f} ms wide")
    assert changes[1].detail == "/api.php?action=stats: status is not ok"
    assert changes[3].detail == "/: no 'Visitor Analytics'"
    # every GET on a new connection
    assert fake_lb.requests > 0 and fake_lb.connections == fake_lb.requests

    [other] = read_transitions(out, target="lb-b")
    assert other.new == "fail" and "ConnectionRefusedError" in (other.detail or "")
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert records[0]["event"] == "observer_started" and records[-1]["event"] == "observer_stopped"
    samples = records[-1]["samples"]
    print(f"samples: {samples}, late: {records[-1]['late']}")
    assert samples["lb-a"] > 1 and samples["lb-b"] > 1
    assert read_transitions(out, since_mono=changes[-1].hi_mono, target="lb-a") == [changes[-1]]


def _hang_then_pass(fake_lb: FakeLb, out: Path, hang_for: float) -> tuple[list[Any], float, float]:
    """The observer on a target that passes, hangs for ``hang_for`` s (its requests answer a
    slow 503), then passes again; its changes after the first state, which must be a failure
    and a return to pass, and the moments just before and after the return."""
    fake_lb.mode = "pass"
    proc = start_observer(out, f"lb-a=127.0.0.1:{fake_lb.port}", parent=os.getpid())
    try:
        wait_for_line(out, lambda x: x.get("event") == "initial" and x["target"] == "lb-a")
        time.sleep(0.2)
        fake_lb.mode = "hang"
        time.sleep(hang_for)
        before = time.monotonic()
        fake_lb.mode = "pass"
        after = time.monotonic()
        time.sleep(0.8)  # the hung samples end (503) after samples sent later passed
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    [initial, *changes] = read_transitions(out, target="lb-a")
    assert initial.new == "pass"
    assert [(c.old, c.new) for c in changes] == [("pass", "fail"), ("fail", "pass")], changes
    return changes, before, after


def test_a_hanging_sample_does_not_hide_the_recovery_after_it(
    fake_lb: FakeLb, tmp_path: Path
) -> None:
    """A database restarting behind the load balancer makes requests hang, then fail; once it is
    back, requests sent later pass at once. The observer judges samples in the order they were
    sent, so its fail -> pass transition brackets the moment the target came back about as
    tightly as any other: not one timeout later, behind the sample that hung. (A sequential
    observer's bracket here was the hang's length, 0.4 s, wide.)"""
    out = tmp_path / "observer.jsonl"
    changes, before, after = _hang_then_pass(fake_lb, out, hang_for=0.6)
    back = changes[1]
    assert back.lo_mono <= after and before <= back.hi_mono, (before, after, back)
    print(f"back: bracket {1000 * back.uncertainty_s:.1f} ms wide (the hang: 400 ms)")
    # the bracket is the send of the last hung sample to the end of the first one that passed:
    # a grid step and a request, nowhere near the hang (assert loosely: a busy runner is slow)
    assert back.uncertainty_s < fake_lb.hang_s / 2, back
    # it says how far it has judged, so a reader can wait for the samples still hanging
    judged = judged_until(out, "lb-a")
    assert judged is not None and judged >= after, (judged, after)


def test_changes_are_read_in_the_order_the_states_followed_one_another(
    fake_lb: FakeLb, tmp_path: Path
) -> None:
    """A request sent as the database goes away hangs, then fails, after requests sent later
    have passed: the target was failing, then passing, and ends passing. Read in the order of
    the changes' upper bounds (the hung request's completion is the latest), it ended failing:
    a crash reboot's truth was lost that way ("the observer sees the primary failing again")."""
    # the samples sent in these 2.5 intervals hang 0.4 s, then fail
    changes, _, _ = _hang_then_pass(fake_lb, tmp_path / "observer.jsonl", hang_for=2.5 * INTERVAL)
    failed, back = changes
    # the case that matters: the failure's bound is the hung request's end, after the return
    assert failed.hi_mono > back.hi_mono, changes
    assert failed.lo_mono < back.lo_mono


def test_it_exits_when_its_parent_is_not_the_one_named(fake_lb: FakeLb, tmp_path: Path) -> None:
    out = tmp_path / "observer.jsonl"
    proc = start_observer(out, f"lb-a=127.0.0.1:{fake_lb.port}", parent=1)
    try:
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        assert proc.stdout is not None
        proc.stdout.close()
    assert json.loads(out.read_text().splitlines()[-1])["event"] == "observer_stopped"


def test_the_observer_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import"
            imported.add((node.module or "").split(".")[0])
    assert imported, "no imports found: the check itself is broken"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def _feed(tmp_path: Path, samples: list[tuple[float, float, bool]]) -> list[dict[str, Any]]:
    """Judge ``(sent, done, passed)`` samples in send order with the observer's own rule; the
    lines it logs."""
    out = tmp_path / "judged.jsonl"
    watch = observer.Watch("lb-a", "127.0.0.1", 1, INTERVAL, 0.5, observer.Log(str(out)))
    for sent, done, passed in samples:
        why = None if passed else "/: status 503"
        watch._judge(observer._Result((sent, sent), (done, done), why))
    watch.finish()
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_a_change_is_logged_once_confirmed_and_bounded_by_its_earliest_confirmation(
    tmp_path: Path,
) -> None:
    """The rule the truth rests on, sample by sample: a change is logged once CONFIRM samples in
    the new state are judged, its ``hi`` the earliest completion among them (a request sent as a
    database came back hangs and passes late while the next passes at once); no ``judged``
    line goes out while a change waits for its confirmation; a one-sample blip is still logged,
    both ways."""
    assert observer.CONFIRM == 3
    lines = _feed(
        tmp_path,
        [
            (1.00, 1.01, True),
            (1.02, 1.03, False),  # down
            (1.04, 1.05, False),
            (1.06, 1.07, False),
            (1.08, 1.70, True),  # hung through the restart, passed late
            (1.10, 1.12, True),  # passed at once
            (1.12, 1.14, True),
            (1.14, 1.15, False),  # a one-sample blip
            (1.16, 1.17, True),
            (1.18, 1.19, True),
            (1.20, 1.21, True),
        ],
    )
    changes = [x for x in lines if x["event"] in ("initial", "transition")]
    assert [(x.get("from"), x.get("to", x.get("state"))) for x in changes] == [
        (None, "pass"),
        ("pass", "fail"),
        ("fail", "pass"),
        ("pass", "fail"),
        ("fail", "pass"),
    ]
    _, down, back, blip, again = changes
    assert (down["lo_mono"], down["hi_mono"]) == (1.00, 1.03)
    # lo: the send of the last failing sample; hi: the earliest of the three confirmations
    assert (back["lo_mono"], back["hi_mono"]) == (1.06, 1.12)
    assert (blip["lo_mono"], blip["hi_mono"]) == (1.12, 1.15)
    assert (again["lo_mono"], again["hi_mono"]) == (1.14, 1.17)
    # the judged lines never claim a send time whose change was still unconfirmed
    order = [x["event"] for x in lines]
    for i, line in enumerate(lines):
        if line["event"] == "judged":
            later = [x for x in lines[i:] if x["event"] == "transition"]
            assert all(x["lo_mono"] >= line["sent_mono"] for x in later), (line, later)
    assert "judged" in order
