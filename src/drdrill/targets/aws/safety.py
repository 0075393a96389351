"""Guards before and during anything destructive against an AWS account.

Before: :func:`check_destructive` refuses unless the account and every region are on the
config's allow-lists and ``--dr-allow-destructive`` was given, and names everything missing at
once (fixing one thing at a time and rerunning is how guards get switched off). It only reads.
How much: :func:`blast_radius` caps how many tasks one fault may stop.
During: :class:`StopConditions` aborts a drill when a guard alarm fires or the availability the
probes see falls under its budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from drdrill.config import SafetyConfig
from drdrill.errors import DrillError, SafetyError
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings, GuardAlarm

#: the command-line flag that allows destructive faults
DESTRUCTIVE_FLAG = "--dr-allow-destructive"


class StopConditionTriggered(SafetyError):
    """A stop condition fired during a drill: abort and revert."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("stop condition: " + "; ".join(reasons))
        self.reasons = tuple(reasons)


def _account_id(aws: AwsClients, region: str) -> str:
    answer = aws.client("sts", region).get_caller_identity()
    return str(answer["Account"])


def check_destructive(
    aws: AwsClients,
    settings: AwsSettings,
    safety: SafetyConfig,
    allow_destructive: bool,
    regions: Iterable[str],
) -> None:
    """Refuse (SafetyError) unless the account, each region and the flag allow destruction.

    The message names every missing permission at once: ``refused: account 123456789012 is
    not in safety.allowed_accounts; region eu-west-1 is not in safety.allowed_regions;
    --dr-allow-destructive not given``. Empty allow-lists allow nothing. The only call made is
    STS GetCallerIdentity (it reads).
    """
    problems: list[str] = []
    try:
        account = _account_id(aws, settings.primary.region)
    except (BotoCoreError, ClientError) as exc:
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
    if problems:
        raise SafetyError("refused: " + "; ".join(problems))


def _tasks(count: int) -> str:
    return f"{count} task" if count == 1 else f"{count} tasks"


def blast_radius(
    count_running: int, requested: int | None, percent: float | None, max_percent: float
) -> int:
    """How many of ``count_running`` tasks a fault may stop.

    ``requested`` asks for a number of tasks, ``percent`` for a share of those running (rounded
    down, at least one); with neither, the answer is the most the limit allows. SafetyError when
    the request stops more than ``max_percent`` of the running tasks, or more than run.
    ValueError for a request that makes no sense (both given, negative, a share over 100%).
    """
    if requested is not None and percent is not None:
        raise ValueError("give a task count or a percent, not both")
    if count_running < 0 or (requested is not None and requested < 0):
        raise ValueError("task counts cannot be negative")
    if percent is not None and not 0 < percent <= 100:
        raise ValueError(f"percent {percent:g} is not in (0, 100]")
    if not 0 < max_percent <= 100:
        raise ValueError(f"max_percent {max_percent:g} is not in (0, 100]")
    # a tiny epsilon so that 3 tasks at 100/3 % come out as 1, not 0.999...
    limit = math.floor(count_running * max_percent / 100 + 1e-9)
    if requested is None and percent is None:
        return limit
    if percent is not None:
        wanted = max(1, math.floor(count_running * percent / 100 + 1e-9))
    else:
        wanted = requested if requested is not None else 0
    if wanted > count_running:
        raise SafetyError(f"refused: stopping {_tasks(wanted)} but only {count_running} running")
    if wanted > limit:
        share = 100.0 * wanted / count_running
        raise SafetyError(
            f"refused: stopping {wanted} of {_tasks(count_running)} ({share:.0f}%) exceeds "
            f"blast_radius.max_tasks_percent {max_percent:g}%"
        )
    return wanted


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
