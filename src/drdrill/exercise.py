"""The quarterly DR exercise: a full failover and failback, step by step, timed and written up.

The runbook's "Quarterly Full DR Exercise" (week 2: execute full failover during a maintenance
window) against the configured target, through its capability methods only:

1. readiness check (nothing changes but the sandbox brought to its baseline);
2. take the primary region down (``region_down``, journaled so that ``drdrill recover`` undoes
   it if this process is killed);
3. wait for the alarm (Detection Time);
4. trigger the failover: ``scripts/failover.sh --yes``, the DR automation invoked like the
   runbook's Lambda, or the alarm's own automation (Response Time);
5. wait for the service through the public name (Resolution Time), then the post-failover checks;
6. restore the primary region (the fault reverted);
7. fail back (``scripts/failback.sh``), then the checks again.

Before each destructive step (2, 4, 7) a checkpoint asks "next: <step>. go on? [y/N]"; anything
but yes (an empty answer, end of input) stops the exercise, and whatever fault is in place is
reverted. A failover already done is not undone on a stop: service stays on the DR region, which
is safe, and the report says how to fail back. Ctrl-C and SIGTERM revert likewise.

Each step is recorded with its UTC start and end and its outcome; the runbook's "Metrics to
Track" are measured beside its objectives, the severity of the outage is classified with its
escalation matrix, and its internal communication message is filled with the real times, the
DR region and the actions taken. The people's step (the decision a person takes at the
failover's checkpoint) is held to the runbook's own objective, the stack's (the alarm, the
failover on the stack) to the config's scaled ones; each metric says which.

The exercise passes (:attr:`ExerciseReport.exit_status` 0) only when it completed, every
objective it measured was met (an inconclusive one only with ``accept_inconclusive``) and every
revert succeeded; a failed revert makes its outcome ``failed``.

The exercise is also a run (:func:`exercise_run`): one test,
``drdrill exercise::exercise[<trigger>]``, with its timeline, metrics, outages and probes,
written as any pytest run's ``report.json``, ``.md`` and ``.html`` and appended to the history,
where ``drdrill history`` and ``drdrill compliance`` judge it as any run.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import math
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TextIO

from drdrill.config import ProbesConfig, WriterConfig
from drdrill.defaults import Trigger
from drdrill.drill_fixtures import first_failure_after, marker_sink, to_endpoint
from drdrill.errors import DrillError, InputError
from drdrill.faults.base import Fault, FaultInjector, handle_signals
from drdrill.faults.journal import Journal
from drdrill.measure import Kind, Measurement, Result
from drdrill.objectives import Objective, Objectives
from drdrill.observe import poll_until
from drdrill.probes.http import (
    AiohttpClient,
    Endpoint,
    HttpClient,
    HttpClientFactory,
    ProbeFailure,
    ProbeRunner,
)
from drdrill.probes.writes import MarkerWriter, RpoResult, verify_markers
from drdrill.report.record import (
    ERROR,
    EXIT_INTERRUPTED,
    FAILED,
    PASSED,
    SKIPPED,
    OutageRecord,
    ProbeStatsRecord,
    RunRecord,
    TestRecord,
    probe_records,
)
from drdrill.report.severity import (
    DEFAULT_LATENCY_THRESHOLD_S,
    NO_SEVERITY,
    EscalationMatrix,
    Severity,
    classify,
    default_matrix,
)
from drdrill.targets.base import (
    ExerciseStack,
    FailoverMode,
    FailoverStack,
    GuardedTarget,
    ProbeClients,
    ReplicaReadiness,
    ResettableStack,
    ScriptedStack,
    SteadyStateTarget,
    WriteTarget,
)
from drdrill.timeline import Clock, Event, Source, Timeline

Outcome = Literal["completed", "stopped", "failed", "interrupted"]
StepOutcome = Literal["ok", "failed", "declined"]

SCHEMA: Final = "drdrill-exercise"
SCHEMA_VERSION: Final = 1

#: how long the RPO writer writes before the first checkpoint
WRITES_BEFORE_S: Final = 1.0

#: the runbook's Lambda payload
LAMBDA_PAYLOAD: Final[Mapping[str, str]] = {"trigger": "manual", "reason": "disaster_recovery"}

#: how each step reads in the message's "Actions Taken" (the others are not actions taken)
_ACTIONS: Final[Mapping[str, str]] = {
    "failover": "DR region activated",
    "service_restored": "service restored",
    "post_failover_checks": "post-failover checks passed",
    "restore_primary": "primary region restored",
    "failback": "failed back to the primary region",
    "post_failback_checks": "post-failback checks passed",
}

#: the runbook's internal message, for runbooks without one (the seed runbook's own)
DEFAULT_TEMPLATE: Final = """\
Subject: [P1] DR Activation - Visitor Analytics

Status: DR ACTIVATED
Time: [TIMESTAMP]
Affected Service: Visitor Analytics Application
DR Region: [DR REGION]
Estimated Resolution: [TIME]

Actions Taken:
- Primary region failure confirmed
- DR region activated

Next Steps:
- Monitor DR region performance

Contact: [ON-CALL ENGINEER]
"""

# --- checkpoints ---------------------------------------------------------------------------------


class Checkpoint(Protocol):
    """Asked before each destructive step; True to go on."""

    def __call__(self, step: str) -> bool:
        """Whether to go on with ``step``."""
        ...


def assume_yes(step: str) -> bool:
    """The ``--yes`` checkpoint: always go on."""
    return True


class TerminalCheckpoint:
    """Asks on the terminal: ``next: <step>. go on? [y/N]``; only y/yes goes on."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout

    def __call__(self, step: str) -> bool:
        """Ask once; an empty answer or the end of input means no."""
        self.stdout.write(f"next: {step}. go on? [y/N] ")
        self.stdout.flush()
        answer = self.stdin.readline()
        if not answer:  # end of input: nobody there to say yes
            self.stdout.write("\n")
            self.stdout.flush()
            return False
        return answer.strip().lower() in ("y", "yes")


# --- records -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    """One step of the exercise as it went."""

    name: str
    title: str
    destructive: bool
    started_utc: datetime
    ended_utc: datetime
    outcome: StepOutcome
    detail: str

    @property
    def duration_s(self) -> float:
        """Seconds from start to end."""
        return (self.ended_utc - self.started_utc).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """The step at the JSON edge."""
        return {
            "name": self.name,
            "title": self.title,
            "destructive": self.destructive,
            "started_utc": self.started_utc.isoformat(),
            "ended_utc": self.ended_utc.isoformat(),
            "duration_s": self.duration_s,
            "outcome": self.outcome,
            "detail": self.detail,
        }


#: whose time a metric is: the people's (a person at a checkpoint deciding), the stack's (the
#: sandbox's alarm, its automation, its scripts), or both (fault to service restored)
HeldBy = Literal["people", "stack", "people and stack"]


def scale_label(scale: float) -> str:
    """How a row's objective is scaled, in words: ``runbook, unscaled`` or ``scaled by 0.02``."""
    return "runbook, unscaled" if scale == 1 else f"scaled by {scale:g}"


