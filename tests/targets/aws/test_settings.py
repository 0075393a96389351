"""The ``targets.aws`` settings: the runbook's names by default, one-line errors naming the key;
the example config and the emulators' compose file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from drdrill.config import load_config
from drdrill.errors import ConfigError
from drdrill.objectives import parse_runbook
from drdrill.targets.aws.settings import AwsSettings, GuardAlarm, load_aws_settings

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "aws-visitor-analytics.yaml"
COMPOSE = ROOT / "docker-compose.yml"


def config_with(tmp_path: Path, aws_section: str) -> Path:
    path = tmp_path / "drdrill.yaml"
    path.write_text("target: aws\ntargets:\n  aws:\n" + aws_section)
    return path


def load(tmp_path: Path, aws_section: str) -> AwsSettings:
    return load_aws_settings(load_config(config_with(tmp_path, aws_section)))


def test_defaults_are_the_runbooks_names(tmp_path: Path) -> None:
    settings = load_aws_settings(load_config(config_with(tmp_path, "    {}\n")))
    assert settings.regions == ("eu-west-1", "eu-central-1")
    assert settings.endpoint_url is None  # boto3 then honours AWS_ENDPOINT_URL itself
    for region in (settings.primary, settings.dr):
        assert (region.ecs.cluster, region.ecs.service) == ("visitor-analytics",) * 2
    assert settings.primary.rds.instance_id == "visitor-analytics-db"
    assert settings.dr.rds.instance_id == "visitor-analytics-db-replica"
    assert settings.primary.lambda_function == "visitor-analytics-dr-automation"
    assert settings.dr.lambda_function is None
    assert settings.blast_radius.max_tasks_percent == 50
    assert settings.stop_conditions.min_availability_percent is None
    assert settings == AwsSettings()


def test_a_region_is_merged_key_by_key_over_its_own_defaults(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "    dr:\n      region: us-east-1\n      ecs: {service: va-dr}\n"
        "    primary:\n      rds: {instance_id: va-writer}\n",
    )
    # the DR section keeps the DR defaults it did not override, not the primary's
    assert settings.dr.region == "us-east-1"
    assert settings.dr.rds.instance_id == "visitor-analytics-db-replica"
    assert (settings.dr.ecs.cluster, settings.dr.ecs.service) == ("visitor-analytics", "va-dr")
    assert settings.primary.region == "eu-west-1"
    assert settings.primary.rds.instance_id == "va-writer"
    assert settings.primary.lambda_function == "visitor-analytics-dr-automation"


def test_names_are_normalised(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "    route53:\n      zone_id: /hostedzone/Z0123ABC\n      record_name: App.Example.COM\n",
    )
    assert settings.route53.zone_id == "Z0123ABC"
    assert settings.route53.record_name == "app.example.com."


@pytest.mark.parametrize(
    ("section", "key", "what"),
    [
        ("    primary:\n      ecs: {clustr: x}\n", "targets.aws.primary.ecs.clustr", "unknown key"),
        ("    regionz: eu-west-1\n", "targets.aws.regionz", "unknown key"),
        ("    dr: {region: europe}\n", "targets.aws.dr.region", "'europe' is not an aws region"),
        (
            "    dr: {region: eu-west-1}\n",
            "targets.aws",
            "primary and dr are both in eu-west-1",
        ),
        (
            "    primary:\n      alb: {target_group_name: a, target_group_arn: "
            "'arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/a/1'}\n",
            "targets.aws.primary.alb",
            "not both",
        ),
        (
            "    primary:\n      alb: {target_group_arn: 'arn:aws:sns:eu-west-1:123456789012:t'}\n",
            "targets.aws.primary.alb.target_group_arn",
            "is not a elasticloadbalancing arn",
        ),
        ("    route53: {zone_id: Z1, zone_name: a.com}\n", "targets.aws.route53", "not both"),
        ("    endpoint_url: 127.0.0.1:5000\n", "targets.aws.endpoint_url", "not an http://"),
        ("    role_arn: drdrill\n", "targets.aws.role_arn", "is not a iam arn"),
        (
            "    blast_radius: {max_tasks_percent: 0}\n",
            "targets.aws.blast_radius.max_tasks_percent",
            "greater than 0",
        ),
        (
            "    blast_radius: {max_tasks_percent: lots}\n",
            "targets.aws.blast_radius.max_tasks_percent",
            "got 'lots'",
        ),
        (
            "    stop_conditions:\n      guard_alarms: [ok-name, 'arn:aws:sns:eu-west-1:1:x']\n",
            "targets.aws.stop_conditions.guard_alarms.1",
            "is not a cloudwatch alarm arn",
        ),
        (
            "    stop_conditions: {min_availability_percent: 120}\n",
            "targets.aws.stop_conditions.min_availability_percent",
            "less than or equal to 100",
        ),
        (
            "    primary: {rds: {instance_id: ''}}\n",
            "targets.aws.primary.rds.instance_id",
            "at least 1 character",
        ),
        ("    primary: 3\n", "targets.aws.primary", "valid dictionary"),
    ],
)
def test_bad_values_give_one_line_naming_file_and_key(
    tmp_path: Path, section: str, key: str, what: str
) -> None:
    path = config_with(tmp_path, section)
    with pytest.raises(ConfigError) as caught:  # the loader checks every targets.* section
        load_aws_settings(load_config(path))
    message = str(caught.value)
    assert re.match(rf"{re.escape(str(path))}:\d+: {re.escape(key)}:", message), message
    assert what in message
    assert "\n" not in message


def test_terraform_outputs_a_file_relative_to_the_config_or_a_command(tmp_path: Path) -> None:
    as_file = load(tmp_path, "    terraform_outputs: infra/terraform-outputs.json\n")
    assert as_file.terraform_outputs == str(tmp_path / "infra" / "terraform-outputs.json")
    assert not as_file.terraform_is_command()
    command = "terraform -chdir=infra output -json"
    as_command = load(tmp_path, f"    terraform_outputs: {command}\n")
    assert as_command.terraform_outputs == command
    assert as_command.terraform_is_command()


def test_guard_alarms_of_both_regions_and_stop_conditions_with_their_regions(
    tmp_path: Path,
) -> None:
    settings = load(
        tmp_path,
        "    primary: {alarms: {guards: [p-5xx, shared]}}\n"
        "    dr: {alarms: {guards: [d-5xx]}}\n"
        "    stop_conditions:\n"
        "      guard_alarms:\n"
        "        - shared\n"
        "        - arn:aws:cloudwatch:us-east-1:123456789012:alarm:billing:spike\n",
    )
    assert settings.guard_alarms() == (
        GuardAlarm(region="eu-west-1", name="p-5xx"),
        GuardAlarm(region="eu-west-1", name="shared"),
        GuardAlarm(region="eu-central-1", name="d-5xx"),
        # an alarm name may itself hold colons
        GuardAlarm(region="us-east-1", name="billing:spike"),
    )


def test_clients_carry_endpoint_profile_role_and_dry_run() -> None:
    settings = AwsSettings(
        endpoint_url="http://127.0.0.1:5000",
        profile="dr",
        role_arn="arn:aws:iam::123456789012:role/drdrill",
    )
    clients = settings.clients(dry_run=True)
    assert (clients.endpoint_url, clients.profile, clients.role_arn, clients.dry_run) == (
        "http://127.0.0.1:5000",
        "dr",
        "arn:aws:iam::123456789012:role/drdrill",
        True,
    )
    assert not AwsSettings().clients().dry_run


def test_the_example_config_loads_and_describes_the_runbooks_stack() -> None:
    config = load_config(EXAMPLE)
    settings = load_aws_settings(config)
    assert config.target == "aws"
    assert config.runbook is not None
    objectives = parse_runbook(config.resolve(config.runbook))
    assert objectives is not None
    # the probes and the writer go through the public failover name, not an ALB
    public = (settings.route53.record_name or "").rstrip(".")
    assert public == "app.visitor-analytics.example.com"
    assert config.probes.endpoints
    assert all(f"//{public}/" in e.url for e in config.probes.endpoints)
    assert config.writer.url is not None and f"//{public}/" in config.writer.url
    paths = {e.url.split(public, 1)[1] for e in config.probes.endpoints}
    assert paths == {"/health-simple.php", "/", "/api.php?action=stats"}
    assert settings.regions == ("eu-west-1", "eu-central-1")
    assert set(config.safety.allowed_regions) == set(settings.regions)
    assert settings.dr.rds.instance_id == "visitor-analytics-db-replica"
    assert settings.primary.lambda_function == "visitor-analytics-dr-automation"
    assert settings.terraform_outputs == str(EXAMPLE.parent / "terraform-outputs.json")
    assert {g.region for g in settings.guard_alarms()} == {"eu-west-1", "eu-central-1"}
    assert settings.endpoint_url is None


def test_the_compose_file_offers_moto_and_localstack_on_loopback_only() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert services["moto"]["image"].startswith("motoserver/moto")
    assert services["moto"]["ports"] == ["127.0.0.1:5000:5000"]
    localstack = services["localstack"]
    assert localstack["image"].startswith("localstack/localstack")
    for service in services.values():
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), port
    # the token comes from the environment, never from the file
    assert "LOCALSTACK_AUTH_TOKEN" in localstack["environment"]
    assert "paid plans" in COMPOSE.read_text()


# --- LocalStack ------------------------------------------------------------------------------


@pytest.fixture
def no_emulator_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment that names no emulator (the tests set what they need)."""
    for name in ("AWS_ENDPOINT_URL", "LOCALSTACK_HOST", "USE_SSL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_localstack_points_the_clients_at_its_edge_port(
    tmp_path: Path, no_emulator_env: pytest.MonkeyPatch
) -> None:
    settings = load(tmp_path, "    localstack: true\n")
    assert (settings.localstack, settings.endpoint_url) == (True, "http://localhost:4566")
    clients = settings.clients()
    assert (clients.localstack, clients.endpoint_url) == (True, "http://localhost:4566")
    given = load(tmp_path, "    localstack: true\n    endpoint_url: http://127.0.0.1:4510\n")
    assert given.endpoint_url == "http://127.0.0.1:4510"
    assert not load(tmp_path, "    {}\n").clients().localstack


