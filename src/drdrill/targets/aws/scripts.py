"""The team's own runbook scripts (``targets.aws.scripts``), run against the target's stack.

A drill asks for a script by the runbook's name (``failover.sh``, ``failback.sh``); the settings
key is its stem (``failover``, ``failback``). The command runs from the config file's folder,
with the target's profile, its assumed role's credentials, its regions and its endpoint in the
environment, so the scripts' aws CLI calls reach the same account (or emulator) as drdrill.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePath

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, ScriptsSettings

#: the settings keys, as runbook script names map to them
KEYS = tuple(ScriptsSettings.model_fields)
#: how much of a failed script's error output its one-line error keeps
_TAIL = 300


def script_key(name: str) -> str:
    """The settings key of a runbook script: ``failover.sh`` -> ``failover``."""
    stem = PurePath(name).name
    return stem.removesuffix(".sh").replace("-", "_")


def script_environment(
    settings: AwsSettings, aws: AwsClients, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (the process's environment) with the target's access: ``AWS_PROFILE``, the
    assumed role's credentials when one is configured, ``AWS_REGION`` and
    ``AWS_DEFAULT_REGION`` (the primary's), ``DRDRILL_PRIMARY_REGION``, ``DRDRILL_DR_REGION``,
    and ``AWS_ENDPOINT_URL`` when an endpoint is set."""
    env = dict(os.environ if base is None else base)
    if settings.profile:
        env["AWS_PROFILE"] = settings.profile
    if settings.role_arn:
        # the role drdrill assumed, so the script acts as the drill does; a profile would make
        # the CLI prefer its own credentials over these
        env.pop("AWS_PROFILE", None)
        creds = aws.session().get_credentials().get_frozen_credentials()
        env["AWS_ACCESS_KEY_ID"] = creds.access_key
        env["AWS_SECRET_ACCESS_KEY"] = creds.secret_key
        if creds.token:
            env["AWS_SESSION_TOKEN"] = creds.token
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = settings.primary.region
    env["DRDRILL_PRIMARY_REGION"] = settings.primary.region
    env["DRDRILL_DR_REGION"] = settings.dr.region
    if settings.endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.endpoint_url
    return env


def command_line(command: str, folder: Path) -> list[str]:
    """The command's words, a relative program path taken from ``folder`` (the config's)."""
    words = shlex.split(command)
    program = Path(words[0])
    if not program.is_absolute() and len(program.parts) > 1:
        words[0] = str((folder / program).resolve())
    return words


def run_script(
    key: str,
    command: str,
    args: tuple[str, ...],
    *,
    folder: Path,
    env: Mapping[str, str],
    timeout_s: float,
) -> str:
    """Run the command with ``args`` from ``folder``; its standard output. A one-line
    :class:`DrillError` names the key and the exit status (with the end of its error output),
    or the timeout."""
    words = [*command_line(command, folder), *args]
    what = f"script targets.aws.scripts.{key} ({shlex.join(words)})"
    try:
        # a session of its own: a timeout or an interrupt ends the script and whatever it
        # started (an aws CLI call would otherwise keep the pipes open)
        proc = subprocess.Popen(
            words,
            cwd=folder,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise DrillError(f"{what}: cannot run: {exc.strerror or exc}") from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        _end(proc)
        raise DrillError(f"{what}: still running after the {timeout_s:g} s timeout") from exc
    except BaseException:
        _end(proc)
        raise
    if proc.returncode != 0:
        tail = " ".join(stderr.strip().split())[-_TAIL:]
        raise DrillError(f"{what}: exited {proc.returncode}" + (f": {tail}" if tail else ""))
    return stdout


def _end(proc: subprocess.Popen[str]) -> None:
    """Kill the script's process group (only the one it leads) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
