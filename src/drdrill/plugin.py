"""The pytest11 entry point: options, the ``drill`` marker, fixtures and the run's reports.

Kept thin: it wires pytest to :mod:`drdrill.session`, which it imports only once a run has drills,
so that installing drdrill costs other pytest runs nothing.

Under pytest-xdist (``pytest -n N``) every worker drills its own target (the sandbox gives each
worker its own block); the controller gives all of them one run id, collects each worker's part
of the report when the worker goes down, and writes the run's one report and summary.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from drdrill.redact import redact

if TYPE_CHECKING:
    from drdrill.config import DrillConfig
    from drdrill.drill_fixtures import Injector, ProbeSession, WriterSession
    from drdrill.measure import Measurements
    from drdrill.objectives import Objectives
    from drdrill.progress import ProgressTerminal
    from drdrill.report.record import RunRecord
    from drdrill.session import DrillSession, WorkerPart
    from drdrill.targets.base import Target
    from drdrill.timeline import Timeline

HELP_CONFIG = "stack config (drdrill.yaml): runbook, target, probes, writer, objectives overrides"
HELP_TARGET = "target to drill, overriding the config's 'target' (e.g. local, sandbox, aws)"
HELP_REPORT_DIR = "folder for reports/<run-id>/ (default: the config's report_dir)"
HELP_DRY_RUN = "print every fault a drill would inject and skip it; change nothing"
HELP_ALLOW_DESTRUCTIVE = "allow destructive faults on targets that require explicit consent"
HELP_PROGRESS = (
    "print each drill's steps live as they happen, past pytest's capture: auto (on unless -q), "
    "on or off"
)
HELP_MARKER = (
    "drill(name=None, destructive=True, targets=None, severity=None, phases=()): a "
    "disaster-recovery drill; targets restricts the target kinds it runs on; severity labels it "
    "in allure; phases names the runbook rows it measures (checked against the runbook at start)"
)

#: fixtures whose use makes a test a drill (and so loads the config before anything runs)
DRILL_FIXTURES = frozenset(
    {"drill_config", "objectives", "target", "timeline", "probes", "writer", "inject", "measure"}
)

SESSION_KEY = pytest.StashKey["DrillSession | None"]()
OPTIONS_KEY = pytest.StashKey[dict[str, Any]]()
INPUT_ERROR_KEY = pytest.StashKey[bool]()
#: the bad input that stopped a worker, handed to the controller instead of printed
INPUT_ERROR_TEXT_KEY = pytest.StashKey[str]()
#: at the xdist controller: each worker's part of the report, by worker id
PARTS_KEY = pytest.StashKey[dict[str, "WorkerPart"]]()
#: at the xdist controller: the merged run and the reports written
MERGED_KEY = pytest.StashKey[tuple["RunRecord", list[Path]]]()
#: what the run saw before and around the drill session: collection reports, an interrupt
WATCHER_KEY = pytest.StashKey["RunWatcher"]()
#: where drills print their progress live (None: nowhere)
PROGRESS_KEY = pytest.StashKey["ProgressTerminal | None"]()
#: the xdist controller, where there is one
CONTROLLER_KEY = pytest.StashKey["XdistController"]()
#: the key of the run id in xdist's ``workerinput`` and of the report part in ``workeroutput``
RUN_ID_INPUT = "drdrill_run_id"
PART_OUTPUT = "drdrill_part"
#: exit status of a run stopped by bad input (as the ``drdrill`` command's)
EXIT_BAD_INPUT = 2


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--dr-*`` options and their ini equivalents."""
    group = parser.getgroup("drdrill", "disaster-recovery drills")
    group.addoption("--dr-config", dest="dr_config", default=None, help=HELP_CONFIG)
    group.addoption("--dr-target", dest="dr_target", default=None, help=HELP_TARGET)
    group.addoption("--dr-report-dir", dest="dr_report_dir", default=None, help=HELP_REPORT_DIR)
    group.addoption(
        "--dr-dry-run", dest="dr_dry_run", action="store_true", default=None, help=HELP_DRY_RUN
    )
    group.addoption(
        "--dr-allow-destructive",
        dest="dr_allow_destructive",
        action="store_true",
        default=None,
        help=HELP_ALLOW_DESTRUCTIVE,
    )
    group.addoption(
        "--dr-progress",
        dest="dr_progress",
        choices=("auto", "on", "off"),
        default=None,
        help=HELP_PROGRESS,
    )
    parser.addini("dr_config", HELP_CONFIG, default=None)
    parser.addini("dr_target", HELP_TARGET, default=None)
    parser.addini("dr_report_dir", HELP_REPORT_DIR, default=None)
    parser.addini("dr_dry_run", HELP_DRY_RUN, type="bool", default=False)
    parser.addini("dr_allow_destructive", HELP_ALLOW_DESTRUCTIVE, type="bool", default=False)
    parser.addini("dr_progress", HELP_PROGRESS, default="auto")


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name)
    return config.getini(name) if value is None else value


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; remember the options; the session starts only if there are drills."""
    config.addinivalue_line("markers", HELP_MARKER)
    config_path = _option(config, "dr_config") or "drdrill.yaml"
    path = Path(config_path)
    if not path.is_absolute():
        # the ini's value is relative to the ini file, a command-line value to the cwd
        base = (
            Path(config.inipath).parent
            if config.getoption("dr_config") is None and config.inipath
            else Path.cwd()
        )
        path = base / path
    report_dir = _option(config, "dr_report_dir")
    # a worker knows itself by xdist's workerinput: PYTEST_XDIST_WORKER is also inherited by any
    # pytest that a worker's test starts, which is no worker
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    config.stash[OPTIONS_KEY] = {
        "config_path": path,
        "target": _option(config, "dr_target") or None,
        "report_dir": Path(report_dir) if report_dir else None,
        "dry_run": bool(_option(config, "dr_dry_run")),
        "allow_destructive": bool(_option(config, "dr_allow_destructive")),
        "worker": None if workerinput is None else workerinput.get("workerid"),
        "run_id": None if workerinput is None else workerinput.get(RUN_ID_INPUT),
    }
    config.stash[SESSION_KEY] = None
    watcher = config.stash[WATCHER_KEY] = RunWatcher(config)
    config.pluginmanager.register(watcher, "drdrill-run-watcher")
    if workerinput is None and config.pluginmanager.hasplugin("xdist"):
        config.stash[PARTS_KEY] = {}
        controller = config.stash[CONTROLLER_KEY] = XdistController(config)
        config.pluginmanager.register(controller, "drdrill-xdist-controller")


def _hands_over(config: pytest.Config) -> bool:
    """Whether this is an xdist worker whose controller merges the report (it writes none)."""
    return hasattr(config, "workeroutput") and config.stash[OPTIONS_KEY].get("run_id") is not None


class RunWatcher:
    """What the run sees outside any test: modules that fail to collect, an interrupt.

    A plugin object because those hooks are not given the config. Collection reports come
    before the drill session opens (it opens once the items are known) and are handed to it then;
    a worker leaves them to the xdist controller, which gets them forwarded.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collect_reports: list[pytest.CollectReport] = []
        #: (exception class name, its text) of the KeyboardInterrupt that stopped the run
        self.interrupt: tuple[str, str] | None = None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Keep a module that failed to import (or skipped itself) for the run's reports."""
        if report.passed or hasattr(self.config, "workerinput"):
            return
        drill = self.config.stash.get(SESSION_KEY, None)
        if drill is not None:
            drill.record_collection(report)
        else:
            self.collect_reports.append(report)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Remember why the run stopped: Ctrl-C, SIGTERM, a collection error, ``pytest.exit``."""
        text = str(excinfo.value).strip()
        if excinfo.typename == "Exit":
            text = f"stopped by pytest.exit: {text}" if text else "stopped by pytest.exit"
        self.interrupt = (excinfo.typename, text or f"interrupted ({excinfo.typename})")

    def interruption(self, session: pytest.Session) -> tuple[str | None, str | None]:
        """(a hard interruption: Ctrl-C, SIGTERM; why pytest stopped early on its own: a
        collection error, ``-x``) of the session, each None when there was none."""
        stop = session.shouldfail or session.shouldstop
        stopped = str(stop) if stop else None
        if self.interrupt is None:
            return None, stopped
        kind, text = self.interrupt
        # pytest's own Interrupted: "1 error during collection", xdist's "stopping after ..."
        return (None, text) if kind == "Interrupted" else (text, stopped)


class XdistController:
    """pytest-xdist's controller side: one run id for every worker, their parts merged, and
    every test's outcome taken from the reports the workers forward, so that the tests of a
    worker that crashed (which hands over no part) are not lost.

    Registered only when xdist is loaded: its hooks exist only with xdist. It acts only once a
    worker is configured (``-n`` given): a run without workers is the drill session's own.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.run_id: str | None = None
        self.outcomes: RunRecord | None = None
        #: every node id a worker collected, in the order first seen
        self.collected: dict[str, None] = {}
        #: the workers that went down with an error, and what xdist said
        self.crashed: dict[str, str] = {}

    def pytest_configure_node(self, node: Any) -> None:
        """Give the worker about to start the run's id (picked once, for the first worker)."""
        if self.run_id is None:
            from drdrill.report.record import RunRecord
            from drdrill.session import new_run_id

            self.run_id = new_run_id()
            self.outcomes = RunRecord(self.run_id, {}, {}, None, 1.0)
        node.workerinput[RUN_ID_INPUT] = self.run_id

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Remember what the worker collected: a test never reported never ran."""
        self.collected.update(dict.fromkeys(ids))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold a worker's report (or xdist's report of a crashed worker's test) into the run."""
        if self.outcomes is None:
            return
        from drdrill.report.outcome import fold_report

        gateway = getattr(getattr(report, "node", None), "gateway", None)
        fold_report(self.outcomes, report, None if gateway is None else str(gateway.id))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A module a worker could not collect, as an error entry of the run."""
        if self.outcomes is None or report.passed:
            return
        from drdrill.report.outcome import fold_collect

        fold_collect(self.outcomes, report)

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """Keep the part of the report that the worker going down handed over; a worker that
        went down with an error crashed (xdist says "keyboard-interrupt" for Ctrl-C)."""
        from drdrill.session import WorkerPart

        worker = str(node.gateway.id)
        if error is not None and str(error) != "keyboard-interrupt":
            self.crashed[worker] = str(error)
        # a worker that crashed has no workeroutput: its outcomes are in self.outcomes
        data = getattr(node, "workeroutput", {}).get(PART_OUTPUT)
        if data is not None:
            self.config.stash[PARTS_KEY][worker] = WorkerPart.from_wire(data)

    def concluded(self, session: pytest.Session) -> RunRecord | None:
        """The run as the controller saw it, concluded with pytest's exit status (None when no
        worker ever started)."""
        if self.outcomes is None:
            return None
        from drdrill.report.outcome import conclude

        interruption, stopped = self.config.stash[WATCHER_KEY].interruption(session)
        conclude(
            self.outcomes,
            collected=self.collected,
            exit_status=int(session.exitstatus),
            interruption=interruption,
            stopped=stopped,
            crashed=self.crashed,
        )
        return self.outcomes


def _is_drill(item: pytest.Item) -> bool:
    """A test marked ``drill``, or one using a drill fixture: drdrill's own, not a parameter or
    a fixture of another plugin that happens to share its name (``target``, ``measure``)."""
    if item.get_closest_marker("drill") is not None:
        return True
    names = set(getattr(item, "fixturenames", ())) & DRILL_FIXTURES
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return bool(names)
    for name in names:
        defs = info.name2fixturedefs.get(name, ())
        if any(getattr(d.func, "__module__", None) == __name__ for d in defs):
            return True
    return False


def _progress_terminal(config: pytest.Config) -> ProgressTerminal | None:
    """Where this run's drills print their progress: a duplicate of the terminal's descriptor,
    taken now, before any test runs (pytest's capture is suspended between collection and the
    tests). An xdist worker's stdout is its channel to the controller: it writes to stderr."""
    choice = _option(config, "dr_progress") or "auto"
    if choice == "off" or (choice == "auto" and config.get_verbosity() < 0):
        return None
    from drdrill.progress import ProgressTerminal

    worker = config.stash[OPTIONS_KEY].get("worker")
    if worker is not None:
        return ProgressTerminal.open(sys.stderr.fileno(), prefix=f"[{worker}] ")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    writer = getattr(reporter, "_tw", None)
    last: list[object] = [None]

    def line_open() -> bool:
        # pytest's writer is mid-line (a file name and its dots, a verbose test id) unless that
        # line is the one our last write already broke
        if writer is None or writer.width_of_current_line == 0:
            return False
        current = getattr(writer, "_current_line", None)
        if current is not None and current is last[0]:
            return False
        last[0] = current
        return True

    def after_write() -> None:
        # pytest writes the test's location again before its outcome ("::test_x PASSED" stays
        # one line, as people and scripts read it)
        if reporter is not None:
            reporter.currentfspath = None

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return ProgressTerminal.open(fd, line_open=line_open, after_write=after_write)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Load config, objectives and target before any drill runs; bad input stops here."""
    if not any(_is_drill(item) for item in items):
        return
    from drdrill.errors import InputError
    from drdrill.session import DrillSession

    try:
        drill = DrillSession.open(**config.stash[OPTIONS_KEY])
        for item in items:
            marker = item.get_closest_marker("drill")
            if marker is not None and marker.kwargs.get("phases"):
                # every figure a drill declares must have its runbook row before anything runs
                drill.check_phases(item.nodeid, marker.kwargs["phases"])
    except InputError as exc:
        # one line on stderr, nothing runs, exit status 2 (set in pytest_sessionfinish); a
        # worker hands the line to the controller, which prints it once for all workers
        if not _hands_over(config):
            sys.stderr.write(f"drdrill: error: {redact(str(exc))}\n")
        config.stash[INPUT_ERROR_KEY] = True
        config.stash[INPUT_ERROR_TEXT_KEY] = str(exc)
        items.clear()
        return
    config.stash[SESSION_KEY] = drill
    config.stash[PROGRESS_KEY] = _progress_terminal(config)
    watcher = config.stash[WATCHER_KEY]
    for report in watcher.collect_reports:
        drill.record_collection(report)
    watcher.collect_reports.clear()
    for item in items:
        marker = item.get_closest_marker("drill")
        kinds = marker.kwargs.get("targets") if marker else None
        if kinds and drill.target_kind not in kinds:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"drill runs on {', '.join(kinds)}, not {drill.target_kind}"
                )
            )


def drill_session(request: pytest.FixtureRequest) -> DrillSession:
    """The run's drill session, for fixtures outside the plugin (the suites' ``stack``)."""
    return _drill(request)


def _drill(request: pytest.FixtureRequest) -> DrillSession:
    drill = request.config.stash.get(SESSION_KEY, None)
    if drill is None:  # pragma: no cover - collection always opens it for drill fixtures
        raise pytest.UsageError("drdrill: drill fixtures used outside a drill session")
    return drill


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Turn SIGTERM into an interrupt while drills run, so every revert in ``finally`` runs."""
    drill = session.config.stash.get(SESSION_KEY, None)
    if drill is None:
        return (yield)
    from drdrill.faults.base import SIGNALS

    SIGNALS.clear()  # what an earlier run in this process received is not this run's
    with drill.signals():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Stop the run after this test when a signal came whose interrupt was lost on the way (a
    SIGTERM turned into a SystemError by the import it landed in, then swallowed)."""
    result = yield
    if item.config.stash.get(SESSION_KEY, None) is not None:
        from drdrill.faults.base import SIGNALS

        name = SIGNALS.first_name()
        if name is not None and not item.session.shouldstop:
            item.session.shouldstop = f"interrupted by {name}"
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail a drill whose recorded figures missed an objective it never asserted."""
    result = yield
    drill = item.config.stash.get(SESSION_KEY, None)
    if drill is not None:
        drill.verify_test(item.nodeid)
    return result


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """After a drill's fixtures are torn down (faults reverted, probes stopped): its figures
    into JUnit properties and allure. Reporting never breaks a run: its errors are warnings."""
    try:
        return (yield)
    finally:
        drill = item.config.stash.get(SESSION_KEY, None)
        if drill is not None:
            try:
                drill.report_drill_end(item)
            except Exception as exc:
                from drdrill.faults.base import SIGNALS, DrillInterrupted

                received = SIGNALS.received
                if received:
                    # an interrupt that landed in reporting and came out as another error
                    raise DrillInterrupted(received[0]) from exc
                item.warn(pytest.PytestWarning(f"drdrill: reporting the drill failed: {exc}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep every test's outcome (setup, call and teardown) for the report, with its reason in
    one line taken from the exception itself (it travels with the report to xdist's controller).
    A drill's failure is shown short (:func:`_shorten_failure`), then redacted."""
    report = yield
    drill = item.config.stash.get(SESSION_KEY, None)
    if drill is not None:
        from drdrill.report.outcome import attach_reason

        attach_reason(report, call)
        if report.failed and call.excinfo is not None and _is_drill(item):
            _shorten_failure(item, report, call.excinfo)
        _redact_report(report)
        drill.record_outcome(report)
    return report


def _shorten_failure(
    item: pytest.Item, report: pytest.TestReport, excinfo: pytest.ExceptionInfo[BaseException]
) -> None:
    """A drill's failure as an SRE reads it, unless the user chose how failures are shown
    (``--tb``, ``--showlocals``, ``--full-trace``): a drdrill error (a missed objective, a fault
    with no effect, a stack not healthy before the fault) as its message where the test met it,
    no source and no locals (the DrillConfig); a plain assertion in pytest's short style. Any
    other exception is a bug: pytest's long form stays."""
    from drdrill.errors import DrillError

    if _traceback_asked(item.config):
        return
    if isinstance(excinfo.value, pytest.fail.Exception) and not excinfo.value.pytrace:
        return  # already its message alone (a refusal, AWS unusable): pytest's own one line
    if isinstance(excinfo.value, DrillError):
        report.longrepr = _drill_error_repr(item, excinfo)
    elif isinstance(excinfo.value, AssertionError):
        # pytest's own short form: each frame's line and the assertion's explanation
        report.longrepr = item._repr_failure_py(excinfo, style="short")


def _traceback_asked(config: pytest.Config) -> bool:
    """Whether the user chose how failures are shown: ``--tb`` (``--tb=auto`` too, in the
    arguments, ``addopts`` or ``PYTEST_ADDOPTS``), ``-l``/``--showlocals`` or ``--full-trace``."""
    if config.getoption("tbstyle", "auto") != "auto":
        return True
    if config.getoption("showlocals", False) or config.getoption("fulltrace", False):
        return True
    args = [
        *config.invocation_params.args,
        *config.getini("addopts"),
        *shlex.split(os.environ.get("PYTEST_ADDOPTS", "")),
    ]
    return any(arg == "--tb" or arg.startswith("--tb=") for arg in map(str, args))


def _drill_error_repr(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:
    """``test_x.py:42: in test_x`` then ``E   ObjectiveMissed: <its message>``: where in the
    test's file the error came through (the deepest frame there, else the test's definition)
    and what it says, as pytest's short style has it without the source line. Built from
    pytest's own traceback classes, so that the short summary, JUnit's failure message and
    pytest-xdist's transport treat it as any failure."""
    from _pytest._code.code import (
        ExceptionChainRepr,
        ReprEntry,
        ReprFileLocation,
        ReprTraceback,
    )

    path, def_line, _ = item.location
    lineno, function = (def_line or 0) + 1, getattr(item, "originalname", item.name)
    for entry in reversed(excinfo.traceback):
        if entry.path == item.path:
            lineno, function = entry.lineno + 1, entry.name
            break
    kind = excinfo.typename
    message = str(excinfo.value).strip().splitlines()
    text = [f"{kind}: {message[0]}", *message[1:]] if message else [kind]
    where = ReprFileLocation(path, lineno, f"in {function}")
    entry_repr = ReprEntry([f"E   {line}" for line in text], None, None, where, "short")
    crash = ReprFileLocation(path, lineno, text[0])
    return ExceptionChainRepr([(ReprTraceback([entry_repr], None, "short"), crash, None)])


def _redact_report(report: pytest.TestReport) -> None:
    """Mask secrets in what pytest shows and writes of a test (the terminal, JUnit's
    failure text, the one-line reason): its long form becomes plain text when it held one."""
    from drdrill.report.outcome import REASON_ATTR

    if report.longrepr is not None:
        text = str(report.longrepr)
        masked = redact(text)
        if masked != text:
            report.longrepr = masked
    reason = report.__dict__.get(REASON_ATTR)
    if isinstance(reason, str):
        report.__dict__[REASON_ATTR] = redact(reason)
    for section in range(len(report.sections)):
        title, content = report.sections[section]
        report.sections[section] = (title, redact(content))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the progress terminal. Give allure-pytest's results the run's ``report.html``
    (written at the session's end, after every test's results) while allure-pytest is still
    configured; then mask secrets in them: it writes a failure's message and trace from the
    exception itself, not from the report drdrill redacted."""
    terminal = config.stash.get(PROGRESS_KEY, None)
    if terminal is not None:
        terminal.close()
    if not config.pluginmanager.hasplugin("allure_pytest"):
        return
    folder = config.getoption("allure_report_dir", None)
    if folder and Path(folder).is_dir():
        _attach_run_report(config)
        from drdrill.redact import redact_files

        redact_files(Path(folder))


def _attach_run_report(config: pytest.Config) -> None:
    """The run's ``report.html`` (the merged run's at the xdist controller; a worker wrote
    none) as an allure global attachment; a report that cannot be attached is said on stderr."""
    merged = config.stash.get(MERGED_KEY, None)
    drill = config.stash.get(SESSION_KEY, None)
    written = merged[1] if merged is not None else [] if drill is None else drill.written
    if not written:
        return
    from drdrill.report.allure import attach_written_reports

    try:
        attach_written_reports(config, written)
    except Exception as exc:
        sys.stderr.write(f"drdrill: allure: cannot attach the run's report: {redact(str(exc))}\n")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Sweep any fault still open, stop the target, write the reports.

    An xdist worker hands its part to the controller instead of writing; the controller merges
    the parts and writes the run's reports.
    """
    config = session.config
    if config.stash.get(INPUT_ERROR_KEY, False):
        session.exitstatus = EXIT_BAD_INPUT
    drill = config.stash.get(SESSION_KEY, None)
    hands_over = _hands_over(config)
    from drdrill.faults.base import SIGNALS, deferred_signals

    # the reports and the history are written whole: a signal now is noted, not raised, and
    # the run ends as interrupted afterwards
    with deferred_signals():
        try:
            if drill is not None:
                if not hands_over:
                    # a worker runs only its share of what it collected: the controller
                    # concludes
                    _interrupted_by_signal(session)
                    interruption, stopped = config.stash[WATCHER_KEY].interruption(session)
                    drill.conclude(
                        collected=[item.nodeid for item in session.items],
                        exit_status=int(session.exitstatus),
                        interruption=interruption,
                        stopped=stopped,
                    )
                # collecting only (--co) runs nothing: no run to report, nor a history row
                drill.close(write=not hands_over and not config.option.collectonly)
        finally:
            # even when stopping the target failed: what the drills measured still goes out
            if hands_over:
                _hand_over(config, drill)
        controller = config.stash.get(CONTROLLER_KEY, None)
        if (
            not hands_over
            and not config.option.collectonly
            and controller is not None
            and controller.run_id is not None
        ):
            _interrupted_by_signal(session)
            _merge_parts(session, controller)
    if drill is not None or config.stash.get(CONTROLLER_KEY, None) is not None:
        _interrupted_by_signal(session)
        if SIGNALS.received:
            sys.stderr.write(
                f"drdrill: the run was interrupted by {SIGNALS.first_name()}: its reports say "
                "what ran\n"
            )


def _interrupted_by_signal(session: pytest.Session) -> None:
    """A run that received SIGINT, SIGTERM or SIGHUP never exits 0 and is never concluded as
    passed, even when the exception the signal raised was lost on the way."""
    from drdrill.faults.base import SIGNALS

    name = SIGNALS.first_name()
    if name is None:
        return
    watcher = session.config.stash[WATCHER_KEY]
    if watcher.interrupt is None or watcher.interrupt[0] == "Interrupted":
        watcher.interrupt = ("DrillInterrupted", f"interrupted by {name}")
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.INTERRUPTED


def _hand_over(config: pytest.Config, drill: DrillSession | None) -> None:
    """A worker's end: its part of the report (or its bad input) into xdist's workeroutput."""
    from drdrill.session import WorkerPart

    error = config.stash.get(INPUT_ERROR_TEXT_KEY, None)
    if error is not None:
        part: WorkerPart | None = WorkerPart(input_error=error)
    else:
        part = None if drill is None else drill.part()
    if part is not None:
        workeroutput: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
        workeroutput[PART_OUTPUT] = part.to_wire()


def _merge_parts(session: pytest.Session, controller: XdistController) -> None:
    """The controller's end: the workers' bad input once, their parts and the outcomes it saw
    itself as one run's reports."""
    parts = session.config.stash[PARTS_KEY]
    errors = sorted({p.input_error for p in parts.values() if p.input_error})
    for error in errors:
        sys.stderr.write(f"drdrill: error: {redact(str(error))}\n")
    if errors:
        session.exitstatus = EXIT_BAD_INPUT
    if not any(p.report is not None for p in parts.values()):
        if not errors and controller.crashed:
            # every worker crashed: what the controller saw is all the run has left
            _write_lost_run(session, controller)
        return
    from drdrill.errors import DrillError
    from drdrill.session import write_merged_reports, write_parts

    try:
        outcomes = controller.concluded(session)
        session.config.stash[MERGED_KEY] = write_merged_reports(parts, outcomes)
    except DrillError as exc:
        # parts that do not make one run are a bug: keep each as it came, and say where
        written = write_parts(parts)
        sys.stderr.write(f"drdrill: error: cannot merge the workers' reports: {redact(str(exc))}\n")
        for path in written:
            sys.stderr.write(f"drdrill: report part: {path}\n")


def _write_lost_run(session: pytest.Session, controller: XdistController) -> None:
    """The reports of a run whose every worker crashed, from the controller's own outcomes."""
    from drdrill.errors import DrillError
    from drdrill.session import write_lost_run

    outcomes = controller.concluded(session)
    if outcomes is None:
        return
    options: dict[str, Any] = session.config.stash[OPTIONS_KEY]
    try:
        written = write_lost_run(options, outcomes)
    except DrillError as exc:
        sys.stderr.write(f"drdrill: error: cannot write the run's reports: {redact(str(exc))}\n")
        return
    if written is not None:
        session.config.stash[MERGED_KEY] = written


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The summary table, each figure beside its objective, and where the reports are.

    Printed once a run: by the xdist controller for the merged run, never by its workers.
    """
    if config.option.collectonly:
        return  # nothing ran: no figures, no verdict
    width = terminalreporter._tw.fullwidth
    merged = config.stash.get(MERGED_KEY, None)
    if merged is not None:
        from drdrill.session import run_summary_lines

        lines = run_summary_lines(*merged, width=width)
    else:
        drill = config.stash.get(SESSION_KEY, None)
        if drill is None or _hands_over(config):
            return
        lines = drill.summary_lines(width=width)
    for line in lines:
        terminalreporter.write_line(line)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def drill_config(request: pytest.FixtureRequest) -> DrillConfig:
    """The validated stack config (``drdrill.yaml``)."""
    return _drill(request).config


@pytest.fixture(scope="session")
def objectives(request: pytest.FixtureRequest) -> Objectives | None:
    """The runbook's objectives, with the config's overrides and scale applied."""
    return _drill(request).objectives


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Target:
    """The target under drill, started on first use and stopped at the end of the session."""
    return _drill(request).started_target()


@pytest.fixture
def timeline(request: pytest.FixtureRequest) -> Iterator[Timeline]:
    """This drill's timeline; its events go into the report."""
    drill = _drill(request)
    line = drill.timeline_for(request.node.nodeid)
    terminal = request.config.stash.get(PROGRESS_KEY, None)
    if terminal is not None:
        from drdrill.progress import DrillProgress

        line.listen(DrillProgress(terminal, request.node.name, line.now()))
    yield line


@pytest.fixture
def measure(request: pytest.FixtureRequest, timeline: Timeline) -> Measurements:
    """Phases and figures of this drill, compared with the objectives."""
    return _drill(request).measurements_for(request.node.nodeid, timeline)


@pytest.fixture
def probes(request: pytest.FixtureRequest, timeline: Timeline) -> Iterator[ProbeSession]:
    """Continuous HTTP probes: ``probes.start()`` samples the target's endpoints until teardown."""
    with _drill(request).probes_for(request.node.nodeid, timeline) as session:
        yield session


@pytest.fixture
def writer(request: pytest.FixtureRequest, timeline: Timeline) -> Iterator[WriterSession]:
    """RPO write markers: ``writer.start()``, ``writer.stop()``, ``writer.verify(...)``."""
    with _drill(request).writer_for(request.node.nodeid, timeline) as session:
        yield session


@pytest.fixture
def inject(request: pytest.FixtureRequest, timeline: Timeline) -> Iterator[Injector]:
    """``inject(fault)``: journal the undo, inject, revert at teardown whatever happens."""
    with _drill(request).injector_for(request.node.nodeid, timeline) as injector:
        yield injector
