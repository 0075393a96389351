"""The alarm's notifications delivered to a real pager process over HTTP on loopback: the pager's
own log of receipt, a test message through the same path, and a subscriber that is down."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drdrill.sandbox.children import ChildProcess
from drdrill.sandbox.mariadb import free_port
from drdrill.sandbox.monitor import HealthMonitor
from drdrill.sandbox.truth import TruthEvent, TruthLog


@pytest.fixture
def truth(tmp_path: Path) -> TruthLog:
    return TruthLog(tmp_path / "truth.jsonl")


@pytest.fixture
def pager(tmp_path: Path, truth: TruthLog) -> Iterator[str]:
    """A pager process; yields the URL notifications go to."""
    port = free_port()
    args = ["--port", str(port), "--truth", str(truth.path), "--name", "test-pager"]
    child = ChildProcess(
        "pager",
        [sys.executable, "-m", "drdrill.sandbox.pager", *args],
        tmp_path / "pager.log",
        "listening on ",
    )
    child.start()
    try:
        yield f"http://127.0.0.1:{port}/notify"
    finally:
        child.stop()
        assert not child.is_running()


def monitor(tmp_path: Path, truth: TruthLog, subscribers: list[str]) -> HealthMonitor:
    """An alarm on a port where nothing listens: it goes to ALARM after three checks."""
    return HealthMonitor(
        name="test-alarm",
        ip="127.0.0.1",
        port=free_port(),
        period_s=0.05,
        evaluation_periods=3,
        sns_log=tmp_path / "sns.log",
        truth=truth,
        subscribers=subscribers,
    )


def wait_for(truth: TruthLog, event: str, timeout: float = 5.0) -> list[TruthEvent]:
    deadline = time.monotonic() + timeout
    while not (found := truth.since(0.0, event)):
        assert time.monotonic() < deadline, f"no '{event}' in the truth log"
        time.sleep(0.02)
    return found


def test_the_alarm_is_delivered_to_the_pager(pager: str, truth: TruthLog, tmp_path: Path) -> None:
    alarm = monitor(tmp_path, truth, [pager])
    alarm.start()
    try:
        [delivered] = wait_for(truth, "sns_delivered")
    finally:
        alarm.stop()
    [sent] = truth.since(0.0, "sns_notification_sent")
    [raised] = [e for e in truth.since(0.0, "alarm_state_changed") if e.attrs["new"] == "ALARM"]
    assert delivered.component == "pager-test-pager"
    assert delivered.attrs == {
        "alarm": "test-alarm",
        "subscriber": "test-pager",
        "state": "ALARM",
        "message_id": sent.attrs["message_id"],
        "test": False,
    }
    # the pager's own stamp: after the alarm sent it
    assert raised.mono <= sent.mono <= delivered.mono
    print(f"delivered {1000 * (delivered.mono - sent.mono):.1f} ms after it was sent")
    assert truth.since(0.0, "sns_delivery_failed") == []


def test_a_test_notification_goes_through_the_same_path(
    pager: str, truth: TruthLog, tmp_path: Path
) -> None:
    alarm = monitor(tmp_path, truth, [pager])
    result = alarm.send_test_notification()
    assert result["subscribers"] == {pager: None}
    [delivered] = truth.since(0.0, "sns_delivered")
    assert delivered.attrs["message_id"] == result["message_id"]
    assert delivered.attrs["test"] is True and delivered.attrs["state"] == "TEST"
    assert alarm.state == "OK" and not (tmp_path / "sns.log").exists()


def test_a_subscriber_that_is_down_is_a_failed_delivery(truth: TruthLog, tmp_path: Path) -> None:
    gone = f"http://127.0.0.1:{free_port()}/notify"
    alarm = monitor(tmp_path, truth, [gone])
    result = alarm.send_test_notification()
    assert "ConnectionRefusedError" in (result["subscribers"][gone] or "")
    alarm.start()
    try:
        failures = wait_for(truth, "sns_delivery_failed")
    finally:
        alarm.stop()
    assert {f.attrs["subscriber"] for f in failures} == {gone}
    assert truth.since(0.0, "sns_delivered") == []


def test_a_taken_port_is_left_for_a_free_one_when_allowed(tmp_path: Path, truth: TruthLog) -> None:
    """Blocks >= 19 put the pager's port in the kernel's ephemeral range, where a client may hold
    it: with --any-port-if-taken the pager takes a free port and says which."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        args = ["--port", str(taken), "--truth", str(truth.path), "--any-port-if-taken"]
        child = ChildProcess(
            "pager",
            [sys.executable, "-m", "drdrill.sandbox.pager", *args],
            tmp_path / "pager.log",
            "listening on ",
        )
        child.start()
        try:
            address = child.ready_text.rsplit(" ", 1)[-1]
            assert address.startswith("127.0.0.1:") and address != f"127.0.0.1:{taken}"
            alarm = monitor(tmp_path, truth, [f"http://{address}/notify"])
            assert list(alarm.send_test_notification()["subscribers"].values()) == [None]
        finally:
            child.stop()
    assert len(truth.since(0.0, "sns_delivered")) == 1
