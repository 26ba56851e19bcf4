"""AWS operations against moto (and botocore's Stubber only where moto cannot answer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from groundwork.ops import aws
from groundwork.ops.errors import (
    MissingCredentialsError,
    OpsTimeoutError,
    SmokeTestError,
    TaskFailedError,
    UserError,
)
from groundwork.ops.outputs import StackOutputs

from .conftest import moto_broker, moto_database, put_queue_depth

REGION = "us-east-1"
CLUSTER = "groundwork-staging"


def no_sleep(_: float) -> None:
    pass


class FakeClock:
    """Advances a fixed step per reading so timeouts are reached without waiting."""

    def __init__(self, step: float = 1.0) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def outputs_of(values: dict[str, Any]) -> StackOutputs:
    return StackOutputs(stack="staging", values=values, source="test")


def test_log_link_double_encodes_like_the_console() -> None:
    link = aws.cloudwatch_log_link("eu-west-1", "/ecs/app", "migrate/migrate/abc")
    assert link == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#logsV2:log-groups/log-group/$252Fecs$252Fapp/log-events/"
        "migrate$252Fmigrate$252Fabc"
    )


def test_migrate_runs_private_fargate_task_and_waits_for_exit_code(stack: dict[str, Any]) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    result = aws.run_migrate(ecs, outputs_of(stack), poll_seconds=0, sleep=no_sleep)

    assert result.exit_codes == {"migrate": 0}
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=[result.task_arn])["tasks"][0]
    assert task["lastStatus"] == "STOPPED"
    assert task["taskDefinitionArn"] == stack["migrate_task_definition_arn"]
    assert task["launchType"] == "FARGATE"
    assert task["startedBy"] == "groundwork-ops-migrate"
    # The task ENI sits in one of the exported private subnets.
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert details["subnetId"] in stack["task_subnet_ids"]
    task_id = result.task_arn.rsplit("/", 1)[-1]
    assert result.log_links["migrate"].endswith(f"migrate$252Fmigrate$252F{task_id}")
    assert "$252Fecs$252Fgroundwork-staging$252Fmigrate" in result.log_links["migrate"]


def test_migrate_with_image_uses_a_one_off_revision_then_deregisters_it(
    stack: dict[str, Any],
) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    result = aws.run_migrate(
        ecs, outputs_of(stack), image="repo/app:v2", poll_seconds=0, sleep=no_sleep
    )
    task = ecs.describe_tasks(cluster=CLUSTER, tasks=[result.task_arn])["tasks"][0]
    used = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    assert used["taskDefinition"]["containerDefinitions"][0]["image"] == "repo/app:v2"
    assert used["taskDefinition"]["revision"] == 2
    assert used["taskDefinition"]["status"] == "INACTIVE"
    # The stack's own revision is untouched.
    original = ecs.describe_task_definition(taskDefinition=stack["migrate_task_definition_arn"])
    assert original["taskDefinition"]["containerDefinitions"][0]["image"] == "repo/app:v1"
    assert original["taskDefinition"]["status"] == "ACTIVE"


def test_failed_migrate_names_exit_code_stopped_reason_and_log_link(
    stack: dict[str, Any],
) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    started = aws.start_migrate_task(ecs, outputs_of(stack))
    # moto always reports exit code 0, so only DescribeTasks is stubbed here.
    poller = boto3.client("ecs", region_name=REGION)
    stubber = Stubber(poller)
    reason = "Essential container in task exited"
    base = {"taskArn": started.task_arn, "containers": [{"name": "migrate"}]}
    stubber.add_response("describe_tasks", {"tasks": [{**base, "lastStatus": "RUNNING"}]})
    stubber.add_response(
        "describe_tasks",
        {
            "tasks": [
                {
                    **base,
                    "lastStatus": "STOPPED",
                    "stoppedReason": reason,
                    "containers": [{"name": "migrate", "exitCode": 3}],
                }
            ]
        },
        {"cluster": CLUSTER, "tasks": [started.task_arn]},
    )
    with stubber, pytest.raises(TaskFailedError) as failure:
        aws.wait_for_task(poller, started, poll_seconds=0, sleep=no_sleep)
    message = str(failure.value)
    assert "container migrate exited 3" in message
    assert reason in message
    assert started.log_links["migrate"] in message
    stubber.assert_no_pending_responses()


def test_migrate_times_out_with_the_log_link(stack: dict[str, Any]) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    started = aws.start_migrate_task(ecs, outputs_of(stack))
    poller = boto3.client("ecs", region_name=REGION)
    stubber = Stubber(poller)
    for _ in range(3):
        stubber.add_response(
            "describe_tasks",
            {"tasks": [{"taskArn": started.task_arn, "lastStatus": "RUNNING"}]},
        )
    with stubber, pytest.raises(OpsTimeoutError, match=r"still RUNNING after 2 s.*logs: https://"):
        aws.wait_for_task(
            poller, started, timeout_seconds=2, poll_seconds=0, sleep=no_sleep, clock=FakeClock()
        )


def test_migrate_missing_output_names_the_key(stack: dict[str, Any]) -> None:
    values = {k: v for k, v in stack.items() if k != "task_subnet_ids"}
    with pytest.raises(UserError, match="no non-empty list output 'task_subnet_ids'"):
        aws.run_migrate(boto3.client("ecs", region_name=REGION), outputs_of(values))


def test_missing_credentials_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    ecs = boto3.session.Session(region_name=REGION).client("ecs")
    values = {
        "cloud": "aws",
        "cluster_name": CLUSTER,
        "migrate_task_definition_arn": "arn:aws:ecs:us-east-1:1:task-definition/m:1",
        "task_subnet_ids": ["subnet-1"],
        "task_security_group_ids": ["sg-1"],
    }
    with pytest.raises(MissingCredentialsError, match="no AWS credentials found"):
        aws.run_migrate(ecs, outputs_of(values))


# --- rollback ---------------------------------------------------------------------


def test_rollback_moves_each_service_to_its_previous_revision(stack: dict[str, Any]) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    names = [stack[f"{p}_service_name"] for p in ("api", "worker", "relay")]
    plans = aws.rollback_services(ecs, CLUSTER, names, wait=False)

    assert [p.to_task_definition for p in plans] == [
        stack["_revisions"][p][0] for p in ("api", "worker", "relay")
    ]
    described = ecs.describe_services(cluster=CLUSTER, services=names)["services"]
    assert [s["taskDefinition"] for s in described] == [p.to_task_definition for p in plans]


def test_rollback_skips_deregistered_revisions_and_refuses_when_none_left(
    stack: dict[str, Any],
) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.deregister_task_definition(taskDefinition=stack["_revisions"]["api"][0])
    with pytest.raises(
        UserError, match="no ACTIVE revision of groundwork-staging-api older than 2"
    ):
        aws.rollback_services(ecs, CLUSTER, [stack["api_service_name"]], wait=False)


def test_rollback_of_unknown_service_is_a_user_error(stack: dict[str, Any]) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    with pytest.raises(UserError, match="services not found"):
        aws.rollback_services(ecs, CLUSTER, ["nope"], wait=False)


def test_rollback_waits_until_services_are_stable(stack: dict[str, Any]) -> None:
    """moto never starts service tasks, so the stability poll is stubbed."""
    ecs = boto3.client("ecs", region_name=REGION)
    names = [stack["api_service_name"]]
    aws.rollback_services(ecs, CLUSTER, names, wait=False)
    poller = boto3.client("ecs", region_name=REGION)
    stubber = Stubber(poller)
    unstable = {
        "serviceName": names[0],
        "deployments": [{}, {}],
        "runningCount": 1,
        "desiredCount": 1,
    }
    stable = {"serviceName": names[0], "deployments": [{}], "runningCount": 1, "desiredCount": 1}
    stubber.add_response("describe_services", {"services": [unstable]})
    stubber.add_response("describe_services", {"services": [stable]})
    with stubber:
        aws._wait_stable(poller, CLUSTER, names, 60, 0, no_sleep, FakeClock())
    stubber.assert_no_pending_responses()
    stubber = Stubber(poller)
    for _ in range(3):
        stubber.add_response("describe_services", {"services": [unstable]})
    with stubber, pytest.raises(OpsTimeoutError, match="not stable"):
        aws._wait_stable(poller, CLUSTER, names, 2, 0, no_sleep, FakeClock())


# --- target health ----------------------------------------------------------------


def _target_group(stack: dict[str, Any], healthy: bool) -> tuple[Any, str]:
    elbv2 = boto3.client("elbv2", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    arn = elbv2.create_target_group(
        Name="groundwork-staging-api",
        Protocol="HTTP",
        Port=8000,
        VpcId=stack["_vpc"],
        TargetType="instance",
        HealthCheckPath="/health/ready",
    )["TargetGroups"][0]["TargetGroupArn"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, SubnetId=stack["task_subnet_ids"][0]
    )["Instances"][0]["InstanceId"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance, "Port": 8000}])
    if not healthy:
        ec2.stop_instances(InstanceIds=[instance])
    return elbv2, arn


def test_target_health_passes_with_a_healthy_target(stack: dict[str, Any]) -> None:
    elbv2, arn = _target_group(stack, healthy=True)
    states = aws.target_health(elbv2, arn, poll_seconds=0, sleep=no_sleep)
    assert [s.state for s in states] == ["healthy"]


def test_target_health_fails_listing_unhealthy_targets(stack: dict[str, Any]) -> None:
    elbv2, arn = _target_group(stack, healthy=False)
    with pytest.raises(SmokeTestError, match=r"not healthy after 2 s: i-.*:8000 unused"):
        aws.target_health(
            elbv2, arn, timeout_seconds=2, poll_seconds=0, sleep=no_sleep, clock=FakeClock()
        )


def test_jwt_secret_is_read_from_secrets_manager(stack: dict[str, Any]) -> None:
    sm = boto3.client("secretsmanager", region_name=REGION)
    plain = sm.create_secret(Name="jwt", SecretString="p" * 40)["ARN"]
    as_json = sm.create_secret(Name="jwt-json", SecretString='{"JWT_SECRET": "' + "j" * 40 + '"}')
    assert aws.jwt_secret_from_secrets_manager(sm, plain) == "p" * 40
    assert aws.jwt_secret_from_secrets_manager(sm, as_json["ARN"]) == "j" * 40
    with pytest.raises(aws.OpsError, match="ResourceNotFoundException"):
        aws.jwt_secret_from_secrets_manager(sm, "missing")


# --- RDS restore drill -------------------------------------------------------------


def test_restore_drill_snapshots_restores_privately_and_cleans_up(stack: dict[str, Any]) -> None:
    rds = moto_database(stack)
    fixed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = aws.restore_drill(
        rds,
        "groundwork-staging-db",
        poll_seconds=0,
        sleep=no_sleep,
        clock=FakeClock(),
        now=lambda: fixed,
        delete_after=False,
    )
    assert report.snapshot_id == "groundwork-staging-db-drill-20260102030405"
    assert report.snapshot_seconds > 0
    assert report.restore_seconds > 0
    restored = rds.describe_db_instances(DBInstanceIdentifier=report.restored_instance)
    instance = restored["DBInstances"][0]
    # moto omits false booleans; True would be reported.
    assert instance.get("PubliclyAccessible", False) is False
    assert instance["DBSubnetGroup"]["DBSubnetGroupName"] == "groundwork-staging-db"
    assert [g["VpcSecurityGroupId"] for g in instance["VpcSecurityGroups"]] == stack[
        "task_security_group_ids"
    ]
    assert {"Key": "purpose", "Value": "restore-drill"} in instance["TagList"]
    assert report.endpoint

    second = aws.restore_drill(
        rds,
        "groundwork-staging-db",
        poll_seconds=0,
        sleep=no_sleep,
        now=lambda: fixed + timedelta(hours=1),
    )
    assert second.deleted
    remaining = [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]]
    assert second.restored_instance not in remaining
    assert report.restored_instance in remaining
    snapshots = [s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots()["DBSnapshots"]]
    assert second.snapshot_id not in snapshots


def test_restore_drill_of_unknown_instance_says_so(stack: dict[str, Any]) -> None:
    rds = boto3.client("rds", region_name=REGION)
    with pytest.raises(aws.OpsError, match="DBInstanceNotFound"):
        aws.restore_drill(rds, "nope", poll_seconds=0, sleep=no_sleep)


# --- DLQ depth ----------------------------------------------------------------------


def test_dlq_depth_reads_the_latest_message_count(stack: dict[str, Any]) -> None:
    mq, cloudwatch, broker_id = moto_broker()
    now = datetime.now(UTC)
    for minutes_ago, value in ((5, 2.0), (1, 7.0)):
        put_queue_depth(cloudwatch, value, now - timedelta(minutes=minutes_ago))
    # Another queue's depth must not leak into the report.
    put_queue_depth(cloudwatch, 99.0, now, queue="jobs")
    report = aws.dlq_depth(cloudwatch, mq, broker_id, now=lambda: now + timedelta(seconds=30))
    assert report.broker == "groundwork-staging-broker"
    assert report.depth == 7


def test_dlq_depth_without_datapoints_is_unknown(stack: dict[str, Any]) -> None:
    mq, cloudwatch, broker_id = moto_broker()
    report = aws.dlq_depth(cloudwatch, mq, broker_id)
    assert report.depth is None
    assert report.at is None


def _blue_green_balancer(stack: dict[str, Any], weights: tuple[int, int] | None) -> Any:
    """An ALB whose listener forwards to ``blue``; with ``weights`` a weighted rule over
    blue and green as ECS blue/green leaves it (None: no rule, a rolling service)."""
    elbv2 = boto3.client("elbv2", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    subnets = [
        ec2.create_subnet(VpcId=stack["_vpc"], CidrBlock=cidr, AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for cidr, zone in (("10.40.200.0/24", f"{REGION}a"), ("10.40.201.0/24", f"{REGION}b"))
    ]
    balancer = elbv2.create_load_balancer(Name="edge", Subnets=subnets)["LoadBalancers"][0]
    groups = {
        color: elbv2.create_target_group(
            Name=f"api-{color}", Protocol="HTTP", Port=8000, VpcId=stack["_vpc"], TargetType="ip"
        )["TargetGroups"][0]["TargetGroupArn"]
        for color in ("blue", "green")
    }
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["blue"]}],
    )["Listeners"][0]["ListenerArn"]
    if weights is not None:
        elbv2.create_rule(
            ListenerArn=listener,
            Priority=1,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": groups["blue"], "Weight": weights[0]},
                            {"TargetGroupArn": groups["green"], "Weight": weights[1]},
                        ]
                    },
                }
            ],
        )
    return elbv2, groups


@pytest.mark.parametrize(
    ("weights", "serving"), [((100, 0), "blue"), ((0, 100), "green"), (None, "blue")]
)
def test_smoke_checks_the_target_group_that_serves_now(
    stack: dict[str, Any], weights: tuple[int, int] | None, serving: str
) -> None:
    # The stack exports blue; after a blue/green swap ECS serves from green.
    elbv2, groups = _blue_green_balancer(stack, weights)
    assert aws.serving_target_group(elbv2, groups["blue"]) == groups[serving]
