"""A failed deploy returns to exactly what served before it, or changes nothing.

The deploy workflow runs `ops record-release` before it touches anything and its
rollback job runs `ops rollback --record`. The cases the issue lists: a deploy that
failed before any change (policy violation, migration), a service the ECS circuit
breaker already reverted, a Cloud Run split shift-traffic already restored, and a first
deploy (nothing served before).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from groundwork.cli import app
from groundwork.ops import aws, gcp
from groundwork.ops.errors import OpsTimeoutError, RevisionNotReadyError, SmokeTestError
from groundwork.ops.outputs import StackOutputs
from groundwork.ops.release import UNKNOWN_OUTPUT, ReleaseRecord, is_first_deploy

from .conftest import CLUSTER, REGION

runner = CliRunner()
PROCESSES = ("api", "worker", "relay")


def write_outputs(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({k: v for k, v in values.items() if not k.startswith("_")}))
    return path


def record(tmp_path: Path, outputs: Path) -> tuple[Any, Path]:
    out = tmp_path / "release" / "serving.json"
    result = runner.invoke(
        app,
        [
            "ops",
            "record-release",
            "-s",
            "staging",
            "--outputs-file",
            str(outputs),
            "--out",
            str(out),
        ],
    )
    return result, out


def rollback(out: Path) -> Any:
    return runner.invoke(
        app, ["ops", "rollback", "-s", "staging", "--record", str(out), "--no-wait"]
    )


def serving(stack: dict[str, Any]) -> list[str]:
    ecs = boto3.client("ecs", region_name=REGION)
    names = [stack[f"{p}_service_name"] for p in PROCESSES]
    return [
        s["taskDefinition"]
        for s in ecs.describe_services(cluster=CLUSTER, services=names)["services"]
    ]


# --- first deploy detection ------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "first"),
    [
        ({}, True),  # `pulumi stack output --json` of a stack never deployed
        # after the targeted registry bootstrap: the registry, unknowns for the rest
        (
            {"cloud": "aws", "ecr_repository_url": "1.dkr.ecr.x/r", "cluster_name": UNKNOWN_OUTPUT},
            True,
        ),
        (
            {
                "cloud": "aws",
                "cluster_name": "c",
                "migrate_task_definition_arn": "arn:aws:ecs:...:1",
                "task_subnet_ids": ["subnet-1"],
            },
            False,
        ),
        ({"cloud": "gcp", "migrate_job_name": "groundwork-staging-migrate"}, False),
        ({"cloud": "gcp", "artifact_registry_url": "europe-west1-docker.pkg.dev/p/r"}, True),
    ],
)
def test_first_deploy_is_a_stack_without_the_migrate_outputs(
    values: dict[str, Any], first: bool
) -> None:
    assert is_first_deploy(StackOutputs(stack="staging", values=values, source="test")) is first


# --- AWS --------------------------------------------------------------------------


def test_nothing_changed_means_nothing_is_rolled_back(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """A deploy stopped by the policy pack or a failed migration changed no service."""
    before = serving(stack)
    result, out = record(tmp_path, write_outputs(tmp_path, stack))
    assert result.exit_code == 0, result.output
    assert "first_deploy=false" in result.stdout
    undone = rollback(out)
    assert undone.exit_code == 0, undone.output
    assert "restored=false" in undone.stdout
    assert serving(stack) == before


def test_rollback_returns_exactly_to_the_recorded_revision(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """Two revisions newer than the record: the old rule ("one older than now") would stop
    at the middle one; the record names the one that served."""
    ecs = boto3.client("ecs", region_name=REGION)
    result, out = record(tmp_path, write_outputs(tmp_path, stack))
    assert result.exit_code == 0, result.output
    recorded = serving(stack)
    api = stack["api_service_name"]
    definition = ecs.describe_task_definition(taskDefinition=stack["_revisions"]["api"][-1])[
        "taskDefinition"
    ]
    spec = {
        k: definition[k]
        for k in (
            "family",
            "networkMode",
            "requiresCompatibilities",
            "cpu",
            "memory",
            "containerDefinitions",
        )
    }
    newer = [
        ecs.register_task_definition(**spec)["taskDefinition"]["taskDefinitionArn"]
        for _ in range(2)
    ]
    ecs.update_service(cluster=CLUSTER, service=api, taskDefinition=newer[-1])

    undone = rollback(out)
    assert undone.exit_code == 0, undone.output
    assert (
        f"{api}: {newer[-1].rsplit('/', 1)[-1]} -> {recorded[0].rsplit('/', 1)[-1]}"
        in undone.stdout
    )
    assert "groundwork-staging-worker: already serves its pre-deploy revision" in undone.stdout
    assert serving(stack) == recorded


def test_a_service_the_circuit_breaker_reverted_is_left_alone(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    _, out = record(tmp_path, write_outputs(tmp_path, stack))
    recorded = serving(stack)
    worker = stack["worker_service_name"]
    # The deploy moved the worker, the circuit breaker moved it back (same revision).
    ecs.update_service(
        cluster=CLUSTER, service=worker, taskDefinition=stack["_revisions"]["worker"][0]
    )
    ecs.update_service(cluster=CLUSTER, service=worker, taskDefinition=recorded[1])
    undone = rollback(out)
    assert "restored=false" in undone.stdout
    assert serving(stack) == recorded


def test_first_deploy_has_nothing_to_roll_back_to(tmp_path: Path, aws_env: None) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text("{}")
    result, out = record(tmp_path, outputs)
    assert result.exit_code == 0, result.output
    assert "first_deploy=true" in result.stdout
    assert ReleaseRecord.read(out).first_deploy
    undone = rollback(out)
    assert undone.exit_code == 0, undone.output
    assert "nothing served before this deploy" in undone.stdout
    assert "restored=false" in undone.stdout


def test_a_record_of_another_stack_is_refused(stack: dict[str, Any], tmp_path: Path) -> None:
    _, out = record(tmp_path, write_outputs(tmp_path, stack))
    result = runner.invoke(app, ["ops", "rollback", "-s", "production", "--record", str(out)])
    assert result.exit_code == 2
    assert "is for stack 'staging', not 'production'" in result.stderr


# --- verified deploys -------------------------------------------------------------


def test_verify_fails_when_a_service_runs_another_image(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a circuit-breaker rollback the service is stable on the previous revision."""
    # moto reports a rollout COMPLETED when it pretends this many tasks run.
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_service(
        cluster=CLUSTER,
        serviceName="verify-api",
        taskDefinition=stack["_revisions"]["api"][-1],
        desiredCount=1,
        launchType="FARGATE",
    )
    served = aws.verify_served_image(ecs, CLUSTER, ["verify-api"], "repo/app:v2", poll_seconds=0)
    assert served[0].images == ("repo/app:v2",)
    assert served[0].rollout_state == "COMPLETED"
    ecs.delete_service(cluster=CLUSTER, service="verify-api", force=True)
    ecs.create_service(
        cluster=CLUSTER,
        serviceName="verify-api-2",
        taskDefinition=stack["_revisions"]["api"][0],
        desiredCount=1,
        launchType="FARGATE",
    )
    with pytest.raises(SmokeTestError, match=r"runs repo/app:v1 .* not the deployed repo/app:v2"):
        aws.verify_served_image(ecs, CLUSTER, ["verify-api-2"], "repo/app:v2", poll_seconds=0)