@dataclass(frozen=True)
class Metric:
    """One of the runbook's "Metrics to Track", beside the RTO objective it answers to.

    ``held_by`` says whose time it is and ``scale`` the scale of the objectives its target
    comes from: the people's steps are held to the runbook's own figures (a person's 90 s is
    no sandbox figure), the stack's to the config's scaled ones (``objectives.scale``).
    ``note`` says how the figure was made when that needs saying (the people's time taken out).
    """

    name: str
    question: str
    start: str
    end: str
    measured: Measurement | None
    objective: str | None
    target_s: float | None
    held_by: HeldBy = "stack"
    scale: float = 1.0
    note: str | None = None
    #: an RTO (a span of time) or an RPO (the data a failover lost, as a span of history)
    kind: Kind = "rto"

    @property
    def label(self) -> str:
        """``people (runbook, unscaled)``, ``stack (scaled by 0.02)``: which objectives hold it."""
        return f"{self.held_by} ({scale_label(self.scale)})"

    @property
    def status(self) -> str:
        """met, missed, inconclusive or invalid as a drill's figure (:class:`Result`: met when
        the whole interval value ± uncertainty is within the target, missed when it is all
        over it, inconclusive when it straddles it), else not measured or no objective."""
        if self.measured is None:
            return "not measured"
        if self.objective is None:
            return "no objective"
        result = Result(self.name, self.kind, self.measured, self.target_s, self.objective)
        return str(result.status)

    def describe(self) -> str:
        """One line: ``Detection Time 1.620 ± 0.020 s; objective Detection 2.4 s, stack
        (scaled by 0.02): met``."""
        measured = "not measured" if self.measured is None else str(self.measured)
        note = f" ({self.note})" if self.note else ""
        if self.objective is None:
            objective = "no objective"
        elif self.target_s is None:
            objective = f"objective {self.objective} N/A"
        else:
            objective = f"objective {self.objective} {self.target_s:g} s"
        return f"{self.name} {measured}{note}; {objective}, {self.label}: {self.status}"

    def to_json(self) -> dict[str, Any]:
        """The metric at the JSON edge."""
        return {
            "name": self.name,
            "question": self.question,
            "start": self.start,
            "end": self.end,
            "measured_s": None if self.measured is None else self.measured.value,
            "uncertainty_s": None if self.measured is None else self.measured.uncertainty,
            "objective": self.objective,
            "target_s": self.target_s,
            "held_by": self.held_by,
            "objectives_scale": self.scale,
            "label": self.label,
            "note": self.note,
            "status": self.status,
        }


def failing_metrics(metrics: Sequence[Metric], accept_inconclusive: bool = False) -> list[Metric]:
    """The metrics that fail an exercise: missed or invalid, and inconclusive unless
    ``accept_inconclusive`` (``compliance.accept_inconclusive``, as compliance reads it)."""
    failing = {"missed", "invalid"} | (set() if accept_inconclusive else {"inconclusive"})
    return [metric for metric in metrics if metric.status in failing]


def metric_failures(metrics: Sequence[Metric], accept_inconclusive: bool = False) -> list[str]:
    """:func:`failing_metrics`, one line each: ``missed: Detection Time 3.100 ± 0.020 s;
    objective Detection 2.4 s, stack (scaled by 0.02): missed``."""
    lines: list[str] = []
    for metric in failing_metrics(metrics, accept_inconclusive):
        if metric.status == "inconclusive":
            lead = "inconclusive, not accepted (compliance.accept_inconclusive is off)"
        else:
            lead = metric.status
        lines.append(f"{lead}: {metric.describe()}")
    return lines


@dataclass(frozen=True)
class Communication:
    """The runbook's internal communication message, filled in."""

    subject: str
    text: str
    template_source: str

    def to_json(self) -> dict[str, Any]:
        """The message at the JSON edge."""
        return {"subject": self.subject, "text": self.text, "template": self.template_source}


@dataclass(frozen=True)
class ExerciseReport:
    """Everything one exercise did and measured."""

    exercise_id: str
    started_utc: datetime
    finished_utc: datetime
    outcome: Outcome
    trigger: Trigger
    target: Mapping[str, Any]
    steps: tuple[StepRecord, ...]
    events: tuple[Event, ...]
    metrics: tuple[Metric, ...]
    severity: Severity
    message: Communication
    outages: tuple[OutageRecord, ...]
    probes: tuple[ProbeStatsRecord, ...]
    reverts: tuple[str, ...]
    stopped_at: str | None = None
    error: str | None = None
    objectives_source: str | None = None
    objectives_scale: float = 1.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: the reverts that failed (their lines, also in ``reverts``): what is still in place
    failed_reverts: tuple[str, ...] = field(default_factory=tuple)
    #: changes that are no faults put back at the end (the alarm's failover mode)
    changes_put_back: tuple[str, ...] = field(default_factory=tuple)
    #: whether an inconclusive metric passes (``compliance.accept_inconclusive``)
    accept_inconclusive: bool = False
    #: the scale of the objectives the people's steps are held to (1: the runbook's own)
    people_scale: float = 1.0

    def metric(self, name: str) -> Metric:
        """The metric called ``name`` ("Detection Time")."""
        return next(m for m in self.metrics if m.name == name)

    def failures(self) -> list[str]:
        """Why the exercise does not pass, one line each (empty: it passed).

        The exercise did not complete (stopped, failed, interrupted); a metric missed its
        objective or is invalid; a metric is inconclusive and ``accept_inconclusive`` is off;
        a revert failed (what it left in place).
        """
        lines: list[str] = []
        if self.stopped_at:
            lines.append(f"stopped before: {self.stopped_at} (not confirmed)")
        if self.error:
            lines.append(_one_line(f"{self.outcome}: {self.error}"))
        elif self.outcome != "completed" and not (self.stopped_at or self.failed_reverts):
            lines.append(f"{self.outcome}: did not complete")
        lines += metric_failures(self.metrics, self.accept_inconclusive)
        lines += [f"revert failed: {line}" for line in self.failed_reverts]
        return lines

    @property
    def exit_status(self) -> int:
        """0 when the exercise completed, every measured objective was met (an inconclusive one
        only with ``accept_inconclusive``) and every revert succeeded; 130 when it was
        interrupted; 1 otherwise."""
        if self.outcome == "interrupted":
            return 130
        return 1 if self.failures() else 0

    def to_json(self) -> dict[str, Any]:
        """The whole report at the JSON edge."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "id": self.exercise_id,
            "started_utc": self.started_utc.isoformat(),
            "finished_utc": self.finished_utc.isoformat(),
            "outcome": self.outcome,
            "stopped_at": self.stopped_at,
            "error": self.error,
            "trigger": self.trigger,
            "target": _jsonable(self.target),
            "objectives": {
                "source": self.objectives_source,
                "scale": self.objectives_scale,
                "people_scale": self.people_scale,
                "accept_inconclusive": self.accept_inconclusive,
            },
            "exit_status": self.exit_status,
            "failures": self.failures(),
            "steps": [s.to_json() for s in self.steps],
            "metrics": [m.to_json() for m in self.metrics],
            "severity": self.severity.to_json(),
            "message": self.message.to_json(),
            "events": [e.to_json() for e in self.events],
            "outages": [o.to_json() for o in self.outages],
            "probes": [p.to_json() for p in self.probes],
            "reverts": list(self.reverts),
            "failed_reverts": list(self.failed_reverts),
            "changes_put_back": list(self.changes_put_back),
            "notes": list(self.notes),
        }


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# --- the runbook's message -----------------------------------------------------------------------

_FENCE: Final = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING: Final = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")


def find_message_template(text: str) -> str | None:
    """The first fenced block in the section of the runbook's "Internal Communication" heading."""
    section_level: int | None = None
    fence: str | None = None
    block: list[str] = []
    for line in text.splitlines():
        fence_match = _FENCE.match(line)
        if fence is not None:
            closing = line.strip()
            if fence_match and set(closing) == {fence[0]} and len(closing) >= len(fence):
                if section_level is not None:
                    return "\n".join(block) + "\n"
                fence = None
            elif section_level is not None:
                block.append(line)
            continue
        if fence_match:
            fence = fence_match.group(1)
            continue
        heading = _HEADING.match(line)
        if heading is None:
            continue
        level = len(heading.group(1))
        folded = heading.group(2).encode("ascii", "ignore").decode("ascii").lower()
        if section_level is not None and level <= section_level:
            section_level = None
        if "internal communication" in folded:
            section_level = level
    return None


@dataclass(frozen=True)
class MessageFacts:
    """What the message says, from the exercise."""

    severity: str
    exercise_id: str
    status: str
    time: str
    dr_region: str
    resolution: str
    actions: tuple[str, ...]
    next_steps: tuple[str, ...]
    contact: str


_KEY_LINE: Final = re.compile(r"^(\s*)([A-Za-z][A-Za-z ]*?):(\s*)(.*)$")


