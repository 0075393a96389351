"""No secret leaves the machine in a report: a drill with secrets planted in its config, its
failure message, its captured output and its figures, then every artefact grepped.

The drill runs with pytester against the local target (the demo app, a real process on
loopback); report.json, report.md, report.html, the history, JUnit, allure's results and the
console are read back as bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drdrill.redact import MASK, forget_secrets, redact, redact_data, register_secret

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _registered_here_only() -> Iterator[None]:
    """The secrets these tests register are forgotten after each (they are process-wide)."""
    yield
    forget_secrets()


#: each kind of secret, as planted
CONFIG_PASSWORD = "PlantedCfgPw3x"
URL_PASSWORD = "PlantedUrlPw1x"
TOKEN = "PlantedToken2x"
AWS_KEY_ID = "AKIAPLANTEDKEY123456"
AWS_SECRET = "PlantedAwsSecretKey/abcdefgh"
SECRETS = (CONFIG_PASSWORD, URL_PASSWORD, TOKEN, AWS_KEY_ID, AWS_SECRET)

RUNBOOK = """# Runbook

## Recovery Time Objectives

| Component | Target RTO | Actual RTO | Notes |
|---|---|---|---|
| **Total RTO** | 15 minutes | | end to end |
"""

CONFIG = f"""runbook: runbook.md
target: local
journal: journal.jsonl
report_dir: out
probes: {{interval: 50ms, timeout: 500ms, recovery_samples: 3}}
writer: {{mysql: {{password: {CONFIG_PASSWORD}}}}}
drills: {{effect_timeout: 2s, steady_samples: 5}}
targets:
  local:
    demo: {{db: demo.sqlite}}
"""

DRILL = f"""
import time
from drdrill.faults.process import FreezeProcess, ProcessRef

def test_leaky(target, probes, inject, measure):
    probes.start()
    time.sleep(0.5)
    fault = inject(FreezeProcess(ProcessRef.of(target.app_process().pid, name="demo-app")))
    time.sleep(0.5)
    inject.revert(fault)
    restored = probes.wait_restored("fault_injected", timeout_s=20)
    measure.phase("Total RTO", "fault_injected", restored)
    print("connecting with {CONFIG_PASSWORD} and aws_secret_access_key={AWS_SECRET}")
    url = "http://ops:{URL_PASSWORD}@127.0.0.1:9/x?token={TOKEN}"
    assert False, f"cannot reach {{url}} as {AWS_KEY_ID}, password {CONFIG_PASSWORD}"
"""


def test_a_drill_with_planted_secrets_leaves_none_in_any_artefact(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".md", runbook=RUNBOOK)
    pytester.makefile(".yaml", drdrill=CONFIG)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(test_leaky=DRILL)
    result = pytester.runpytest_subprocess(
        "--junitxml=junit.xml", "--alluredir=allure", "-p", "allure_pytest"
    )
    result.assert_outcomes(failed=1)
    console = "\n".join(result.outlines + result.errlines)
    artefacts = {"console": console.encode()}
    (folder,) = (pytester.path / "out").glob("*/")
    for path in [*folder.rglob("*"), *(pytester.path / "out").glob("*.sqlite*")]:
        if path.is_file():
            artefacts[str(path.relative_to(pytester.path))] = path.read_bytes()
    artefacts["junit.xml"] = (pytester.path / "junit.xml").read_bytes()
    for path in (pytester.path / "allure").glob("*"):
        artefacts[f"allure/{path.name}"] = path.read_bytes()
    assert any(name.endswith("report.json") for name in artefacts)
    assert any("history" in name for name in artefacts), sorted(artefacts)
    leaks = [
        (name, secret)
        for name, data in artefacts.items()
        for secret in SECRETS
        if secret.encode() in data
    ]
    assert not leaks, leaks
    # the failure still says what failed, masked
    report_json = next(data for name, data in artefacts.items() if name.endswith("report.json"))
    assert b"cannot reach http://ops:***@127.0.0.1:9/x?token=***" in report_json
    assert b"AKIA***" in report_json


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("http://u:pw123@h:1/p", f"http://u:{MASK}@h:1/p"),
        ("https://h/p?a=1&api_key=abc&sig=2", f"https://h/p?a=1&api_key={MASK}&sig=2"),
        (
            "GET /o?X-Amz-Signature=ff00&X-Amz-Credential=AK",
            f"GET /o?X-Amz-Signature={MASK}&X-Amz-Credential={MASK}",
        ),
        ("key id AKIAABCDEFGHIJKLMNOP", f"key id AKIA{MASK}"),
        ('"SecretAccessKey": "wJalrXUtnFEMIK7MDENG"', f'"SecretAccessKey": "{MASK}"'),
        (
            "http://127.0.1.2:28080/api.php?action=stats",
            "http://127.0.1.2:28080/api.php?action=stats",
        ),
    ],
)
def test_each_kind_of_secret_is_masked_in_text(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_registered_secrets_and_secret_keys_are_masked_in_data() -> None:
    register_secret("s3cr3t-value")
    data = {"password": "x", "api_key": "y", "author": "me", "note": "uses s3cr3t-value here"}
    assert redact_data(data) == {
        "password": MASK,
        "api_key": MASK,
        "author": "me",
        "note": f"uses {MASK} here",
    }


def test_a_registered_secret_is_masked_as_a_whole_token_only() -> None:
    register_secret("test")
    assert redact("test_region_failover passed; password test") == (
        f"test_region_failover passed; password {MASK}"
    )