def _described(state: str, reason: str = "") -> dict[str, Any]:
    return {
        "services": [
            {
                "serviceName": "groundwork-staging-worker",
                "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/w:2",
                "deployments": [
                    {"status": "PRIMARY", "rolloutState": state, "rolloutStateReason": reason}
                ],
            }
        ],
        "failures": [],
    }


def test_verify_waits_for_the_rollout_and_reports_a_failed_deployment(aws_env: None) -> None:
    """rolloutState as ECS reports it (API_Deployment): IN_PROGRESS until the circuit
    breaker decides; FAILED with its reason. moto reports no rolloutState, so stubbed."""
    ecs = boto3.client("ecs", region_name=REGION)
    stubber = Stubber(ecs)
    stubber.add_response("describe_services", _described("IN_PROGRESS"))
    reason = "ECS deployment circuit breaker: tasks failed to start."
    stubber.add_response("describe_services", _described("FAILED", reason))
    stubber.add_response(
        "describe_task_definition",
        {"taskDefinition": {"containerDefinitions": [{"name": "worker", "image": "new@sha256:1"}]}},
    )
    with stubber, pytest.raises(SmokeTestError, match="circuit breaker"):
        aws.verify_served_image(
            ecs,
            CLUSTER,
            ["groundwork-staging-worker"],
            "new@sha256:1",
            poll_seconds=0,
            sleep=lambda _: None,
        )
    stubber = Stubber(ecs)
    for _ in range(3):
        stubber.add_response("describe_services", _described("IN_PROGRESS"))
    ticks = iter(range(100))
    with stubber, pytest.raises(OpsTimeoutError, match="rollout still in progress"):
        aws.verify_served_image(
            ecs,
            CLUSTER,
            ["groundwork-staging-worker"],
            "x",
            timeout_seconds=2,
            poll_seconds=0,
            sleep=lambda _: None,
            clock=lambda: float(next(ticks)),
        )


