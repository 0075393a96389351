"""``drdrill`` starts light: the parser and ``objectives`` import no heavy dependency.

Each check runs the command line in a fresh interpreter and looks at what it imported (never at
how long it took: start-up times are in benchmarks/bench_cli_start.py and docs/benchmarks.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drdrill import cli

SEED = Path(__file__).parent / "data" / "runbooks" / "seed-style.md"

#: what building the parser and ``objectives`` must not import: the heavy dependencies (and
#: asyncio, which aiohttp and the probes bring)
HEAVY = frozenset(
    {
        "pytest",
        "_pytest",
        "aiohttp",
        "asyncio",
        "pydantic",
        "pydantic_core",
        "yaml",
        "pymysql",
        "psutil",
        "rich",
        "jinja2",
        "dns",
        "boto3",
        "botocore",
        "moto",
    }
)
#: drdrill's own modules that bring them
HEAVY_DRDRILL = frozenset(
    {
        "drdrill.config",
        "drdrill.exercise",
        "drdrill.plugin",
        "drdrill.probes.http",
        "drdrill.faults.base",
        "drdrill.faults.journal",
        "drdrill.report.history",
        "drdrill.session",
    }
)

# Prints the exit status, then the modules the command line imported beyond the interpreter's
# own start-up (site, .pth files), as the last line.
PROBE = """
import sys
before = set(sys.modules)
from drdrill.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
loaded = sorted(set(sys.modules) - before)
print()
print("IMPORTED", code, " ".join(loaded))
"""


def imported_by(*argv: str) -> tuple[int, set[str]]:
    """The exit status of ``drdrill ARGV`` in a fresh interpreter, and the modules it imported."""
    answer = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    tag, code, *modules = answer.stdout.splitlines()[-1].split(" ")
    assert tag == "IMPORTED", answer.stdout[-2000:]
    return int(code), set(modules)


def assert_light(modules: set[str]) -> None:
    """Only the standard library and drdrill, and none of the heavy modules."""
    tops = {name.split(".")[0] for name in modules}
    assert not tops & HEAVY, sorted(tops & HEAVY)
    assert not modules & HEAVY_DRDRILL, sorted(modules & HEAVY_DRDRILL)
    outside = sorted(t for t in tops if t not in sys.stdlib_module_names and t != "drdrill")
    assert not outside, outside


def test_help_builds_the_parser_from_the_standard_library_and_drdrill_alone() -> None:
    code, modules = imported_by("--help")
    assert code == 0
    assert {f"drdrill.commands.{name}" for name in cli.COMMANDS} <= modules
    assert_light(modules)


def test_objectives_reads_the_runbook_without_the_heavy_dependencies() -> None:
    code, modules = imported_by("objectives", str(SEED), "--scale", "0.5")
    assert code == 0
    assert "drdrill.objectives" in modules
    assert_light(modules)


@pytest.mark.parametrize(
    "argv", [[name] for name in cli.COMMANDS] + [["fis", "export"]], ids=" ".join
)
def test_every_command_still_has_its_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: drdrill {' '.join(argv)} ")
    assert "options:" in out


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    """``drdrill objectives big.md | head -c 100``: no BrokenPipeError traceback, and the exit
    status of a process SIGPIPE ended (141)."""
    rows = "\n".join(f"| **Component {i}** | {i % 50 + 1} minutes | | note |" for i in range(4000))
    runbook = tmp_path / "big.md"
    runbook.write_text(
        "# Runbook\n\n## Recovery Time Objectives\n\n"
        "| Component | Target RTO | Actual RTO | Notes |\n|---|---|---|---|\n" + rows + "\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "drdrill.cli", "objectives", str(runbook), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(100)) == 100  # more than a pipe's 64 KiB follows
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == cli.EXIT_BROKEN_PIPE, err
    assert err == ""
