"""Which harness tests are ``slow``: ``./dev.sh test --fast`` (``pytest tests -m "not slow"``)
leaves them out, ``./dev.sh test`` runs them all.

A test is slow when it starts MariaDB, HAProxy, a moto server, a sandbox, Chromium or allure's
npm render, runs pytest (drills) in a subprocess, or otherwise takes more than ~2 s. The rule
keeps itself true rather than being kept by hand:

- a test is slow when it uses (directly or through other fixtures) one of ``SLOW_FIXTURES``,
  the fixtures that start those parts;
- or when it is guarded by a ``skipif`` naming the MariaDB, HAProxy or Chromium binaries (the
  convention here for a test that needs them);
- a module whose tests start them without such a fixture, or take seconds each, says so
  itself: ``pytestmark = pytest.mark.slow`` (or the mark in its ``pytestmark`` list);
- a single test of seconds in an otherwise fast module is named in ``SLOW_TESTS``.

Under ``-m "not slow"`` a test that still starts one of those processes fails, naming them, and
the tests that took more than ``SLOW_S`` are listed at the end: mark them slow.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import psutil
import pytest

TESTS = Path(__file__).resolve().parent

#: fixtures that start MariaDB, HAProxy, a moto server, a sandbox or a pytest subprocess
SLOW_FIXTURES = frozenset(
    {
        # tests/probes/conftest.py and tests/sandbox/conftest.py: real MariaDB pairs
        "_session_pair",
        "mariadb_pair",
        "fresh_mariadb_pair",
        "sandbox_db_pair",
        "db_pair",
        "app_tables",
        # tests/targets/aws/conftest.py: the ThreadedMotoServer (``aws`` and ``stack`` use it)
        "moto_endpoint",
        # a whole sandbox of the module's own (tests/test_exercise.py, tests/sandbox/...)
        "sandbox",
        # pytest runs of small drill projects in subprocesses: ~1 s each or more, and some fifty
        # of them would double the fast run
        "pytester",
    }
)

#: single tests over ~2 s in fast modules, as ``path under tests/::function`` (any parameters)
SLOW_TESTS = frozenset(
    {
        "test_watch_cli.py::test_known_outage_is_found_by_the_command",
        "test_dns_update_measure.py::test_a_client_holding_the_old_answer_makes_dns_update_miss",
    }
)

#: words in a ``skipif`` reason that say the test needs these binaries
SLOW_SKIP_REASONS = ("mariadb", "haproxy", "chromium")

#: processes a fast test must not start (names, then words of the command line)
HEAVY_NAMES = frozenset({"mariadbd", "mysqld", "mariadb-install-db", "haproxy", "chromium", "node"})
HEAVY_ARGS = ("drdrill.sandbox.supervisor", "moto_server")

#: a test that is not marked slow and takes longer than this is listed (under -m "not slow")
SLOW_S = 2.0

_BEFORE = pytest.StashKey[set[int]]()


def _needs_binaries(item: pytest.Item) -> bool:
    for mark in item.iter_markers("skipif"):
        reason = str(mark.kwargs.get("reason", "")).lower()
        if any(word in reason for word in SLOW_SKIP_REASONS):
            return True
    return False


def is_slow(item: pytest.Item) -> bool:
    """Whether ``item`` is slow by the rule above (or marked so already)."""
    if item.get_closest_marker("slow") is not None:
        return True
    if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    name = getattr(item, "originalname", item.name)
    if f"{item.path.relative_to(TESTS).as_posix()}::{name}" in SLOW_TESTS:
        return True
    return _needs_binaries(item)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(TESTS) and is_slow(item):
            item.add_marker(pytest.mark.slow)


def _fast_run(config: pytest.Config) -> bool:
    return "not slow" in str(config.getoption("markexpr", "") or "")


def _children() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _heavy(proc: psutil.Process) -> str | None:
    try:
        name = proc.name()
        if name in HEAVY_NAMES:
            return name
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return None
    return next((arg for arg in HEAVY_ARGS if arg in cmdline), None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if _fast_run(item.config):
        item.stash[_BEFORE] = {proc.pid for proc in _children()}
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    before = item.stash.get(_BEFORE, None)
    if before is not None and item.get_closest_marker("slow") is None:
        started = sorted(
            {what for proc in _children() if proc.pid not in before and (what := _heavy(proc))}
        )
        if started:
            pytest.fail(
                f"this test started {', '.join(started)} but is not marked slow: use a fixture "
                "from SLOW_FIXTURES in tests/conftest.py or add pytest.mark.slow to its module",
                pytrace=False,
            )
    return result


class _TooLong:
    """Under -m "not slow": the tests not marked slow that took longer than ``SLOW_S``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown" and report.duration > SLOW_S and "slow" not in report.keywords:
            self.seconds[report.nodeid] = max(self.seconds.get(report.nodeid, 0.0), report.duration)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.seconds:
            return
        terminalreporter.section(f"not marked slow, yet over {SLOW_S:g} s")
        for nodeid, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{seconds:6.2f}s {nodeid}")
        terminalreporter.write_line("mark them slow (see tests/conftest.py)")


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (``-n 2``) a module's tests stay on one worker: a module's sandbox,
    # MariaDB pair or moto stack is module-scoped and its block of ports its own, so splitting
    # a module across workers would bring its sandbox up twice on one block. ``--dist`` given
    # other than the default is kept.
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadfile"
    if _fast_run(config):
        config.pluginmanager.register(_TooLong(), "drdrill-too-long")
