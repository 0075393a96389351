"""What each extra carries: the core drills the sandbox without boto3, moto, allure or testinfra.

The tests' own environment has every extra installed, so "not installed" is made here: each
command runs with a ``sitecustomize`` that refuses to import the extras' packages, and with their
pytest plugins off (an uninstalled package registers none).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # pytest collects suites/ in subprocesses
#: the packages the extras bring, by import name
EXTRA_PACKAGES = (
    "boto3",
    "botocore",
    "moto",
    "awscli",
    "localstack_client",
    "allure",
    "allure_commons",
    "allure_pytest",
    "testinfra",
    "dnslib",
)
BLOCKER = """
import importlib.abc, sys
BLOCK = set({blocked!r})
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ModuleNotFoundError(f"No module named '{{name}}'", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def _without(
    tmp_path: Path, blocked: tuple[str, ...], *args: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=list(blocked)))
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _collect(
    tmp_path: Path, blocked: tuple[str, ...], *args: str
) -> subprocess.CompletedProcess[str]:
    """``pytest suites --collect-only`` with ``blocked`` refused."""
    return _without(
        tmp_path,
        blocked,
        "-m",
        "pytest",
        "suites",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--dr-report-dir",
        str(tmp_path / "reports"),
        *args,
    )


def test_the_core_dependencies_hold_no_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("boto3", "moto", "awscli", "allure", "testinfra", "localstack", "dnslib"):
        assert name not in core, f"{name} is a core dependency"
    extras = project["optional-dependencies"]
    assert {"aws", "sandbox", "aws-api", "allure", "testinfra", "all", "test"} <= set(extras)


def test_the_cli_and_the_plugin_load_without_any_extra(tmp_path: Path) -> None:
    answer = _without(
        tmp_path,
        EXTRA_PACKAGES,
        "-c",
        "import drdrill.plugin, drdrill.cli, drdrill.targets, drdrill.exercise; print('loaded')",
    )
    assert answer.returncode == 0 and "loaded" in answer.stdout, answer.stderr[-2000:]
    help_ = _without(tmp_path, EXTRA_PACKAGES, "-m", "drdrill.cli", "--help")
    assert help_.returncode == 0, help_.stderr[-2000:]


@pytest.mark.parametrize(
    "blocked",
    [
        pytest.param(EXTRA_PACKAGES[:-1], id="sandbox-only"),  # dnslib: the sandbox's extra
    ],
)
def test_the_drill_suites_collect_on_the_sandbox_without_aws_allure_or_testinfra(
    tmp_path: Path, blocked: tuple[str, ...]
) -> None:
    answer = _collect(tmp_path, blocked, "-p", "no:allure_pytest", "-p", "no:pytest11.testinfra")
    assert "error" not in answer.stdout.lower().split("collected")[-1], answer.stdout[-3000:]
    assert " tests collected" in answer.stdout or " test collected" in answer.stdout, (
        answer.stdout[-3000:] + answer.stderr[-2000:]
    )
    assert "ModuleNotFoundError" not in answer.stdout + answer.stderr


def test_the_sandbox_aws_api_without_moto_is_refused_in_one_line_before_anything_starts(
    tmp_path: Path,
) -> None:
    config = tmp_path / "drdrill.yaml"
    config.write_text(
        f"runbook: {ROOT / 'docs' / 'runbook.md'}\n"
        "target: sandbox\n"
        "targets:\n"
        "  sandbox:\n"
        f"    run_dir: {tmp_path / 'sandbox'}\n"
        "    block: 18\n"
        "    aws_api: true\n"
    )
    answer = _without(
        tmp_path,
        ("moto", "boto3", "botocore"),
        "-m",
        "drdrill.cli",
        "sandbox",
        "up",
        "--config",
        str(config),
    )
    assert answer.returncode == 2, answer.stdout + answer.stderr
    lines = [line for line in answer.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'drdrill[aws-api]'" in lines[0], answer.stderr
    assert "Traceback" not in answer.stderr
    assert not (tmp_path / "sandbox").exists(), "the sandbox started"


def test_the_aws_target_without_boto3_names_the_extra_in_one_line(tmp_path: Path) -> None:
    answer = _collect(
        tmp_path, ("boto3", "botocore", "moto", "localstack_client"), "--dr-target", "aws"
    )
    assert answer.returncode not in (0, 5), answer.stdout[-2000:] + answer.stderr[-2000:]
    out = answer.stdout + answer.stderr
    assert "target 'aws' needs botocore, not installed: pip install 'drdrill[aws]'" in out, out
    assert "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