# --- GCP --------------------------------------------------------------------------


def test_gcp_restores_the_recorded_split_only_where_it_changed(run_api: Any) -> None:
    services = run_api.clients["services"]
    api = run_api.fake.add_service(
        "groundwork-production-api",
        [("api-1", True), ("api-2", True), ("api-3", True)],
        serving="api-2",
    )
    worker = run_api.fake.add_service(
        "groundwork-production-worker", [("w-1", True), ("w-2", True)], serving="w-2"
    )
    recorded = gcp.serving_splits(services, [api, worker])
    assert recorded[api] == [("api-2", 100)]
    # The deploy moved the API to api-3 (the old rule would now pick api-2 by luck, but
    # with api-3 -> api-1 history it would not); the worker was not touched.
    gcp._apply(services, api, [("api-3", 100)], 60)
    changed, kept = gcp.restore_splits(services, recorded)
    assert [(name, after) for name, _, after in changed] == [(api, [("api-2", 100)])]
    assert kept == [worker]
    assert run_api.fake.updates[-1] == [("api-2", 100)]
    # Restoring again changes nothing (shift-traffic already restored it, say).
    updates = len(run_api.fake.updates)
    changed, kept = gcp.restore_splits(services, recorded)
    assert changed == []
    assert len(run_api.fake.updates) == updates


def test_gcp_verify_checks_every_revision_with_traffic(run_api: Any) -> None:
    module = run_api.module
    api = run_api.fake.add_service("svc", [("s-1", True), ("s-2", True)], serving="s-2")
    for revision, image in (("s-1", "old@sha256:1"), ("s-2", "new@sha256:2")):
        run_api.fake.revisions[f"{api}/revisions/{revision}"].containers.append(
            module.run_v2.Container(image=image)
        )
    assert gcp.verify_served_image(
        run_api.clients["services"], run_api.clients["revisions"], api, "new@sha256:2"
    ) == ["s-2"]
    gcp._apply(run_api.clients["services"], api, [("s-1", 10), ("s-2", 90)], 60)
    with pytest.raises(RevisionNotReadyError, match="s-1 serves old@sha256:1"):
        gcp.verify_served_image(
            run_api.clients["services"], run_api.clients["revisions"], api, "new@sha256:2"
        )


