"""Malformed URLs are bad input, the same way in the command line, the config and the probes."""

from __future__ import annotations

from pathlib import Path

import pytest

from drdrill.cli import main
from drdrill.config import load_config
from drdrill.errors import ConfigError
from drdrill.urls import url_problem

BAD = [
    ("http://[::1", "'http://[::1' is not a URL: Invalid IPv6 URL"),
    (
        "http://[zz]/",
        "'http://[zz]/' is not a URL: 'zz' does not appear to be an IPv4 or IPv6 address",
    ),
    (
        "http://127.0.0.1:99999/",
        "'http://127.0.0.1:99999/' is not a URL: Port out of range 0-65535",
    ),
    (
        "http://127.0.0.1:x/",
        "'http://127.0.0.1:x/' is not a URL: Port could not be cast to integer value as 'x'",
    ),
    ("http://127.0.0.1:0/", "'http://127.0.0.1:0/': port 0 is not a port to connect to (1-65535)"),
    ("http://a b/", "'http://a b/': host 'a b' is not a host name or an IP address"),
    ("ftp://x/", "'ftp://x/' is not an http:// or https:// URL"),
    ("http://:80/", "'http://:80/' has no host"),
]
GOOD = ["http://127.0.0.1:8080/health", "https://app.example.org/", "http://[::1]:8080/x"]


@pytest.mark.parametrize(("url", "why"), BAD)
def test_a_malformed_url_has_one_reason(url: str, why: str) -> None:
    assert url_problem(url) == why


@pytest.mark.parametrize("url", GOOD)
def test_a_usable_url_has_none(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(("url", "why"), BAD)
def test_watch_refuses_it_with_one_line_and_exit_2(
    url: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["watch", url, "--duration", "0.1"]) == 2
    assert capsys.readouterr().err == f"drdrill: error: url: {why}\n"


def test_the_config_refuses_it_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "drdrill.yaml"
    config.write_text("probes:\n  endpoints:\n    - url: 'http://[::1'\n")
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    message = str(raised.value)
    assert "probes.endpoints.0.url" in message and "Invalid IPv6 URL" in message
    assert "\n" not in message


def test_the_writers_url_is_checked_too(tmp_path: Path) -> None:
    config = tmp_path / "drdrill.yaml"
    config.write_text("writer:\n  url: 'http://app:99999/write'\n")
    with pytest.raises(ConfigError, match=r"writer\.url.*Port out of range"):
        load_config(config)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "http://a..b/",
            "host 'a..b' has an empty label (two dots together, or a dot at its start)",
        ),
        ("http://.a/", "has an empty label"),
        (f"http://{'x' * 64}.test/", "has a label of 64 characters: a DNS label has at most 63"),
        (f"http://{'a.' * 130}test/", "is 264 characters long: a DNS name has at most 253"),
    ],
)
def test_names_dns_cannot_hold_are_refused(url: str, problem: str) -> None:
    found = url_problem(url)
    assert found is not None and problem in found, found
    assert len(found) < 300  # the URL is quoted short


@pytest.mark.parametrize("url", ["http://app.visitor-analytics.test:28080/", "http://localhost./"])
def test_names_dns_can_hold_are_taken(url: str) -> None:
    assert url_problem(url) is None