def fill_message(template: str, facts: MessageFacts) -> str:
    """The template with its fields, lists and placeholders replaced by the exercise's facts.

    Known keys (Subject, Status, Time, DR Region, Estimated Resolution, Contact) get the facts;
    the bullet lists under "Actions Taken:" and "Next Steps:" are replaced; other lines stay.
    """
    values = {
        "status": facts.status,
        "time": facts.time,
        "dr region": facts.dr_region,
        "estimated resolution": facts.resolution,
        "contact": facts.contact,
    }
    lists = {"actions taken": facts.actions, "next steps": facts.next_steps}
    out: list[str] = []
    skipping = False
    for line in template.splitlines():
        if skipping:
            if line.lstrip().startswith(("- ", "* ")):
                continue
            skipping = False
        match = _KEY_LINE.match(line)
        key = match.group(2).strip().lower() if match else None
        if match is not None and key == "subject":
            subject = re.sub(r"\[P\d\]", f"[{facts.severity}]", match.group(4).strip())
            if not subject.startswith("["):
                subject = f"[{facts.severity}] {subject}"
            out.append(f"{match.group(1)}Subject: {subject} (DR exercise {facts.exercise_id})")
        elif match is not None and key in values:
            out.append(f"{match.group(1)}{match.group(2)}:{match.group(3) or ' '}{values[key]}")
        elif match is not None and key in lists and not match.group(4).strip():
            out.append(line)
            out.extend(f"- {item}" for item in lists[key])
            skipping = True
        else:
            out.append(line)
    return "\n".join(out).rstrip("\n") + "\n"


# --- checks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """One endpoint checked once."""

    name: str
    url: str
    ok: bool
    detail: str


def check_endpoints(endpoints: Sequence[Endpoint], factory: HttpClientFactory) -> list[CheckResult]:
    """GET each endpoint once, concurrently, and apply its check."""

    async def one(client: HttpClient, endpoint: Endpoint) -> CheckResult:
        try:
            status, body = await asyncio.wait_for(client.get(endpoint.url), endpoint.timeout_s)
        except ProbeFailure as exc:
            return CheckResult(endpoint.name, endpoint.url, False, str(exc))
        except TimeoutError:
            return CheckResult(
                endpoint.name, endpoint.url, False, f"timeout after {endpoint.timeout_s:g} s"
            )
        ok = endpoint.check.passes(status, body)
        return CheckResult(endpoint.name, endpoint.url, ok, f"{status}" + ("" if ok else " bad"))

    async def main() -> list[CheckResult]:
        client = factory(max(1, len(endpoints)))
        try:
            return list(await asyncio.gather(*(one(client, e) for e in endpoints)))
        finally:
            await client.aclose()

    return asyncio.run(main())


# --- the exercise --------------------------------------------------------------------------------


class ExerciseStopped(DrillError):
    """The exercise stopped before its end: a checkpoint declined, a step failed."""


class _Declined(Exception):
    def __init__(self, title: str) -> None:
        super().__init__(title)
        self.title = title


@dataclass(frozen=True)
class ExerciseOptions:
    """How the exercise runs."""

    trigger: Trigger = "script"
    #: how long each wait (alarm, restoration, failover) may take
    timeout_s: float = 60.0
    #: how long the checks may take to pass after a failover or failback
    check_timeout_s: float = 15.0
    #: how long scripts/failover.sh and failback.sh may run
    script_timeout_s: float = 180.0
    latency_threshold_s: float = DEFAULT_LATENCY_THRESHOLD_S
    contact: str | None = None
    #: whether an inconclusive metric passes the exercise (``compliance.accept_inconclusive``)
    accept_inconclusive: bool = False


def missing_capabilities(target: object, trigger: Trigger) -> list[str]:
    """The capabilities ``target`` lacks for an exercise (any ``trigger``: the failback runs
    the runbook's failback script)."""
    needed: list[tuple[str, type]] = [
        ("FailoverStack", FailoverStack),
        ("ScriptedStack", ScriptedStack),
    ]
    return [name for name, capability in needed if not isinstance(target, capability)]


