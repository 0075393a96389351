"""AWS FIS as the injection backend, against the moto server: the templates drdrill generates
from its faults, the FIS-backed fault's inject, journal and undo, and ``drdrill fis export``.

What moto (5.2) does with FIS: it stores templates and experiments, honours client tokens, and
moves an experiment one state on (pending, initiating, running, completed; stopping, stopped)
each time ``GetExperiment`` reads it, but it runs no action: no task stops, no network is cut.
So these tests assert what can be seen: each template against FIS's request shape (botocore's
model of CreateExperimentTemplate) and the actions, targets and parameters FIS documents; the
calls made, through the client factory's call log; the journal; the experiment's state; and the
undo. Where an experiment must still be running when the undo comes (a region down lasts),
the test slows moto's state machine down (its state manager; ``slow_experiments``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters

from drdrill.config import load_config
from drdrill.errors import ConfigError, SafetyError
from drdrill.faults import fault_class
from drdrill.faults.base import FaultInjector, recover
from drdrill.faults.journal import Journal
from drdrill.sandbox.aws.provision import MOTO_ACCOUNT, ProvisionedStack
from drdrill.targets.aws import ecs
from drdrill.targets.aws.faults import (
    AwsAccess,
    FailHealthCheck,
    RegionDown,
    ScaleServiceToZero,
    StopEcsTasks,
)
from drdrill.targets.aws.fis import (
    DRILL_FAULTS,
    TAG_FAULT,
    TAG_RUN,
    TAG_TOKEN,
    FisExperiment,
    TemplateBuilder,
    backed,
    experiment_for,
    export_templates,
)
from drdrill.targets.aws.safety import blast_problems
from drdrill.targets.aws.session import AwsClients
from drdrill.targets.aws.settings import AwsSettings
from drdrill.targets.aws.target import AwsTarget

ROLE = f"arn:aws:iam::{MOTO_ACCOUNT}:role/drdrill-fis"
DRDRILL = str(Path(sys.executable).parent / "drdrill")
#: FIS's request shape, from botocore's own model of the API
_FIS_MODEL = botocore.session.get_session().get_service_model("fis")
CREATE_SHAPE = _FIS_MODEL.operation_model("CreateExperimentTemplate").input_shape


def _settings(stack: ProvisionedStack, **extra: Any) -> dict[str, Any]:
    """The provisioned stack's targets.aws with a FIS role, and ``extra`` keys over it."""
    data = stack.settings.model_dump(mode="json", exclude_none=True)
    data["fis"] = {"role_arn": ROLE}
    data.update(extra)
    return data


def _config(tmp_path: Path, aws: dict[str, Any]) -> Path:
    path = tmp_path / "drdrill.yaml"
    path.write_text(yaml.safe_dump({"target": "aws", "targets": {"aws": aws}}))
    return path


def _target(tmp_path: Path, aws: dict[str, Any]) -> AwsTarget:
    return AwsTarget(load_config(_config(tmp_path, aws)))


def _fis(moto_endpoint: str, region: str = "eu-west-1") -> Any:
    """A FIS client of the test's own, outside the call log under test."""
    return AwsClients(endpoint_url=moto_endpoint).client("fis", region)


