"""``drdrill exercise``: the quarterly DR exercise, failover and failback, step by step."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the parser's defaults from the light module: the exercise itself brings pytest and aiohttp
from drdrill.defaults import DEFAULT_CONFIG, TRIGGERS

DESCRIPTION = (
    "The runbook's quarterly full DR exercise against the configured target: readiness check, "
    "primary region down, failover, post-failover checks, primary restored, failback, checks. "
    "Asks before each destructive step (--yes: never); a no, or no answer, stops the exercise and "
    "reverts the fault. Writes <out>/exercise-<utc>.md and .json with each step's times, the "
    "detection, response and resolution times beside the runbook's objectives, the severity, and "
    "the runbook's internal communication message filled in; and, as any run of drills, "
    "<out>/<run-id>/report.json, .md and .html, the run appended to the history (drdrill history, "
    "drdrill compliance), its test named drdrill exercise::exercise[<trigger>]. The people's "
    "steps (the decision at a checkpoint) are held to the runbook's own objectives, the stack's "
    "(the alarm, the failover on the stack) to the config's scaled ones; each row says which. "
    "Exit status 0 only when the exercise completed, every objective it measured was met (an "
    "inconclusive one only with compliance.accept_inconclusive) and every revert succeeded; 1 "
    "when it stopped, failed, missed an objective or left something not reverted (each named on "
    "its own line); 130 when interrupted; 2 on bad input."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``drdrill exercise`` and its options."""
    parser = sub.add_parser(
        "exercise",
        help="the quarterly DR exercise: failover and failback, with checkpoints",
        description=DESCRIPTION,
    )
    parser.add_argument(
        "--config", type=Path, default=Path(DEFAULT_CONFIG), help="stack config (drdrill.yaml)"
    )
    parser.add_argument(
        "--yes", action="store_true", help="unattended: do not ask before destructive steps"
    )
    parser.add_argument(
        "--trigger",
        choices=TRIGGERS,
        default="script",
        help="how the failover is triggered: scripts/failover.sh --yes (script, the default), "
        "the DR automation like the runbook's Lambda (lambda), or the alarm (automated)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where exercise-<utc>.md and .json and the run's <run-id>/ folder go (default: the "
        "config's report_dir, reports/); the history is the config's history, else "
        "history.sqlite there",
    )
    parser.add_argument(
        "--contact", help="the message's contact line (default: user@host running the exercise)"
    )
    parser.add_argument(
        "--latency-threshold",
        default="1s",
        metavar="DURATION",
        help="latency p99 over this is a performance issue (P3) when nothing failed (default 1s)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the exercise, write its report, print its summary; 0 when it passed, 130 when
    interrupted, else ExerciseStopped (exit 1) with one line: it did not complete, an objective
    was missed or a revert failed (:attr:`ExerciseReport.exit_status`)."""
    from drdrill.config import load_config
    from drdrill.durations import parse_duration
    from drdrill.errors import ConfigError, DrillError, InputError
    from drdrill.exercise import (
        Exercise,
        ExerciseOptions,
        ExerciseStopped,
        TerminalCheckpoint,
        assume_yes,
        exercise_run,
        load_template,
        missing_capabilities,
        stop_reason,
        summary_lines,
        write_exercise_report,
    )
    from drdrill.faults.journal import Journal
    from drdrill.report.severity import default_matrix, find_matrix_table, parse_escalation_matrix
    from drdrill.session import load_objectives, write_run_reports
    from drdrill.targets import make_target
    from drdrill.targets.base import ExerciseStack

    threshold = parse_duration(args.latency_threshold, "--latency-threshold")
    if threshold is None or threshold <= 0:
        raise InputError("--latency-threshold", f"'{args.latency_threshold}' is not > 0")
    # everything that can be wrong in the input is checked before the target is touched
    config = load_config(args.config)
    objectives = load_objectives(config)  # the stack's: scaled by objectives.scale
    # the people's: the runbook's own figures (a person's minutes are no sandbox's seconds)
    unscaled = config.objectives.model_copy(update={"scale": 1.0})
    people_objectives = load_objectives(config.model_copy(update={"objectives": unscaled}))
    matrix, template, template_source = default_matrix(), None, "drdrill default"
    notes: list[str] = []
    if config.runbook is not None:
        runbook = config.resolve(config.runbook)
        text = runbook.read_text(encoding="utf-8")  # load_objectives has read it already
        if find_matrix_table(text) is not None:
            matrix = parse_escalation_matrix(text, str(runbook))
        else:
            notes.append(f"{runbook} has no escalation matrix: drdrill's default used")
        template, template_source = load_template(runbook)
    target = make_target(config.target, config, f"{config.path}: target")
    missing = missing_capabilities(target, args.trigger)
    if missing or not isinstance(target, ExerciseStack):
        raise ConfigError(
            f"{config.path}: target",
            f"target '{target.name}' cannot run the exercise with trigger '{args.trigger}' "
            f"(it lacks {', '.join(missing) or 'ExerciseStack'})",
        )
    out_dir = args.out if args.out is not None else config.resolve(config.report_dir)

    def say(line: str) -> None:
        print(line, flush=True)

    exercise = Exercise(
        target,
        journal=Journal(config.resolve(config.journal)),
        probes=config.probes,
        confirm=assume_yes if args.yes else TerminalCheckpoint(sys.stdin, sys.stdout),
        options=ExerciseOptions(
            trigger=args.trigger,
            timeout_s=max(60.0, config.drills.restore_timeout),
            latency_threshold_s=threshold,
            contact=args.contact,
            accept_inconclusive=config.compliance.accept_inconclusive,
        ),
        objectives=objectives,
        people_objectives=people_objectives,
        matrix=matrix,
        template=template,
        template_source=template_source,
        say=say,
        writer=config.writer,
        config_path=str(config.path),
    )
    exercise.notes.extend(notes)
    say(
        f"exercise {exercise.exercise_id}: target {target.name}, trigger {args.trigger}"
        + (", unattended (--yes)" if args.yes else "")
    )
    report = exercise.run()
    markdown, data = write_exercise_report(report, out_dir)
    say(f"wrote {markdown}")
    say(f"wrote {data}")
    # the exercise as a run: report.json, .md and .html, and the history, as a pytest run's
    try:
        written = write_run_reports(
            exercise_run(report, objectives),
            out_dir,
            config.history_path(out_dir),
            config.report.min_outage,
        )
    except (DrillError, OSError) as exc:  # the exercise's own report is written: it decides
        print(f"drdrill: exercise: run reports not written: {exc}", file=sys.stderr)
        written = []
    for path in written:
        say(f"wrote {path}")
    for line in summary_lines(report):
        say(line)
    if report.outcome == "interrupted":
        print(f"drdrill: exercise interrupted; report: {markdown}", file=sys.stderr)
        return 130
    if report.exit_status == 0:
        return 0
    raise ExerciseStopped(f"{stop_reason(report)}; report: {markdown}")
