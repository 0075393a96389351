"""Terraform outputs from a saved ``terraform output -json`` file, or from a command run on the
spot (a stand-in ``terraform`` script on PATH prints the JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fake_terraform import fake_terraform, first_on_path

from drdrill.errors import InputError
from drdrill.targets.aws import terraform

#: what ``terraform output -json`` prints (types as terraform reports them)
OUTPUT_JSON = {
    "primary_alb_dns": {
        "sensitive": False,
        "type": "string",
        "value": "visitor-analytics-alb-123.eu-west-1.elb.amazonaws.com",
    },
    "dr_alb_dns": {
        "sensitive": False,
        "type": "string",
        "value": "visitor-analytics-dr-alb-456.eu-central-1.elb.amazonaws.com",
    },
    "db_password": {"sensitive": True, "type": "string", "value": "s3cret"},
    "desired_count": {"sensitive": False, "type": "number", "value": 2},
    "multi_az": {"sensitive": False, "type": "bool", "value": True},
    "private_subnets": {
        "sensitive": False,
        "type": ["list", "string"],
        "value": ["subnet-a", "subnet-b"],
    },
}
EXPECTED = {
    "primary_alb_dns": "visitor-analytics-alb-123.eu-west-1.elb.amazonaws.com",
    "dr_alb_dns": "visitor-analytics-dr-alb-456.eu-central-1.elb.amazonaws.com",
    "db_password": "s3cret",
    "desired_count": "2",
    "multi_az": "true",
    "private_subnets": '["subnet-a","subnet-b"]',
}


def test_outputs_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUT_JSON, indent=2))
    assert terraform.outputs(path) == EXPECTED
    # a string path works too, even one whose name starts with "terraform"
    named = tmp_path / "terraform-outputs.json"
    named.write_text(json.dumps(OUTPUT_JSON))
    assert terraform.outputs(str(named)) == EXPECTED


def test_a_flat_map_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text('{"primary_alb_dns": "alb.example.test"}')
    assert terraform.outputs(path) == {"primary_alb_dns": "alb.example.test"}


def test_bad_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outputs.json"
    path.write_text('{\n  "primary_alb_dns": {"value": "x"},\n}\n')
    with pytest.raises(InputError) as caught:
        terraform.outputs(path)
    assert caught.value.where == str(path)
    assert caught.value.message.startswith("not valid json: ")
    assert "line 3" in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a json object of outputs, got list"),
        ('{"x": {"type": "string"}}', "output 'x': expected an object with a 'value' or a string"),
        ('{"x": 3}', "output 'x': expected an object with a 'value' or a string"),
    ],
)
def test_json_of_the_wrong_shape_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        terraform.outputs(path)
    assert (caught.value.where, caught.value.message) == (str(path), message)


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(InputError) as caught:
        terraform.outputs(path)
    assert (caught.value.where, caught.value.message) == (
        str(path),
        "cannot read: No such file or directory",
    )


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on PATH for the test."""
    return first_on_path(tmp_path, monkeypatch)


def test_outputs_from_the_terraform_command(bin_dir: Path) -> None:
    args = fake_terraform(bin_dir, json.dumps(OUTPUT_JSON))
    assert terraform.outputs("terraform -chdir=infra/prod") == EXPECTED
    assert args.read_text().split() == ["-chdir=infra/prod", "output", "-json"]


def test_the_command_keeps_its_own_output_arguments(bin_dir: Path) -> None:
    args = fake_terraform(bin_dir, json.dumps(OUTPUT_JSON))
    terraform.outputs("terraform output")
    assert args.read_text().split() == ["output", "-json"]
    terraform.outputs("terraform output -json")
    assert args.read_text().split() == ["output", "-json"]


def test_bad_json_from_the_command_names_the_command(bin_dir: Path) -> None:
    fake_terraform(bin_dir, "Warning: No outputs found\n")
    with pytest.raises(InputError) as caught:
        terraform.outputs("terraform -chdir=infra")
    assert caught.value.where == "terraform -chdir=infra"
    assert caught.value.message.startswith("not valid json: ")


def test_a_failed_command_reports_its_last_error_line(bin_dir: Path) -> None:
    fake_terraform(
        bin_dir, "", status=1, stderr="\nError: Backend initialization required\n\n  run init\n"
    )
    with pytest.raises(InputError) as caught:
        terraform.outputs("terraform")
    assert (caught.value.where, caught.value.message) == ("terraform", "exit status 1: run init")


def test_a_missing_terraform_is_an_input_error(bin_dir: Path) -> None:
    missing = bin_dir / "nowhere" / "terraform"
    with pytest.raises(InputError) as caught:
        terraform.outputs(str(missing))
    assert (caught.value.where, caught.value.message) == (
        str(missing),
        f"cannot run '{missing}': not found",
    )
