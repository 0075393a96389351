"""The static assets drill (suites/test_static_assets.py) against a stack provisioned in a moto
server, with a replication the test controls.

moto (5.2) stores the buckets' replication rule but copies no object and sets no
``ReplicationStatus`` (checked here once more: without the test's replicator, the drill finds
nothing and skips). So the test supplies the replication: :class:`Replicator`, a thread that
lists the primary bucket every few milliseconds and copies each new marker object into the DR
bucket after a delay of the test's choosing, logging when it saw the object and when the copy
ran. From that log each marker's true lag lies in [copy started - object seen, copy done - last
listing that lacked it]; every lag the drill measures must overlap it, and a marker the
replicator never copies must be reported not replicated. The drill runs with pytester, in a
pytest process of its own, as ``pytest suites`` would run it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from drdrill.config import load_config
from drdrill.probes.stats import percentile
from drdrill.sandbox.aws.provision import ASSETS_RULE_ID, ProvisionedStack
from drdrill.targets.aws import s3
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.target import AwsTarget
from drdrill.targets.base import StaticAssetsDrill
from drdrill.targets.sandbox import SandboxTarget
from drdrill.timeline import Timeline

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[3]
SUITE = ROOT / "suites" / "test_static_assets.py"
#: the figure of S3's own ReplicationLatency (suites/test_static_assets.py)
PLATFORM_LATENCY = "S3 ReplicationLatency (CloudWatch max)"
MOTO_ACCOUNT = "123456789012"
#: where the drill's markers go (the provisioned rule replicates the whole bucket)
MARKERS = "drdrill-static-assets/"
#: how often the replicator lists the primary bucket
LIST_EVERY_S = 0.02

log = logging.getLogger(__name__)


@dataclass
class Copy:
    """What the replicator did with one object (monotonic times of this process)."""

    key: str
    delay_s: float
    #: start of the last listing that lacked the object, end of the first that showed it
    absent_at: float
    seen_at: float
    #: the DR bucket's PutObject call
    copy_started: float | None = None
    copy_done: float | None = None

    def true_lag(self) -> tuple[float, float] | None:
        """(lowest, highest) the object's real lag can be; None when it was never copied."""
        if self.copy_started is None or self.copy_done is None:
            return None
        return self.copy_started - self.seen_at, self.copy_done - self.absent_at


class Replicator:
    """S3 replication as the test wants it: each new object under ``prefix`` in ``source`` is
    copied into ``destination`` ``delay(key)`` seconds after it is first listed (None: never)."""

    def __init__(
        self,
        aws: AwsClients,
        stack: ProvisionedStack,
        delay: Callable[[str], float | None],
        prefix: str = MARKERS,
        publish: Callable[[float], None] | None = None,
    ) -> None:
        self.source = aws.client("s3", stack.primary.region)
        self.target = aws.client("s3", stack.dr.region)
        self.buckets = (stack.primary.bucket, stack.dr.bucket)
        self.delay = delay
        self.prefix = prefix
        #: called with each copy's latency, as S3 publishes ReplicationLatency (None: not)
        self.publish = publish
        self.copies: dict[str, Copy] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-replicator", daemon=True)

    def __enter__(self) -> Replicator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            absent_since = time.monotonic()
            while not self._stop.is_set():
                started = time.monotonic()
                listed = self.source.list_objects_v2(Bucket=self.buckets[0], Prefix=self.prefix)
                ended = time.monotonic()
                for item in listed.get("Contents", []):
                    key = str(item["Key"])
                    if key not in self.copies:
                        delay = self.delay(key)
                        self.copies[key] = Copy(
                            key, -1.0 if delay is None else delay, absent_since, ended
                        )
                absent_since = started
                for copy in self.copies.values():
                    due = copy.copy_started is None and copy.delay_s >= 0
                    if due and time.monotonic() >= copy.seen_at + copy.delay_s:
                        self._copy(copy)
                self._stop.wait(LIST_EVERY_S)
        except BaseException as exc:  # handed to the test, never lost in the thread
            self.error = exc

    def _copy(self, copy: Copy) -> None:
        body = self.source.get_object(Bucket=self.buckets[0], Key=copy.key)["Body"].read()
        copy.copy_started = time.monotonic()
        if self.publish is not None:
            # the datapoint goes in before the copy lands: the drill reads CloudWatch once it
            # has seen its last marker in DR, and a datapoint put after that copy raced it (CI
            # read 1.4462 s, one copy before the largest, 1.4473 s, was published)
            self.publish(copy.copy_started - copy.seen_at)
        self.target.put_object(Bucket=self.buckets[1], Key=copy.key, Body=body)
        copy.copy_done = time.monotonic()
        log.info(
            "replicated %s after %.3f s: listed at %.3f (absent at %.3f), copied %.3f-%.3f",
            copy.key,
            copy.delay_s,
            copy.seen_at,
            copy.absent_at,
            copy.copy_started,
            copy.copy_done,
        )

    def by_id(self) -> dict[int, Copy]:
        """The objects seen, by marker number (the key's last part)."""
        return {_marker_id(key): copy for key, copy in self.copies.items()}


