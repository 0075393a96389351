"""The stack config: typed values inside, one-line errors naming file, line and key."""

from __future__ import annotations

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