def new_exercise_id(now: datetime) -> str:
    """``20261129T011824Z``: the exercise's UTC start, as its files are named."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _hms(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%SZ")


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Exercise:
    """One quarterly exercise against a target; :meth:`run` carries it out and reports."""

    def __init__(
        self,
        target: ExerciseStack,
        *,
        journal: Journal,
        probes: ProbesConfig,
        confirm: Checkpoint,
        options: ExerciseOptions | None = None,
        objectives: Objectives | None = None,
        people_objectives: Objectives | None = None,
        matrix: EscalationMatrix | None = None,
        template: str | None = None,
        template_source: str = "drdrill default",
        say: Callable[[str], None] = print,
        clock: Clock | None = None,
        writer: WriterConfig | None = None,
        config_path: str = "drdrill.yaml",
    ) -> None:
        self.target = target
        #: the RPO markers' writer, as the drills' (None: the exercise counts no data loss)
        self.writer_config = writer
        self.config_path = config_path
        self._writer: MarkerWriter | None = None
        self._rpo: RpoResult | None = None
        self._rpo_why: str | None = None
        self.journal = journal
        self.probes_config = probes
        self.confirm = confirm
        self.options = options or ExerciseOptions()
        #: the stack's phases are held to these (the config's: scaled, overrides applied)
        self.objectives = objectives
        #: the people's steps are held to these (the runbook's own figures, overrides applied);
        #: None: to ``objectives`` as given
        self.people_objectives = people_objectives if people_objectives is not None else objectives
        self.matrix = matrix or default_matrix()
        self.template = template or DEFAULT_TEMPLATE
        self.template_source = template_source if template else "drdrill default"
        self.say = say
        self.timeline = Timeline(clock)
        self.started_utc = self.timeline.clock.utc_at(self.timeline.now())
        self.exercise_id = new_exercise_id(self.started_utc)
        self.injector = FaultInjector(journal, run_id=f"exercise-{self.exercise_id}")
        self.steps: list[StepRecord] = []
        self.notes: list[str] = []
        self.failed_reverts: list[str] = []
        #: what was changed that is no fault (the alarm's mode), and its put-back lines
        self._change_kinds: set[str] = set()
        self.changes_put_back: list[str] = []
        self._runner: ProbeRunner | None = None
        self._failed_over = False
        self._failed_back = False

    # --- helpers ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.timeline.clock.utc_at(self.timeline.now())

    def _step(self, name: str, title: str, action: Callable[[], str], destructive: bool) -> str:
        started = self._now()
        self.say(f"[{_hms(started)}] {title} ...")
        try:
            detail = action()
        except BaseException as exc:
            text = str(exc) or type(exc).__name__
            self.steps.append(
                StepRecord(name, title, destructive, started, self._now(), "failed", text)
            )
            self.say(f"[{_hms(self._now())}] {title}: FAILED: {text}")
            raise
        ended = self._now()
        self.steps.append(StepRecord(name, title, destructive, started, ended, "ok", detail))
        self.say(
            f"[{_hms(ended)}] {title}: ok ({(ended - started).total_seconds():.2f} s) {detail}"
        )
        return detail

    def _checkpoint(self, name: str, title: str) -> None:
        if self.confirm(title):
            return
        at = self._now()
        self.steps.append(StepRecord(name, title, True, at, at, "declined", "not confirmed"))
        raise _Declined(title)

    def _client_factory(self) -> HttpClientFactory:
        target = self.target
        if isinstance(target, ProbeClients):
            spec = target.http_client_spec()
            return lambda limit: spec.build(limit)[0]
        return AiohttpClient

    def _endpoints(self) -> list[Endpoint]:
        configs = list(self.probes_config.endpoints or self.target.endpoints())
        return [to_endpoint(e, self.probes_config.timeout) for e in configs]

    def _checks_pass(self, what: str, extra: Callable[[], str | None]) -> str:
        """Checks through the public name until they all pass (``check_timeout_s`` at most)."""
        deadline = time.monotonic() + self.options.check_timeout_s
        attempts = 0
        while True:
            attempts += 1
            results = check_endpoints(self._endpoints(), self._client_factory())
            problem = extra()
            bad = [r for r in results if not r.ok]
            if not bad and problem is None:
                names = ", ".join(f"{r.name} {r.detail}" for r in results)
                tries = f" after {attempts} tries" if attempts > 1 else ""
                return f"{len(results)} checks pass ({names}){tries}"
            if time.monotonic() > deadline:
                issues = [f"{r.name}: {r.detail}" for r in bad] + ([problem] if problem else [])
                raise ExerciseStopped(f"{what} checks failing: {'; '.join(issues)}")
            time.sleep(0.2)

    def _dns_on(self, region: str) -> Callable[[], str | None]:
        def check() -> str | None:
            got = self.target.dns_answer()
            on = self.target.region_of(got)
            if on == region:
                return None
            return f"dns answers {got} ({on or 'no region'}), not the {region} region"

        return check

    # --- steps -----------------------------------------------------------------------------

    def _readiness(self) -> str:
        target = self.target
        target.start()
        if isinstance(target, ResettableStack):
            target.ensure_baseline()
        problems: list[str] = []
        if isinstance(target, SteadyStateTarget):
            # the drills' own steady state: replication, the replica's lag within the RPO, the
            # alarm OK, the public name on the primary (each as the target can tell)
            problems += target.steady_state_problems(self._database_rpo())
            checked = "steady state as the drills ask it (replication, lag within the RPO, "
            checked += "alarm OK, DNS on the primary)"
        else:
            alarm = target.alarm_state()
            if alarm != "OK":
                problems.append(f"alarm is {alarm}, not OK")
            dns = self._dns_on("primary")()
            if dns is not None:
                problems.append(dns)
            if isinstance(target, ReplicaReadiness) and not (state := target.replication_running()):
                reason = state.reason
                problems.append(
                    "the DR database does not replicate" + (f": {reason}" if reason else "")
                )
            checked = "alarm OK, DNS on the primary region, replication running"
        if (desired := target.desired("dr")) != 0:
            problems.append(f"DR not at pilot light ({desired} tasks desired)")
        results = check_endpoints(self._endpoints(), self._client_factory())
        problems += [f"{r.name}: {r.detail}" for r in results if not r.ok]
        if problems:
            raise ExerciseStopped(f"stack not ready: {'; '.join(problems)}")
        return f"{checked}, DR at pilot light, {len(results)} checks pass"

    def _database_row(self) -> Objective | None:
        """The stack's "Database" RPO row (of the objectives the stack is held to), or None."""
        return None if self.objectives is None else self.objectives.get("rpo", "Database")

    def _database_rpo(self) -> float | None:
        found = self._database_row()
        return None if found is None else found.target_s

    def _start_probes(self) -> None:
        cfg = self.probes_config
        self._runner = ProbeRunner(
            self._endpoints(),
            interval_s=cfg.interval,
            recovery_samples=cfg.recovery_samples,
            client_factory=self._client_factory(),
        )
        self._runner.start()
        self._start_writer()

    @property
    def _write_run(self) -> str:
        return f"exercise-{self.exercise_id}"

    def _start_writer(self) -> None:
        """Numbered markers written as clients write, from before the fault, as a drill's
        writer does: the writes the failover lost are counted after it (``data_loss``)."""
        cfg = self.writer_config
        if cfg is None:
            return
        try:
            sink = marker_sink(cfg, self.config_path, lambda: self.target)
        except DrillError as exc:
            self._rpo_why = f"no writer: {exc}"
            self.notes.append(f"data loss not measured: {exc}")
            return
        self._writer = MarkerWriter(sink, cfg.rate_hz, self._write_run)
        self._writer.start()
        self.timeline.mark("writes_started", run=self._write_run)
        # a second of writes before anything is asked, as a drill writes before its fault: an
        # unattended exercise would otherwise have next to nothing to lose
        time.sleep(WRITES_BEFORE_S)

    def _count_lost(self) -> str:
        """The acknowledged writes missing from the database that serves after the failover
        (read once the writer drained): the Data Loss metric, held to the Database RPO."""
        writer = self._writer
        if writer is None:  # pragma: no cover - the step runs only with a writer
            return "not measured: no writer"
        log = writer.stop()
        self.timeline.mark("writes_stopped", sent=log.sent)
        acked = [r for r in log.records if r.acknowledged]
        fault = self.timeline.find("fault_injected")
        if fault is None or not any(r.done_mono < fault.mono - fault.uncertainty_s for r in acked):
            self._rpo_why = (
                f"nothing to lose: no write acknowledged before the fault ({log.sent} sent, "
                f"{len(acked)} acknowledged)"
            )
            return f"not measured: {self._rpo_why}"
        target = self.target
        if not isinstance(target, WriteTarget):
            self._rpo_why = f"target '{target.name}' cannot list the markers it holds"
            return f"not measured: {self._rpo_why}"
        try:
            result = verify_markers(log, target.present_markers(self._write_run))
        except DrillError as exc:  # the count is lost, the exercise goes on to its failback
            self._rpo_why = _one_line(f"the markers could not be read: {exc}")
            return f"not measured: {self._rpo_why}"
        self._rpo = result
        self.timeline.mark(
            "data_loss_counted",
            acknowledged=result.acknowledged,
            lost=result.lost_acknowledged,
            window_s=result.data_loss_window_s,
        )
        lost = f"{result.lost_acknowledged} of {result.acknowledged} acknowledged writes lost"
        return f"{lost} (data loss window {result.data_loss_window_s:.3f} s)"

    def _inject(self) -> tuple[Fault, Event]:
        # the alarm's mode for this trigger, as a drill sets it: its undo journaled first, put
        # back with the faults at the end (newest first), or by `drdrill recover` after a kill
        mode: FailoverMode = "automated" if self.options.trigger == "automated" else "manual"
        change = self.target.mode_change(mode)
        self._change_kinds.add(change.kind)
        self.injector.inject(change)
        self.timeline.mark("state_changed", change=change.describe(), kind=change.kind)
        fault: Fault = self.target.region_down("primary", mode="kill")
        if isinstance(self.target, GuardedTarget):
            # consent was given at the checkpoint; the target's own checks still apply
            self.target.guard(fault, True)
        # as a drill stamps it: the fault acted somewhere between the journal write and the
        # call's return, an action known to within the call's duration
        clock = self.timeline.clock
        journaled: list[float] = []
        self.injector.inject(fault, on_journaled=lambda: journaled.append(clock.mono()))
        done = clock.mono()
        event = self.timeline.observe(
            "fault_injected",
            done,
            done - (journaled[0] if journaled else done),
            Source.ACTION,
            fault=fault.describe(),
            kind=fault.kind,
        )
        return fault, event

    def _wait_alarm(self, fault: Event) -> Event:
        timeout = self.options.timeout_s
        seen = poll_until(
            self.timeline,
            "alarm_seen",
            lambda: self.target.alarm_state() == "ALARM",
            timeout_s=timeout,
            since=fault,
        )
        changes = [
            h
            for h in self.target.alarm_history()
            if h.get("state") == "ALARM"
            and datetime.fromisoformat(h["utc"])
            >= fault.utc - timedelta(seconds=fault.uncertainty_s)
        ]
        if changes:
            # the alarm's own record of its change (like CloudWatch's history): exact
            first = changes[0]
            return self.timeline.report_stamped(
                "alarm_raised",
                datetime.fromisoformat(first["utc"]),
                float(first.get("resolution_s", 0.0)),
            )
        return self.timeline.observe("alarm_raised", seen.mono, seen.uncertainty_s)

    def _trigger(self, fault: Event, alarm: Event) -> str:
        trigger = self.options.trigger
        target = self.target
        if trigger == "script":
            self.timeline.mark("failover_triggered", trigger=trigger)
            target.run_script("failover.sh", "--yes", timeout_s=self.options.script_timeout_s)
            done = "scripts/failover.sh --yes (promote, scale up, wait healthy, switch DNS)"
        elif trigger == "lambda":
            self.timeline.mark("failover_triggered", trigger=trigger)
            result = target.invoke_dr(dict(LAMBDA_PAYLOAD))
            if result.get("status") != "completed":
                raise ExerciseStopped(f"dr automation did not complete: {result}")
            done = f"DR automation invoked with {json.dumps(dict(LAMBDA_PAYLOAD))}: completed"
        else:
            self._automated_trigger(fault, alarm)
            poll_until(
                self.timeline,
                "failover_done",
                lambda: self._dns_on("dr")() is None,
                timeout_s=self.options.timeout_s,
            )
            done = "the alarm ran the DR automation"
        self._failed_over = True
        return done

    def _automated_trigger(self, fault: Event, alarm: Event) -> None:
        """When the alarm's automation started, from the stack's own record of it."""
        deadline = time.monotonic() + self.options.timeout_s
        while not (found := self.target.reported_since(fault.mono, "automation_invoked")):
            if time.monotonic() > deadline:
                raise ExerciseStopped("the alarm never triggered the DR automation")
            time.sleep(0.05)
        first = found[0]
        self.timeline.report_stamped(
            "failover_triggered", first.utc, first.resolution_s, trigger="automated"
        )

    def _wait_restored(self, fault: Event) -> str:
        runner = self._runner
        if runner is None:  # pragma: no cover - started before any fault
            raise DrillError("probes not started")
        deadline = time.monotonic() + self.options.timeout_s
        # the outage first, as a drill's wait does: a run of good samples sent before the fault
        # showed (a region down that takes a while to reach the clients) is no restore
        while (failed := first_failure_after(fault, [runner])) is None:
            if time.monotonic() > deadline:
                raise ExerciseStopped(
                    "the fault had no effect through the public name: no probe failed "
                    f"{self.options.timeout_s:g} s after it"
                )
            time.sleep(0.02)
        while (good := runner.all_good_since(failed, runner.recovery_samples)) is None:
            if time.monotonic() > deadline:
                raise ExerciseStopped(
                    f"service not restored through the public name "
                    f"{self.options.timeout_s:g} s after the fault"
                )
            time.sleep(0.02)
        restored = self.timeline.observe("service_restored", good.send_mono, good.uncertainty_s)
        took = Measurement.between(fault, restored).value
        count = len(runner.endpoints)
        return (
            f"all {count} checks pass through the public name from {_hms(restored.utc)}, "
            f"{took:.2f} s after the failure"
        )

    def _post_failover_checks(self) -> str:
        def extra() -> str | None:
            problem = self._dns_on("dr")()
            if problem is None and not self.target.db_writable("dr"):
                problem = "the promoted DR database does not take writes"
            return problem

        return self._checks_pass("post-failover", extra) + "; DNS answers the DR region"

    def _restore(self, fault: Fault) -> str:
        outcome = self.injector.revert(fault)
        self.timeline.mark("primary_restored", note=outcome.note)
        return outcome.note

    def _failback(self) -> str:
        self.timeline.mark("failback_started")
        self.target.run_script("failback.sh", timeout_s=self.options.script_timeout_s)
        self.timeline.mark("failback_done")
        self._failed_back = True
        return "scripts/failback.sh completed"

    def _post_failback_checks(self) -> str:
        since = time.monotonic()
        checked = self._checks_pass("post-failback", self._dns_on("primary"))
        return checked + "; DNS answers the primary region" + self._probes_agree(since)

    def _probes_agree(self, since: float) -> str:
        """The continuous probes see what the checks saw: every endpoint good for its recovery
        samples from ``since``, so the exercise never ends on an outage its checks did not
        see (nor reports one "still down at the end" after they passed)."""
        runner = self._runner
        if runner is None:  # pragma: no cover - started before any fault
            return ""
        deadline = time.monotonic() + self.options.timeout_s
        while runner.all_good_since(since, runner.recovery_samples) is None:
            if time.monotonic() > deadline:
                raise ExerciseStopped(
                    "the checks passed but the continuous probes still see the site down through "
                    f"the public name {self.options.timeout_s:g} s later"
                )
            time.sleep(0.02)
        return "; the continuous probes agree"

    # --- the whole exercise ----------------------------------------------------------------

    def run(self) -> ExerciseReport:
        """Carry out the exercise; always returns its report (a stop or failure included).

        Faults are reverted before it returns, whatever happened; the target is released.
        """
        outcome: Outcome = "completed"
        stopped_at: str | None = None
        error: str | None = None
        reverts: list[str] = []
        trigger = self.options.trigger
        how = {
            "script": "run scripts/failover.sh --yes",
            "lambda": "invoke the DR automation (the runbook's Lambda)",
            "automated": "",
        }[trigger]
        try:
            with handle_signals():
                try:
                    self._step("readiness", "readiness check", self._readiness, False)
                    self._start_probes()
                    down = "take the primary region down"
                    self._checkpoint("region_down", down)
                    holder: dict[str, Any] = {}

                    def inject() -> str:
                        holder["fault"], holder["event"] = self._inject()
                        return str(holder["fault"].describe())

                    self._step("region_down", down, inject, True)
                    fault_event: Event = holder["event"]

                    def detect() -> str:
                        holder["alarm"] = self._wait_alarm(fault_event)
                        delay = holder["alarm"].mono - fault_event.mono
                        return f"alarm in ALARM {delay:.2f} s after the fault"

                    self._step("detection", "wait for the alarm", detect, False)
                    title = f"trigger the failover: {how}" if how else "failover by the alarm"
                    if how:
                        self._checkpoint("failover", title)
                    self._step(
                        "failover",
                        title,
                        lambda: self._trigger(fault_event, holder["alarm"]),
                        True,
                    )
                    self._step(
                        "service_restored",
                        "wait for the service through the public name",
                        lambda: self._wait_restored(fault_event),
                        False,
                    )
                    self._step(
                        "post_failover_checks",
                        "post-failover checks",
                        self._post_failover_checks,
                        False,
                    )
                    if self._writer is not None:
                        self._step(
                            "data_loss",
                            "count the acknowledged writes the failover lost",
                            self._count_lost,
                            False,
                        )
                    self._step(
                        "restore_primary",
                        "restore the primary region",
                        lambda: self._restore(holder["fault"]),
                        False,
                    )
                    back = "fail back to the primary region: run scripts/failback.sh"
                    self._checkpoint("failback", back)
                    self._step("failback", back, self._failback, True)
                    self._step(
                        "post_failback_checks",
                        "post-failback checks",
                        self._post_failback_checks,
                        False,
                    )
                except _Declined as declined:
                    outcome, stopped_at = "stopped", declined.title
                except KeyboardInterrupt as exc:
                    outcome, error = "interrupted", str(exc) or "interrupted"
                except Exception as exc:
                    outcome, error = "failed", str(exc) or type(exc).__name__
                finally:
                    reverts = self._finish()
        finally:
            self.target.stop()
        return self._report(outcome, stopped_at, error, reverts)

    def _finish(self) -> list[str]:
        """Stop the probes, revert what is still in place (the alarm's mode among it)."""
        if self._runner is not None:
            self._runner.stop()
        if self._writer is not None and self._rpo is None and self._rpo_why is None:
            self._writer.stop()
            self._rpo_why = "the exercise ended before the writes lost were counted"
        lines = []
        for result in self.injector.revert_all():
            if result.ok and result.kind in self._change_kinds:
                # the alarm's mode put back: no fault of the exercise's, said apart
                self.timeline.mark("state_restored", change=result.description, note=result.note)
                self.changes_put_back.append(result.line())
                self.say(f"[{_hms(self._now())}] {result.line()}")
                continue
            lines.append(result.line())
            if result.ok:
                self.timeline.mark("fault_reverted", fault=result.description, note=result.note)
            else:
                self.failed_reverts.append(
                    _one_line(f"{result.description}: {result.note}" if result.note else "")
                    or result.description
                )
                self.timeline.mark("revert_failed", fault=result.description, note=result.note)
            self.say(f"[{_hms(self._now())}] {result.line()}")
        return lines

    # --- the report ------------------------------------------------------------------------

    def _objectives_for(self, held_by: HeldBy) -> Objectives | None:
        return self.people_objectives if held_by == "people" else self.objectives

    def _metric(
        self, name: str, question: str, start: str, end: str, objective: str, held_by: HeldBy
    ) -> Metric:
        first, last = self.timeline.find(start), self.timeline.find(end)
        measured = None if first is None or last is None else Measurement.between(first, last)
        objectives = self._objectives_for(held_by)
        found = objectives.get("rto", objective) if objectives is not None else None
        return Metric(
            name,
            question,
            start,
            end,
            measured,
            objective if found is not None else None,
            found.target_s if found is not None else None,
            held_by,
            1.0 if objectives is None else objectives.scale,
        )

    def metrics(self) -> tuple[Metric, ...]:
        """Detection (the stack's alarm), Response (a person's decision at the failover's
        checkpoint, or the alarm's automation), Resolution (fault to service restored).

        Resolution spans both: when the people's objectives and the stack's differ in scale,
        the people's Response Time is taken out of it and the rest is held to the stack's
        Total RTO, so that no second is held to two scales at once.
        """
        detection = self._metric(
            "Detection Time",
            "How quickly was the incident detected?",
            "fault_injected",
            "alarm_raised",
            "Detection",
            "stack",
        )
        by_people = self.options.trigger != "automated"
        response = self._metric(
            "Response Time",
            "How quickly did the team respond?",
            "alarm_raised",
            "failover_triggered",
            "Decision",
            "people" if by_people else "stack",
        )
        scales_differ = self._scale("people") != self._scale("stack")
        resolution = self._metric(
            "Resolution Time",
            "How long did it take to restore service?",
            "fault_injected",
            "service_restored",
            "Total RTO",
            "people and stack" if by_people and not scales_differ else "stack",
        )
        whole, people = resolution.measured, response.measured
        if by_people and scales_differ and whole is not None and people is not None:
            resolution = replace(
                resolution,
                measured=Measurement(
                    whole.value - people.value, whole.uncertainty + people.uncertainty
                ),
                note=(
                    f"fault to service restored {whole.value:.2f} s, less the people's "
                    f"Response Time {people.value:.2f} s"
                ),
            )
        if self.writer_config is None:
            return detection, response, resolution
        return detection, response, resolution, self._data_loss()

    def _data_loss(self) -> Metric:
        """The window of acknowledged history the failover lost, against the stack's Database
        RPO (the runbook's "No data loss (RPO < 1 minute)")."""
        objectives = self.objectives
        found = self._database_row()
        rpo = self._rpo
        return Metric(
            "Data Loss",
            "How much acknowledged data did the failover lose?",
            "writes_started",
            "data_loss_counted",
            None if rpo is None else Measurement(rpo.data_loss_window_s),
            "Database" if found is not None else None,
            found.target_s if found is not None else None,
            "stack",
            1.0 if objectives is None else objectives.scale,
            note=(
                self._rpo_why
                if rpo is None
                else f"{rpo.lost_acknowledged} of {rpo.acknowledged} acknowledged writes lost"
            ),
            kind="rpo",
        )

    def _scale(self, held_by: HeldBy) -> float:
        objectives = self._objectives_for(held_by)
        return 1.0 if objectives is None else objectives.scale

    def _drill_record(self) -> TestRecord:
        record = TestRecord(f"exercise {self.exercise_id}")
        if self._runner is None:
            return record
        record.probes, record.outages = probe_records(self._runner.stats())
        return record

    def _report(
        self, outcome: Outcome, stopped_at: str | None, error: str | None, reverts: list[str]
    ) -> ExerciseReport:
        if self.failed_reverts and outcome in ("completed", "stopped"):
            outcome = "failed"  # something the exercise changed is still in place
        metrics = self.metrics()
        drill = self._drill_record()
        missed = metric_failures(metrics, self.options.accept_inconclusive)
        if outcome in ("failed", "interrupted") or missed:
            # a step that failed, a revert that failed or an objective missed is an issue of
            # its own; a checkpoint declined is a choice
            drill.outcome = "failed"
            drill.message = error or "; ".join(
                missed + [f"revert failed: {line}" for line in self.failed_reverts]
            )
        severity = classify(
            drill, self.matrix, latency_threshold_s=self.options.latency_threshold_s
        )
        message = self._message(severity, outcome, stopped_at, error)
        try:
            described = dict(self.target.describe())
        except Exception as exc:  # a failed stack must not cost us the report
            described = {"name": self.target.name, "describe_error": str(exc)}
        return ExerciseReport(
            exercise_id=self.exercise_id,
            started_utc=self.started_utc,
            finished_utc=self._now(),
            outcome=outcome,
            trigger=self.options.trigger,
            target=described,
            steps=tuple(self.steps),
            events=tuple(self.timeline.events),
            metrics=metrics,
            severity=severity,
            message=message,
            outages=tuple(drill.outages),
            probes=tuple(drill.probes),
            reverts=tuple(reverts),
            stopped_at=stopped_at,
            error=error,
            objectives_source=None if self.objectives is None else self.objectives.source,
            objectives_scale=self._scale("stack"),
            notes=tuple(self.notes),
            failed_reverts=tuple(self.failed_reverts),
            changes_put_back=tuple(self.changes_put_back),
            accept_inconclusive=self.options.accept_inconclusive,
            people_scale=self._scale("people"),
        )

    def _dr_region(self) -> str:
        try:
            regions = self.target.describe().get("regions", {})
        except Exception:
            regions = {}
        return str(regions.get("dr") or "the DR region")

    def _message(
        self, severity: Severity, outcome: Outcome, stopped_at: str | None, error: str | None
    ) -> Communication:
        events = {e.name: e for e in reversed(self.timeline.events)}
        fault, alarm = events.get("fault_injected"), events.get("alarm_raised")
        triggered, restored = events.get("failover_triggered"), events.get("service_restored")
        actions: list[str] = []
        if fault is not None and alarm is not None:
            actions.append(
                f"{_hms(alarm.utc)} primary region failure confirmed: alarm in ALARM "
                f"{alarm.mono - fault.mono:.2f} s after the region went down ({_hms(fault.utc)})"
            )
        elif fault is not None:
            actions.append(f"{_hms(fault.utc)} primary region taken down (exercise)")
        for step in self.steps:
            if step.outcome == "declined":
                actions.append(
                    f"{_hms(step.ended_utc)} stopped before: {step.title} (not confirmed)"
                )
            elif step.outcome != "ok":
                actions.append(f"{_hms(step.ended_utc)} {step.title}: {step.outcome}")
            elif step.name in _ACTIONS:
                actions.append(f"{_hms(step.ended_utc)} {_ACTIONS[step.name]}: {step.detail}")

        objective = self.objectives.get("rto", "Total RTO") if self.objectives else None
        scale = self._scale("stack")
        scaled = "" if scale == 1 else f" ({scale_label(scale)})"
        if restored is not None and fault is not None:
            took = Measurement.between(fault, restored).value
            resolution = (
                f"service restored {_utc_text(restored.utc)} ({took:.2f} s after the failure"
            )
            if objective is not None and objective.target_s is not None:
                resolution += f"; Total RTO objective {objective.target_s:g} s{scaled}"
            resolution += ")"
        elif objective is not None and objective.target_s is not None and fault is not None:
            resolution = f"not restored; Total RTO objective {objective.target_s:g} s{scaled}"
        else:
            resolution = "not restored" if fault is not None else "no outage (nothing injected)"

        next_steps: tuple[str, ...]
        if outcome == "completed":
            status = "DR ACTIVATED (exercise); failed back to the primary region"
            next_steps = (
                "Monitor the primary region for 24 hours",
                "Week 3: analyze these results against the runbook objectives, update procedures",
                "Week 4: train the team on any procedure changes",
            )
        elif self._failed_over and not self._failed_back:
            status = "DR ACTIVATED (exercise); service stays on the DR region"
            next_steps = (
                "Monitor DR region performance",
                "Plan failback when primary is restored: scripts/failback.sh",
            )
        else:
            where = f"before: {stopped_at}" if stopped_at else f"({outcome}: {error})"
            if self.failed_reverts and not stopped_at and not error:
                where = "(a revert failed)"
            status = f"DR EXERCISE {outcome.upper()} {where}"
            next_steps = (
                "Check the stack: drdrill sandbox status, scripts/test-dr.sh",
                "Review why the exercise did not complete; reschedule it",
            )
        if self.failed_reverts:
            status += f"; NOT REVERTED: {'; '.join(self.failed_reverts)}"
            next_steps = (
                "Put back what is still in place: drdrill recover (the fault journal has it)",
                *next_steps,
            )
        activated = triggered or fault
        facts = MessageFacts(
            severity=severity.level if severity.level != NO_SEVERITY else "no impact",
            exercise_id=self.exercise_id,
            status=status,
            time=_utc_text(activated.utc if activated is not None else self.started_utc),
            dr_region=self._dr_region(),
            resolution=resolution,
            actions=tuple(actions) or ("none: nothing was changed",),
            next_steps=next_steps,
            contact=self.options.contact or _default_contact(),
        )
        text = fill_message(self.template, facts)
        subject = next(
            (
                line.split(":", 1)[1].strip()
                for line in text.splitlines()
                if line.startswith("Subject:")
            ),
            "",
        )
        return Communication(subject, text, self.template_source)


