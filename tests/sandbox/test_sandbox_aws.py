"""The sandbox's AWS API: moto answers, the sandbox's processes act (block 16).

A real ``drdrill sandbox up``; every call is boto3 against its endpoint on loopback. What is
checked is that the API and the processes stay true to each other: ``StopTask`` ends the real
process and the scheduler's replacement appears as a new task with its real times,
``DescribeTargetHealth`` follows HAProxy's own checks, ``UpdateService`` scales a region for
real, and the AWS target's ECS drill runs end to end through the endpoint with the sandbox's
ground truth beside its figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
import yaml
from botocore.exceptions import ClientError
from tests.sandbox.sandbox_project import (
    FAILOVER_WITH_TRUTH,
    ROOT,
    TOLERANCE_S,
    run_suites,
    short_folder,
    truth_error,
    vague_truth,
    write_config,
)

from drdrill.sandbox.control import SandboxClient
from drdrill.sandbox.haproxy import unavailable_reason as haproxy_missing
from drdrill.sandbox.mariadb import unavailable_reason as mariadb_missing
from drdrill.targets.aws.route53 import health_status

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(mariadb_missing() or haproxy_missing()),
        reason=f"{mariadb_missing() or haproxy_missing()} (CI installs mariadb-server and haproxy)",
    ),
]

BLOCK = 16
CLUSTER = SERVICE = "visitor-analytics"
#: the figures are held as the sandbox target's own are (test_truth_agreement.py): one probe
#: interval + 50 ms (TOLERANCE_S, the issue's aim), or inside the interval the figure states,
#: each widened by the truth's own uncertainty (see sandbox_project.TOLERANCE_S).
#: Health Verification was held apart until 2026-12-01 (+0.45 and +0.56 s on the script
#: trigger in CI, its truth ± 16 ms, the probes timing out by turns). It has agreed on every
#: trigger since two loads on the sandbox went: the DR function's code in the sandbox's own
#: process (2520471) and PyMySQL 1.2 building an SSL context, ~40 ms of CPU, for every new
#: database connection of the app's tasks (e46c09b).
#: the figures each drill must put beside a ground truth, through the AWS API as directly
WITH_TRUTH = {
    **FAILOVER_WITH_TRUTH,
    "test_service_returns_to_desired_count": ("ECS Scale-up",),
    "test_reboot_primary_under_writes": ("Total RTO",),
}


def _drdrill(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drdrill.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[dict[str, Any]]:
    with short_folder("drdrill-aws-") as folder:
        config = write_config(
            folder,
            block=BLOCK,
            # a crash reboot that short could fall between probe samples: no effect seen
            sandbox_extra="aws_api: true\n    timings: {db_reboot_downtime: 0.5s}",
        )
        up = _drdrill("sandbox", "up", "--config", str(config))
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            status = json.loads(
                _drdrill("sandbox", "status", "--json", "--config", str(config)).stdout
            )
            yield {"config": config, "folder": folder, "status": status}
        finally:
            _drdrill("sandbox", "down", "--config", str(config))


def _status(sandbox: dict[str, Any]) -> dict[str, Any]:
    answer = _drdrill("sandbox", "status", "--json", "--config", str(sandbox["config"]))
    status: dict[str, Any] = json.loads(answer.stdout)
    return status


@pytest.fixture(scope="module")
def clients(sandbox: dict[str, Any]) -> Callable[[str, str], Any]:
    aws = sandbox["status"]["aws"]
    session = boto3.Session(
        aws_access_key_id=aws["env"]["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws["env"]["AWS_SECRET_ACCESS_KEY"],
    )

    def client(service: str, region: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=aws["endpoint_url"])

    return client


def _tasks(ecs: Any) -> list[dict[str, Any]]:
    arns = ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE)["taskArns"]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []


def _ip(task: dict[str, Any]) -> str:
    return next(
        d["value"]
        for a in task["attachments"]
        for d in a["details"]
        if d["name"] == "privateIPv4Address"
    )


def _until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def _available_again(rds: Any, db_id: str) -> None:
    def status() -> str:
        instance = rds.describe_db_instances(DBInstanceIdentifier=db_id)["DBInstances"][0]
        return str(instance["DBInstanceStatus"])

    _until("the instance is available again", lambda: status() == "available", timeout=90)


def _processes_listening_on(ip: str) -> list[int]:
    pids = []
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.ip == ip and conn.pid:
            pids.append(conn.pid)
    return pids


def test_the_stack_is_described_as_the_processes_run(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    status = sandbox["status"]
    ecs = clients("ecs", "eu-west-1")
    running = [t for t in _tasks(ecs) if t["lastStatus"] == "RUNNING"]
    real = {t["addr"].split(":")[0] for t in status["regions"]["primary"]["ecs"]["tasks"]}
    assert {_ip(t) for t in running} == real and len(real) == 2
    assert all(t["startedAt"] for t in running)
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert (service["desiredCount"], service["runningCount"]) == (2, 2)
    dr = clients("ecs", "eu-central-1").describe_services(cluster=CLUSTER, services=[SERVICE])
    assert dr["services"][0]["desiredCount"] == 0
    # the load balancers' own DNS names, as the API reports them, resolve in the sandbox DNS
    target = status["aws"]["target"]
    assert target["dns"]["name_servers"] == [status["dns"]["address"].split(":")[0]]
    assert target["real_recovery"] is True
    elb = clients("elbv2", "eu-west-1")
    health = elb.describe_target_health(TargetGroupArn=target["primary"]["alb"]["target_group_arn"])
    assert {
        h["Target"]["Id"]: h["TargetHealth"]["State"] for h in health["TargetHealthDescriptions"]
    } == {ip: "healthy" for ip in real}


def test_the_readiness_checks_run_through_the_api(sandbox: dict[str, Any]) -> None:
    """The monthly readiness suite on the AWS path: every check through the API passes on a
    stack at its baseline (RDS's replication, CloudWatch's ReplicaLag within the RPO, the DR
    service at pilot light, both alarms wired to notifications, the failover record on a
    healthy primary, the assets bucket replicating); the host-level check, which needs the
    stack's processes on this host as the sandbox target has them, is skipped for its
    capability. It runs before any test that stops replication: RDS publishes a ReplicaLag of
    -1 while replication is not active, and readiness fails on a -1 in the latest minute (CI
    ran it after the failback's rebuild: "was -1 in the minute from 15:03 UTC")."""
    run_dir = Path(sandbox["status"]["run_dir"])
    generated = run_dir.parent / f"{run_dir.name}-aws.yaml"
    result, report = run_suites(
        generated, sandbox["folder"] / "readiness-reports", "suites/test_readiness.py"
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    outcomes = {t["nodeid"].split("::", 1)[1]: t["outcome"] for t in report["tests"]}
    host = "test_database_and_load_balancer_processes_on_the_host"
    assert outcomes.pop(host) == "skipped", report["tests"]
    assert len(outcomes) == 7 and set(outcomes.values()) == {"passed"}, outcomes
    (lag,) = [p for p in report["phases"] if p["kind"] == "rpo" and p["name"] == "Database"]
    # CloudWatch's whole seconds: an interval that starts at zero or above, within the RPO
    assert lag["measured"] - lag["uncertainty"] >= 0, lag
    assert lag["status"] == "met", lag


def test_stop_task_ends_the_real_process_and_the_replacement_is_a_new_task(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    ecs = clients("ecs", "eu-west-1")
    elb = clients("elbv2", "eu-west-1")
    group = sandbox["status"]["aws"]["target"]["primary"]["alb"]["target_group_arn"]
    victim = next(t for t in _tasks(ecs) if t["lastStatus"] == "RUNNING")
    ip = _ip(victim)
    pids = _processes_listening_on(ip)
    assert pids, f"no process listens on {ip}"
    ecs.stop_task(cluster=CLUSTER, task=victim["taskArn"], reason="drill: stop one task")

    _until("the task's process ends", lambda: not any(psutil.pid_exists(p) for p in pids))
    stopped = _until(
        "the task is STOPPED",
        lambda: next(
            (
                t
                for t in _tasks(ecs)
                if t["taskArn"] == victim["taskArn"] and t["lastStatus"] == "STOPPED"
            ),
            None,
        ),
    )
    assert stopped["stoppedReason"] == "drill: stop one task"
    assert stopped["stoppedAt"] > stopped["startedAt"]
    # the scheduler replaces it: a new task (a new ARN), started after the stop, healthy behind
    # the load balancer once HAProxy's own checks pass
    replacement = _until(
        "a replacement task runs",
        lambda: next(
            (
                t
                for t in _tasks(ecs)
                if t["taskArn"] != victim["taskArn"]
                and t["lastStatus"] == "RUNNING"
                and t["startedAt"] > stopped["stoppedAt"]
            ),
            None,
        ),
    )
    new_ip = _ip(replacement)
    _until(
        "the replacement is healthy in the target group",
        lambda: any(
            h["Target"]["Id"] == new_ip and h["TargetHealth"]["State"] == "healthy"
            for h in elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        ),
    )
    events = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["events"]
    messages = [e["message"] for e in events]
    assert any(
        f"has stopped 1 running tasks: (task {victim['taskArn'].rsplit('/', 1)[-1]})" in m
        for m in messages
    )
    assert any(
        f"has started 1 tasks: (task {replacement['taskArn'].rsplit('/', 1)[-1]})" in m
        for m in messages
    )


def _haproxy_states(sandbox: dict[str, Any]) -> dict[str, str]:
    """HAProxy's own word on the primary's servers (address -> UP/DOWN/...), read on its admin
    socket with the standard library: no drdrill code between the test and HAProxy."""
    path = Path(sandbox["status"]["run_dir"]) / "alb-primary" / "alb-primary.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        sock.connect(str(path))
        sock.sendall(b"show stat -1 4 -1\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    lines = reply.decode().splitlines()
    header = lines[0][2:].split(",")
    i_addr, i_status = header.index("addr"), header.index("status")
    states = {}
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) > max(i_addr, i_status) and fields[i_addr]:
            states[fields[i_addr].rsplit(":", 1)[0]] = fields[i_status].split()[0]
    return states


def test_a_read_of_target_health_is_as_new_as_haproxys_own_state(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    """The moment HAProxy's own stats call the replacement UP, DescribeTargetHealth asked next
    says healthy, and ListTasks/DescribeTasks list its task RUNNING: the API answers from the
    processes as they are, not from the reconciler's last pass (which lagged HAProxy by up to
    a pass, and a drill's ECS Scale-up with it: 122 ms late in CI)."""
    ecs = clients("ecs", "eu-west-1")
    elb = clients("elbv2", "eu-west-1")
    group = sandbox["status"]["aws"]["target"]["primary"]["alb"]["target_group_arn"]
    before = {t["taskArn"]: _ip(t) for t in _tasks(ecs) if t["lastStatus"] == "RUNNING"}
    victim = next(iter(before))
    ecs.stop_task(cluster=CLUSTER, task=victim, reason="drill: freshness")
    old = set(before.values()) - {before[victim]}
    # the victim's address leaves UP first (a replacement may come back on it)
    _until(
        "HAProxy takes the stopped task out",
        lambda: _haproxy_states(sandbox).get(before[victim]) != "UP",
    )
    deadline = time.monotonic() + 30
    seen = 0
    while time.monotonic() < deadline:
        up = {ip for ip, state in _haproxy_states(sandbox).items() if state == "UP"} - old
        if up:
            (new_ip,) = up
            health = elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
            states = {h["Target"]["Id"]: h["TargetHealth"]["State"] for h in health}
            assert states.get(new_ip) == "healthy", (new_ip, states)
            running = {_ip(t) for t in _tasks(ecs) if t["lastStatus"] == "RUNNING"}
            assert new_ip in running, (new_ip, running)
            seen += 1
            break
        time.sleep(0.005)
    assert seen, "HAProxy never called a replacement UP"


def _alb_dimensions(clients: Callable[[str, str], Any], target: dict[str, Any], key: str) -> Any:
    """A region's load balancer metric dimensions (TargetGroup, LoadBalancer)."""
    elbv2 = clients("elbv2", target[key]["region"])
    lb = elbv2.describe_load_balancers(Names=[target[key]["alb"]["name"]])["LoadBalancers"][0]
    return [
        {"Name": "TargetGroup", "Value": target[key]["alb"]["target_group_arn"].split(":")[-1]},
        {"Name": "LoadBalancer", "Value": lb["LoadBalancerArn"].split(":loadbalancer/")[-1]},
    ]


def _healthy_host_count(
    clients: Callable[[str, str], Any], target: dict[str, Any], key: str, since: datetime
) -> list[float]:
    """The region's HealthyHostCount datapoints since ``since`` (one a second, in order)."""
    answer = clients("cloudwatch", target[key]["region"]).get_metric_statistics(
        Namespace="AWS/ApplicationELB",
        MetricName="HealthyHostCount",
        Dimensions=_alb_dimensions(clients, target, key),
        StartTime=since,
        EndTime=max(datetime.now(UTC), since) + timedelta(seconds=1),
        Period=1,
        Statistics=["Maximum"],
    )
    points = sorted(answer["Datapoints"], key=lambda p: p["Timestamp"])
    return [float(p["Maximum"]) for p in points]


def test_the_load_balancers_healthy_host_count_is_haproxys(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    """HealthyHostCount is published each second from HAProxy's own checks: the primary's
    two targets, none behind the DR load balancer in pilot light, then the one DR task that
    UpdateService starts."""
    target = _status(sandbox)["aws"]["target"]
    alarm = clients("cloudwatch", "eu-west-1").describe_alarms(
        AlarmNames=[target["primary"]["alarms"]["health"]]
    )["MetricAlarms"][0]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/ApplicationELB", "HealthyHostCount")
    assert alarm["Dimensions"] == _alb_dimensions(clients, target, "primary"), "not what it watches"
    # the previous test's replacement task counted (its last datapoint 2 again), then whole
    # seconds from the next one on: a datapoint of the second the replacement became healthy
    # may still say 1
    _until(
        "the primary's HealthyHostCount back at 2",
        lambda: (
            _healthy_host_count(
                clients, target, "primary", datetime.now(UTC) - timedelta(seconds=3)
            )[-1:]
            == [2.0]
        ),
    )
    since = datetime.now(UTC) + timedelta(seconds=1)
    for key, healthy in (("primary", 2.0), ("dr", 0.0)):
        points = _until(
            f"two {key} datapoints",
            lambda key=key: (p := _healthy_host_count(clients, target, key, since))[1:] and p,
        )
        assert set(points) == {healthy}, (key, points)
    ecs = clients("ecs", "eu-central-1")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=1)
    try:
        _until(
            "HealthyHostCount 1 behind the DR load balancer",
            lambda: _healthy_host_count(clients, target, "dr", since)[-1:] == [1.0],
        )
    finally:
        ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
    _until("the DR task stops", lambda: all(t["lastStatus"] == "STOPPED" for t in _tasks(ecs)))


def test_update_service_scales_a_region_for_real(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    ecs = clients("ecs", "eu-central-1")
    dr_subnet = sandbox["status"]["regions"]["dr"]["alb"]["address"].rsplit(".", 1)[0]
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=1)
    try:
        task = _until(
            "a DR task runs",
            lambda: next((t for t in _tasks(ecs) if t["lastStatus"] == "RUNNING"), None),
        )
        assert _ip(task).startswith(dr_subnet + ".")
        assert _processes_listening_on(_ip(task)), "the API says RUNNING but nothing listens"
    finally:
        ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
    _until(
        "the DR task stops",
        lambda: all(t["lastStatus"] == "STOPPED" for t in _tasks(ecs)),
    )


def _check_status(route53: Any, check_id: str) -> str:
    observations = route53.get_health_check_status(HealthCheckId=check_id)
    return str(observations["HealthCheckObservations"][0]["StatusReport"]["Status"])


def test_route53s_health_check_status_is_what_its_checkers_see(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    """GetHealthCheckStatus reports each failover record's health check as a checker requesting
    its load balancer's health path finds it (moto reports "Success" whatever the endpoint
    does): the primary's passes, DR's in pilot light (no task behind its balancer) fails with
    HAProxy's 503 until DR runs a task, and fails again once it runs none."""
    route53 = clients("route53", "us-east-1")
    names = sandbox["status"]["aws"]["target"]["route53"]
    record = names["record_name"]
    zone = (
        names.get("zone_id")
        or (
            route53.list_hosted_zones_by_name(DNSName=record.split(".", 1)[1])["HostedZones"][0][
                "Id"
            ]
        )
    )
    sets = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    checks = {
        r["Failover"]: r["HealthCheckId"]
        for r in sets
        if r["Name"].rstrip(".") == record.rstrip(".") and "HealthCheckId" in r
    }
    assert set(checks) == {"PRIMARY", "SECONDARY"}, sets
    assert _check_status(route53, checks["PRIMARY"]).startswith("Success: HTTP Status Code 200")
    assert health_status([_check_status(route53, checks["PRIMARY"])]) == "HEALTHY"

    # the checkers report what they last saw: a DR task an earlier test ran and stopped may
    # still be their last observation (CI: "Success: HTTP Status Code 200, OK" just after)
    def dr_failing() -> str | None:
        status = _check_status(route53, checks["SECONDARY"])
        return status if status.startswith("Failure") else None

    dr = _until("DR's health check fails in pilot light", dr_failing)
    assert dr.startswith("Failure: HTTP Status Code 503"), dr
    assert health_status([dr]) == "UNHEALTHY"
    ecs = clients("ecs", "eu-central-1")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=1)
    try:
        _until(
            "DR's health check passes once a task runs behind its balancer",
            lambda: _check_status(route53, checks["SECONDARY"]).startswith("Success"),
        )
    finally:
        ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
    _until(
        "DR's health check fails again with no task",
        lambda: _check_status(route53, checks["SECONDARY"]).startswith("Failure"),
    )
    _until(
        "the DR task stops",
        lambda: all(t["lastStatus"] == "STOPPED" for t in _tasks(ecs)),
    )


def test_reboot_db_instance_restarts_the_real_mariadbd(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    rds = clients("rds", "eu-west-1")
    db_id = sandbox["status"]["aws"]["target"]["primary"]["rds"]["instance_id"]
    pid = _status(sandbox)["regions"]["primary"]["rds"]["pid"]
    assert psutil.pid_exists(pid)
    rds.reboot_db_instance(DBInstanceIdentifier=db_id)
    seen = rds.describe_db_instances(DBInstanceIdentifier=db_id)["DBInstances"][0]
    assert seen["DBInstanceStatus"] == "rebooting"
    _available_again(rds, db_id)
    assert not psutil.pid_exists(pid), "the old mariadbd still runs: nothing was rebooted"
    assert _status(sandbox)["regions"]["primary"]["rds"]["running"]
    events = rds.describe_events(SourceIdentifier=db_id, SourceType="db-instance")["Events"]
    messages = [e["Message"] for e in events]
    assert "DB instance shutdown" in messages and "DB instance restarted" in messages
    shutdown = next(e["Date"] for e in events if e["Message"] == "DB instance shutdown")
    restarted = next(e["Date"] for e in events if e["Message"] == "DB instance restarted")
    assert restarted > shutdown


def test_a_reboot_of_a_rebooting_instance_is_refused_as_rds_does(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    rds = clients("rds", "eu-west-1")
    db_id = sandbox["status"]["aws"]["target"]["primary"]["rds"]["instance_id"]
    rds.reboot_db_instance(DBInstanceIdentifier=db_id)
    with pytest.raises(rds.exceptions.ClientError) as refused:
        rds.reboot_db_instance(DBInstanceIdentifier=db_id)
    assert refused.value.response["Error"]["Code"] == "InvalidDBInstanceState"
    _available_again(rds, db_id)


def test_dr_deleted_and_rebuilt_through_the_api(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    """DeleteDBInstance of DR's replica (it takes no writes): moto forgets it, and a reboot of it
    is answered DBInstanceNotFound, as RDS answers (it was a KeyError and a 500 of the
    endpoint); CreateDBInstanceReadReplica from the primary rebuilds the real mariadbd as its
    replica, replicating again."""
    target = sandbox["status"]["aws"]["target"]
    rds = clients("rds", "eu-central-1")
    dr_id = target["dr"]["rds"]["instance_id"]
    primary = clients("rds", "eu-west-1").describe_db_instances(
        DBInstanceIdentifier=target["primary"]["rds"]["instance_id"]
    )["DBInstances"][0]
    rds.delete_db_instance(DBInstanceIdentifier=dr_id, SkipFinalSnapshot=True)
    with pytest.raises(ClientError) as gone:
        rds.reboot_db_instance(DBInstanceIdentifier=dr_id)
    assert gone.value.response["Error"]["Code"] == "DBInstanceNotFound", gone.value.response
    rds.create_db_instance_read_replica(
        DBInstanceIdentifier=dr_id,
        SourceDBInstanceIdentifier=primary["DBInstanceArn"],
        SourceRegion="eu-west-1",
    )

    def replicating() -> bool:
        instance = rds.describe_db_instances(DBInstanceIdentifier=dr_id)["DBInstances"][0]
        infos = instance.get("StatusInfos") or []
        return instance["DBInstanceStatus"] == "available" and any(
            i.get("Status") == "replicating" for i in infos
        )

    _until("DR replicates the primary again", replicating, timeout=90)
    assert _status(sandbox)["regions"]["dr"]["rds"]["replication"] == {"io": True, "sql": True}


def test_the_health_alarm_and_its_history_are_the_monitors(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    cloudwatch = clients("cloudwatch", "eu-west-1")
    ecs = clients("ecs", "eu-west-1")
    name = sandbox["status"]["aws"]["target"]["primary"]["alarms"]["health"]

    def state() -> str:
        return str(cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])

    # the primary service scaled to nothing: the alarm goes off, and clears when it is back
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
    try:
        _until("the health alarm goes off", lambda: state() == "ALARM")
    finally:
        ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=2)
    _until("the health alarm clears", lambda: state() == "OK")
    monitor = _status(sandbox)["alarm"]
    assert monitor["name"] == name
    alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert alarm["StateValue"] == monitor["state"]
    items = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")[
        "AlarmHistoryItems"
    ]
    # every change the monitor made, at its moment (CloudWatch keeps milliseconds)
    api = sorted((i["Timestamp"].timestamp(), json.loads(i["HistoryData"])) for i in items)
    assert len(api) == len(monitor["history"]) >= 2
    for (when, data), change in zip(api, monitor["history"], strict=True):
        assert data["newState"]["stateValue"] == change["state"]
        assert abs(when - datetime.fromisoformat(change["utc"]).timestamp()) < 0.001


def test_alarm_actions_are_the_failover_mode_and_invoke_runs_the_dr_automation(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    target = sandbox["status"]["aws"]["target"]
    cloudwatch = clients("cloudwatch", "eu-west-1")
    alarm = target["primary"]["alarms"]["health"]
    assert _status(sandbox)["mode"] == "manual"
    assert not cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["ActionsEnabled"]
    cloudwatch.enable_alarm_actions(AlarmNames=[alarm])
    _until(
        "the sandbox follows the alarm's actions", lambda: _status(sandbox)["mode"] == "automated"
    )
    cloudwatch.disable_alarm_actions(AlarmNames=[alarm])
    _until("and back", lambda: _status(sandbox)["mode"] == "manual")

    # the DR Lambda, invoked as the on-call does: its code (boto3 calls to the API, which the
    # sandbox acts on) really fails the stack over
    truth = Path(sandbox["status"]["run_dir"]) / "truth.jsonl"
    since = len(truth.read_text().splitlines())
    answer = clients("lambda", "eu-west-1").invoke(
        FunctionName=target["primary"]["lambda_function"],
        Payload=json.dumps({"trigger": "manual", "reason": "disaster_recovery"}).encode(),
    )
    result = json.loads(answer["Payload"].read())
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer, result
    assert result["status"] == "completed", result
    status = _status(sandbox)
    assert status["failover"] == "dr" and status["dns"]["active"] == "dr"
    assert status["regions"]["dr"]["ecs"]["running"] == target["dr"]["ecs"]["scale_to"]
    # what AWS keeps of it: the function's log, the promotion event, the record change
    logs = clients("logs", "eu-west-1").filter_log_events(
        logGroupName=f"/aws/lambda/{target['primary']['lambda_function']}"
    )["events"]
    lines = [e["message"] for e in logs]
    assert any(line.startswith("START RequestId: ") for line in lines), lines
    change = next(m.group(0) for line in lines if (m := re.search(r"/change/\w+", line)))
    got = clients("route53", "us-east-1").get_change(Id=change)["ChangeInfo"]
    assert got["Status"] == "INSYNC"
    rds = clients("rds", "eu-central-1")
    replica = rds.describe_db_instances(DBInstanceIdentifier=target["dr"]["rds"]["instance_id"])
    assert "ReadReplicaSourceDBInstanceIdentifier" not in replica["DBInstances"][0]
    events = rds.describe_events(
        SourceIdentifier=target["dr"]["rds"]["instance_id"], SourceType="db-instance"
    )["Events"]
    assert any("Promoted Read Replica" in e["Message"] for e in events)
    # the function's code made the calls, and the sandbox acted on them
    recorded = [json.loads(line) for line in truth.read_text().splitlines()[since:]]
    calls = [e["call"] for e in recorded if e["event"] == "api_request"]
    for call in ("rds:PromoteReadReplica", "ecs:UpdateService", "route53:ChangeResourceRecordSets"):
        assert call in calls, calls
    invoked = [e["trigger"] for e in recorded if e["event"] == "automation_invoked"]
    assert invoked == ["dr-lambda"], invoked
    # each call is told by the key it was signed with, as CloudTrail tells them: the Invoke is
    # this test's, the failover's calls the function's own (its role's key, not the sandbox's)
    keys = {(e["call"], e["access_key"]) for e in recorded if e["event"] == "api_request"}
    ours = status["aws"]["env"]["AWS_ACCESS_KEY_ID"]
    assert ("lambda:Invoke", ours) in keys, keys
    function_keys = {key for call, key in keys if call != "lambda:Invoke"}
    assert len(function_keys) == 1 and ours not in function_keys, keys
    function = clients("lambda", "eu-west-1").get_function_configuration(
        FunctionName=target["primary"]["lambda_function"]
    )
    assert function["Handler"] == "dr_lambda.handler"
    record = _primary_record(clients, target)
    assert record["AliasTarget"]["DNSName"].rstrip(".") == target["dr"]["alb"]["dns_name"]
    assert record.get("HealthCheckId"), "the function's UPSERT dropped the health check"
    assert function["Environment"]["Variables"]["DB_REPLICA"] == target["dr"]["rds"]["instance_id"]
    # back to the baseline for the next test: the runbook's failback
    back = _drdrill("sandbox", "failback", "--config", str(sandbox["config"]), timeout=300)
    assert back.returncode == 0, back.stdout + back.stderr


def _primary_record(clients: Callable[[str, str], Any], target: dict[str, Any]) -> Any:
    """The primary failover record as Route53 holds it."""
    name = target["route53"]["record_name"].rstrip(".") + "."
    records = clients("route53", "us-east-1").list_resource_record_sets(
        HostedZoneId=target["route53"]["zone_id"]
    )["ResourceRecordSets"]
    return next(r for r in records if r["Name"] == name and r.get("SetIdentifier") == "primary")


def _cli_env(status: dict[str, Any]) -> dict[str, str]:
    """The environment a team's aws-CLI script gets against the sandbox: this environment
    without its own AWS settings, the sandbox's credentials, ``AWS_ENDPOINT_URL``, and this
    Python's ``aws`` first on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(status["aws"]["env"])
    env["AWS_ENDPOINT_URL"] = status["aws"]["endpoint_url"]
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask 169.254.169.254
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_the_runbooks_aws_cli_scripts_fail_the_stack_over_through_the_api(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    """``AWS_ENDPOINT_URL=<sandbox> automated-failover.sh``: the runbook's failover as aws CLI
    calls (the real ``aws`` of this Python), and the stack really fails over; then the
    post-failover checks (``test-dr.sh``) pass, and the runbook's failback (``failback.sh``, aws
    CLI calls too) brings it back: the primary rebuilt from DR, promoted, DR a replica again."""
    status = _status(sandbox)
    target = status["aws"]["target"]
    scripts = resources.files("drdrill") / "scripts" / "aws"
    env = _cli_env(status)
    truth = Path(status["run_dir"]) / "truth.jsonl"
    since = len(truth.read_text().splitlines())
    check = _primary_record(clients, target).get("HealthCheckId")
    assert check, "the primary failover record has a health check"

    failover = subprocess.run(
        [str(scripts / "automated-failover.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failover.returncode == 0, failover.stdout + failover.stderr
    after = _status(sandbox)
    assert after["dns"]["active"] == "dr", after["dns"]
    assert after["regions"]["dr"]["rds"]["read_only"] is False
    assert after["regions"]["dr"]["ecs"]["running"] == target["dr"]["ecs"]["scale_to"]
    # every step reached the stack as a call of its AWS API, none through drdrill's own
    events = [json.loads(line) for line in truth.read_text().splitlines()[since:]]
    calls = [e["call"] for e in events if e["event"] == "api_request"]
    for call in ("rds:PromoteReadReplica", "ecs:UpdateService", "route53:ChangeResourceRecordSets"):
        assert call in calls, calls
    assert not [e for e in events if e["event"] == "control_request"], "drdrill's API was used"
    invoked = [e for e in events if e["event"] == "automation_invoked"]
    assert [e["trigger"] for e in invoked] == ["aws-api"], invoked
    # what RDS and Route53 say of it
    replica = clients("rds", "eu-central-1").describe_db_instances(
        DBInstanceIdentifier=target["dr"]["rds"]["instance_id"]
    )["DBInstances"][0]
    assert replica["DBInstanceStatus"] == "available"
    assert "ReadReplicaSourceDBInstanceIdentifier" not in replica
    record = _primary_record(clients, target)
    assert record["AliasTarget"]["DNSName"].rstrip(".") == target["dr"]["alb"]["dns_name"]
    assert record.get("HealthCheckId") == check, "the UPSERT dropped the record's health check"
    (change,) = re.findall(r'"Id": "(/change/[A-Za-z0-9]+)"', failover.stdout)
    assert clients("route53", "us-east-1").get_change(Id=change)["ChangeInfo"]["Status"] == "INSYNC"

    # the post-failover checks, as aws CLI calls and HTTP against the DR load balancer
    dr_lb = after["regions"]["dr"]["alb"]["address"].rsplit(":", 1)[0]
    checks = subprocess.run(
        [str(scripts / "test-dr.sh")],
        env={**env, "HTTP_PORT": str(target["http_port"]), "RESOLVE": dr_lb},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checks.returncode == 0, checks.stdout + checks.stderr
    assert checks.stderr.count("ok: ") == 7, checks.stderr

    # the runbook's failback, as aws CLI calls too: the command the generated drill config
    # runs (with the sandbox's DNS TTL and the primary's desired count in its environment)
    generated = yaml.safe_load(Path(status["aws"]["config"]).read_text())
    command = shlex.split(generated["targets"]["aws"]["scripts"]["failback"])
    assert command[-1].endswith("scripts/aws/failback.sh"), command
    since = len(truth.read_text().splitlines())
    back = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert back.returncode == 0, back.stdout + back.stderr
    after = _status(sandbox)
    assert after["dns"]["active"] == "primary", after["dns"]
    primary, dr = after["regions"]["primary"], after["regions"]["dr"]
    assert primary["rds"]["read_only"] is False and dr["rds"]["read_only"] is True
    assert dr["rds"]["replication"] == {"io": True, "sql": True}, "DR replicates the primary"
    assert primary["ecs"]["running"] == 2 and dr["ecs"] == {"desired": 0, "running": 0, "tasks": []}
    events = [json.loads(line) for line in truth.read_text().splitlines()[since:]]
    calls = [e["call"] for e in events if e["event"] == "api_request"]
    for call in (
        "rds:DeleteDBInstance",
        "rds:CreateDBInstanceReadReplica",
        "rds:PromoteReadReplica",
        "ecs:UpdateService",
        "route53:ChangeResourceRecordSets",
    ):
        assert call in calls, calls
    assert not [e for e in events if e["event"] == "control_request"], "drdrill's API was used"
    steps = [e["event"] for e in events if e["component"] == "dr-automation"]
    for step in ("failback_started", "primary_reseeded", "primary_writable", "dr_reseeded"):
        assert step in steps, steps
    # what RDS and Route53 say of it
    rds_primary = clients("rds", "eu-west-1").describe_db_instances(
        DBInstanceIdentifier=target["primary"]["rds"]["instance_id"]
    )["DBInstances"][0]
    assert rds_primary["DBInstanceStatus"] == "available"
    assert "ReadReplicaSourceDBInstanceIdentifier" not in rds_primary
    replica = clients("rds", "eu-central-1").describe_db_instances(
        DBInstanceIdentifier=target["dr"]["rds"]["instance_id"]
    )["DBInstances"][0]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == rds_primary["DBInstanceArn"]
    record = _primary_record(clients, target)
    assert record["AliasTarget"]["DNSName"].rstrip(".") == target["primary"]["alb"]["dns_name"]
    assert record.get("HealthCheckId") == check
    # the database that takes the writes is never deleted through the API
    with pytest.raises(ClientError, match="takes the writes"):
        clients("rds", "eu-west-1").delete_db_instance(
            DBInstanceIdentifier=target["primary"]["rds"]["instance_id"], SkipFinalSnapshot=True
        )


def test_the_runbooks_aws_cli_checks_fail_on_a_stack_that_has_not_failed_over(
    sandbox: dict[str, Any],
) -> None:
    """``test-dr.sh`` against the baseline (DR in pilot light) names what does not hold."""
    status = _status(sandbox)
    env = _cli_env(status)
    checks = subprocess.run(
        [str(resources.files("drdrill") / "scripts" / "aws" / "test-dr.sh")],
        env={**env, "HTTP_PORT": str(status["aws"]["target"]["http_port"]), "ENDPOINTS": "/"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checks.returncode == 1, checks.stdout + checks.stderr
    assert "FAILED: visitor-analytics-db-replica promoted" in checks.stderr, checks.stderr
    assert "FAILED: app.visitor-analytics.test points at" in checks.stderr, checks.stderr


def test_the_aws_drills_run_through_the_api_and_agree_with_the_ground_truth(
    sandbox: dict[str, Any],
) -> None:
    run_dir = Path(sandbox["status"]["run_dir"])
    generated = run_dir.parent / f"{run_dir.name}-aws.yaml"
    assert generated.is_file(), "sandbox up writes the config of the AWS path"
    assert _status(sandbox)["aws"]["config"] == str(generated), "status names it"
    data = yaml.safe_load(generated.read_text())
    assert data["target"] == "sandbox-aws"
    result, report = run_suites(
        generated,
        sandbox["folder"] / "aws-reports",
        "suites/test_ecs_task_failure.py",
        "suites/test_rds_reboot.py",
        "suites/test_region_failover.py",
        "suites/test_failback.py",
    )
    assert report["target"]["name"] == "sandbox-aws", report["target"]
    outcomes = {t["nodeid"].split("::", 1)[1]: t["outcome"] for t in report["tests"]}
    # every drill ran (none skipped): ECS task failure twice, RDS reboot clean and Multi-AZ,
    # region failover on its three triggers, failback
    assert len(outcomes) == 8 and "skipped" not in outcomes.values(), outcomes
    # AWS's own records beside the observed figures: ECS's task times, RDS's restart event
    named = {(p["test"].rsplit("::", 1)[-1], p["name"]): p for p in report["phases"]}
    ended = {
        t["nodeid"].rsplit("::", 1)[-1]: (t["outcome"], t.get("message")) for t in report["tests"]
    }
    ecs_record, rds_record = "task replacement (ECS's record)", "database restart (RDS's record)"
    for drill, figure in (
        ("test_service_returns_to_desired_count[one-task]", ecs_record),
        ("test_service_returns_to_desired_count[half-the-tasks]", ecs_record),
        ("test_reboot_primary_under_writes[clean]", rds_record),
        ("test_reboot_primary_under_writes[crash]", rds_record),
    ):
        info = named.get((drill, figure))
        assert info is not None, (drill, figure, ended.get(drill))
        assert info["objective"] is None and info["measured"] > 0, info
        print(f"{drill:42} {figure:30} {info['measured']:.3f} ± {info['uncertainty']:.3f} s")
    bad, checked = [], 0
    for phase in report["phases"]:
        drill = phase["test"].rsplit("::", 1)[-1].split("[", 1)[0]
        wanted = WITH_TRUTH.get(drill, ())
        if phase["name"] not in wanted:
            continue
        if phase["name"] == "Decision" and (
            "[script]" in phase["test"] or "[lambda]" in phase["test"]
        ):
            continue  # the trigger is our own action: nothing else records its moment
        assert phase["truth_s"] is not None, (phase["test"], phase["name"], phase["truth_source"])
        if vague_truth(phase):  # the observer saw the DR balancer flap: not counted
            print(
                f"{phase['test'].rsplit('::', 1)[-1]:42} {phase['name']:30} truth ± "
                f"{phase['truth_uncertainty'] * 1000:.0f} ms: too vague to hold"
            )
            continue
        checked += 1
        error = phase["measured"] - phase["truth_s"]
        off = truth_error(phase, TOLERANCE_S)
        print(
            f"{phase['test'].rsplit('::', 1)[-1]:42} {phase['name']:30} {error * 1000:+8.1f} ms"
            f" (± {phase['uncertainty'] * 1000:.0f} ms, truth ± "
            f"{(phase.get('truth_uncertainty') or 0) * 1000:.0f} ms)"
            f"{'  OFF' if off is not None else ''}"
        )
        if off is not None:
            # all a reader of CI's tail needs: the figure, what it states, the truth and whence
            bad.append(
                (
                    phase["test"].rsplit("::", 1)[-1],
                    phase["name"],
                    f"{phase['measured']:.3f} ± {phase['uncertainty']:.3f} s",
                    f"truth {phase['truth_s']:.3f} s ({phase['truth_source']})",
                )
            )
    why = {t["nodeid"].split("::", 1)[1]: (t["outcome"], t.get("message")) for t in report["tests"]}
    # of 26 figures with a truth, at most two not held (no truth, or one too vague)
    assert checked >= 24, (checked, why)
    assert not bad, (
        f"figures off their ground truth by more than {TOLERANCE_S} s and the truth's own "
        f"uncertainty: {bad}"
    )
    # the drill's verdict stands on the objectives, which a busy machine may miss; what this
    # test holds is that the AWS path ran to its figures and they match what really happened:
    # a drill may fail only by missing an objective, never by an error of its own or the stack's
    assert result.returncode in (0, 1), result.stdout[-4000:] + result.stderr[-2000:]
    for test in report["tests"]:
        if test["outcome"] != "passed":
            assert test["outcome"] == "failed", test
            assert str(test.get("message", "")).startswith(("phase '", "data loss '")), test


def test_the_exercise_runs_through_the_api_and_leaves_the_stack_at_its_baseline(
    sandbox: dict[str, Any],
) -> None:
    """``drdrill exercise`` on the AWS target: the region down, the alarm, the runbook's
    aws-CLI failover, the checks through the public name, the failback, every step ok and the
    fault journaled then reverted, with the sandbox at its baseline afterwards."""
    run_dir = Path(sandbox["status"]["run_dir"])
    generated = run_dir.parent / f"{run_dir.name}-aws.yaml"
    out = sandbox["folder"] / "exercise"
    journal = sandbox["folder"] / "journal.jsonl"
    before = journal.read_text().splitlines() if journal.exists() else []
    # a guard against a hang, not a limit: the exercise runs two aws-CLI scripts, and under
    # two busy loops the failback drill's aws-CLI failback alone ran 142 s (this had 180 s)
    result = _drdrill(
        "exercise", "--config", str(generated), "--yes", "--out", str(out), timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "target sandbox-aws, trigger script" in result.stdout
    (found,) = out.glob("exercise-*.json")
    report = json.loads(found.read_text())
    assert report["outcome"] == "completed"
    assert [(s["name"], s["outcome"]) for s in report["steps"]] == [
        (name, "ok")
        for name in (
            "readiness",
            "region_down",
            "detection",
            "failover",
            "service_restored",
            "post_failover_checks",
            "data_loss",
            "restore_primary",
            "failback",
            "post_failback_checks",
        )
    ]
    steps = {s["name"]: s["detail"] for s in report["steps"]}
    # the AWS target's own region down (Route53 health check, ECS), not the sandbox's
    assert "fail route53 health check" in steps["region_down"], steps["region_down"]
    assert "scale ecs service" in steps["region_down"], steps["region_down"]
    assert "still down" not in report["severity"]["reason"], report["severity"]
    assert all(o["end_utc"] is not None for o in report["outages"]), report["outages"]
    metrics = {m["name"]: m for m in report["metrics"]}
    assert metrics["Detection Time"]["status"] == "met", metrics["Detection Time"]
    assert metrics["Resolution Time"]["status"] == "met", metrics["Resolution Time"]
    kinds: dict[str, str] = {}
    ops = []
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        kinds.setdefault(entry["id"], entry.get("kind", "?"))
        ops.append((entry["op"], kinds[entry["id"]]))
    # the alarm's actions set for the trigger, journaled like a drill's, then the region down;
    # both put back, newest first
    mode, region = "aws.cloudwatch.alarm_actions", "aws.region_down"
    assert ops[len(before) :] == [
        ("inject", mode),
        ("inject", region),
        ("reverted", region),
        ("reverted", mode),
    ], ops
    status = _status(sandbox)
    assert status["dns"]["active"] == "primary", status["dns"]
    assert status["regions"]["primary"]["state"] == "up"
    assert status["regions"]["dr"]["ecs"]["desired"] == 0


def test_the_static_assets_drill_times_real_copies_and_s3s_own_latency(
    sandbox: dict[str, Any],
) -> None:
    """The static assets drill through the API: each marker's copy is sent
    ``timings.s3_replication_delay`` after its write, across the inter-region link, and S3's
    ``ReplicationLatency`` is published as copies complete; the drill's worst lag and S3's own
    figure both lie near the delay and the link's latency."""
    run_dir = Path(sandbox["status"]["run_dir"])
    generated = run_dir.parent / f"{run_dir.name}-aws.yaml"
    result, report = run_suites(
        generated, sandbox["folder"] / "assets-reports", "suites/test_static_assets.py"
    )
    figures = {p["name"]: p for p in report["phases"]}
    (test,) = report["tests"]
    # the runbook's "Real-time" reads as 0 s, which no lag meets: missed, with the lag measured
    assert test["outcome"] in ("passed", "failed"), test
    if test["outcome"] == "failed":
        assert str(test.get("message", "")).startswith("data loss 'Static Assets'"), test
    worst = figures["Static Assets"]
    assert figures["static assets not replicated"]["measured"] == 0, result.stdout[-3000:]
    s3_own = figures["S3 ReplicationLatency (CloudWatch max)"]
    assert s3_own["objective"] is None
    print(
        f"worst marker lag {worst['measured']:.3f} ± {worst['uncertainty']:.3f} s; "
        f"S3 ReplicationLatency {s3_own['measured']:.3f} s"
    )
    # S3's figure is a copy's own latency: within the drill's worst lag (and its interval)
    assert 0 < s3_own["measured"] <= worst["measured"] + worst["uncertainty"] + 0.05, (
        s3_own,
        worst,
    )


def test_s3s_copies_cross_the_inter_region_link_and_wait_out_a_partition(
    sandbox: dict[str, Any], clients: Callable[[str, str], Any]
) -> None:
    """An asset put in the primary bucket while the regions are partitioned stays ``PENDING``
    and out of the DR bucket, however long past its copy's moment; once the link heals its
    copy crosses it (the link's S3 route carries its bytes) and completes.

    Last in the module: its held copy's ReplicationLatency (~1.5 s) is S3's maximum of its
    minute, which a static assets drill started in the same minute would read as its own."""
    status = _status(sandbox)
    aws = yaml.safe_load(Path(status["aws"]["config"]).read_text())["targets"]["aws"]
    source, destination = aws["primary"]["s3"]["bucket"], aws["dr"]["s3"]["bucket"]
    s3 = clients("s3", aws["primary"]["region"])
    host, port = status["control"].rsplit(":", 1)
    control = SandboxClient(int(port), host)
    route = "s3-primary-to-dr"
    carried = status["link"]["routes"][route]["bytes"]
    key, body = f"drdrill-test/held-{time.time_ns()}.json", b'{"held": true}' * 20
    control.call("partition_regions")
    try:
        s3.put_object(Bucket=source, Key=key, Body=body)
        time.sleep(1.5)  # 0.2 s copy delay, then held by the partition
        assert s3.head_object(Bucket=source, Key=key).get("ReplicationStatus") == "PENDING"
        with pytest.raises(ClientError):
            s3.head_object(Bucket=destination, Key=key)
    finally:
        control.call("heal_regions")
    try:
        _until(
            "the held copy completes",
            lambda: s3.head_object(Bucket=source, Key=key).get("ReplicationStatus") == "COMPLETED",
            timeout=15,
        )
        copy = s3.get_object(Bucket=destination, Key=key)
        assert copy["Body"].read() == body and copy.get("ReplicationStatus") == "REPLICA"
        assert _status(sandbox)["link"]["routes"][route]["bytes"] >= carried + len(body)
    finally:
        for bucket in (source, destination):  # every version: the buckets are versioned
            listed = s3.list_object_versions(Bucket=bucket, Prefix=key)
            for version in listed.get("Versions", []) + listed.get("DeleteMarkers", []):
                with contextlib.suppress(ClientError):
                    s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
