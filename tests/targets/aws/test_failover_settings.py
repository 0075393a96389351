"""The ``targets.aws`` keys of the failover capabilities: the runbook scripts, the DNS servers
clients ask, the write endpoint, the DR scale-up count and each region's database credentials
(whose password is never printed); one-line errors naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drdrill.config import load_config
from drdrill.errors import ConfigError
from drdrill.targets.aws.settings import AwsSettings, load_aws_settings


def load(tmp_path: Path, aws_section: str) -> AwsSettings:
    path = tmp_path / "drdrill.yaml"
    path.write_text("target: aws\ntargets:\n  aws:\n" + aws_section)
    return load_aws_settings(load_config(path))


def test_the_failover_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VA_DB_PASSWORD", "from-the-environment")
    settings = load(
        tmp_path,
        "    scripts: {failover: ./scripts/failover.sh, failback: ./scripts/failback.sh}\n"
        "    dns: {name_servers: [205.251.192.10, '2600:9000:5300::1'], port: 5353}\n"
        "    write_url: https://app.example.test/api.php?action=write\n"
        "    dr:\n"
        "      ecs: {scale_to: 3}\n"
        "      database: {user: drdrill, password_env: VA_DB_PASSWORD, port: 3307}\n"
        "    primary:\n"
        "      database: {user: drdrill, password: 12345, host: 127.0.0.1}\n",
    )
    assert settings.scripts.failover == "./scripts/failover.sh"
    assert settings.dns.name_servers == ["205.251.192.10", "2600:9000:5300::1"]
    assert settings.dns.port == 5353
    assert settings.write_url == "https://app.example.test/api.php?action=write"
    assert settings.dr.ecs.scale_to == 3 and settings.primary.ecs.scale_to is None
    dr, primary = settings.dr.database, settings.primary.database
    assert dr is not None and primary is not None
    assert dr.secret() == "from-the-environment" and dr.name == "visitor_analytics"
    assert primary.secret() == "12345"  # a number in YAML is still the password
    assert "12345" not in repr(settings) and "12345" not in settings.model_dump_json()
    # the DR region kept its own defaults beside the new keys
    assert settings.dr.rds.instance_id == "visitor-analytics-db-replica"


def test_none_of_them_is_needed(tmp_path: Path) -> None:
    settings = load(tmp_path, "    {}\n")
    assert settings.scripts.failover is None and settings.dns.name_servers == []
    assert settings.primary.database is None and settings.write_url is None


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("    scripts: {failovr: x.sh}\n", "targets.aws.scripts.failovr", "unknown key"),
        ("    scripts: {failover: ''}\n", "targets.aws.scripts.failover", "empty command line"),
        (
            "    dns: {name_servers: [ns1.example.test]}\n",
            "targets.aws.dns.name_servers",
            "'ns1.example.test' is not an ip address",
        ),
        ("    write_url: app.example.test\n", "targets.aws.write_url", "is not an http"),
        ("    dr: {ecs: {scale_to: 0}}\n", "targets.aws.dr.ecs.scale_to", "greater than or equal"),
        (
            "    dr: {database: {user: u}}\n",
            "targets.aws.dr.database",
            "give password or password_env (one of them)",
        ),
        (
            "    dr: {database: {user: u, password: x, password_env: Y}}\n",
            "targets.aws.dr.database",
            "give password or password_env (one of them)",
        ),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, section: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, section)
    text = str(refused.value)
    assert re.search(rf"drdrill\.yaml:\d+: {re.escape(key)}: ", text), text
    assert message in text and "\n" not in text


def test_a_password_of_the_wrong_type_is_refused_without_printing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, "    primary: {database: {user: u, password: [hunter2, x]}}\n")
    assert "targets.aws.primary.database.password" in str(refused.value)
    assert "hunter2" not in str(refused.value)