def _default_contact() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "on-call"
    return f"{user}@{socket.gethostname()}"


# --- writing -------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.3f} s"


def _scale_words(scale: float) -> str:
    return "the runbook's own figures" if scale == 1 else f"the figures scaled by {scale:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ExerciseReport) -> str:
    """The exercise as a page a person reads: steps, metrics, severity, the message."""
    target = report.target
    regions = target.get("regions") or {}
    lines = [
        f"# DR exercise {report.exercise_id}",
        "",
        f"- **Outcome**: {report.outcome}"
        + (f" (stopped before: {report.stopped_at})" if report.stopped_at else "")
        + (f" ({report.error})" if report.error else ""),
        f"- **Target**: {target.get('name', '?')} "
        f"(primary {regions.get('primary', '?')}, DR {regions.get('dr', '?')})",
        f"- **Trigger**: {report.trigger}",
        f"- **Started**: {_utc_text(report.started_utc)}; **finished**: "
        f"{_utc_text(report.finished_utc)}",
        f"- **Severity**: {report.severity.label}: {report.severity.criteria} "
        f"(response time {report.severity.response_time_text}; action: "
        f"{report.severity.action}). Why: {report.severity.reason}",
    ]
    if report.objectives_source:
        lines.append(
            f"- **Objectives**: {report.objectives_source}; the people's steps held to "
            f"{_scale_words(report.people_scale)}, the stack's to "
            f"{_scale_words(report.objectives_scale)}"
        )
    accepted = "accepted" if report.accept_inconclusive else "not accepted"
    lines.append(
        f"- **Exit status**: {report.exit_status}; an inconclusive metric is {accepted} "
        f"(compliance.accept_inconclusive)"
    )
    failures = report.failures()
    lines += ["", "## Result", ""]
    if failures:
        lines += [f"- {line}" for line in failures]
    else:
        lines.append(
            "Passed: the exercise completed, every objective measured was met and every "
            "revert succeeded."
        )
    lines += [
        "",
        "## Steps",
        "",
        "| # | Step | Start (UTC) | End (UTC) | Duration | Outcome | Detail |",
        "|---|------|-------------|-----------|----------|---------|--------|",
    ]
    for number, step in enumerate(report.steps, 1):
        mark = " (destructive)" if step.destructive else ""
        lines.append(
            f"| {number} | {_cell(step.title)}{mark} | {step.started_utc.isoformat()} | "
            f"{step.ended_utc.isoformat()} | {step.duration_s:.2f} s | {step.outcome} | "
            f"{_cell(step.detail)} |"
        )
    lines += [
        "",
        "## Metrics to track",
        "",
        "| Metric | Question | From -> to | Measured | Objective | Target | Held to | Status |",
        "|--------|----------|------------|----------|-----------|--------|---------|--------|",
    ]
    for metric in report.metrics:
        measured = (
            "n/a"
            if metric.measured is None
            else f"{metric.measured.value:.3f} ± {metric.measured.uncertainty:.3f} s"
        )
        if metric.note:
            measured += f" ({metric.note})"
        lines.append(
            f"| {metric.name} | {metric.question} | {metric.start} -> {metric.end} | "
            f"{_cell(measured)} | {metric.objective or '-'} | {_seconds(metric.target_s)} | "
            f"{metric.label} | {metric.status} |"
        )
    done = sum(1 for s in report.steps if s.outcome == "ok")
    answered = sum(1 for s in report.steps if s.destructive and s.outcome != "declined")
    lines += [
        "| Communication Effectiveness | Were stakeholders properly informed? | | "
        "message drafted below with the real times | | | people | to review |",
        f"| Process Adherence | Were procedures followed correctly? | | "
        f"{done} of {len(report.steps)} steps ok, in the runbook's order; "
        f"{answered} destructive steps confirmed | | | people | to review |",
        "",
        "People's steps (a person deciding at a checkpoint) are held to the runbook's own "
        "figures; the stack's (the alarm, the automation, the scripts on the stack) to the "
        "config's objectives, scaled by objectives.scale.",
        "",
        "## Client-observed outages",
        "",
    ]
    if report.outages:
        lines += [
            "| Endpoint | Start (UTC) | End (UTC) | Duration |",
            "|----------|-------------|-----------|----------|",
        ]
        for outage in report.outages:
            end = "open" if outage.end_utc is None else outage.end_utc.isoformat()
            lines.append(
                f"| {_cell(outage.endpoint)} | {outage.start_utc.isoformat()} | {end} | "
                f"{_seconds(outage.duration_s)} |"
            )
    else:
        lines.append("None recorded.")
    if report.probes:
        lines += [
            "",
            "| Endpoint | Samples | Availability | p50 | p99 |",
            "|----------|---------|--------------|-----|-----|",
        ]
        for probe in report.probes:
            p50 = "n/a" if probe.p50_ms is None else f"{probe.p50_ms:.1f} ms"
            p99 = "n/a" if probe.p99_ms is None else f"{probe.p99_ms:.1f} ms"
            lines.append(
                f"| {_cell(probe.endpoint)} | {probe.samples} | {probe.availability:.1f}% | "
                f"{p50} | {p99} |"
            )
    lines += [
        "",
        "## Internal communication",
        "",
        f"From the runbook's template ({report.message.template_source}):",
        "",
        "```",
        report.message.text.rstrip("\n"),
        "```",
        "",
        "## Faults reverted",
        "",
    ]
    lines += [f"- {line}" for line in report.reverts] or ["None left to revert."]
    if report.failed_reverts:
        lines += ["", "Still in place (the revert failed):", ""]
        lines += [f"- {line}" for line in report.failed_reverts]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def summary_lines(report: ExerciseReport) -> list[str]:
    """The console summary: each metric with its objective and whose it is, the severity, then
    whether the exercise passed, or each reason it did not, one line each."""
    lines = [
        f"{metric.name}: {metric.describe().removeprefix(metric.name + ' ')}"
        for metric in report.metrics
    ]
    lines.append(f"severity: {report.severity.label} ({report.severity.reason})")
    if report.accept_inconclusive:
        lines += [
            f"inconclusive, accepted (compliance.accept_inconclusive): {metric.describe()}"
            for metric in report.metrics
            if metric.status == "inconclusive"
        ]
    failures = report.failures()
    if not failures:
        lines.append(
            "passed: the exercise completed, every objective measured was met, every revert "
            "succeeded"
        )
        return lines
    lines.append(f"not passed (exit status {report.exit_status}):")
    lines += [f"  {line}" for line in failures]
    return lines


