"""What people read of the sandbox: ``sandbox logs`` shows text logs only, and a task's log
has no traceback for a health check that reset its connection."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from drdrill.commands.sandbox import _is_text_log
from drdrill.sandbox.app import AppServer


def test_logs_skip_the_databases_binary_files(tmp_path: Path) -> None:
    (tmp_path / "rds-dr" / "data").mkdir(parents=True)
    console = tmp_path / "rds-dr" / "console.log"
    console.write_text("ready for connections\n")
    ddl = tmp_path / "rds-dr" / "data" / "ddl_recovery.log"  # MariaDB's, binary
    ddl.write_bytes(b"\xfe\x00\x00\x01 binary")
    odd = tmp_path / "odd.log"
    odd.write_bytes(b"text then \x00 a NUL")
    assert _is_text_log(console, tmp_path)
    assert not _is_text_log(ddl, tmp_path)
    assert not _is_text_log(odd, tmp_path)


def _handle(error: BaseException) -> None:
    server = SimpleNamespace(app=SimpleNamespace(task_id="primary-task-1"))
    try:
        raise error
    except BaseException:
        AppServer.handle_error(server, None, ("127.0.0.1", 4242))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error", [ConnectionResetError(104, "reset by peer"), BrokenPipeError(32, "broken pipe")]
)
def test_a_client_that_went_away_is_not_logged(
    error: BaseException, capsys: pytest.CaptureFixture[str]
) -> None:
    _handle(error)
    assert capsys.readouterr().err == ""


def test_another_request_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    _handle(ValueError("bad request line"))
    err = capsys.readouterr().err
    assert err == (
        "app primary-task-1: request from 127.0.0.1:4242 failed: ValueError: bad request line\n"
    )
    assert "Traceback" not in err
    assert sys.exc_info() == (None, None, None)
