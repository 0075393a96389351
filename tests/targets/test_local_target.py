"""The local target: the demo app as a real process on loopback."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from drdrill.config import parse_config
from drdrill.errors import ConfigError, UnknownTargetError
from drdrill.targets import make_target
from drdrill.targets.local import LocalTarget


def _config(tmp_path: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    text = f"target: local\ntargets:\n  local:\n    demo:\n      db: demo.sqlite\n{extra}"
    return parse_config(text, tmp_path / "drdrill.yaml")


def test_demo_app_serves_the_runbook_endpoints_and_stops_clean(tmp_path: Path) -> None:
    target = make_target("local", _config(tmp_path), "test")
    assert isinstance(target, LocalTarget)
    target.start()
    try:
        proc = target.app_process()
        assert proc is not None
        urls = {e.name: e.url for e in target.endpoints()}
        with urllib.request.urlopen(urls["health"], timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(urls["home"], timeout=5) as resp:
            assert b"Visitor Analytics" in resp.read()
        body = json.dumps({"run": "r1", "marker": 7, "ts": 1.5}).encode()
        request = urllib.request.Request(target.write_url(), data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.load(resp) == {"ok": True, "marker": 7}
        with urllib.request.urlopen(urls["stats"], timeout=5) as resp:
            stats = json.load(resp)
        assert stats["status"] == "ok" and stats["markers"] == 1
        assert target.present_markers("r1") == {7}
        assert target.present_markers("other") == set()
        target.start()  # idempotent: the same process keeps serving
        assert target.app_process() == proc
    finally:
        target.stop()
    assert target.app_process() is None
    assert not proc.is_running() or proc.status() == "zombie"


def test_bad_local_settings_name_the_key(tmp_path: Path) -> None:
    config = parse_config(
        "targets:\n  local:\n    demo:\n      host: 10.1.2.3\n", tmp_path / "drdrill.yaml"
    )
    with pytest.raises(ConfigError, match=r"targets\.local\.demo\.host.*not a loopback"):
        make_target("local", config, "test")


def test_unknown_target_names_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(UnknownTargetError, match=r"^drdrill.yaml: target: unknown target 'x'"):
        make_target("x", _config(tmp_path), "drdrill.yaml: target")
