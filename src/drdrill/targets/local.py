"""The ``local`` target: the demo app as a process on loopback, for drills without a sandbox.

Config (``targets.local`` in drdrill.yaml)::

    demo:
      host: 127.0.0.1   # loopback only
      port: 0           # 0: a free port picked at start (and kept across restarts)
      db: .drdrill/demo/demo.sqlite
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drdrill.config import ConfigPath, DrillConfig, EndpointConfig
from drdrill.errors import ConfigError, DrillError
from drdrill.probes.writes import HttpSink, WriteSink


class DemoSettings(BaseModel):
    """Where the demo app listens and keeps its data."""

    #: strict, as the config's own models: a boolean is no port
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    db: ConfigPath = Path(".drdrill/demo/demo.sqlite")

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not ipaddress.ip_address(value).is_loopback:
            raise ValueError(f"'{value}' is not a loopback address")
        return value


class LocalSettings(BaseModel):
    """The ``targets.local`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    demo: DemoSettings = Field(default_factory=DemoSettings)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalTarget:
    """The demo app, one process, started and stopped by the drill session."""

    name = "local"
    needs_destructive_flag = False

    def __init__(self, config: DrillConfig, worker: str | None = None) -> None:
        """The demo app of ``targets.local`` (one a run, whatever the ``worker``)."""
        try:
            self.settings = LocalSettings.model_validate(config.target_settings("local"))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(["targets", "local", *(str(p) for p in first["loc"])])
            raise ConfigError(f"{config.path}: {key}", first["msg"]) from None
        self.db = config.resolve(self.settings.demo.db)
        self.host = self.settings.demo.host
        self.port = self.settings.demo.port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The demo app's address."""
        return f"http://{self.host}:{self.port}"

    def app_argv(self) -> list[str]:
        """The command line of the app process (also what a fault's revert restarts)."""
        return [
            sys.executable,
            "-m",
            "drdrill.demo",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--db",
            str(self.db),
        ]

    def start(self) -> None:
        """Start the demo app unless it already answers; wait until it is healthy."""
        if self.port == 0:
            self.port = _free_port(self.host)
        if self.app_process() is not None:
            return
        self.db.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.db.parent / "demo.log", "ab")  # noqa: SIM115 - the child keeps it
        self._proc = subprocess.Popen(
            self.app_argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DrillError(f"demo app exited with {self._proc.returncode} at start")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise DrillError(f"demo app on {self.host}:{self.port} not up after 15 s")

    def app_process(self) -> psutil.Process | None:
        """The running app process (ours, or one a fault's revert restarted), if any."""
        argv = self.app_argv()
        for proc in psutil.process_iter(["cmdline", "status"]):
            try:
                if proc.info["cmdline"] == argv and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    return proc
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    def stop(self) -> None:
        """Stop the app, including a copy that a revert restarted; idempotent."""
        found = self.app_process()
        for proc in (found,) if found else ():
            try:
                proc.resume()
                proc.terminate()
                proc.wait(5)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                proc.kill()
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def endpoints(self) -> list[EndpointConfig]:
        """The runbook's post-failover checks, against the demo app."""
        return [
            EndpointConfig(url=f"{self.base_url}/health-simple.php", name="health"),
            EndpointConfig(url=f"{self.base_url}/", name="home", body_contains="Visitor Analytics"),
            EndpointConfig(
                url=f"{self.base_url}/api.php?action=stats",
                name="stats",
                json_field="status",
                json_equals="ok",
            ),
        ]

    def write_url(self) -> str:
        """The app's write endpoint for RPO markers."""
        return f"{self.base_url}/api.php?action=write"

    def write_sink(self, timeout_s: float) -> WriteSink:
        """RPO markers through the app's write endpoint."""
        return HttpSink(self.write_url(), timeout_s=timeout_s)

    def present_markers(self, run_id: str, region: str | None = None) -> set[int]:
        """The marker ids of a run that are in the app's database (read directly, not via HTTP)."""
        import sqlite3

        with sqlite3.connect(str(self.db)) as db:
            rows = db.execute(
                "SELECT marker_id FROM drdrill_markers WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {int(r[0]) for r in rows}

    def describe(self) -> Mapping[str, Any]:
        """Kind and address of the demo app."""
        return {"name": self.name, "kind": "local", "app": self.base_url, "db": str(self.db)}
