"""Guards before and during anything destructive against an AWS account.

Before: :func:`check_destructive` refuses unless the account and every region are on the
config's allow-lists and ``--dr-allow-destructive`` was given, and names everything missing at
once (fixing one thing at a time and rerunning is how guards get switched off). It only reads.
How much: ``targets.aws.blast_radius.max_tasks_percent`` caps what any one fault takes down
(:func:`tasks_taken`, :func:`blast_problems`): stopping tasks, and a region down too, which
takes every task of its service and so needs the cap at 100.
During: :class:`StopConditions` aborts a drill when a guard alarm fires or the availability the
probes see falls under its budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from botocore.exceptions import BotoCoreError, ClientError

from drdrill.config import SafetyConfig
from drdrill.errors import DrillError, SafetyError
from drdrill.faults.base import Fault
from drdrill.targets.aws.faults import ScaleServiceToZero, StopEcsTasks
from drdrill.targets.aws.session import AwsClients, OneLineFailure
from drdrill.targets.aws.settings import AwsSettings, GuardAlarm

#: the command-line flag that allows destructive faults
DESTRUCTIVE_FLAG = "--dr-allow-destructive"
#: the config key that caps what one fault takes down
MAX_TASKS_KEY = "targets.aws.blast_radius.max_tasks_percent"


class Refused(SafetyError, OneLineFailure):
    """A fault refused before any call that changes anything; its one line names every reason."""


class StopConditionTriggered(SafetyError):
    """A stop condition fired during a drill: abort and revert."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("stop condition: " + "; ".join(reasons))
        self.reasons = tuple(reasons)


def destructive_problems(
    aws: AwsClients,
    settings: AwsSettings,
    safety: SafetyConfig,
    allow_destructive: bool,
    regions: Iterable[str],
) -> list[str]:
    """What keeps destructive faults from running here: the account, regions, the flag.

    The account is read once a run (STS GetCallerIdentity, which only reads).
    """
    problems: list[str] = []
    try:
        account = aws.account_id(settings.primary.region)
    except (BotoCoreError, ClientError, DrillError) as exc:
        # an unknown account is never on the allow-list
        problems.append(f"cannot read the account id ({' '.join(str(exc).split())})")
    else:
        if account not in safety.allowed_accounts:
            problems.append(f"account {account} is not in safety.allowed_accounts")
    for region in dict.fromkeys(regions):
        if region not in safety.allowed_regions:
            problems.append(f"region {region} is not in safety.allowed_regions")
    if not allow_destructive:
        problems.append(f"{DESTRUCTIVE_FLAG} not given")
    return problems


def check_destructive(
    aws: AwsClients,
    settings: AwsSettings,
    safety: SafetyConfig,
    allow_destructive: bool,
    regions: Iterable[str],
    also: Sequence[str] = (),
) -> None:
    """Refuse (SafetyError) unless the account, each region and the flag allow destruction.

    The message names every missing permission at once, then ``also`` (what else refuses the
    fault, e.g. its blast radius): ``refused: account 123456789012 is not in
    safety.allowed_accounts; region eu-west-1 is not in safety.allowed_regions;
    --dr-allow-destructive not given``. Empty allow-lists allow nothing. The only call made is
    STS GetCallerIdentity (it reads), once a run.
    """
    problems = [*destructive_problems(aws, settings, safety, allow_destructive, regions), *also]
    if problems:
        raise Refused("refused: " + "; ".join(problems))


