"""``drdrill init``: a drdrill.yaml for the AWS target from ``terraform output -json``.

The command runs through ``drdrill.cli.main`` (and twice as the real entry point in a fresh
interpreter), against terraform outputs written by each test. terraform is not installed here:
where ``--terraform-dir`` runs it, a small fake ``terraform`` script first on PATH stands in for
the real binary (it prints the outputs JSON and records its arguments).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.fake_terraform import fake_terraform, first_on_path

from drdrill.cli import main
from drdrill.commands import init
from drdrill.config import load_config
from drdrill.objectives import parse_runbook

RUNBOOKS = Path(__file__).resolve().parent / "data" / "runbooks"
SEED = RUNBOOKS / "seed-style.md"
PRIMARY_DNS = "shop-primary-1234567890.us-east-1.elb.amazonaws.com"
DR_DNS = "internal-shop-dr-987654321.us-west-2.elb.amazonaws.com"
#: what ``terraform output -json`` prints: the two outputs the example documents, and others
#: drdrill does not read (a sensitive one among them, which must not reach the config)
OUTPUTS: dict[str, Any] = {
    "primary_alb_dns": {"sensitive": False, "type": "string", "value": PRIMARY_DNS},
    "dr_alb_dns": {"sensitive": False, "type": "string", "value": DR_DNS},
    "db_password": {"sensitive": True, "type": "string", "value": "hunter2-not-in-config"},
    "private_subnets": {"sensitive": False, "type": ["list", "string"], "value": ["subnet-a"]},
}


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """A team's folder: the runbook in docs/, the saved outputs in infra/; returns the folder."""
    (tmp_path / "docs").mkdir()
    shutil.copyfile(SEED, tmp_path / "docs" / "runbook.md")
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "terraform-outputs.json").write_text(json.dumps(OUTPUTS, indent=2))
    return tmp_path


