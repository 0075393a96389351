"""Client side of the sandbox: start, stop and talk to the supervisor over its control API."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from pydantic import ValidationError

from drdrill.config import DrillConfig
from drdrill.errors import ConfigError, DrillError
from drdrill.sandbox import blocklock, reaper
from drdrill.sandbox.aws import unavailable_reason as aws_api_unavailable
from drdrill.sandbox.monitor import INSUFFICIENT_DATA
from drdrill.sandbox.settings import SandboxSettings


class SandboxError(DrillError):
    """The sandbox did not do what it was asked."""


#: set by the sandbox target for the runbook's scripts it runs under a pytest-xdist worker, so
#: that their ``drdrill sandbox`` calls reach that worker's sandbox (not PYTEST_XDIST_WORKER:
#: every process a test starts inherits that one)
WORKER_ENV = "DRDRILL_SANDBOX_WORKER"


def load_settings(config: DrillConfig) -> tuple[SandboxSettings, Path]:
    """The sandbox settings of a stack config, and its run folder (absolute)."""
    try:
        settings = SandboxSettings.model_validate(config.target_settings("sandbox"))
        worker = os.environ.get(WORKER_ENV)
        if worker:
            settings = settings.for_worker(worker)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["targets", "sandbox", *(str(p) for p in first["loc"])])
        raise ConfigError(f"{config.path}: {key}", first["msg"]) from None
    except ValueError as exc:
        raise ConfigError(f"{config.path}: targets.sandbox.block", str(exc)) from None
    return settings, config.resolve(settings.run_dir)


class SandboxClient:
    """Calls the supervisor's control API."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 120.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise SandboxError(
                f"sandbox control api on {self.host}:{self.port} unreachable: {exc}"
            ) from exc
        finally:
            conn.close()
        if response.status != 200:
            raise SandboxError(f"sandbox {path}: {payload.get('error', response.status)}")
        return payload.get("result")

    def call(self, op: str, **kwargs: Any) -> Any:
        """Run one operation of the supervisor (``status``, ``stop_tasks``, ...)."""
        return self._request("POST", f"/op/{op}", kwargs)

    def status(self) -> dict[str, Any]:
        """The supervisor's status of every component."""
        result: dict[str, Any] = self._request("GET", "/status")
        return result

    def alive(self) -> bool:
        """Whether the control API answers."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                pass
            self.status()
        except (OSError, SandboxError):
            return False
        return True


def client_for(settings: SandboxSettings) -> SandboxClient:
    """The control client of a sandbox."""
    return SandboxClient(settings.port("control"))


def up(
    settings: SandboxSettings,
    run_dir: Path,
    timeout_s: float = 90.0,
    *,
    tie_to_caller: bool = False,
) -> dict[str, Any]:
    """Start the sandbox unless it runs already (idempotent); its status once ready.
    :class:`~drdrill.sandbox.blocklock.BlockTaken` when another run folder's sandbox holds the
    block (nothing is started).

    ``tie_to_caller``: the supervisor started here shuts down (as on :func:`down`) once this
    process is gone, however it ends (a drill run's sandbox); otherwise it runs until
    :func:`down` (``drdrill sandbox up``). A sandbox found running is left as it is."""
    client = client_for(settings)
    blocklock.check(settings.block, run_dir)
    if client.alive():
        return client.status()
    if settings.aws_api and (missing := aws_api_unavailable()):
        raise ConfigError("targets.sandbox.aws_api", missing)  # before anything starts
    # a stack that is not running starts fresh: the last one's databases may have failed over
    _stop_leftovers(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    settings_file = run_dir / "settings.json"
    settings_file.write_text(settings.model_dump_json(indent=2))
    cmd = [sys.executable, "-m", "drdrill.sandbox.supervisor"]
    cmd += ["--settings", str(settings_file), "--run-dir", str(run_dir)]
    if tie_to_caller:
        me = reaper.ProcessId.current()
        cmd += ["--owner-pid", str(me.pid), "--owner-start", repr(me.start)]
    log = open(run_dir / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (run_dir / "supervisor.log").read_text(errors="replace")[-1500:]
            if proc.returncode == blocklock.EXIT_TAKEN:  # taken since the check: its one line
                raise blocklock.BlockTaken((tail.strip().splitlines() or ["block taken"])[-1])
            raise SandboxError(f"sandbox supervisor exited with {proc.returncode}: {tail}")
        # the control API is ours once no other run folder's sandbox holds the block
        if client.alive() and blocklock.other_owner(settings.block, run_dir) is None:
            return _wait_serving(client, settings, deadline)
        time.sleep(0.1)
    proc.kill()
    raise SandboxError(f"sandbox not up after {timeout_s:g} s (see {run_dir}/supervisor.log)")


def _wait_serving(
    client: SandboxClient, settings: SandboxSettings, deadline: float
) -> dict[str, Any]:
    """Wait until the primary load balancer has its desired count of healthy targets, and
    (when it has any) the health alarm has seen it serve: out of ``INSUFFICIENT_DATA``."""
    want = settings.primary.desired
    while True:
        status = client.status()
        evaluated = want == 0 or status["alarm"]["state"] != INSUFFICIENT_DATA
        if status["regions"]["primary"]["alb"]["healthy"] >= want and evaluated:
            return status
        if time.monotonic() > deadline:
            raise SandboxError(
                f"primary region not serving (alarm {status['alarm']['state']}): "
                f"{status['regions']['primary']}"
            )
        time.sleep(0.1)


def _supervisor_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / "supervisor.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a late reaper."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_leftovers(run_dir: Path) -> list[int]:
    """Kill any process still running from this run folder (a killed supervisor's children)."""
    killed = []
    marker = str(run_dir)

    def ours(arg: str) -> bool:
        # the folder itself or a path inside it, not a sibling such as "<run_dir>-gw1"
        at = arg.find(marker)
        return at >= 0 and arg[at + len(marker) : at + len(marker) + 1] in ("", "/")

    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(ours(a) for a in proc.info["cmdline"] or []) and proc.pid != os.getpid():
                with contextlib.suppress(psutil.Error):
                    proc.resume()
                proc.kill()
                killed.append(proc.pid)
        except psutil.Error:
            continue
    for pid in killed:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(5)
    return killed


def down(settings: SandboxSettings, run_dir: Path, timeout_s: float = 60.0) -> list[str]:
    """Stop the sandbox; nothing is left running from its run folder. What was done, a line each."""
    done: list[str] = []
    client = client_for(settings)
    pid = _supervisor_pid(run_dir)
    other = blocklock.other_owner(settings.block, run_dir)
    if other is not None:  # the block's control API is another sandbox's: not ours to stop
        done.append(f"block {settings.block} is another sandbox's ({other.describe()}): left alone")
    elif client.alive():
        client.call("shutdown")
        done.append("asked the supervisor to shut down")
        deadline = time.monotonic() + timeout_s
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    if pid is not None and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        done.append(f"killed supervisor {pid}")
    leftovers = _stop_leftovers(run_dir)
    if leftovers:
        done.append(f"killed {len(leftovers)} leftover processes: {leftovers}")
    (run_dir / "supervisor.pid").unlink(missing_ok=True)
    return done or ["sandbox was not running"]
