"""Tests for drdrill.exercise and ``drdrill exercise``: the quarterly exercise on a real sandbox.

The sandbox runs in its own block (17) and run folder, so a developer's sandbox is left alone.
The runbook's message template and the checkpoint prompt are tested on their own first.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from drdrill.exercise import (
    DEFAULT_TEMPLATE,
    MessageFacts,
    TerminalCheckpoint,
    fill_message,
    find_message_template,
    missing_capabilities,
)
from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "data" / "runbooks" / "seed-style.md"
DRDRILL = str(Path(sys.executable).parent / "drdrill")
BLOCK = 17
# Runs ``drdrill`` with "exercise" among its commands whether or not cli.COMMANDS lists it yet.
_CLI = (
    "import sys\n"
    "from drdrill import cli\n"
    "if 'exercise' not in cli.COMMANDS:\n"
    "    cli.COMMANDS = (*cli.COMMANDS, 'exercise')\n"
    "sys.exit(cli.main())\n"
)
PLACEHOLDER = re.compile(r"\[(?!P\d\])[A-Z][A-Z -]*\]")  # [TIMESTAMP], [TIME], ...; not [P1]

needs_sandbox = pytest.mark.skipif(
    bool(mariadb_missing() or haproxy_missing()),
    reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
)

FACTS = MessageFacts(
    severity="P1",
    exercise_id="20261129T010000Z",
    status="DR ACTIVATED (exercise); failed back to the primary region",
    time="2026-11-29 01:00:03 UTC",
    dr_region="eu-central-1",
    resolution="service restored 2026-11-29 01:00:06 UTC (3.95 s after the failure)",
    actions=("01:00:03Z primary region failure confirmed", "01:00:06Z DR region activated"),
    next_steps=("Monitor the primary region for 24 hours",),
    contact="oncall@example",
)


# --- the message template -----------------------------------------------------------------------


def test_template_found_under_internal_communication_only() -> None:
    text = """# Runbook

```
Subject: not this one
```

### Communication Procedures

#### Internal Communication
```
Subject: [P1] DR Activation - Shop
Time: [TIMESTAMP]
```