def _state_manager(endpoint: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/state-manager/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
    return json.loads(text) if text else None


@pytest.fixture
def slow_experiments(moto_endpoint: str) -> Iterator[None]:
    """moto moves an experiment on every second GetExperiment instead of every one.

    The test supplies what moto lacks: with moto's default an experiment is already over by the
    next read, while FIS keeps a region down's experiment running until it is stopped. Two
    reads a state leave it running when the undo first looks, so the undo has to stop it.
    """
    model = "fis::experiment"
    before = _state_manager(moto_endpoint, f"get-transition?model_name={model}")
    _state_manager(
        moto_endpoint,
        "set-transition",
        {"model_name": model, "transition": {"progression": "manual", "times": 2}},
    )
    yield
    _state_manager(moto_endpoint, "set-transition", {"model_name": model, "transition": before})


def _calls(aws: AwsClients, operation: str) -> list[dict[str, Any]]:
    return [c.params for c in aws.log.calls if c.service == "fis" and c.operation == operation]


def _status(moto_endpoint: str, experiment_id: str) -> str:
    """The experiment's state, read through ListExperiments: moto's GetExperiment moves it on."""
    pages = _fis(moto_endpoint).get_paginator("list_experiments").paginate()
    found = [e for page in pages for e in page["experiments"] if e["id"] == experiment_id]
    return str(found[0]["state"]["status"])


def _template_exists(moto_endpoint: str, template_id: str) -> bool:
    try:
        _fis(moto_endpoint).get_experiment_template(id=template_id)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
        return False
    return True


# --- the templates ----------------------------------------------------------------------------


def test_every_drill_fault_becomes_a_template_of_fis_shape(
    stack: ProvisionedStack, moto_endpoint: str
) -> None:
    settings = AwsSettings.model_validate(_settings(stack))
    aws = AwsClients(endpoint_url=moto_endpoint)
    templates, warnings = export_templates(settings, aws)
    by_name = {t.name: t.body for t in templates}
    assert list(by_name) == list(DRILL_FAULTS)
    p = stack.settings.primary
    guard = stack.primary.guard_alarm_arns[0]
    for name, body in by_name.items():
        # exactly CreateExperimentTemplate's input (what --cli-input-json reads), valid for it
        assert set(body) <= set(CREATE_SHAPE.members), name
        validate_parameters({**body, "clientToken": "t"}, CREATE_SHAPE)
        assert body["roleArn"] == ROLE
        # the primary's guard only: the DR region's guard is not in the experiment's region
        assert body["stopConditions"] == [{"source": "aws:cloudwatch:alarm", "value": guard}]
        assert body["tags"] == {"Name": f"drdrill-{name}", TAG_FAULT: name}
        for action in body["actions"].values():
            for target_name in action["targets"].values():
                assert target_name in body["targets"]
    tasks = {"cluster": p.ecs.cluster, "service": p.ecs.service}

    one = by_name["stop-one-task"]
    assert one["targets"] == {
        "service-tasks": {
            "resourceType": "aws:ecs:task",
            "parameters": tasks,
            "selectionMode": "COUNT(1)",
        }
    }
    (action,) = one["actions"].values()
    assert (action["actionId"], action["targets"]) == (
        "aws:ecs:stop-task",
        {"Tasks": "service-tasks"},
    )
    half = by_name["stop-half-the-tasks"]
    assert half["targets"]["service-tasks"]["selectionMode"] == "PERCENT(50)"

    for name, failover in (("reboot-clean", "false"), ("reboot-crash", "true")):
        body = by_name[name]
        assert body["targets"]["database"] == {
            "resourceType": "aws:rds:db",
            "resourceArns": [stack.primary.db_instance_arn],
            "selectionMode": "ALL",
        }
        (action,) = body["actions"].values()
        assert action["actionId"] == "aws:rds:reboot-db-instances"
        assert action["parameters"] == {"forceFailover": failover}
        assert action["targets"] == {"DBInstances": "database"}
    # the provisioned primary is single-AZ: FIS would fail a failover reboot of it
    assert warnings == [
        f"rds instance '{p.rds.instance_id}' is not multi-az: ForceFailover refused "
        "(FIS will fail the experiment)"
    ]

    down = by_name["region-down"]
    ec2 = aws.client("ec2", p.region)
    defaults = sorted(
        (s for s in ec2.describe_subnets()["Subnets"] if s.get("DefaultForAz")),
        key=lambda s: s["AvailabilityZone"],
    )[:2]  # the two the provisioned service runs in
    assert down["targets"]["service-tasks"]["selectionMode"] == "ALL"
    assert down["targets"]["region-subnets"] == {
        "resourceType": "aws:ec2:subnet",
        "resourceArns": [
            f"arn:aws:ec2:{p.region}:{MOTO_ACCOUNT}:subnet/{s['SubnetId']}" for s in defaults
        ],
        "selectionMode": "ALL",
    }
    actions = {a["actionId"]: a for a in down["actions"].values()}
    assert actions["aws:ecs:stop-task"]["targets"] == {"Tasks": "service-tasks"}
    cut = actions["aws:network:disrupt-connectivity"]
    assert cut["parameters"] == {"duration": "PT30M", "scope": "all"}
    assert cut["targets"] == {"Subnets": "region-subnets"}
    # the builder only read: nothing was created
    assert all(c.operation.startswith("Describe") for c in aws.log.calls)


def test_the_health_alarm_is_never_a_stop_condition(
    stack: ProvisionedStack, moto_endpoint: str
) -> None:
    p = stack.settings.primary
    settings = AwsSettings.model_validate(
        _settings(stack, stop_conditions={"guard_alarms": [p.alarms.health]})
    )
    builder = TemplateBuilder(settings, AwsClients(endpoint_url=moto_endpoint))
    conditions = builder.stop_conditions(p.region)
    assert conditions == [
        {"source": "aws:cloudwatch:alarm", "value": stack.primary.guard_alarm_arns[0]}
    ]
    assert stack.primary.health_alarm_arn not in json.dumps(conditions)


def test_no_guard_alarm_is_fis_source_none_and_a_missing_one_names_its_key(
    stack: ProvisionedStack, moto_endpoint: str
) -> None:
    data = _settings(stack)
    for key in ("primary", "dr"):
        data[key]["alarms"]["guards"] = []
    aws = AwsClients(endpoint_url=moto_endpoint)
    builder = TemplateBuilder(AwsSettings.model_validate(data), aws)
    assert builder.stop_conditions("eu-west-1") == [{"source": "none"}]

    data["stop_conditions"] = {"guard_alarms": ["no-such-alarm"]}
    builder = TemplateBuilder(AwsSettings.model_validate(data), aws, source="drill.yaml")
    with pytest.raises(ConfigError) as caught:
        builder.stop_conditions("eu-west-1")
    assert str(caught.value) == (
        "drill.yaml: targets.aws.stop_conditions.guard_alarms.0: "
        "guard alarm 'no-such-alarm' not found in eu-west-1"
    )


def test_the_fis_backend_needs_a_role(tmp_path: Path, stack: ProvisionedStack) -> None:
    data = _settings(stack, fault_backend="fis")
    data["fis"] = {"disrupt_duration": "10 minutes"}
    with pytest.raises(ConfigError, match=r"targets\.aws: fis\.role_arn is required"):
        _target(tmp_path, data)
    data["fis"] = {"role_arn": ROLE, "disrupt_duration": "10 s"}
    with pytest.raises(ConfigError, match=r"targets\.aws\.fis\.disrupt_duration: 10 s is not"):
        _target(tmp_path, data)


# --- the fault --------------------------------------------------------------------------------


def test_the_api_backend_keeps_the_targets_faults_and_fis_wraps_them(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = _target(tmp_path, _settings(stack))
    fault = target.stop_tasks("primary", count=1)
    assert backed(fault, target.settings, target.aws) is fault

    target = _target(tmp_path, _settings(stack, fault_backend="fis"))
    # with the fis backend the target's faults come as experiments already; the one it stands
    # for is the api fault, and wrapping it again (with a run id) builds the same experiment
    experiment = target.stop_tasks("primary", count=1)
    assert isinstance(experiment, FisExperiment) and experiment.stands_for is not None
    fault = experiment.stands_for
    assert isinstance(fault, StopEcsTasks)
    wrapped = backed(experiment, target.settings, target.aws, run_id="run-7")
    assert isinstance(wrapped, FisExperiment)
    assert (wrapped.region, wrapped.name, wrapped.access) == (
        "eu-west-1",
        "stop-one-task",
        fault.access,
    )
    assert wrapped.template["tags"][TAG_RUN] == "run-7"
    assert wrapped.describe() == (
        "fis experiment of template 'drdrill-stop-one-task' in eu-west-1: stop 1 task of ecs "
        f"service '{fault.service}' (cluster '{fault.cluster}') in eu-west-1"
    )
    assert fault_class("aws.fis.experiment") is FisExperiment
    again = FisExperiment.from_record(json.loads(json.dumps(wrapped.to_record())))
    assert again == wrapped and again.describe() == wrapped.describe()


def test_the_blast_radius_guard_sees_the_fault_an_experiment_stands_for(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = _target(tmp_path, _settings(stack, fault_backend="fis"))
    p = target.settings.primary
    where = (p.region, p.ecs.cluster, p.ecs.service)
    access = AwsAccess(target.settings.endpoint_url)

    def running(region: str, cluster: str, service: str) -> int:
        return len(ecs.running_tasks(target.aws, region, cluster, service))

    for count, refused in ((1, False), (2, True)):  # of 2 running, at most 50%
        api_fault = StopEcsTasks(access, *where, desired_before=2, count=count)
        fault = experiment_for(api_fault, target.settings, target.aws)
        assert fault.template["targets"]["service-tasks"]["selectionMode"] == f"COUNT({count})"
        assert bool(blast_problems(fault, 50.0, running)) is refused


def test_a_composite_region_down_is_the_fis_region_down(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = _target(tmp_path, _settings(stack, fault_backend="fis"))
    p = target.settings.primary
    access = AwsAccess(target.settings.endpoint_url)
    scale = ScaleServiceToZero(access, p.region, p.ecs.cluster, p.ecs.service, desired_before=2)
    down = RegionDown(
        region=p.region,
        scale=scale,
        health_check=FailHealthCheck(access, stack.health_check_ids[0]),
        running_before=2,
    )
    fault = experiment_for(down, target.settings, target.aws)
    assert (fault.name, fault.access, fault.parts) == ("region-down", access, (down,))
    actions = sorted(a["actionId"] for a in fault.template["actions"].values())
    # FIS has no Route53 action: the record fails over on its own health check
    assert actions == ["aws:ecs:stop-task", "aws:network:disrupt-connectivity"]
    # what the guard reads: every task of the service, as drdrill's own region down
    assert blast_problems(fault, 50.0, lambda *_: 2)


def test_a_failover_reboot_of_a_single_az_database_is_refused_before_any_fis_call(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    target = _target(tmp_path, _settings(stack, fault_backend="fis"))
    with pytest.raises(SafetyError, match="not multi-az"):
        backed(target.reboot_db("primary", mode="crash"), target.settings, target.aws)
    assert [c for c in target.aws.log.calls if c.service == "fis"] == []


def test_inject_journals_first_starts_the_experiment_and_the_undo_stops_it(
    stack: ProvisionedStack, tmp_path: Path, moto_endpoint: str, slow_experiments: None
) -> None:
    target = _target(tmp_path, _settings(stack, fault_backend="fis"))
    fault = backed(target.region_down("primary"), target.settings, target.aws, run_id="run-9")
    assert isinstance(fault, FisExperiment)
    journal = Journal(tmp_path / "journal.jsonl")
    injector = FaultInjector(journal, run_id="run-9")
    fis_calls_when_journaled: list[int] = []
    injector.inject(
        fault,
        on_journaled=lambda: fis_calls_when_journaled.append(
            len([c for c in target.aws.log.calls if c.service == "fis"])
        ),
    )
    # journaled before any FIS call, with the token that finds template and experiment again
    assert fis_calls_when_journaled == [0]
    (entry,) = journal.open_entries()
    assert (entry.kind, entry.description) == ("aws.fis.experiment", fault.describe())
    assert "'drdrill-region-down'" in entry.description
    assert entry.record["token"] == fault.token and entry.record["template"] == fault.template

    (create,) = _calls(target.aws, "CreateExperimentTemplate")
    assert create["clientToken"] == f"t-{fault.token}"
    assert create["tags"] == {**fault.template["tags"], TAG_TOKEN: fault.token}
    assert create["tags"][TAG_RUN] == "run-9"
    assert create["actions"] == fault.template["actions"]
    (start,) = _calls(target.aws, "StartExperiment")
    template_id, experiment_id = fault.ids["template_id"], fault.ids["experiment_id"]
    assert start == {
        "clientToken": f"e-{fault.token}",
        "experimentTemplateId": template_id,
        "tags": create["tags"],
    }
    assert _status(moto_endpoint, experiment_id) == "running"
    # moto runs no FIS action: the service's tasks are all still running (FIS would stop them)
    p = stack.settings.primary
    assert len(ecs.running_tasks(target.aws, p.region, p.ecs.cluster, p.ecs.service)) == 2

    (outcome,) = injector.revert_all()
    assert outcome.ok, outcome.note
    assert outcome.note == f"experiment {experiment_id} stopped; template {template_id} deleted"
    assert _calls(target.aws, "StopExperiment") == [{"id": experiment_id}]
    assert _status(moto_endpoint, experiment_id) == "stopped"
    assert not _template_exists(moto_endpoint, template_id)
    assert journal.open_entries() == []
    # idempotent: a second undo finds everything already done and says so
    assert fault.revert().note == (
        f"experiment {experiment_id} already stopped; template {template_id} already deleted"
    )


def test_recover_stops_a_killed_runs_experiment_from_the_journal_alone(
    stack: ProvisionedStack, tmp_path: Path, moto_endpoint: str, slow_experiments: None
) -> None:
    target = _target(tmp_path, _settings(stack, fault_backend="fis"))
    fault = backed(target.stop_tasks("primary", count=1), target.settings, target.aws)
    assert isinstance(fault, FisExperiment)
    journal = Journal(tmp_path / "journal.jsonl")
    FaultInjector(journal, run_id="killed").inject(fault)  # never reverted: the run "died"
    template_id, experiment_id = fault.ids["template_id"], fault.ids["experiment_id"]
    assert _status(moto_endpoint, experiment_id) == "running"

    # a new process knows only the record: template and experiment are found by the token tag
    (outcome,) = recover(journal, include_live=True)
    assert outcome.ok, outcome.note
    assert outcome.data == {"template_id": template_id, "experiment_ids": [experiment_id]}
    assert _status(moto_endpoint, experiment_id) == "stopped"
    assert not _template_exists(moto_endpoint, template_id)
    assert journal.open_entries() == []


def test_an_experiment_already_over_needs_no_stop(
    stack: ProvisionedStack, tmp_path: Path, moto_endpoint: str
) -> None:
    target = _target(tmp_path, _settings(stack, fault_backend="fis"))
    fault = backed(target.reboot_db("primary"), target.settings, target.aws)
    assert isinstance(fault, FisExperiment)
    fault.inject()
    # moto's own pace: the next read finds the reboot's experiment completed, as FIS's would be
    result = fault.revert()
    experiment_id = fault.ids["experiment_id"]
    assert result.note.startswith(f"experiment {experiment_id} already completed; template ")
    assert _calls(target.aws, "StopExperiment") == []
    assert not _template_exists(moto_endpoint, fault.ids["template_id"])
    # FIS's own record of when the reboot ran, for the drill's reported events
    ((name, (started, ended)),) = fault.action_times().items()
    assert name == "reboot" and started is not None and ended is not None
    assert started.tzinfo is not None and started <= ended


def test_an_exported_template_created_by_the_team_is_started_and_kept(
    stack: ProvisionedStack, moto_endpoint: str
) -> None:
    settings = AwsSettings.model_validate(_settings(stack))
    aws = AwsClients(endpoint_url=moto_endpoint)
    templates, _ = export_templates(settings, aws)
    body = next(t.body for t in templates if t.name == "stop-one-task")
    # as `aws fis create-experiment-template --cli-input-json file://stop-one-task.json` does
    template_id = _fis(moto_endpoint).create_experiment_template(**body)["experimentTemplate"]["id"]
    fault = FisExperiment(
        access=AwsAccess(endpoint_url=moto_endpoint),
        region="eu-west-1",
        name="stop-one-task",
        template=body,
        template_id=template_id,
        clients=aws,
    )
    assert fault.describe().startswith(f"fis experiment of template {template_id} in eu-west-1")
    fault.inject()
    assert _calls(aws, "CreateExperimentTemplate") == []
    fault.revert()
    assert _template_exists(moto_endpoint, template_id)  # the team's: never deleted


def test_a_dry_run_plans_the_experiment_and_creates_nothing(
    stack: ProvisionedStack, moto_endpoint: str
) -> None:
    settings = AwsSettings.model_validate(_settings(stack, fault_backend="fis"))
    aws = AwsClients(endpoint_url=moto_endpoint, dry_run=True)
    p = settings.primary
    live = AwsClients(endpoint_url=moto_endpoint)
    desired = ecs.desired_count(live, p.region, p.ecs.cluster, p.ecs.service)
    api_fault = StopEcsTasks(
        AwsAccess(moto_endpoint), p.region, p.ecs.cluster, p.ecs.service, desired, count=1
    )
    fault = experiment_for(api_fault, settings, aws)
    fault.inject()
    changing = [c for c in aws.log.calls if c.service == "fis"]
    assert [(c.operation, c.sent) for c in changing] == [
        ("CreateExperimentTemplate", False),
        ("StartExperiment", False),
    ]
    listed = _fis(moto_endpoint).list_experiment_templates()["experimentTemplates"]
    assert not [t for t in listed if t.get("tags", {}).get(TAG_TOKEN) == fault.token]


# --- drdrill fis export -----------------------------------------------------------------------


def _export(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DRDRILL, "fis", "export", "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_export_writes_one_json_template_per_drill_fault(
    stack: ProvisionedStack, tmp_path: Path
) -> None:
    config = _config(tmp_path, _settings(stack))
    out = tmp_path / "fis"
    done = _export(config, out)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{name}.json" for name in DRILL_FAULTS)
    for name in DRILL_FAULTS:
        assert f"drdrill fis: wrote {out / name}.json (eu-west-1)" in done.stdout
        body = json.loads((out / f"{name}.json").read_text())
        validate_parameters({**body, "clientToken": "t"}, CREATE_SHAPE)
        assert body["roleArn"] == ROLE and body["tags"][TAG_FAULT] == name
    assert "--cli-input-json file://" in done.stdout
    assert done.stderr.startswith("drdrill fis: warning: rds instance ")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"fis": {}}, "targets.aws.fis.role_arn: required"),
        (
            {"stop_conditions": {"guard_alarms": ["no-such-alarm"]}},
            "targets.aws.stop_conditions.guard_alarms.0: guard alarm 'no-such-alarm' not found",
        ),
        ({"fault_backend": "chaos"}, "targets.aws.fault_backend: "),
    ],
    ids=["no-role", "missing-guard-alarm", "bad-backend"],
)
def test_export_bad_config_is_one_line_naming_the_key(
    stack: ProvisionedStack, tmp_path: Path, change: dict[str, Any], key: str
) -> None:
    data = _settings(stack)
    data.update(change)
    config = _config(tmp_path, data)
    done = _export(config, tmp_path / "fis")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    # the loader names the line of the keys it checks itself; the export names only the key
    where = rf"drdrill: error: {re.escape(str(config))}(:\d+)?: {re.escape(key)}"
    assert re.match(where, done.stderr), done.stderr
    assert not (tmp_path / "fis").exists()
