"""A runbook or config that is no regular file (a FIFO, a directory) is refused at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drdrill.cli import main
from drdrill.config import load_config
from drdrill.errors import ConfigError, RunbookError
from drdrill.objectives import parse_runbook


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "input.md"
    os.mkfifo(path)  # reading it would block until someone wrote to it
    return path


def test_a_fifo_runbook_is_refused_without_reading(fifo: Path) -> None:
    with pytest.raises(RunbookError, match=r"input\.md: runbook is a FIFO, not a file to read$"):
        parse_runbook(fifo)


def test_a_fifo_config_is_refused_without_reading(fifo: Path) -> None:
    with pytest.raises(ConfigError, match=r"input\.md: config is a FIFO, not a file to read$"):
        load_config(fifo)


def test_a_directory_as_runbook_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["objectives", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"drdrill: error: {tmp_path}: runbook is a directory, not a file to read\n"
    )
