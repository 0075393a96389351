"""No secret leaves the machine in a report: a drill with secrets planted in its config, its
probed endpoint's URL, a fault's journal record, its failure message, its captured output and
its figures, then every artefact grepped.

The drill runs with pytester against the local target (the demo app, a real process on
loopback); report.json, report.md, report.html, the history, JUnit, allure's results, the fault
journal and the console are read back as bytes, and so are the output and the files of
``drdrill history`` and ``drdrill compliance`` run on the result (with the report.json of an
"older drdrill" that did not redact imported into the history first).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drdrill.cli import main
from drdrill.redact import (
    MASK,
    forget_secrets,
    redact,
    redact_data,
    redact_fields,
    register_secret,
    secret_spans,
)
from drdrill.report.history import HistoryStore

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

#: the probed endpoint: the demo app's health page, with credentials and a token in its URL
ENDPOINT = "http://ops:{password}@127.0.0.1:{port}/health-simple.php?token={token}"

CONFIG = """runbook: runbook.md
target: local
journal: journal.jsonl
report_dir: out
probes:
  interval: 50ms
  timeout: 500ms
  recovery_samples: 3
  endpoints: [{{url: "{endpoint}"}}]
writer: {{mysql: {{password: {password}}}}}
drills: {{effect_timeout: 2s, steady_samples: 5}}
targets:
  local:
    demo: {{db: demo.sqlite, port: {port}}}
"""

#: a second victim's command line and environment carry the secrets into the fault's journal
#: record; the drill process has them in its environment (as a drill given its secrets that
#: way does), and the journal names those variables instead
SECRET_ENV = {"DB_PASSWORD": CONFIG_PASSWORD, "DB_URL_PASSWORD": URL_PASSWORD, "API_TOKEN": TOKEN}

DRILL = f"""
import subprocess, sys, time
from drdrill.faults.process import FreezeProcess, ProcessRef

def test_leaky(target, probes, inject, measure):
    worker = subprocess.Popen([
        sys.executable, "-c", "import time; time.sleep(60)",
        "--db=mysql://ops:{URL_PASSWORD}@127.0.0.1/app?token={TOKEN}",
        "--password={CONFIG_PASSWORD}",
    ])
    try:
        ref = ProcessRef.of(
            worker.pid, name="worker {CONFIG_PASSWORD}", env={{"DB_PASSWORD": "{CONFIG_PASSWORD}"}}
        )
        inject.revert(inject(FreezeProcess(ref)))
    finally:
        worker.kill()
        worker.wait()
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