def test_dlq_redrive_runs_a_worker_task_in_the_workers_network(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """The broker accepts the app's security groups only: the one-off runs as the worker."""
    result = runner.invoke(
        app,
        [
            "ops",
            "dlq-redrive",
            "-s",
            "staging",
            "--outputs-file",
            str(write_outputs(tmp_path, stack)),
            "--limit",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "dlq redrive --limit 5: task " in result.stdout
    ecs = boto3.client("ecs", region_name=REGION)
    arns = ecs.list_tasks(cluster=CLUSTER, startedBy="groundwork-ops")["taskArns"]
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"][0]
    assert task["taskDefinitionArn"] == stack["_revisions"]["worker"][-1]
    assert task["overrides"]["containerOverrides"][0]["command"] == [
        "dlq",
        "redrive",
        "--limit",
        "5",
    ]
    worker = ecs.describe_services(cluster=CLUSTER, services=[stack["worker_service_name"]])[
        "services"
    ][0]
    wanted = worker["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"]
    details = {d["name"]: d["value"] for a in task["attachments"] for d in a["details"]}
    assert details["subnetId"] == stack["task_subnet_ids"][0]
    eni = boto3.client("ec2", region_name=REGION).describe_network_interfaces(
        NetworkInterfaceIds=[details["networkInterfaceId"]]
    )["NetworkInterfaces"][0]
    assert sorted(g["GroupId"] for g in eni["Groups"]) == sorted(wanted)


# --- alarm-gated rollback (ECS deployment alarms) ---------------------------------

ALARMS = ["groundwork-staging-alarms-alb-5xx-rate", "groundwork-staging-alarms-api-p95-latency"]


def ecs_reports_rollback(stack: dict[str, Any], gated: str | None) -> None:
    """What DescribeServices shows once ECS is done: each service's PRIMARY deployment
    COMPLETED on the task definition it runs (after an alarm rollback ECS promotes the
    previous deployment back to PRIMARY and deletes the failed one,
    deployment-alarm-failure.html), and the API's deploymentConfiguration.alarms as the
    stack sets them. moto keeps neither, so they are set on its service objects."""
    from moto.ecs.models import ecs_backends

    backend = ecs_backends["123456789012"][REGION]
    for process in PROCESSES:
        svc = backend.services[f"{CLUSTER}:{stack[f'{process}_service_name']}"]
        svc.deployments = [
            {
                "id": f"ecs-svc/{process}",
                "status": "PRIMARY",
                "taskDefinition": svc.task_definition,
                "rolloutState": "COMPLETED",
                "rolloutStateReason": f"ECS deployment ecs-svc/{process} completed.",
            }
        ]
        if process == gated:
            svc.deployment_configuration = {
                "alarms": {"alarmNames": ALARMS, "enable": True, "rollback": True}
            }


def ship(stack: dict[str, Any], image: str, processes: tuple[str, ...]) -> None:
    """The deploy's new revision, running on ``processes`` (the others kept theirs)."""
    from .conftest import container

    ecs = boto3.client("ecs", region_name=REGION)
    for process in processes:
        arn = ecs.register_task_definition(
            family=f"groundwork-staging-{process}",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            containerDefinitions=[container(process, image, process)],
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.update_service(
            cluster=CLUSTER, service=stack[f"{process}_service_name"], taskDefinition=arn
        )


def put_alarms(state_of: dict[str, str]) -> Any:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    for name in ALARMS:
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/ApplicationELB",
            MetricName="TargetResponseTime",
            Statistic="Average",
            Period=60,
            EvaluationPeriods=5,
            Threshold=1.0,
            ComparisonOperator="GreaterThanThreshold",
        )
        if name in state_of:
            cloudwatch.set_alarm_state(
                AlarmName=name, StateValue=state_of[name], StateReason="test"
            )
    return cloudwatch


def test_verify_names_the_deployment_alarm_that_rolled_the_api_back(
    stack: dict[str, Any],
) -> None:
    """The 5xx alarm fired in the bake time: ECS put the API back on v2 (worker and relay
    run the new image). The deploy fails and says which alarm did it."""
    ship(stack, "repo/app:v3", ("worker", "relay"))
    ecs_reports_rollback(stack, gated="api")
    cloudwatch = put_alarms({ALARMS[0]: "ALARM"})
    ecs = boto3.client("ecs", region_name=REGION)
    services = [stack[f"{p}_service_name"] for p in PROCESSES]
    with pytest.raises(aws.EcsRolledBackError) as caught:
        aws.verify_served_image(
            ecs, CLUSTER, services, "repo/app:v3", cloudwatch=cloudwatch, poll_seconds=0
        )
    (rolled,) = caught.value.rollbacks
    assert rolled.service == "groundwork-staging-api"
    assert rolled.alarms == (ALARMS[0],)
    assert rolled.as_dict()["cause"] == "deployment-alarm"
    assert f"alarm(s) {ALARMS[0]} went to ALARM" in str(caught.value)
    assert "runs repo/app:v2" in str(caught.value)


def _history(new_state: str) -> dict[str, Any]:
    """A DescribeAlarmHistory StateUpdate item as CloudWatch writes it (HistoryData is a
    JSON string with oldState/newState)."""
    data = {"oldState": {"stateValue": "OK"}, "newState": {"stateValue": new_state}}
    return {
        "AlarmHistoryItems": [
            {
                "AlarmName": ALARMS[1],
                "HistoryItemType": "StateUpdate",
                "HistorySummary": f"Alarm updated from OK to {new_state}",
                "HistoryData": json.dumps(data),
            }
        ]
    }


@pytest.mark.parametrize(("new_state", "named"), [("ALARM", True), ("INSUFFICIENT_DATA", False)])
def test_an_alarm_that_fired_and_cleared_during_the_deploy_is_still_named(
    stack: dict[str, Any], new_state: str, named: bool
) -> None:
    """After the rollback the old tasks serve and the alarm is OK again before verify
    looks: its history since the deploy began still names it. moto keeps no alarm
    history, so CloudWatch is stubbed here."""
    ecs_reports_rollback(stack, gated="api")
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    stubber = Stubber(cloudwatch)
    ok = [{"AlarmName": name, "StateValue": "OK"} for name in ALARMS]
    stubber.add_response("describe_alarms", {"MetricAlarms": ok})
    stubber.add_response("describe_alarm_history", {"AlarmHistoryItems": []})
    stubber.add_response("describe_alarm_history", _history(new_state))
    ecs = boto3.client("ecs", region_name=REGION)
    with stubber, pytest.raises(aws.EcsRolledBackError) as caught:
        aws.verify_served_image(
            ecs,
            CLUSTER,
            [stack["api_service_name"]],
            "repo/app:v3",
            cloudwatch=cloudwatch,
            since=time.time() - 600,
            poll_seconds=0,
        )
    assert caught.value.rollbacks[0].alarms == ((ALARMS[1],) if named else ())
    if not named:
        assert "circuit breaker" in str(caught.value)


def test_verify_cli_writes_the_rollback_report(stack: dict[str, Any], tmp_path: Path) -> None:
    ecs_reports_rollback(stack, gated="api")
    put_alarms({ALARMS[0]: "ALARM"})
    report = tmp_path / "release" / "verify.json"
    result = runner.invoke(
        app,
        [
            "ops",
            "verify",
            "-s",
            "staging",
            "--outputs-file",
            str(write_outputs(tmp_path, stack)),
            "--image",
            "repo/app:v3",
            "--report",
            str(report),
            "--poll-seconds",
            "0",
        ],
    )
    assert result.exit_code == 1, result.output
    assert ALARMS[0] in result.stderr
    written = json.loads(report.read_text())
    assert written["image"] == "repo/app:v3"
    causes = {r["service"]: r["cause"] for r in written["rolled_back"]}
    assert causes["groundwork-staging-api"] == "deployment-alarm"
    assert causes["groundwork-staging-worker"] == "circuit-breaker"
