"""Terraform outputs: the stack's names and addresses (``primary_alb_dns``, ``dr_alb_dns``...)
read from ``terraform output -json``, saved in a file or run on the spot.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from drdrill.errors import InputError

#: How long ``terraform output`` may take (it reads the state, maybe from a remote backend).
COMMAND_TIMEOUT_S = 120.0


def _is_command(source: str | Path) -> bool:
    """A string whose first word is the ``terraform`` program is a command line; a file named
    ``terraform-outputs.json`` is not."""
    if isinstance(source, Path):
        return False
    try:
        words = shlex.split(source)
    except ValueError:
        return False
    return bool(words) and Path(words[0]).name == "terraform"


def _command_words(command: str) -> list[str]:
    """The command line, with ``output -json`` added where it is missing."""
    words = shlex.split(command)
    if "output" not in words:
        words += ["output", "-json"]
    elif "-json" not in words:
        words.append("-json")
    return words


def _run(command: str) -> str:
    words = _command_words(command)
    try:
        done = subprocess.run(
            words, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise InputError(command, f"cannot run {words[0]!r}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise InputError(command, f"no answer within {COMMAND_TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise InputError(command, f"cannot run {words[0]!r}: {exc.strerror}") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no message"
        raise InputError(command, f"exit status {done.returncode}: {last}")
    return done.stdout


def _text(value: Any) -> str:
    # strings as they are; numbers, booleans, lists and maps as their compact JSON
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def parse_outputs(text: str, where: str) -> dict[str, str]:
    """The outputs in ``terraform output -json`` text (``{"name": {"value": ...}}``; a flat
    ``{"name": "value"}`` map is read too). ``where`` names the source in errors."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            where, f"not valid json: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(where, f"expected a json object of outputs, got {type(data).__name__}")
    outputs: dict[str, str] = {}
    for name, entry in data.items():
        if isinstance(entry, dict) and "value" in entry:
            outputs[name] = _text(entry["value"])
        elif isinstance(entry, str):
            outputs[name] = entry
        else:
            raise InputError(
                where, f"output '{name}': expected an object with a 'value' or a string"
            )
    return outputs


def outputs(source: str | Path) -> dict[str, str]:
    """The outputs of ``source``: a JSON file saved from ``terraform output -json``, or a
    command line whose program is ``terraform`` (``"terraform -chdir=infra"``; ``output -json``
    is added when missing). Bad JSON, an unreadable file or a failed command raise
    :class:`InputError` naming the file or the command."""
    if _is_command(source):
        command = str(source)
        return parse_outputs(_run(command), command)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(str(path), "not utf-8 text") from exc
    return parse_outputs(text, str(path))