def stop_reason(report: ExerciseReport) -> str:
    """One line on why the exercise did not pass: how it ended, the objectives it missed, what
    was reverted and what was not."""
    if report.outcome == "stopped" or (report.outcome == "failed" and report.stopped_at):
        ended = f"stopped before '{report.stopped_at}' (not confirmed)"
        why = f"exercise {ended}" if report.outcome == "stopped" else f"exercise failed: {ended}"
    elif report.error:
        why = _one_line(f"exercise {report.outcome}: {report.error}")
    else:
        why = f"exercise {report.outcome}"
    parts = [why]
    missed = failing_metrics(report.metrics, report.accept_inconclusive)
    if missed:
        names = ", ".join(f"{m.name} {m.status}" for m in missed)
        noun = "objective" if len(missed) == 1 else "objectives"
        parts.append(f"{len(missed)} {noun} not met ({names})")
    injected = any(s.name == "region_down" and s.outcome == "ok" for s in report.steps)
    reverted = sum(1 for line in report.reverts if line.startswith("reverted:"))
    if report.failed_reverts:
        noun = "revert" if len(report.failed_reverts) == 1 else "reverts"
        parts.append(
            f"{len(report.failed_reverts)} {noun} FAILED ({'; '.join(report.failed_reverts)}); "
            "drdrill recover puts back a journaled fault"
        )
    elif not injected:
        parts.append("nothing was injected")
    elif reverted:
        parts.append(f"{reverted} fault(s) reverted")
    elif report.outcome != "completed":
        parts.append("the fault was already reverted")
    return "; ".join(parts)


