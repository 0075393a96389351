"""A ``terraform`` standing in for the real binary, which cannot run here (no provider, no
state, no network): a shell script first on PATH that records its arguments and answers with
the output a test gives it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def fake_terraform(bin_dir: Path, stdout: str, status: int = 0, stderr: str = "") -> Path:
    """Write ``terraform`` into ``bin_dir``: it prints ``stdout`` (and ``stderr``) and exits
    ``status``; returns the file its arguments go to, one a line."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "stdout").write_text(stdout)
    (bin_dir / "stderr").write_text(stderr)
    script = bin_dir / "terraform"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{bin_dir}/args"\n'
        f'cat "{bin_dir}/stdout"\n'
        f'cat "{bin_dir}/stderr" >&2\n'
        f"exit {status}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir / "args"


def first_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new folder first on PATH for the test (where :func:`fake_terraform` goes)."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
    return path