def _tasks(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"


def requested_tasks(count_running: int, requested: int | None, percent: float | None) -> int:
    """How many tasks a request asks for: ``requested``, or ``percent`` of those running
    (rounded down, at least one). ValueError for a request that makes no sense."""
    if requested is not None and percent is not None:
        raise ValueError("give a task count or a percent, not both")
    if count_running < 0 or (requested is not None and requested < 0):
        raise ValueError("task counts cannot be negative")
    if percent is not None and not 0 < percent <= 100:
        raise ValueError(f"percent {percent:g} is not in (0, 100]")
    if percent is not None:
        # a tiny epsilon so that 3 tasks at 100/3 % come out as 1, not 0.999...
        return max(1, math.floor(count_running * percent / 100 + 1e-9))
    return requested if requested is not None else 0


def _radius_problem(
    wanted: int, count_running: int, max_percent: float, of: str = ""
) -> str | None:
    """Why stopping ``wanted`` of ``count_running`` tasks is refused (None: it is not)."""
    limit = math.floor(count_running * max_percent / 100 + 1e-9)
    if wanted > count_running:
        return f"stopping {_tasks(wanted)}{of} but only {count_running} running"
    if wanted > limit:
        share = 100.0 * wanted / count_running
        return (
            f"stopping {wanted} of {_tasks(count_running)}{of} ({share:.0f}%) exceeds "
            f"{MAX_TASKS_KEY} {max_percent:g}% (raise it to {math.ceil(share - 1e-9)} to allow "
            "this)"
        )
    return None


def blast_radius(
    count_running: int, requested: int | None, percent: float | None, max_percent: float
) -> int:
    """How many of ``count_running`` tasks a fault may stop.

    ``requested`` asks for a number of tasks, ``percent`` for a share of those running (rounded
    down, at least one); with neither, the answer is the most the limit allows. SafetyError when
    the request stops more than ``max_percent`` of the running tasks, or more than run.
    ValueError for a request that makes no sense (both given, negative, a share over 100%).
    """
    wanted = requested_tasks(count_running, requested, percent)
    if not 0 < max_percent <= 100:
        raise ValueError(f"max_percent {max_percent:g} is not in (0, 100]")
    if requested is None and percent is None:
        return math.floor(count_running * max_percent / 100 + 1e-9)
    problem = _radius_problem(wanted, count_running, max_percent)
    if problem is not None:
        raise Refused(f"refused: {problem}")
    return wanted


# --- what a fault takes down ---------------------------------------------------------------


@dataclass(frozen=True)
class TasksTaken:
    """What one fault takes down of one ECS service: ``count`` of its running tasks, a
    ``percent`` of them, or (``every``) all it has, however many run: a service scaled to zero.
    """

    #: the fault (or the part of a composite fault) that takes them, as it describes itself
    what: str
    region: str
    cluster: str
    service: str
    count: int | None = None
    percent: float | None = None
    every: bool = False

    def describe(self) -> str:
        """``ecs service 'web' in eu-west-1``."""
        return f"ecs service '{self.service}' in {self.region}"


@runtime_checkable
class CompositeFault(Protocol):
    """A fault made of others (a region down: the service, its load balancer, its records):
    it takes down what its parts take down."""

    @property
    def parts(self) -> Sequence[Fault]:
        """The faults it injects, in order."""


def tasks_taken(fault: object) -> list[TasksTaken]:
    """What ``fault`` takes down of the stack's ECS services (empty: no task)."""
    if isinstance(fault, ScaleServiceToZero):
        where = (fault.describe(), fault.region, fault.cluster, fault.service)
        return [TasksTaken(*where, every=True)]
    if isinstance(fault, StopEcsTasks):
        where = (fault.describe(), fault.region, fault.cluster, fault.service)
        if fault.percent is not None:
            return [TasksTaken(*where, percent=fault.percent)]
        return [TasksTaken(*where, count=fault.count or 0)]
    if isinstance(fault, CompositeFault):
        return [taken for part in fault.parts for taken in tasks_taken(part)]
    return []


def blast_problems(
    fault: object, max_percent: float, running: Callable[[str, str, str], int]
) -> list[str]:
    """Why ``fault`` takes down more than ``max_percent`` of a service's tasks (empty: it
    does not). ``running(region, cluster, service)`` counts a service's running tasks; it is
    asked only for faults that stop some of them (it reads)."""
    problems: list[str] = []
    for taken in tasks_taken(fault):
        if taken.every:
            if max_percent < 100:
                problems.append(
                    f"{taken.what} takes down 100% of its tasks, over {MAX_TASKS_KEY} "
                    f"{max_percent:g}% (a region down takes every task: raise it to 100 to "
                    "allow this)"
                )
            continue
        count_running = running(taken.region, taken.cluster, taken.service)
        wanted = requested_tasks(count_running, taken.count, taken.percent)
        problem = _radius_problem(wanted, count_running, max_percent, of=f" of {taken.describe()}")
        if problem is not None:
            problems.append(problem)
    return problems


@dataclass
class StopConditions:
    """Guard alarms and an availability budget, checked between a drill's steps.

    A guard alarm in ALARM fires; so does one that cannot be read (a guard nobody can see is
    no guard). ``INSUFFICIENT_DATA`` does not fire: new and idle alarms sit there. The budget
    fires when ``availability()`` (the probes' good samples in percent; None before the first
    sample) falls below ``min_availability_percent``.
    """

    aws: AwsClients
    guard_alarms: Sequence[GuardAlarm] = ()
    availability: Callable[[], float | None] | None = None
    min_availability_percent: float | None = None
    #: how many times :meth:`check` ran (for reports: "stop conditions checked 41 times")
    checks: int = field(default=0, init=False)

    @classmethod
    def from_settings(
        cls,
        aws: AwsClients,
        settings: AwsSettings,
        availability: Callable[[], float | None] | None = None,
    ) -> StopConditions:
        """The stop conditions ``targets.aws`` configures: every guard alarm, and the budget."""
        return cls(
            aws=aws,
            guard_alarms=settings.guard_alarms(),
            availability=availability,
            min_availability_percent=settings.stop_conditions.min_availability_percent,
        )

    def reasons(self) -> list[str]:
        """What fires now (empty when the drill may go on)."""
        # imported here: the cloudwatch adapter is optional for anyone who never polls alarms
        from drdrill.targets.aws.cloudwatch import alarm_state

        fired: list[str] = []
        for guard in self.guard_alarms:
            try:
                state = alarm_state(self.aws, guard.region, guard.name)
            except (DrillError, BotoCoreError) as exc:
                fired.append(f"guard alarm '{guard.name}' in {guard.region} unreadable: {exc}")
                continue
            if state == "ALARM":
                fired.append(f"guard alarm '{guard.name}' in {guard.region} is in ALARM")
        if self.availability is not None and self.min_availability_percent is not None:
            current = self.availability()
            if current is not None and current < self.min_availability_percent:
                fired.append(
                    f"availability {current:.1f}% is below "
                    f"stop_conditions.min_availability_percent {self.min_availability_percent:g}%"
                )
        return fired

    def check(self) -> None:
        """Raise StopConditionTriggered naming every guard alarm and budget that fired."""
        self.checks += 1
        fired = self.reasons()
        if fired:
            raise StopConditionTriggered(fired)