#### External Communication
```
Subject: Service Maintenance
```
"""
    assert find_message_template(text) == "Subject: [P1] DR Activation - Shop\nTime: [TIMESTAMP]\n"
    assert find_message_template(text.replace("Internal", "Other")) is None
    assert find_message_template((ROOT / "docs" / "runbook.md").read_text()) is None


def test_seed_template_filled_with_no_placeholder_left() -> None:
    template = find_message_template(SEED.read_text(encoding="utf-8"))
    assert template is not None and "[TIMESTAMP]" in template and "[TIME]" in template
    text = fill_message(template, FACTS)
    assert PLACEHOLDER.search(text) is None, text
    lines = text.splitlines()
    assert lines[0] == (
        "Subject: [P1] DR Activation - LAMP Visitor Analytics (DR exercise 20261129T010000Z)"
    )
    assert "Time: 2026-11-29 01:00:03 UTC" in lines
    assert "DR Region: eu-central-1" in lines
    assert "Affected Service: Visitor Analytics Application" in lines  # kept as written
    assert "Contact: oncall@example" in lines
    actions = lines.index("Actions Taken:")
    assert lines[actions + 1 : actions + 4] == [
        "- 01:00:03Z primary region failure confirmed",
        "- 01:00:06Z DR region activated",
        "",
    ]
    # the template's own generic bullets are replaced, not kept beside ours
    assert "- Database replica promoted" not in lines
    steps = lines.index("Next Steps:")
    assert lines[steps + 1 : steps + 3] == ["- Monitor the primary region for 24 hours", ""]


def test_default_template_filled_and_severity_in_subject() -> None:
    text = fill_message(DEFAULT_TEMPLATE, MessageFacts(**{**FACTS.__dict__, "severity": "P2"}))
    assert text.startswith("Subject: [P2] DR Activation - Visitor Analytics (DR exercise ")
    assert PLACEHOLDER.search(text) is None, text


# --- the checkpoint ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "go_on"),
    [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False), ("", False), ("ok\n", False)],
)
def test_checkpoint_asks_and_only_yes_goes_on(answer: str, go_on: bool) -> None:
    out = io.StringIO()
    assert TerminalCheckpoint(io.StringIO(answer), out)("take the primary region down") is go_on
    assert out.getvalue().startswith("next: take the primary region down. go on? [y/N] ")


def test_a_target_without_the_capabilities_is_refused() -> None:
    # capabilities are protocols, named when missing (not method names looked up with getattr)
    assert missing_capabilities(object(), "script") == ["FailoverStack", "ScriptedStack"]
    assert missing_capabilities(object(), "lambda") == ["FailoverStack", "ScriptedStack"]


def test_local_target_refused_with_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "drdrill.yaml"
    config.write_text(f"target: local\njournal: {tmp_path / 'j.jsonl'}\n")
    result = _exercise(tmp_path, "--config", str(config), "--yes")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "cannot run the exercise" in result.stderr and "FailoverStack" in result.stderr
    assert not (tmp_path / "j.jsonl").exists()


# --- the examples: a cron line and a CI workflow --------------------------------------------------


def _bash_syntax_ok(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, timeout=30)


def test_cron_line_runs_the_drills_and_compliance_on_the_first_sunday() -> None:
    text = (ROOT / "examples" / "cron" / "monthly-compliance.cron").read_text()
    entries = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and not re.match(r"^\w+=", line)
    ]
    (entry,) = entries
    minute, hour, day, month, weekday, command = entry.split(None, 5)
    # days 1-7, and the command itself checks the weekday: cron would OR a restricted weekday
    assert (minute, hour, day, month, weekday) == ("0", "2", "1-7", "*", "*")
    assert re.search(r"(?<!\\)%", command) is None, "an unescaped % ends a crontab command"
    shell = command.replace("\\%", "%")  # what cron hands to the shell
    assert shell.startswith('[ "$(date +%u)" = 7 ] && ')
    assert "./dev.sh drill" in shell and "drdrill compliance --month" in shell
    checked = _bash_syntax_ok(shell)
    assert checked.returncode == 0, checked.stderr


def test_ci_workflow_is_valid_yaml_with_schedule_and_per_change_jobs() -> None:
    data = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on:` key as true
    assert "push" in triggers and "pull_request" in triggers
    assert triggers["schedule"] == [{"cron": "0 2 1-7 * *"}]
    jobs = data["jobs"]
    assert set(jobs) == {"test", "emulator", "compliance"}
    runs: dict[str, str] = {}
    for name, job in jobs.items():
        assert job["runs-on"] and job["steps"], name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (name, step)
            if "run" in step:
                # ${{ ... }} is filled in by Actions before the shell sees it
                script = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])
                checked = _bash_syntax_ok(script)
                assert checked.returncode == 0, (name, step["run"], checked.stderr)
        runs[name] = "\n".join(step.get("run", "") for step in job["steps"])
    assert "./dev.sh test" in runs["test"]
    assert "pytest tests/targets/aws" in runs["emulator"]
    assert "./dev.sh drill" in runs["compliance"]
    assert "drdrill compliance --month" in runs["compliance"]
    assert "schedule" in jobs["compliance"]["if"] and "push" in jobs["test"]["if"]


# --- on the sandbox ------------------------------------------------------------------------------


def _exercise(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    from drdrill import cli

    command = [DRDRILL] if "exercise" in cli.COMMANDS else [sys.executable, "-c", _CLI]
    return subprocess.run(
        [*command, "exercise", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
    )


def _status(config: Path) -> dict[str, Any]:
    result = subprocess.run(
        [DRDRILL, "sandbox", "status", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _journal_ops(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["op"] for line in path.read_text().splitlines() if line.strip()]


def _report(out: Path) -> dict[str, Any]:
    (found,) = sorted(out.glob("exercise-*.json"))
    assert found.with_suffix(".md").exists()
    report: dict[str, Any] = json.loads(found.read_text())
    return report


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A sandbox of its own (block 17), up for the module, taken down at its end."""
    tmp = tmp_path_factory.mktemp("exercise")
    config = tmp / "drdrill.yaml"
    config.write_text(
        f"""runbook: {ROOT / "docs" / "runbook.md"}
target: sandbox
objectives: {{scale: 0.02}}
probes: {{interval: 0.05, timeout: 0.5, recovery_samples: 3}}
journal: {tmp / "journal.jsonl"}
report_dir: {tmp / "reports"}
targets:
  sandbox:
    run_dir: {tmp / "sandbox"}
    block: {BLOCK}
"""
    )
    up = subprocess.run(
        [DRDRILL, "sandbox", "up", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield config
    finally:
        subprocess.run(
            [DRDRILL, "sandbox", "down", "--config", str(config)],
            capture_output=True,
            timeout=120,
        )


@needs_sandbox
def test_no_at_the_first_checkpoint_injects_nothing(sandbox: Path, tmp_path: Path) -> None:
    journal = sandbox.parent / "journal.jsonl"
    before = _journal_ops(journal)
    result = _exercise(tmp_path, "--config", str(sandbox), "--out", str(tmp_path), stdin="n\n")
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "drdrill: error: exercise stopped before 'take the primary region down' (not confirmed)"
    )
    assert "nothing was injected" in line
    assert "next: take the primary region down. go on? [y/N] " in result.stdout
    assert _journal_ops(journal) == before  # not even a journal line
    status = _status(sandbox)
    assert status["regions"]["primary"]["state"] == "up" and status["dns"]["active"] == "primary"
    report = _report(tmp_path)
    assert report["outcome"] == "stopped"
    assert [(s["name"], s["outcome"]) for s in report["steps"]] == [
        ("readiness", "ok"),
        ("region_down", "declined"),
    ]
    assert report["severity"]["level"] == "none"
    message = report["message"]["text"]
    assert message.startswith("Subject: [no impact] DR Activation")
    assert "stopped before: take the primary region down (not confirmed)" in message
    assert "Status: DR EXERCISE STOPPED before: take the primary region down" in message


@needs_sandbox
def test_unattended_exercise_measures_and_fills_the_message(sandbox: Path, tmp_path: Path) -> None:
    journal = sandbox.parent / "journal.jsonl"
    before = len(_journal_ops(journal))
    result = _exercise(tmp_path, "--config", str(sandbox), "--yes", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "go on?" not in result.stdout
    report = _report(tmp_path)
    assert report["outcome"] == "completed" and report["trigger"] == "script"
    steps = report["steps"]
    assert [s["name"] for s in steps] == [
        "readiness",
        "region_down",
        "detection",
        "failover",
        "service_restored",
        "post_failover_checks",
        "restore_primary",
        "failback",
        "post_failback_checks",
    ]
    assert all(s["outcome"] == "ok" for s in steps), steps
    times = [
        (datetime.fromisoformat(s["started_utc"]), datetime.fromisoformat(s["ended_utc"]))
        for s in steps
    ]
    assert all(start <= end for start, end in times)
    assert all(times[i][1] <= times[i + 1][0] for i in range(len(times) - 1))  # in order

    metrics = {m["name"]: m for m in report["metrics"]}
    for name, objective in (
        ("Detection Time", "Detection"),
        ("Response Time", "Decision"),
        ("Resolution Time", "Total RTO"),
    ):
        assert metrics[name]["measured_s"] > 0, metrics[name]
        assert metrics[name]["objective"] == objective and metrics[name]["target_s"] > 0
    # detection and response lie within the resolution: fault -> alarm -> trigger -> restored
    assert (
        metrics["Detection Time"]["measured_s"] + metrics["Response Time"]["measured_s"]
        < metrics["Resolution Time"]["measured_s"]
    )
    # the whole public service was down: every endpoint at once
    assert report["severity"]["level"] == "P1"
    assert report["severity"]["criteria"] == "Complete service outage"
    assert report["outages"] and {o["endpoint"] for o in report["outages"]} == {
        p["endpoint"] for p in report["probes"]
    }

    message = report["message"]["text"]
    assert PLACEHOLDER.search(message) is None, message
    assert "[TIMESTAMP]" not in message
    assert message.startswith("Subject: [P1] DR Activation")
    assert "DR Region: eu-central-1" in message
    failover_at = datetime.fromisoformat(steps[3]["started_utc"]).strftime("%Y-%m-%d %H:%M")
    assert f"Time: {failover_at}" in message
    assert "DR region activated: scripts/failover.sh --yes" in message
    assert "failed back to the primary region" in message

    markdown = next(tmp_path.glob("exercise-*.md")).read_text()
    assert "## Metrics to track" in markdown and "| Resolution Time |" in markdown
    # the fault was journaled, then reverted: nothing left for drdrill recover
    assert _journal_ops(journal)[before:] == ["inject", "reverted"]
    status = _status(sandbox)
    assert status["dns"]["active"] == "primary" and status["regions"]["primary"]["state"] == "up"
    assert status["regions"]["dr"]["ecs"]["desired"] == 0


@needs_sandbox
def test_no_at_failback_reverts_the_fault_and_stays_on_dr(sandbox: Path, tmp_path: Path) -> None:
    """Lambda trigger; yes to the region and the failover, no to the failback."""
    journal = sandbox.parent / "journal.jsonl"
    before = len(_journal_ops(journal))
    result = _exercise(
        tmp_path,
        "--config",
        str(sandbox),
        "--trigger",
        "lambda",
        "--out",
        str(tmp_path),
        stdin="y\ny\nn\n",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert "stopped before 'fail back to the primary region" in line
    report = _report(tmp_path)
    assert report["outcome"] == "stopped"
    assert report["steps"][-1]["name"] == "failback"
    assert report["steps"][-1]["outcome"] == "declined"
    assert "service stays on the DR region" in report["message"]["text"]
    assert "scripts/failback.sh" in report["message"]["text"]
    assert _journal_ops(journal)[before:] == ["inject", "reverted"]
    status = _status(sandbox)
    assert status["regions"]["primary"]["state"] == "up"  # the fault is reverted
    assert status["dns"]["active"] == "dr"  # the failover is not undone