def write_exercise_report(report: ExerciseReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``exercise-<utc>.md`` and ``.json`` into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"exercise-{report.exercise_id}"
    number = 1
    while (out_dir / f"{stem}.md").exists() or (out_dir / f"{stem}.json").exists():
        number += 1  # two exercises in one second: keep both
        stem = f"exercise-{report.exercise_id}-{number}"
    markdown = out_dir / f"{stem}.md"
    data = out_dir / f"{stem}.json"
    markdown.write_text(render_markdown(report), encoding="utf-8")
    data.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return markdown, data


# --- the exercise as a run ----------------------------------------------------------------------

#: the module part of an exercise's node id in the run's reports and the history
EXERCISE_NODE: Final = "drdrill exercise"


def exercise_nodeid(trigger: Trigger) -> str:
    """The exercise's test in its run: ``drdrill exercise::exercise[script]``; the history and
    the compliance report name it ``exercise[script]``, which says it was an exercise."""
    return f"{EXERCISE_NODE}::exercise[{trigger}]"


def metric_result(metric: Metric, test: str | None = None) -> Result | None:
    """A measured metric as a drill's figure, held to the objective it was held to (the
    people's to the runbook's own, the stack's to the scaled one); its note says whose time it
    is and how it was made (``people (runbook, unscaled)``, ``stack (scaled by 0.02); fault to
    service restored ...``). None for a metric not measured (the exercise stopped first)."""
    if metric.measured is None:
        return None
    return Result(
        name=metric.name,
        kind=metric.kind,
        measured=metric.measured,
        target_s=metric.target_s,
        objective=metric.objective,
        start=metric.start,
        end=metric.end,
        test=test,
        note=metric.label if metric.note is None else f"{metric.label}; {metric.note}",
    )


def held_objectives(report: ExerciseReport, objectives: Objectives | None) -> dict[str, Any]:
    """The objectives table the exercise was held to, as a run's ``objectives``: the stack's
    (``objectives``, scaled), with each row a metric was held to otherwise (the people's
    Decision, to the runbook's own figure) at the target it was held to, its notes saying
    whose time it is; a run's reports show each row's target beside its figure."""
    table: dict[str, Any] = objectives.to_json() if objectives is not None else {}
    rto: dict[str, Any] = table.setdefault("rto", {})
    table.setdefault("rpo", {})
    for metric in report.metrics:
        if metric.objective is None:
            continue
        name = next((k for k in rto if k.casefold() == metric.objective.casefold()), None)
        row = rto.get(name) if name is not None else None
        if name is None or not isinstance(row, Mapping) or row.get("target_s") == metric.target_s:
            continue
        held = f"the exercise's {metric.name}: {metric.label}"
        notes = f"{row['notes']}; {held}" if row.get("notes") else held
        rto[name] = {**row, "target_s": metric.target_s, "notes": notes}
    return table


def _test_outcome(report: ExerciseReport) -> str | None:
    """How the exercise's test ended (None: interrupted, which the run's end concludes)."""
    if report.outcome == "interrupted":
        return None
    if report.exit_status == 0:
        return PASSED  # an inconclusive metric only when accepted: the run says inconclusive
    if report.outcome == "stopped":
        return SKIPPED  # a checkpoint declined: a person's choice, not a fault of the stack
    if any(s.name == "readiness" and s.outcome == "failed" for s in report.steps):
        return ERROR  # the stack was not ready: nothing was exercised, as a fixture's error
    return FAILED


def exercise_run(
    report: ExerciseReport, objectives: Objectives | None = None, *, run_id: str | None = None
) -> RunRecord:
    """The exercise as a run of one test, for the run's reports and the history.

    The test (:func:`exercise_nodeid`) holds the exercise's timeline, its measured metrics as
    figures (:func:`metric_result`), and its probes' outages and statistics. It ends as the
    exercise's exit status says: ``passed`` (exit 0); ``skipped`` when a checkpoint was declined
    (the run is then ``incomplete``, "stopped before '<step>' (not confirmed)"); ``error`` when
    the readiness check failed; ``failed`` when a step failed, a figure missed its objective, is
    invalid or is inconclusive and not accepted, or a revert failed; ``interrupted`` on Ctrl-C
    or SIGTERM (the run ``incomplete``). Each reason is :func:`stop_reason`'s line. The run's
    exit status is pytest's for the same end (0, 1; 2 when interrupted), so that its verdict is
    decided as a pytest run's. ``objectives`` are the stack's (the config's, scaled); the run's
    table is :func:`held_objectives`. ``run_id`` is new by default.
    """
    from drdrill.report.outcome import conclude
    from drdrill.session import new_run_id

    nodeid = exercise_nodeid(report.trigger)
    results = [metric_result(metric, nodeid) for metric in report.metrics]
    test = TestRecord(
        nodeid,
        duration_s=max(0.0, (report.finished_utc - report.started_utc).total_seconds()),
        events=list(report.events),
        results=[r for r in results if r is not None],
        outages=list(report.outages),
        probes=list(report.probes),
    )
    outcome = _test_outcome(report)
    if outcome is not None:
        test.outcome = outcome
    if report.exit_status != 0:
        test.message = stop_reason(report)
    run = RunRecord(
        run_id=run_id or new_run_id(report.started_utc),
        target=_jsonable(report.target),
        objectives=held_objectives(report, objectives),
        objectives_source=report.objectives_source,
        objectives_scale=report.objectives_scale,
        started_utc=report.started_utc,
        finished_utc=report.finished_utc,
        tests=[test],
    )
    interrupted = report.outcome == "interrupted"
    conclude(
        run,
        collected=[nodeid],
        exit_status=EXIT_INTERRUPTED if interrupted else report.exit_status,
        interruption=(report.error or "interrupted") if interrupted else None,
    )
    if report.outcome == "stopped":
        run.interruption = f"stopped before '{report.stopped_at}' (not confirmed)"
    return run


def load_template(runbook: Path | None) -> tuple[str | None, str]:
    """The internal message template of ``runbook`` and where it came from."""
    if runbook is None:
        return None, "drdrill default"
    try:
        text = runbook.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(runbook), f"cannot read runbook: {exc}") from exc
    template = find_message_template(text)
    if template is None:
        return None, f"drdrill default ({runbook} has no Internal Communication template)"
    return template, str(runbook)