def _init(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["init", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _from_file(folder: Path, outputs: str = "infra/terraform-outputs.json") -> list[str]:
    return [
        "--runbook",
        str(folder / "docs" / "runbook.md"),
        "--terraform-outputs",
        str(folder / outputs),
        "--output",
        str(folder / "drdrill.yaml"),
    ]


def _line_of(text: str, key: str) -> str:
    """The first line of ``text`` that sets ``key``, without its indent."""
    return next(line.strip() for line in text.splitlines() if line.strip().startswith(f"{key}:"))


def _one_line_error(err: str) -> str:
    """``err`` is drdrill's one error line, without a traceback; returns it."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("drdrill: error: "), err
    assert "Traceback" not in err
    return err.rstrip("\n")


def test_writes_the_config_from_a_saved_outputs_file(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _init(capsys, *_from_file(stack))
    assert (code, err) == (0, "")
    config = stack / "drdrill.yaml"
    assert f"wrote {config}" in out
    text = config.read_text()
    data = yaml.safe_load(text)

    # paths as the config loader resolves them: relative to the config's folder
    assert data["runbook"] == "docs/runbook.md"
    assert data["target"] == "aws"
    aws = data["targets"]["aws"]
    assert aws["terraform_outputs"] == "infra/terraform-outputs.json"
    # the documented outputs, and the regions their ALB names name
    assert aws["primary"]["alb"]["dns_name"] == PRIMARY_DNS
    assert aws["dr"]["alb"]["dns_name"] == DR_DNS
    assert (aws["primary"]["region"], aws["dr"]["region"]) == ("us-east-1", "us-west-2")
    assert "# TODO fill" not in _line_of(text, "dns_name")
    assert _line_of(text, "region").endswith("# from primary_alb_dns")
    # the outputs it does not read stay out, the sensitive one above all
    assert "hunter2" not in text and "subnet-a" not in text

    # the safety section: empty, with what to fill and why nothing runs until then
    assert data["safety"] == {"allowed_accounts": [], "allowed_regions": []}
    assert aws["stop_conditions"]["guard_alarms"] == []
    assert aws["primary"]["alarms"]["guards"] == aws["dr"]["alarms"]["guards"] == []
    assert aws["blast_radius"] == {"max_tasks_percent": 50}
    safety = text[text.index("# SAFETY") : text.index("safety:")]
    flat = " ".join(line.removeprefix("#").strip() for line in safety.splitlines())
    assert "Every drill that injects a fault refuses to run until it is filled" in flat
    assert "allowed_accounts" in flat and "--dr-allow-destructive" in flat
    assert "allowed_regions: [us-east-1, us-west-2]" in flat  # the stack's regions, as a hint
    assert "# TODO fill: the AWS account ids" in _line_of(text, "allowed_accounts")
    assert "# TODO fill:" in _line_of(text, "allowed_regions")
    assert "# TODO fill:" in _line_of(text, "guard_alarms")

    # what terraform does not say: null, or the runbook's default name, each marked to fill
    for key in ("zone_name", "record_name", "sns_topic_arn", "bucket", "target_group_name"):
        assert _line_of(text, key).startswith(f"{key}: null  # TODO fill: "), key
    assert aws["route53"] == {"zone_name": None, "record_name": None}
    assert _line_of(text, "cluster") == (
        "cluster: visitor-analytics  # TODO fill: the ECS cluster (the runbook's default)"
    )
    assert _line_of(text, "instance_id").startswith("instance_id: visitor-analytics-db  # TODO")
    assert f"{text.count('# TODO fill:')} lines to fill" in out
    # the runbook's rows are named where they can be overridden
    assert "the runbook's rows are RTO: Detection, Decision," in text
    assert "safety is empty" in out


def test_the_config_loads_once_the_safety_is_filled(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _init(capsys, *_from_file(stack))[0] == 0
    path = stack / "drdrill.yaml"
    text = path.read_text()
    # as a team would: the safety keys, and a TODO value
    filled = (
        text.replace("allowed_accounts: []", 'allowed_accounts: ["123456789012"]')
        .replace("allowed_regions: []", "allowed_regions: [us-east-1, us-west-2]")
        .replace("record_name: null", "record_name: app.shop.example.com")
    )
    assert filled != text
    path.write_text(filled)

    config = load_config(path)
    assert config.target == "aws"
    assert config.safety.allowed_accounts == ["123456789012"]
    assert config.safety.allowed_regions == ["us-east-1", "us-west-2"]
    assert config.runbook is not None
    objectives = parse_runbook(config.resolve(config.runbook))
    assert "Total RTO" in objectives.rto and "Database" in objectives.rpo
    assert config.probes.interval == 0.25 and config.drills.restore_timeout == 1200

    # the AWS target's own settings loader (it needs the [aws] extra: boto3)
    pytest.importorskip("boto3")
    from drdrill.targets.aws import terraform
    from drdrill.targets.aws.settings import load_aws_settings

    settings = load_aws_settings(config)
    assert settings.primary.alb.dns_name == PRIMARY_DNS
    assert settings.regions == ("us-east-1", "us-west-2")
    assert settings.route53.record_name == "app.shop.example.com."
    assert settings.blast_radius.max_tasks_percent == 50
    assert settings.guard_alarms() == ()
    assert settings.terraform_outputs == str(stack / "infra" / "terraform-outputs.json")
    assert terraform.outputs(settings.terraform_outputs)["dr_alb_dns"] == DR_DNS


def test_a_region_terraform_does_not_name_is_left_to_fill(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a custom name for the primary (no region in it), no output for the DR region
    outputs = {"primary_alb_dns": {"value": "lb.shop.example.com"}}
    (stack / "infra" / "terraform-outputs.json").write_text(json.dumps(outputs))
    code, _, err = _init(capsys, *_from_file(stack))
    assert (code, err) == (0, "")
    text = (stack / "drdrill.yaml").read_text()
    aws = yaml.safe_load(text)["targets"]["aws"]
    assert aws["primary"]["alb"]["dns_name"] == "lb.shop.example.com"
    assert aws["dr"]["alb"]["dns_name"] is None
    # the runbook's regions, each marked
    assert (aws["primary"]["region"], aws["dr"]["region"]) == ("eu-west-1", "eu-central-1")
    regions = [line.strip() for line in text.splitlines() if line.strip().startswith("region:")]
    assert regions == [
        "region: eu-west-1  # TODO fill: the primary region (not in primary_alb_dns)",
        "region: eu-central-1  # TODO fill: the dr region (not in dr_alb_dns)",
    ]
    [dr_dns] = [line.strip() for line in text.splitlines() if "dns_name: null" in line]
    assert dr_dns.startswith("dns_name: null  # TODO fill: the ALB's DNS name (terraform has no ")
    assert load_config(stack / "drdrill.yaml").target == "aws"


def test_an_existing_config_is_kept_without_force(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = stack / "drdrill.yaml"
    config.write_text("target: sandbox\n")
    code, out, err = _init(capsys, *_from_file(stack))
    assert (code, out) == (2, "")
    assert _one_line_error(err) == (
        f"drdrill: error: {config}: already exists: pass --force to overwrite it"
    )
    assert config.read_text() == "target: sandbox\n"

    code, _, err = _init(capsys, *_from_file(stack), "--force")
    assert (code, err) == (0, "")
    assert yaml.safe_load(config.read_text())["target"] == "aws"
    # a folder is never a config to write, --force or not
    config.unlink()
    config.mkdir()
    code, _, err = _init(capsys, *_from_file(stack), "--force")
    assert code == 2
    assert _one_line_error(err).endswith(f"{config}: output is a directory, not a file to write")


def _write(folder: Path, name: str, content: object) -> str:
    path = folder / "infra" / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return f"infra/{name}"


BAD_OUTPUTS: list[tuple[str, object, str]] = [
    ("not-json", "primary_alb_dns = alb", "not valid json: Expecting value at line 1 column 1"),
    ("a-list", [OUTPUTS["primary_alb_dns"]], "expected a json object of outputs, got list"),
    (
        "no-value",
        {"primary_alb_dns": {"type": "string"}},
        "output 'primary_alb_dns': expected an object with a 'value' or a string",
    ),
    (
        "not-a-name",
        {"primary_alb_dns": {"value": ["a.example.com", "b.example.com"]}},
        'primary_alb_dns: not a DNS name: "[\\"a.example.com\\",\\"b.example.com\\"]"',
    ),
    (
        "a-url",
        {"dr_alb_dns": {"value": "http://alb.example.com/"}},
        'dr_alb_dns: not a DNS name: "http://alb.example.com/"',
    ),
    (
        "none-read",
        {"vpc_id": {"value": "vpc-1"}, "alb_dns": {"value": "x.example.com"}},
        "no output drdrill reads (primary_alb_dns or dr_alb_dns); outputs found: alb_dns, vpc_id",
    ),
    (
        "one-region",
        {"primary_alb_dns": {"value": PRIMARY_DNS}, "dr_alb_dns": {"value": PRIMARY_DNS}},
        "primary_alb_dns and dr_alb_dns are both in us-east-1",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "message"), BAD_OUTPUTS, ids=[c[0] for c in BAD_OUTPUTS]
)
def test_bad_terraform_outputs_are_one_line_naming_the_file_and_key(
    stack: Path, capsys: pytest.CaptureFixture[str], name: str, content: object, message: str
) -> None:
    relative = _write(stack, f"{name}.json", content)
    code, out, err = _init(capsys, *_from_file(stack, relative))
    assert (code, out) == (2, "")
    line = _one_line_error(err)
    assert line.startswith(f"drdrill: error: {stack / relative}: "), line
    assert message in line
    assert not (stack / "drdrill.yaml").exists()


def test_a_missing_or_unreadable_outputs_file_is_one_line(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = stack / "infra" / "nowhere.json"
    code, _, err = _init(capsys, *_from_file(stack, "infra/nowhere.json"))
    assert code == 2
    assert _one_line_error(err) == (f"drdrill: error: {missing}: terraform outputs file not found")
    code, _, err = _init(capsys, *_from_file(stack, "infra"))
    assert code == 2
    assert _one_line_error(err) == (
        f"drdrill: error: {stack / 'infra'}: terraform outputs file is a directory, not a file to "
        "read"
    )
    assert not (stack / "drdrill.yaml").exists()


@pytest.mark.parametrize("runbook", ["missing.md", "no-rto.md", "bad-unit.md"])
def test_a_bad_runbook_gives_the_runbook_readers_own_line(
    stack: Path, capsys: pytest.CaptureFixture[str], runbook: str
) -> None:
    path = RUNBOOKS / runbook
    argv = _from_file(stack)
    argv[1] = str(path)
    code, out, err = _init(capsys, *argv)
    assert (code, out) == (2, "")
    line = _one_line_error(err)
    assert line.startswith(f"drdrill: error: {path}")
    # the same line `drdrill objectives` gives for it
    assert main(["objectives", str(path)]) == 2
    assert capsys.readouterr().err == err
    assert not (stack / "drdrill.yaml").exists()


def test_a_missing_output_folder_is_one_line(
    stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _from_file(stack)
    argv[-1] = str(stack / "nowhere" / "drdrill.yaml")
    code, _, err = _init(capsys, *argv)
    assert code == 2
    assert _one_line_error(err).endswith("nowhere/drdrill.yaml: its folder does not exist")


# --- --terraform-dir: terraform run on the spot ---------------------------------------------


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on PATH for the test."""
    return first_on_path(tmp_path, monkeypatch)


def _from_dir(folder: Path) -> list[str]:
    return [
        "--runbook",
        str(folder / "docs" / "runbook.md"),
        "--terraform-dir",
        str(folder / "infra"),
        "--output",
        str(folder / "drdrill.yaml"),
    ]


def test_terraform_dir_runs_terraform_output_json_there(
    stack: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = fake_terraform(bin_dir, json.dumps(OUTPUTS))
    code, out, err = _init(capsys, *_from_dir(stack))
    assert (code, err) == (0, "")
    infra = stack / "infra"
    assert args.read_text().splitlines() == [f"-chdir={infra}", "output", "-json"]
    assert f"from terraform -chdir={infra} output -json" in out
    aws = yaml.safe_load((stack / "drdrill.yaml").read_text())["targets"]["aws"]
    # the run reads the outputs the same way (an absolute folder: it runs from anywhere)
    assert aws["terraform_outputs"] == f"terraform -chdir={infra}"
    assert aws["primary"]["alb"]["dns_name"] == PRIMARY_DNS
    assert aws["dr"]["alb"]["dns_name"] == DR_DNS


def test_a_failing_terraform_is_one_line(
    stack: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_terraform(bin_dir, "", status=1, stderr="Error: No configuration files\n")
    code, _, err = _init(capsys, *_from_dir(stack))
    assert code == 2
    assert _one_line_error(err) == (
        f"drdrill: error: terraform -chdir={stack / 'infra'}: exit status 1: "
        "Error: No configuration files"
    )
    assert not (stack / "drdrill.yaml").exists()


def test_terraform_not_installed_is_one_line(
    stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, _, err = _init(capsys, *_from_dir(stack))
    assert code == 2
    assert _one_line_error(err) == (
        f"drdrill: error: terraform -chdir={stack / 'infra'}: cannot run 'terraform': not found"
    )
    # a folder that is not there is named before anything runs
    argv = _from_dir(stack)
    argv[3] = str(stack / "no-infra")
    code, _, err = _init(capsys, *argv)
    assert code == 2
    assert _one_line_error(err) == f"drdrill: error: {stack / 'no-infra'}: no such terraform folder"


# --- the real entry point ------------------------------------------------------------------


def _drdrill(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "init", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_the_command_line_end_to_end(stack: Path, bin_dir: Path) -> None:
    fake_terraform(bin_dir, json.dumps(OUTPUTS))
    done = _drdrill(*_from_dir(stack), env=dict(os.environ))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert load_config(stack / "drdrill.yaml").target == "aws"
    again = _drdrill(*_from_dir(stack), env=dict(os.environ))
    assert again.returncode == 2 and again.stdout == ""
    assert _one_line_error(again.stderr).endswith("already exists: pass --force to overwrite it")


def test_the_runbook_defaults_are_the_target_settings_own() -> None:
    """init repeats the AWS settings' default names (to keep pydantic out of ``--help``)."""
    pytest.importorskip("boto3")
    from drdrill.targets.aws import settings

    for key, defaults in (("primary", settings.PRIMARY_DEFAULTS), ("dr", settings.DR_DEFAULTS)):
        names = init.RUNBOOK_NAMES[key]
        assert names["region"] == defaults["region"]
        assert names["instance_id"] == defaults["rds"]["instance_id"]
        assert names["health"] == defaults["alarms"]["health"]
        ecs = settings.EcsSettings()
        assert (names["cluster"], names["service"]) == (ecs.cluster, ecs.service)
    assert settings.PRIMARY_DEFAULTS["lambda_function"] == init.LAMBDA_NAME