def _marker_id(key: str) -> int:
    return int(key.rsplit("/", 1)[-1].split(".")[0])


def _config(tmp: Path, stack: ProvisionedStack, rpo: str | None) -> Path:
    config: dict[str, Any] = {
        "runbook": str(ROOT / "docs" / "runbook.md"),
        "target": "aws",
        "journal": str(tmp / "journal.jsonl"),
        "report_dir": str(tmp / "reports"),
        "safety": {
            "allowed_accounts": [MOTO_ACCOUNT],
            "allowed_regions": [stack.settings.primary.region, stack.settings.dr.region],
        },
        "targets": {"aws": stack.settings.model_dump(mode="json", exclude_none=True)},
    }
    if rpo is not None:
        config["objectives"] = {"rpo": {"Static Assets": rpo}}
    path = tmp / "drdrill.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _drill(pytester: pytest.Pytester, config: Path) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        str(SUITE), "-p", "no:cacheprovider", "-rs", "--dr-config", str(config), timeout=300
    )


def _report(tmp: Path) -> dict[str, Any]:
    (path,) = (tmp / "reports").glob("*/report.json")
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def _event(report: dict[str, Any], name: str) -> dict[str, Any]:
    (event,) = [e for e in report["events"] if e["name"] == name]
    return dict(event)


def _figure(report: dict[str, Any], name: str) -> dict[str, Any]:
    (figure,) = [p for p in report["phases"] if p["name"] == name]
    return dict(figure)


def _left(aws: AwsClients, stack: ProvisionedStack) -> list[str]:
    """Every version or delete marker under the markers' folder, in both buckets."""
    left = []
    for region, bucket in (
        (stack.primary.region, stack.primary.bucket),
        (stack.dr.region, stack.dr.bucket),
    ):
        listed = aws.client("s3", region).list_object_versions(Bucket=bucket, Prefix=MARKERS)
        left += [f"{bucket}/{v['Key']}" for v in listed.get("Versions", [])]
        left += [f"{bucket}/{v['Key']} (delete marker)" for v in listed.get("DeleteMarkers", [])]
    return left


def _overlaps(measured: list[float], truth: tuple[float, float]) -> bool:
    return measured[0] <= truth[1] and truth[0] <= measured[1]


def _check_lags(report: dict[str, Any], replicator: Replicator) -> dict[int, tuple[float, float]]:
    """Every lag the drill measured overlaps the replicator's truth; the truths, by id."""
    lags = _event(report, "static_assets_replication")["attrs"]["lags"]
    truths = {
        i: truth for i, c in replicator.by_id().items() if (truth := c.true_lag()) is not None
    }
    assert sorted(int(i) for i in lags) == sorted(truths)
    for i, measured in lags.items():
        truth = truths[int(i)]
        assert _overlaps(measured, truth), f"marker {i}: measured {measured}, truly {truth}"
    return truths