@pytest.mark.parametrize(
    ("variable", "value", "endpoint"),
    [
        ("LOCALSTACK_HOST", "127.0.0.1:4599", "http://127.0.0.1:4599"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_an_emulator_in_the_environment_turns_localstack_on(
    tmp_path: Path,
    no_emulator_env: pytest.MonkeyPatch,
    variable: str,
    value: str,
    endpoint: str,
) -> None:
    no_emulator_env.setenv(variable, value)
    settings = load(tmp_path, "    {}\n")
    assert (settings.localstack, settings.endpoint_url) == (True, endpoint)
    # unless the config says no: boto3 then reads AWS_ENDPOINT_URL itself
    off = load(tmp_path, "    localstack: false\n")
    assert (off.localstack, off.endpoint_url) == (False, None)


@pytest.mark.parametrize(
    ("section", "env", "key", "what"),
    [
        ("    localstack: true\n    profile: dr\n", {}, "targets.aws.profile", "not used on"),
        (
            "    role_arn: arn:aws:iam::123456789012:role/drdrill\n",
            {"LOCALSTACK_HOST": "127.0.0.1:4566"},
            "targets.aws.role_arn",
            "localstack-client signs every call with LocalStack's test credentials",
        ),
        (
            "    localstack: true\n    endpoint_url: http://127.0.0.1:4566\n",
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"},
            "targets.aws.endpoint_url",
            "localstack-client would call http://127.0.0.1:5000 instead",
        ),
        ("    localstack: true\n", {"LOCALSTACK_HOST": "a:b:c"}, "LOCALSTACK_HOST", "a:b:c"),
    ],
)
def test_what_localstack_cannot_honour_is_one_line_naming_the_key(
    tmp_path: Path,
    no_emulator_env: pytest.MonkeyPatch,
    section: str,
    env: dict[str, str],
    key: str,
    what: str,
) -> None:
    for name, value in env.items():
        no_emulator_env.setenv(name, value)
    path = config_with(tmp_path, section)
    with pytest.raises(ConfigError) as caught:
        load_aws_settings(load_config(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert what in message and "\n" not in message
