"""Safety guards: the destructive check against a moto account, the blast radius, and stop
conditions polling real (moto) alarms."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from drdrill.config import SafetyConfig, load_config
from drdrill.errors import SafetyError
from drdrill.faults.base import Fault, RevertResult
from drdrill.sandbox.aws.provision import ProvisionedStack
from drdrill.targets.aws.safety import (
    StopConditions,
    StopConditionTriggered,
    blast_radius,
    check_destructive,
)
from drdrill.targets.aws.session import AwsClients, is_read_only
from drdrill.targets.aws.settings import AwsSettings, GuardAlarm
from drdrill.targets.aws.target import AwsTarget

MOTO_ACCOUNT = "123456789012"
REGIONS = ("eu-west-1", "eu-central-1")
ALLOWED = SafetyConfig(allowed_accounts=[MOTO_ACCOUNT], allowed_regions=list(REGIONS))


# --- check_destructive ---------------------------------------------------------------------


def test_everything_missing_is_named_at_once(aws: AwsClients) -> None:
    with pytest.raises(SafetyError) as caught:
        check_destructive(aws, AwsSettings(), SafetyConfig(), False, REGIONS)
    assert str(caught.value) == (
        "refused: account 123456789012 is not in safety.allowed_accounts; "
        "region eu-west-1 is not in safety.allowed_regions; "
        "region eu-central-1 is not in safety.allowed_regions; "
        "--dr-allow-destructive not given"
    )


def test_allowed_account_regions_and_flag_pass_with_only_a_read(aws: AwsClients) -> None:
    check_destructive(aws, AwsSettings(), ALLOWED, True, REGIONS)
    assert [c.operation for c in aws.log.calls] == ["GetCallerIdentity"]
    assert all(is_read_only(c.operation) and c.sent for c in aws.log.calls)
    assert aws.log.actions() == {"sts:GetCallerIdentity"}


def test_each_missing_piece_alone_is_refused(aws: AwsClients) -> None:
    with pytest.raises(SafetyError, match=r"^refused: --dr-allow-destructive not given$"):
        check_destructive(aws, AwsSettings(), ALLOWED, False, REGIONS)
    other_account = SafetyConfig(allowed_accounts=["999999999999"], allowed_regions=list(REGIONS))
    with pytest.raises(
        SafetyError, match=r"^refused: account 123456789012 is not in safety.allowed_accounts$"
    ):
        check_destructive(aws, AwsSettings(), other_account, True, REGIONS)
    # a region asked for twice is named once
    with pytest.raises(
        SafetyError, match=r"^refused: region us-east-1 is not in safety.allowed_regions$"
    ):
        check_destructive(
            aws, AwsSettings(), ALLOWED, True, ["us-east-1", "eu-west-1", "us-east-1"]
        )


def test_a_dry_run_still_reads_the_account(moto_endpoint: str) -> None:
    aws = AwsClients(endpoint_url=moto_endpoint, dry_run=True)
    check_destructive(aws, AwsSettings(), ALLOWED, True, REGIONS)
    assert [(c.operation, c.sent) for c in aws.log.calls] == [("GetCallerIdentity", True)]


class _Denied(BaseHTTPRequestHandler):
    """STS answering as it does to expired credentials."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code>"
            b"<Message>The security token included in the request is expired</Message>"
            b"</Error><RequestId>1</RequestId></ErrorResponse>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def denying_endpoint(moto_endpoint: str) -> Iterator[str]:
    """A loopback endpoint refusing the credentials (moto_endpoint: for its fake credentials)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Denied)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreadable_account_is_refused_with_the_rest(denying_endpoint: str) -> None:
    aws = AwsClients(endpoint_url=denying_endpoint)
    with pytest.raises(SafetyError) as caught:
        check_destructive(aws, AwsSettings(), ALLOWED, False, REGIONS)
    message = str(caught.value)
    assert message.startswith("refused: cannot read the account id (")
    assert "ExpiredToken" in message
    assert message.endswith("; --dr-allow-destructive not given")
    assert "\n" not in message


# --- blast_radius --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "requested", "percent", "max_percent", "allowed"),
    [
        (4, None, None, 50, 2),  # no request: the most the limit allows
        (5, None, None, 50, 2),  # rounded down
        (3, None, None, 100 / 3, 1),  # 33.33..% of 3 is one task, not 0.999
        (1, None, None, 50, 0),
        (0, None, None, 50, 0),
        (4, 1, None, 50, 1),
        (4, 2, None, 50, 2),
        (4, 0, None, 50, 0),
        (4, None, 50, 50, 2),
        (4, None, 10, 50, 1),  # a share rounds down but stops at least one task
        (10, None, 25, 50, 2),
        (2, 2, None, 100, 2),
    ],
)
def test_blast_radius_allows(
    running: int, requested: int | None, percent: float | None, max_percent: float, allowed: int
) -> None:
    assert blast_radius(running, requested, percent, max_percent) == allowed


@pytest.mark.parametrize(
    ("running", "requested", "percent", "message"),
    [
        (
            4,
            3,
            None,
            "refused: stopping 3 of 4 tasks (75%) exceeds "
            "targets.aws.blast_radius.max_tasks_percent 50% (raise it to 75 to allow this)",
        ),
        (
            1,
            None,
            50,
            "refused: stopping 1 of 1 task (100%) exceeds "
            "targets.aws.blast_radius.max_tasks_percent 50% (raise it to 100 to allow this)",
        ),
        (2, 3, None, "refused: stopping 3 tasks but only 2 running"),
        (0, 1, None, "refused: stopping 1 task but only 0 running"),
        (
            3,
            None,
            100,
            "refused: stopping 3 of 3 tasks (100%) exceeds "
            "targets.aws.blast_radius.max_tasks_percent 50% (raise it to 100 to allow this)",
        ),
    ],
)
def test_blast_radius_refuses(
    running: int, requested: int | None, percent: float | None, message: str
) -> None:
    with pytest.raises(SafetyError) as caught:
        blast_radius(running, requested, percent, 50)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("args", "what"),
    [
        ((4, 1, 50.0, 50.0), "not both"),
        ((4, -1, None, 50.0), "negative"),
        ((-1, None, None, 50.0), "negative"),
        ((4, None, 0.0, 50.0), "percent 0"),
        ((4, None, 150.0, 50.0), "percent 150"),
        ((4, None, None, 0.0), "max_percent 0"),
    ],
)
def test_blast_radius_rejects_nonsense(
    args: tuple[int, int | None, float | None, float], what: str
) -> None:
    with pytest.raises(ValueError, match=what):
        blast_radius(*args)


# --- StopConditions ------------------------------------------------------------------------


def make_alarm(aws: AwsClients, region: str, state: str | None = None) -> str:
    name = f"guard-{uuid.uuid4().hex[:8]}"
    cloudwatch = aws.client("cloudwatch", region)
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_ELB_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=50,
        ComparisonOperator="GreaterThanThreshold",
    )
    if state is not None:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    return name


def test_quiet_guards_let_the_drill_go_on_and_alarm_stops_it(aws: AwsClients) -> None:
    west = make_alarm(aws, "eu-west-1")
    central = make_alarm(aws, "eu-central-1", "INSUFFICIENT_DATA")
    conditions = StopConditions(
        aws,
        [
            GuardAlarm(region="eu-west-1", name=west),
            GuardAlarm(region="eu-central-1", name=central),
        ],
    )
    before = len(aws.log.calls)
    conditions.check()  # OK and INSUFFICIENT_DATA do not fire
    # polling reads, one call a guard
    assert [c.operation for c in aws.log.calls[before:]] == ["DescribeAlarms"] * 2
    aws.client("cloudwatch", "eu-central-1").set_alarm_state(
        AlarmName=central, StateValue="ALARM", StateReason="5xx spike"
    )
    with pytest.raises(StopConditionTriggered) as caught:
        conditions.check()
    assert isinstance(caught.value, SafetyError)
    assert caught.value.reasons == (f"guard alarm '{central}' in eu-central-1 is in ALARM",)
    assert conditions.checks == 2


def test_every_fired_guard_and_the_budget_are_named_together(aws: AwsClients) -> None:
    first = make_alarm(aws, "eu-west-1", "ALARM")
    second = make_alarm(aws, "eu-west-1", "ALARM")
    quiet = make_alarm(aws, "eu-west-1")
    conditions = StopConditions(
        aws,
        [GuardAlarm(region="eu-west-1", name=n) for n in (first, quiet, second)],
        availability=lambda: 62.5,
        min_availability_percent=80,
    )
    with pytest.raises(StopConditionTriggered) as caught:
        conditions.check()
    assert str(caught.value) == (
        f"stop condition: guard alarm '{first}' in eu-west-1 is in ALARM; "
        f"guard alarm '{second}' in eu-west-1 is in ALARM; "
        "availability 62.5% is below stop_conditions.min_availability_percent 80%"
    )


def test_a_guard_that_cannot_be_read_stops_the_drill(aws: AwsClients) -> None:
    missing = f"no-such-alarm-{uuid.uuid4().hex[:8]}"
    conditions = StopConditions(aws, [GuardAlarm(region="eu-west-1", name=missing)])
    with pytest.raises(
        StopConditionTriggered, match=f"guard alarm '{missing}' in eu-west-1 unreadable"
    ):
        conditions.check()


def test_the_availability_budget(aws: AwsClients) -> None:
    readings: list[float | None] = [None, 100.0, 80.0, 79.9]
    conditions = StopConditions(
        aws, availability=lambda: readings.pop(0), min_availability_percent=80
    )
    conditions.check()  # no sample yet
    conditions.check()
    conditions.check()  # at the budget is within it
    with pytest.raises(StopConditionTriggered) as caught:
        conditions.check()
    assert caught.value.reasons == (
        "availability 79.9% is below stop_conditions.min_availability_percent 80%",
    )
    # without a budget the availability is never asked for
    StopConditions(aws, availability=lambda: 0.0).check()
    assert aws.log.calls == []


def test_from_settings_polls_both_regions_guards_and_stop_condition_arns(aws: AwsClients) -> None:
    west = make_alarm(aws, "eu-west-1")
    central = make_alarm(aws, "eu-central-1")
    by_arn = make_alarm(aws, "eu-central-1")
    settings = AwsSettings.model_validate(
        {
            "primary": {"alarms": {"guards": [west]}},
            "dr": {"alarms": {"guards": [central]}},
            "stop_conditions": {
                "guard_alarms": [f"arn:aws:cloudwatch:eu-central-1:{MOTO_ACCOUNT}:alarm:{by_arn}"],
                "min_availability_percent": 50,
            },
        }
    )
    conditions = StopConditions.from_settings(aws, settings, availability=lambda: 49.0)
    assert conditions.guard_alarms == (
        GuardAlarm(region="eu-west-1", name=west),
        GuardAlarm(region="eu-central-1", name=central),
        GuardAlarm(region="eu-central-1", name=by_arn),
    )
    aws.client("cloudwatch", "eu-central-1").set_alarm_state(
        AlarmName=by_arn, StateValue="ALARM", StateReason="test"
    )
    with pytest.raises(StopConditionTriggered) as caught:
        conditions.check()
    assert caught.value.reasons == (
        f"guard alarm '{by_arn}' in eu-central-1 is in ALARM",
        "availability 49.0% is below stop_conditions.min_availability_percent 50%",
    )
    polled = {c.region for c in aws.log.calls if c.operation == "DescribeAlarms"}
    assert polled == {"eu-west-1", "eu-central-1"}


# --- the aws target's guard: every fault, region down included -------------------------------


def _guarded(
    tmp: Path, stack: ProvisionedStack, accounts: list[str], max_percent: float | None = None
) -> AwsTarget:
    aws = stack.settings.model_dump(mode="json", exclude_none=True)
    if max_percent is not None:
        aws["blast_radius"] = {"max_tasks_percent": max_percent}
    path = tmp / "drdrill.yaml"
    safety = {"allowed_accounts": accounts, "allowed_regions": list(REGIONS)}
    path.write_text(yaml.safe_dump({"target": "aws", "safety": safety, "targets": {"aws": aws}}))
    return AwsTarget(load_config(path))


def _changing(target: AwsTarget) -> list[str]:
    return [c.operation for c in target.aws.log.calls if not is_read_only(c.operation)]


@dataclass(frozen=True)
class _RegionDown:
    """A composite fault as a region down is one: it takes down what its parts take down."""

    kind: ClassVar[str] = "test.region_down"
    parts: tuple[Fault, ...]

    def describe(self) -> str:
        return "region down"

    def inject(self) -> None:
        raise AssertionError("a refused fault is never injected")

    def revert(self) -> RevertResult:
        return RevertResult("nothing")

    def to_record(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> _RegionDown:
        return cls(())


def test_a_region_down_needs_a_blast_radius_of_100(stack: ProvisionedStack, tmp_path: Path) -> None:
    target = _guarded(tmp_path, stack, [MOTO_ACCOUNT])
    p = stack.settings.primary
    fault = target.region_down("primary")
    with pytest.raises(SafetyError) as caught:
        target.guard(fault, allow_destructive=True)
    assert str(caught.value) == (
        f"refused: scale ecs service '{p.ecs.service}' in {p.region} to 0 (was 2) takes down "
        "100% of its tasks, over targets.aws.blast_radius.max_tasks_percent 50% (a region "
        "down takes every task: raise it to 100 to allow this)"
    )
    assert isinstance(caught.value, pytest.fail.Exception) and not caught.value.pytrace
    # composed into a bigger fault it is refused all the same
    with pytest.raises(SafetyError, match="takes down 100% of its tasks"):
        target.guard(_RegionDown((target.reboot_db("primary"), fault)), allow_destructive=True)
    assert _changing(target) == []
    allowed = _guarded(tmp_path, stack, [MOTO_ACCOUNT], max_percent=100)
    allowed.guard(allowed.region_down("primary"), allow_destructive=True)


def test_stopping_tasks_is_refused_over_the_radius_and_allowed_within_it(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = _guarded(tmp_path, stack, [MOTO_ACCOUNT])
    p = stack.settings.primary
    target.guard(target.stop_tasks("primary", count=1), allow_destructive=True)
    target.guard(target.stop_tasks("primary", percent=50), allow_destructive=True)
    with pytest.raises(SafetyError) as caught:
        target.guard(target.stop_tasks("primary", count=2), allow_destructive=True)
    assert str(caught.value) == (
        f"refused: stopping 2 of 2 tasks of ecs service '{p.ecs.service}' in {p.region} (100%) "
        "exceeds targets.aws.blast_radius.max_tasks_percent 50% (raise it to 100 to allow this)"
    )
    assert _changing(target) == []
    # the account is read once a run, however many faults are guarded
    assert [c.operation for c in target.aws.log.calls].count("GetCallerIdentity") == 1


def test_a_dry_run_guard_says_everything_the_real_run_would_refuse(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    """What a dry run evaluates (it sends only reads): the account, the flag and the blast
    radius named together in one line."""
    target = _guarded(tmp_path, stack, ["999999999999"])
    target.set_dry_run(True)
    with pytest.raises(SafetyError) as caught:
        target.guard(target.region_down("primary"), allow_destructive=False)
    message = str(caught.value)
    assert message.startswith(
        f"refused: account {MOTO_ACCOUNT} is not in safety.allowed_accounts; "
        "--dr-allow-destructive not given; scale ecs service "
    )
    assert message.endswith("raise it to 100 to allow this)")
    assert "\n" not in message
    assert all(c.sent and is_read_only(c.operation) for c in target.aws.log.calls)