def _spread(truths: dict[int, tuple[float, float]], q: float) -> tuple[float, float]:
    return (
        percentile([t[0] for t in truths.values()], q),
        percentile([t[1] for t in truths.values()], q),
    )


def _interval(figure: dict[str, Any]) -> list[float]:
    return [figure["low"], figure["high"]]


@pytest.fixture
def aws(moto_endpoint: str) -> AwsClients:
    """The test's own clients (the replicator's and the checks')."""
    return AwsClients(endpoint_url=moto_endpoint)


@pytest.fixture
def project(stack: ProvisionedStack, pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester, taken after the stack: pytester restores ``sys.modules`` at its teardown, and
    the moto modules provisioning imported must outlive it (the moto server runs in this
    process and keeps using them)."""
    return pytester


@pytest.fixture
def replicator_errors() -> Iterator[list[Replicator]]:
    """Replicators a test ran: a failure inside one fails the test."""
    ran: list[Replicator] = []
    yield ran
    for replicator in ran:
        assert replicator.error is None, f"the test's replicator failed: {replicator.error!r}"


def _delays(key: str) -> float:
    # 0.2 s to 1.4 s by the marker's number: lags the drill must tell apart
    return 0.2 + 0.3 * (_marker_id(key) % 5)


def test_each_lag_overlaps_the_real_one_and_a_marker_never_copied_is_reported(
    project: pytest.Pytester,
    stack: ProvisionedStack,
    aws: AwsClients,
    replicator_errors: list[Replicator],
) -> None:
    never = 7

    def delay(key: str) -> float | None:
        return None if _marker_id(key) == never else _delays(key)

    config = _config(project.path, stack, rpo="3s")  # a deadline of 3 s + 2 s
    with Replicator(aws, stack, delay) as replicator:
        replicator_errors.append(replicator)
        result = _drill(project, config)
    out = result.stdout.str()
    result.assert_outcomes(failed=1)
    report = _report(project.path)
    truths = _check_lags(report, replicator)
    summary = _event(report, "static_assets_replication")["attrs"]
    (missing,) = summary["not_replicated"]
    assert _marker_id(missing) == never
    assert summary["written"] == 21 and summary["replicated"] == 20  # 1 first, 20 at 4 a second
    assert (
        f"1 of 21 marker objects not in s3://{stack.dr.bucket} within 5 s: {missing} "
        "(source ReplicationStatus none given)"
    ) in out
    # still missing at its 5 s deadline: surely over the 3 s objective, the lag's lower bound
    rpo = _figure(report, "Static Assets")
    assert rpo["status"] == "missed" and rpo["note"].startswith("at least: ")
    assert rpo["measured"] > 3.0
    assert _figure(report, "static assets not replicated")["measured"] == 1
    for q in (50, 95):
        figure = _figure(report, f"static assets lag p{q}")
        assert _overlaps(_interval(figure), _spread(truths, q)), (q, figure, _spread(truths, q))
    assert _left(aws, stack) == []


def test_every_marker_replicated_meets_the_rtc_objective(
    project: pytest.Pytester,
    stack: ProvisionedStack,
    aws: AwsClients,
    replicator_errors: list[Replicator],
) -> None:
    """The override docs/static-assets.md suggests (S3 RTC's 15 minutes): every marker in time,
    the worst lag overlapping the real worst one."""
    config = _config(project.path, stack, rpo="15 minutes")
    with Replicator(aws, stack, _delays) as replicator:
        replicator_errors.append(replicator)
        result = _drill(project, config)
    result.assert_outcomes(passed=1)
    report = _report(project.path)
    truths = _check_lags(report, replicator)
    rpo = _figure(report, "Static Assets")
    assert rpo["status"] == "met" and rpo["target_s"] == 900.0
    assert _overlaps(_interval(rpo), _spread(truths, 100)), (rpo, _spread(truths, 100))
    # the worst marker's own events bound the figure
    assert rpo["start"].endswith(" written") and rpo["end"].endswith(" replicated")
    assert _figure(report, "static assets not replicated")["measured"] == 0
    assert _left(aws, stack) == []
    # moto publishes no ReplicationLatency: said on the timeline, no figure made up
    assert _event(report, "replication_latency_not_published")
    assert not [f for f in report["phases"] if f["name"] == PLATFORM_LATENCY]


def _put_latency(aws: AwsClients, stack: ProvisionedStack, rule: str, value: float) -> None:
    """A ``ReplicationLatency`` datapoint as S3 publishes one with replication metrics on."""
    aws.client("cloudwatch", stack.primary.region).put_metric_data(
        Namespace="AWS/S3",
        MetricData=[
            {
                "MetricName": "ReplicationLatency",
                "Dimensions": [
                    {"Name": "SourceBucket", "Value": stack.primary.bucket},
                    {"Name": "DestinationBucket", "Value": stack.dr.bucket},
                    {"Name": "RuleId", "Value": rule},
                ],
                "Timestamp": datetime.now(UTC),
                "Value": value,
                "Unit": "Seconds",
            }
        ],
    )


def test_s3s_own_replication_latency_is_reported_beside_the_markers(
    project: pytest.Pytester,
    stack: ProvisionedStack,
    aws: AwsClients,
    replicator_errors: list[Replicator],
) -> None:
    """Where replication metrics are on, S3's ``ReplicationLatency`` (its largest minute since
    the first marker, over the bucket's enabled rules) is a figure for information."""
    published: list[float] = []

    def publish(lag: float) -> None:
        # S3's datapoint for the copy, and one of a rule the bucket has not: not counted
        published.append(lag)
        _put_latency(aws, stack, ASSETS_RULE_ID, lag)
        _put_latency(aws, stack, "some-other-rule", 99.0)

    config = _config(project.path, stack, rpo="15 minutes")
    with Replicator(aws, stack, _delays, publish=publish) as replicator:
        replicator_errors.append(replicator)
        result = _drill(project, config)
    assert result.ret == 0, result.stdout.str()[-3000:]
    figure = _figure(_report(project.path), PLATFORM_LATENCY)
    assert figure["objective"] is None
    assert published and figure["measured"] == pytest.approx(max(published)), (figure, published)
    assert _left(aws, stack) == []


def test_the_runbooks_real_time_is_missed_with_the_lag_and_the_override(
    project: pytest.Pytester,
    stack: ProvisionedStack,
    aws: AwsClients,
    replicator_errors: list[Replicator],
) -> None:
    """ "Real-time" reads as 0 s: any lag misses it, and the failure says how to hold the row to
    a figure."""
    config = _config(project.path, stack, rpo=None)
    with Replicator(aws, stack, lambda key: 0.1) as replicator:
        replicator_errors.append(replicator)
        result = _drill(project, config)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "data loss 'Static Assets' measured " in out
    assert "over its objective 'Static Assets' of 0 s" in out
    assert "the runbook's 'Real-time' reads as 0 s" in out
    assert 'objectives.rpo: {"Static Assets": 15 minutes}' in out
    report = _report(project.path)
    _check_lags(report, replicator)
    assert _figure(report, "Static Assets")["status"] == "missed"
    assert _left(aws, stack) == []


def test_on_moto_alone_nothing_replicates_and_the_drill_skips(
    project: pytest.Pytester, stack: ProvisionedStack, aws: AwsClients
) -> None:
    """No replicator: moto copies nothing (and gives no ReplicationStatus), the first marker never
    arrives, the drill skips saying why, and that marker is deleted."""
    result = _drill(project, _config(project.path, stack, rpo="15 minutes"))
    result.assert_outcomes(skipped=1)
    out = result.stdout.str()
    assert "an AWS API emulator replicates no S3 object" in out
    assert f"not in s3://{stack.dr.bucket} within 5 s" in out
    deleted = _event(_report(project.path), "static_assets_markers_deleted")["attrs"]
    assert deleted["primary"] == 1 and deleted["dr"] == 0
    assert _left(aws, stack) == []


def test_markers_written_before_a_fault_that_never_arrive_are_counted(
    stack: ProvisionedStack, aws: AwsClients, tmp_path: Path, replicator_errors: list[Replicator]
) -> None:
    """The optional count a region failover drill can take: the replicator copies markers 0
    and 1, then (the "region" down) nothing; 2 and 3 were written before the fault, 4 after."""
    from suites.test_static_assets import AssetReplication

    copied = {0, 1}
    target = AwsTarget(load_config(_config(tmp_path, stack, rpo="15 minutes")))
    timeline = Timeline()
    run = AssetReplication(target, timeline, f"{MARKERS}fault-test/", deadline_s=1.0)
    try:
        with Replicator(
            aws, stack, lambda key: 0.05 if _marker_id(key) in copied else None
        ) as replicator:
            replicator_errors.append(replicator)
            first = [run.write(), run.write()]
            assert all(run.wait(m) for m in first)
            run.write()
            run.write()
            fault = timeline.mark("fault_injected")
            run.write()
            summary = run.finish(fault)
    finally:
        deleted = run.close()
    assert summary.lost_in_fault is not None
    assert [m.id for m in summary.lost_in_fault] == [2, 3]
    assert [m.id for m in summary.missing] == [2, 3, 4]
    for marker in first:
        lag, truth = marker.lag(), replicator.by_id()[marker.id].true_lag()
        assert lag is not None and truth is not None
        assert _overlaps([lag.value - lag.uncertainty, lag.value + lag.uncertainty], truth)
    assert deleted == {"primary": 5, "dr": 2}
    assert _left(aws, stack) == []


def test_the_sandbox_lacks_the_capability_and_the_drill_skips_without_bringing_it_up(
    pytester: pytest.Pytester,
) -> None:
    """The sandbox has no S3 yet: the drill skips naming the capability, and asks before the
    target starts, so no sandbox comes up (its run folder is never made)."""
    run_dir = pytester.path / "sandbox"
    defaults = yaml.safe_load((ROOT / "drdrill.yaml").read_text())
    defaults.update(
        runbook=str(ROOT / "docs" / "runbook.md"),
        target="sandbox",
        journal=str(pytester.path / "journal.jsonl"),
        report_dir=str(pytester.path / "reports"),
    )
    defaults["targets"]["sandbox"]["run_dir"] = str(run_dir)
    config = pytester.path / "drdrill.yaml"
    config.write_text(yaml.safe_dump(defaults))
    assert not isinstance(SandboxTarget(load_config(config)), StaticAssetsDrill)
    result = _drill(pytester, config)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*target 'sandbox' lacks the capability StaticAssetsDrill this drill needs*"]
    )
    assert not run_dir.exists()


def test_a_rule_selects_by_prefix_alone_or_not_at_all() -> None:
    """What the drill may write under: a rule's prefix, unless it also selects by tag (moto
    rewrites every filter to an empty prefix, so this reads the rules as AWS returns them)."""
    rule = s3._rule_prefix
    assert rule({"Prefix": "static/"}) == "static/"  # the legacy form
    assert rule({"Filter": {}}) == ""
    assert rule({"Filter": {"Prefix": "assets/"}}) == "assets/"
    assert rule({"Filter": {"Tag": {"Key": "replicate", "Value": "yes"}}}) is None
    assert rule({"Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k", "Value": "v"}]}}}) is None
    assert rule({"Filter": {"And": {"Prefix": "a/"}}}) == "a/"
