"""The stack config: typed values inside, one-line errors naming file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drdrill.config import load_config
from drdrill.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drdrill.yaml"
    path.write_text(text)
    return path


def test_durations_as_text_or_numbers_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "runbook: docs/runbook.md\n"
        "objectives:\n  scale: 0.01\n  rto:\n    Detection: 30s\n    Total RTO: 2 minutes\n"
        "probes:\n  interval: 50ms\n  timeout: 2\n"
        "  endpoints:\n    - url: http://127.0.0.1:8080/health-simple.php\n",
    )
    config = load_config(path)
    assert config.probes.interval == pytest.approx(0.05)
    assert config.probes.timeout == 2.0
    assert config.objectives.rto == {"Detection": 30.0, "Total RTO": 120.0}
    assert config.resolve(config.runbook or Path()) == tmp_path / "docs" / "runbook.md"
    assert config.probes.endpoints[0].expect_status == 200


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("probes:\n  interval: fast\n", ":2", "probes.interval"),
        ("probes:\n  recovery_samples: [1]\n", ":2", "probes.recovery_samples"),
        ("objectives:\n  scale: 0\n", ":2", "objectives.scale"),
        ("objectives:\n  rto:\n    Detection: 3 fortnights\n", ":3", "fortnights"),
        ("target: local\nprobez: {}\n", ":2", "probez: unknown key"),
        (
            "probes:\n  endpoints:\n    - url: http://a/\n    - url: ftp://b/\n",
            ":4",
            "probes.endpoints.1.url",
        ),
        ("probes: [1, 2\n", ":2", "expected"),
        ("- a\n- b\n", ":1", "mapping"),
        ("probes:\n  interval: 5ms\n", ":2", "0.01 s floor"),
        ("report:\n  min_outage: soon\n", ":2", "report.min_outage: not a duration: 'soon'"),
        ("report:\n  min_outage: -1s\n", ":2", "report.min_outage: negative duration"),
        ("report:\n  min_outage: .inf\n", ":2", "report.min_outage: Input should be a finite"),
        ("target: local\nreport:\n  min_outage: true\n", ":3", "report.min_outage: expected"),
    ],
)
def test_bad_values_name_file_line_and_key(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{where}:"), message
    assert what in message
    assert "\n" not in message


def test_report_min_outage_is_a_duration_half_a_second_by_default(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "target: local\n")).report.min_outage == 0.5
    assert load_config(write(tmp_path, "report:\n  min_outage: 0\n")).report.min_outage == 0.0
    path = write(tmp_path, "report: {min_outage: 250ms}\n")
    assert load_config(path).report.min_outage == pytest.approx(0.25)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="config is a directory, not a file to read"):
        load_config(folder)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("true", "Input should be a valid number"),  # a boolean is no scale
        (".inf", "less than or equal to 1000"),
        ("1.0e+308", "less than or equal to 1000"),
        ("0", "greater than 0"),
    ],
)
def test_the_scale_is_a_finite_number_within_bounds(tmp_path: Path, value: str, why: str) -> None:
    config = tmp_path / "drdrill.yaml"
    config.write_text(f"objectives: {{scale: {value}}}\n")
    with pytest.raises(ConfigError, match=f"drdrill.yaml:1: objectives.scale: .*{why}"):
        load_config(config)


# --- the whole config is checked at load (issue 12, part 2) ------------------------------------

ROOT = Path(__file__).resolve().parents[1]
HAS_PROC = Path("/proc/self").is_dir()
ENDPOINT = "probes:\n  endpoints:\n    - url: http://127.0.0.1:8080/\n"


@pytest.mark.parametrize(
    ("text", "line", "key", "why"),
    [
        # durations that must be finite, and those that must be longer than zero
        ("probes:\n  timeout: 0\n", 2, "probes.timeout", "greater than 0"),
        ("probes:\n  timeout: .inf\n", 2, "probes.timeout", "finite number"),
        ("probes:\n  interval: .inf\n", 2, "probes.interval", "finite number"),
        (ENDPOINT + "      timeout: 0\n", 4, "probes.endpoints.0.timeout", "greater than 0"),
        ("writer:\n  timeout: 0s\n", 2, "writer.timeout", "greater than 0"),
        ("drills:\n  restore_timeout: .nan\n", 2, "drills.restore_timeout", "finite number: nan"),
        ("drills:\n  effect_timeout: 0\n", 2, "drills.effect_timeout", "greater than 0"),
        ("drills:\n  oncall_delay: 1.0e+12\n", 2, "drills.oncall_delay", "over a year"),
        (
            "objectives:\n  rto:\n    Detection: .inf\n",
            3,
            "objectives.rto.Detection",
            "finite number",
        ),
        (
            "targets:\n  sandbox:\n    timings:\n      alarm_period: 0\n",
            4,
            "targets.sandbox.timings.alarm_period",
            "greater than 0",
        ),
        (
            "targets:\n  aws:\n    dns: {timeout: .inf}\n",
            3,
            "targets.aws.dns.timeout",
            "finite number",
        ),
        # values with a range, a form or a partner
        (ENDPOINT + "      expect_status: 99\n", 4, "probes.endpoints.0.expect_status", "99 is"),
        (
            ENDPOINT + "      expect_status: [200, 9999]\n",
            4,
            "probes.endpoints.0.expect_status",
            "9999 is not an HTTP status (100-599)",
        ),
        (ENDPOINT + "      expect_status: []\n", 4, "probes.endpoints.0.expect_status", "empty"),
        (
            ENDPOINT + "      expect_status: '200'\n",
            4,
            "probes.endpoints.0.expect_status",
            "not an HTTP status: '200'",
        ),
        (
            ENDPOINT + '      body_matches: "(["\n',
            4,
            "probes.endpoints.0.body_matches",
            "is not a regular expression",
        ),
        (ENDPOINT + '      json_field: ""\n', 4, "probes.endpoints.0.json_field", "at least 1"),
        (ENDPOINT + "      json_equals: ok\n", 3, "probes.endpoints.0", "without json_field"),
        ("probes:\n  recovery_samples: 100000000\n", 2, "probes.recovery_samples", "1000"),
        ("writer:\n  rate_hz: 5000\n", 2, "writer.rate_hz", "less than or equal to 1000"),
        ("writer:\n  rate_hz: 0\n", 2, "writer.rate_hz", "greater than 0"),
        ("writer:\n  sink: mysql\n", 1, "writer.mysql", "required when writer.sink is mysql"),
        (
            "writer:\n  sink: mysql\n  mysql:\n    port: 99999\n",
            4,
            "writer.mysql.port",
            "less than or equal to 65535",
        ),
        ("writer:\n  mysql: {port: 0}\n", 2, "writer.mysql.port", "greater than or equal to 1"),
        # booleans are no numbers, numbers no booleans
        ("writer:\n  rate_hz: true\n", 2, "writer.rate_hz", "valid number (got True)"),
        (
            "probes:\n  recovery_samples: true\n",
            2,
            "probes.recovery_samples",
            "valid integer (got True)",
        ),
        (
            "drills:\n  min_availability: true\n",
            2,
            "drills.min_availability",
            "valid number (got True)",
        ),
        ("drills:\n  steady_samples: true\n", 2, "drills.steady_samples", "valid integer"),
        ("probes:\n  timeout: true\n", 2, "probes.timeout", "got a boolean"),
        (
            "compliance:\n  accept_inconclusive: 1\n",
            2,
            "compliance.accept_inconclusive",
            "valid boolean (got 1)",
        ),
        ("writer:\n  mysql: {port: true}\n", 2, "writer.mysql.port", "valid integer"),
        (
            "targets:\n  sandbox:\n    timings:\n      dns_ttl: true\n",
            4,
            "targets.sandbox.timings.dns_ttl",
            "valid integer (got True)",
        ),
        (
            "targets:\n  sandbox:\n    route53_routing: true\n",
            2,
            "targets.sandbox",
            "route53_routing: true needs aws_api: true",
        ),
        ("targets:\n  local:\n    demo: {port: true}\n", 3, "targets.local.demo.port", "integer"),
        ("targets:\n  aws:\n    http_port: true\n", 3, "targets.aws.http_port", "integer"),
        ("targets:\n  aws:\n    localstack: 1\n", 3, "targets.aws.localstack", "valid boolean"),
        # keys: given twice, unknown at any depth, targets that do not exist
        (
            "target: local\nprobes:\n  timeout: 1\n  interval: 1\n  timeout: 2\n",
            5,
            "probes.timeout",
            "duplicate key (first at line 3)",
        ),
        ("target: local\ntarget: sandbox\n", 2, "target", "duplicate key (first at line 1)"),
        (
            ENDPOINT + "      name: a\n      name: b\n",
            5,
            "probes.endpoints.0.name",
            "duplicate key (first at line 4)",
        ),
        (
            "targets:\n  sandbox: {}\n  sandbox: {}\n",
            3,
            "targets.sandbox",
            "duplicate key (first at line 2)",
        ),
        (ENDPOINT + "      timeot: 1\n", 4, "probes.endpoints.0.timeot", "unknown key"),
        ("report:\n  min_outages: 1s\n", 2, "report.min_outages", "unknown key"),
        (
            "targets:\n  lcoal: {}\n",
            2,
            "targets.lcoal",
            "unknown target 'lcoal' (known: aws, local, sandbox)",
        ),
        ("targets:\n  sandbox-aws: {}\n", 2, "targets.sandbox-aws", "no section of its own"),
        ("target: lcoal\n", 1, "target", "unknown target 'lcoal' (known: aws, local, sandbox,"),
        (
            "target: local\ntargets:\n  sandbox:\n    timings: {dns_tll: 2}\n",
            4,
            "targets.sandbox.timings.dns_tll",
            "unknown key",
        ),
        (
            "target: sandbox\ntargets:\n  aws:\n    primary:\n      ecs: {clustr: x}\n",
            5,
            "targets.aws.primary.ecs.clustr",
            "unknown key",
        ),
        ("targets:\n  local:\n    demo: {prot: 1}\n", 3, "targets.local.demo.prot", "unknown key"),
        (
            "targets:\n  aws:\n    primary:\n      database: {password_env: X}\n",
            4,
            "targets.aws.primary.database.user",
            "required",
        ),
        # paths the run writes to
        ('journal: ""\n', 1, "journal", "empty path"),
        ("target: local\njournal: .\n", 2, "journal", "is a folder, not a file"),
        ("journal: drdrill.yaml/journal.jsonl\n", 1, "journal", "is a file, not a folder"),
        ("report_dir: drdrill.yaml/reports\n", 1, "report_dir", "is a file, not a folder"),
        ("report_dir: '  '\n", 1, "report_dir", "empty path"),
        ("history: .\n", 1, "history", "is a folder, not a file"),
        pytest.param(
            "report_dir: /proc/nope\n",
            1,
            "report_dir",
            "cannot create /proc/nope",
            marks=pytest.mark.skipif(not HAS_PROC, reason="no /proc"),
        ),
    ],
)
def test_every_class_of_bad_value_is_refused_at_load_in_one_line(
    tmp_path: Path, text: str, line: int, key: str, why: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert why in message, message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "null\n"])
def test_an_empty_config_is_an_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"drdrill\.yaml:1: empty config"):
        load_config(path)


def test_a_merged_key_may_be_overridden_without_being_a_duplicate(tmp_path: Path) -> None:
    # YAML's merge key is the one way a mapping gives a key twice on purpose
    path = write(tmp_path, "probes:\n  <<: {interval: 1s, timeout: 2s}\n  timeout: 3s\n")
    assert load_config(path).probes.timeout == 3.0


def test_the_paths_are_checked_without_creating_anything(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "journal: state/deep/journal.jsonl\nreport_dir: out/reports\nhistory: db/h.sqlite\n",
    )
    config = load_config(path)
    assert config.resolve(config.journal) == tmp_path / "state" / "deep" / "journal.jsonl"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drdrill.yaml"]


def test_the_command_lines_report_folder_is_checked_instead_of_the_configs(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "report_dir: drdrill.yaml/reports\n")
    assert load_config(path, report_dir=tmp_path / "elsewhere").report_dir
    good = write(tmp_path, "target: local\n")
    with pytest.raises(ConfigError, match=r"^--dr-report-dir: cannot create .*is a file"):
        load_config(good, report_dir=good / "reports")


def test_the_aws_section_is_checked_without_boto3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("boto3", "botocore"):
        monkeypatch.setitem(sys.modules, name, None)  # import boto3 -> ModuleNotFoundError
    for name in [m for m in sys.modules if m.startswith("drdrill.targets.aws.")]:
        monkeypatch.delitem(sys.modules, name)
    path = write(tmp_path, "target: sandbox\ntargets:\n  aws:\n    http_port: 0\n")
    with pytest.raises(ConfigError, match=r"drdrill\.yaml:4: targets\.aws\.http_port: "):
        load_config(path)
    ok = write(tmp_path, "target: sandbox\ntargets:\n  aws:\n    dns: {timeout: 3s}\n")
    assert load_config(ok).target_settings("aws") == {"dns": {"timeout": "3s"}}


def test_a_section_whose_model_needs_a_missing_extra_is_left_to_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drdrill import config as config_module

    monkeypatch.setitem(sys.modules, "boto3", None)
    monkeypatch.delitem(sys.modules, "drdrill.targets.aws.session", raising=False)
    # a stand-in model whose module imports boto3 (as the AWS settings once did)
    sections = {**config_module.TARGET_SECTIONS, "aws": "drdrill.targets.aws.session:AwsClients"}
    monkeypatch.setattr(config_module, "TARGET_SECTIONS", sections)
    path = write(tmp_path, "target: sandbox\ntargets:\n  aws:\n    anything: 1\n")
    assert load_config(path).target_settings("aws") == {"anything": 1}


END_TO_END = [
    pytest.param(
        'target: local\njournal: ""\n', "drdrill.yaml:2: journal: empty path", id="journal"
    ),
    pytest.param(
        "target: local\nreport_dir: /proc/nope\n",
        "drdrill.yaml:2: report_dir: cannot create /proc/nope",
        id="report_dir",
        marks=pytest.mark.skipif(not HAS_PROC, reason="no /proc"),
    ),
]


@pytest.mark.slow  # pytest collects suites/ in a subprocess
@pytest.mark.parametrize(("text", "line"), END_TO_END)
def test_pytest_collect_only_refuses_it_in_one_line_with_exit_2(
    tmp_path: Path, text: str, line: str
) -> None:
    path = write(tmp_path, text)
    collect = ["pytest", "--co", "-q", "-p", "no:cacheprovider", "--dr-config", str(path)]
    answer = subprocess.run(
        [sys.executable, "-m", *collect, "suites"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = answer.stdout + answer.stderr
    assert answer.returncode == 2, out[-3000:]
    errors = [text for text in out.splitlines() if "drdrill: error:" in text]
    assert len(errors) == 1, out[-3000:]
    assert errors[0].startswith(f"drdrill: error: {tmp_path}/{line}"), errors
    assert "Traceback" not in out and "INTERNALERROR" not in out, out[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drdrill.yaml"], "something was made"