#: what an older drdrill, which did not redact, wrote as a failed test's message
LEGACY_MESSAGE = (
    f"cannot reach http://ops:{URL_PASSWORD}@127.0.0.1:9/x?token={TOKEN} as {AWS_KEY_ID} "
    f"(aws_secret_access_key={AWS_SECRET}), password {CONFIG_PASSWORD}"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Command:
    """One ``drdrill`` command line run in the project, and what it printed."""

    argv: list[str]
    returncode: int
    output: bytes


def drdrill(capsys: pytest.CaptureFixture[str], *args: str) -> Command:
    """Run the real ``drdrill`` command line (in this process, in the current folder) as a
    person would after the drill: no secret known but what the command itself reads."""
    forget_secrets()
    code = main(list(args))
    out, err = capsys.readouterr()
    return Command(list(args), code, (out + err).encode())


def _legacy_report(report_json: Path, folder: Path) -> dict[str, Any]:
    """A copy of the drill's report.json as a drdrill that did not redact would have written
    it: another run id, and the secrets in its failed test's message, in ``folder``."""
    data = json.loads(report_json.read_text(encoding="utf-8"))
    data["run"]["id"] = "legacy-run"
    failed = [t for t in data["tests"] if t.get("outcome") == "failed"]
    assert failed, data["tests"]
    for test in failed:
        for key in ("message", "longrepr"):
            if key in test:
                test[key] = LEGACY_MESSAGE
    target = folder / "legacy-run"
    target.mkdir(parents=True)
    (target / "report.json").write_text(json.dumps(data), encoding="utf-8")
    return data


def test_a_drill_with_planted_secrets_leaves_none_in_any_artefact(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _free_port()
    endpoint = ENDPOINT.format(password=URL_PASSWORD, port=port, token=TOKEN)
    pytester.makefile(".md", runbook=RUNBOOK)
    config = CONFIG.format(endpoint=endpoint, password=CONFIG_PASSWORD, port=port)
    pytester.makefile(".yaml", drdrill=config)
    pytester.makeini("[pytest]\ndr_config = drdrill.yaml\n")
    pytester.makepyfile(test_leaky=DRILL)
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)  # the drill's environment (pytester's process inherits)
    result = pytester.runpytest_subprocess(
        "--junitxml=junit.xml", "--alluredir=allure", "-p", "allure_pytest"
    )
    result.assert_outcomes(failed=1)
    console = "\n".join(result.outlines + result.errlines)
    artefacts = {"console": console.encode()}
    (folder,) = (pytester.path / "out").glob("*/")
    artefacts["journal.jsonl"] = (pytester.path / "journal.jsonl").read_bytes()

    # the history and compliance commands, after a report of an older drdrill is imported;
    # then on a history an older drdrill wrote (unredacted: the input, not grepped itself)
    legacy = _legacy_report(folder / "report.json", pytester.path / "legacy")
    month = legacy["run"]["started_utc"][:7]
    with HistoryStore(pytester.path / "legacy.sqlite") as store:
        store.append(legacy, [])
    old = ("--db", "legacy.sqlite")
    commands = [
        drdrill(capsys, "history", "--config", "drdrill.yaml", "--import", "legacy"),
        drdrill(capsys, "history", "--config", "drdrill.yaml"),
        drdrill(capsys, "history", "--config", "drdrill.yaml", "--json"),
        drdrill(capsys, "compliance", "--month", month),
        drdrill(capsys, "compliance", "--month", month, "--json"),
        drdrill(capsys, "history", *old, "--html", "old/history.html"),
        drdrill(capsys, "history", *old, "--json", "--html", "old/history.html"),
        drdrill(capsys, "compliance", *old, "--month", month, "--out", "old"),
        drdrill(capsys, "compliance", *old, "--month", month, "--out", "old", "--json"),
    ]
    for command in commands:
        assert command.returncode in (0, 1), (command.argv, command.output)
        artefacts[f"drdrill {' '.join(command.argv)}"] = command.output

    for path in [*folder.rglob("*"), *(pytester.path / "out").glob("*.*")]:
        if path.is_file():
            artefacts[str(path.relative_to(pytester.path))] = path.read_bytes()
    artefacts["junit.xml"] = (pytester.path / "junit.xml").read_bytes()
    for path in (pytester.path / "allure").glob("*"):
        artefacts[f"allure/{path.name}"] = path.read_bytes()
    assert any(name.endswith("report.json") for name in artefacts)
    for path in (pytester.path / "old").glob("*"):
        artefacts[f"old/{path.name}"] = path.read_bytes()
    for name in ("history.sqlite", "history.html", f"compliance-{month}.md"):
        assert f"out/{name}" in artefacts, sorted(artefacts)
    for name in ("history.html", f"compliance-{month}.md", f"compliance-{month}.json"):
        assert f"old/{name}" in artefacts, sorted(artefacts)
    # the legacy run is in the history (and so in what the commands show), masked
    assert b"legacy-run" in artefacts["drdrill history --config drdrill.yaml"]
    assert b"x?token=***" in artefacts[f"out/compliance-{month}.md"]
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
    # the probed endpoint is shown with its credentials and token masked, the rest as it is
    masked_endpoint = ENDPOINT.format(password=MASK, port=port, token=MASK).encode()
    assert masked_endpoint in report_json
    # the journal names the variables that held the secrets its record needs
    journal = artefacts["journal.jsonl"].decode()
    assert all(f'{{"env":"{name}"}}' in journal for name in SECRET_ENV), journal
    assert f"(worker {MASK})" in journal


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
        # the punctuation that ends a sentence after a query value is the sentence's
        (
            "outage started http://h/x?token=abc: refused",
            f"outage started http://h/x?token={MASK}: refused",
        ),
        ("see https://h/p?api_key=abc.", f"see https://h/p?api_key={MASK}."),
        ("GET /p?token=a:b&x=1", f"GET /p?token={MASK}&x=1"),
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


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # as the value of a key that names a secret, however it is written
        ("password=ab", f"password={MASK}"),
        ('{"pwd": "ab", "user": "app"}', f'{{"pwd": "{MASK}", "user": "app"}}'),
        ("DB_PASSWORD: ab", f"DB_PASSWORD: {MASK}"),
        ("mysql --db-password=ab -h db", f"mysql --db-password={MASK} -h db"),
        ("?api_key=ab&x=1", f"?api_key={MASK}&x=1"),
        # as a URL's password (any password there is masked)
        ("mysql://app:ab@db/app", f"mysql://app:{MASK}@db/app"),
        # anywhere else it is an ordinary word: masked, it would say what the password is
        ("ab, region=ab, absent, lab", "ab, region=ab, absent, lab"),
        ("password=abc", "password=abc"),  # another value
        ("password=ab_c", "password=ab_c"),  # not the whole value
    ],
)
def test_a_short_registered_secret_is_masked_as_a_secret_keys_value(text: str, masked: str) -> None:
    register_secret("ab")
    assert redact(text) == masked


def test_a_password_given_as_a_number_is_registered_too() -> None:
    register_secret(12)  # YAML ``password: 12``
    register_secret(4242)
    assert (
        redact("pwd=12 after 12 samples; 4242 and 14242")
        == f"pwd={MASK} after 12 samples; {MASK} and 14242"
    )
    register_secret("")  # no secret: masks nothing
    assert redact("a=") == "a="


def test_secret_spans_are_what_redact_masks() -> None:
    register_secret("s3cr3t-value")
    text = "u s3cr3t-value http://a:b@h/?token=t AKIAABCDEFGHIJKLMNOP"
    spans = secret_spans(text)
    assert [text[start:end] for start, end in spans] == [
        "s3cr3t-value",
        "b",
        "t",
        "ABCDEFGHIJKLMNOP",
    ]
    assert redact(text) == f"u {MASK} http://a:{MASK}@h/?token={MASK} AKIA{MASK}"


@dataclass(frozen=True)
class _Row:
    name: str
    reasons: tuple[str, ...]
    extra: dict[str, Any]
    count: int


def test_redact_fields_masks_a_tree_of_dataclasses() -> None:
    row = _Row("http://u:pw@h/", ("ok", "?token=t"), {"password": "x", "note": "y"}, 3)
    assert redact_fields([row]) == [
        _Row(f"http://u:{MASK}@h/", ("ok", f"?token={MASK}"), {"password": MASK, "note": "y"}, 3)
    ]
