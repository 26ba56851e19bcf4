"""groundwork:queue = sqs on AWS: the queue pair, its key, IAM scoped to it, scaling and
alarms on SQS metrics; nat = instance; production stays multi-AZ with SQS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws.job_queue_sqs import SqsJobQueueArgs
from components.aws.nat_instance import NatInstanceArgs
from groundwork.mockrun import ProgramRun
from stacks.config import ConfigError
from stacks.service_env import DELIVERY_ATTEMPTS


def _queues(run: ProgramRun) -> tuple[Any, Any]:
    (queue,) = [q for q in run.of_type("aws:sqs/queue:Queue") if q.inputs.get("redrivePolicy")]
    (dlq,) = [q for q in run.of_type("aws:sqs/queue:Queue") if not q.inputs.get("redrivePolicy")]
    return queue, dlq


def _task_app_policy(run: ProgramRun) -> dict[str, Any]:
    (policy,) = [
        r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith("-task-policy")
    ]
    return json.loads(policy.inputs["policy"])


def test_queue_and_dlq_are_kms_encrypted_with_their_own_key_and_redrive_like_rabbitmq(
    staging: ProgramRun,
) -> None:
    queue, dlq = _queues(staging)
    (key,) = [k for k in staging.of_type("aws:kms/key:Key") if "-queue-kms" in k.name]
    for q in (queue, dlq):
        assert q.inputs["kmsMasterKeyId"] == key.state["arn"]
        assert "sqsManagedSseEnabled" not in q.inputs or not q.inputs["sqsManagedSseEnabled"]
        assert q.inputs["receiveWaitTimeSeconds"] == 20  # long polling
        assert "name" not in q.inputs  # auto-named: create-before-delete on replacement
    redrive = json.loads(queue.inputs["redrivePolicy"])
    # RabbitMQ's quorum queue delivers x-delivery-limit + 1 times; SQS moves a message
    # once it was received maxReceiveCount times.
    assert redrive == {"deadLetterTargetArn": dlq.state["arn"], "maxReceiveCount": 6}
    assert DELIVERY_ATTEMPTS + 1 == 6
    assert dlq.inputs["messageRetentionSeconds"] > queue.inputs["messageRetentionSeconds"]
    (allow,) = staging.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    assert allow.inputs["queueUrl"] == dlq.state["url"]
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [queue.state["arn"]],
    }
    policies = {p.inputs["queueUrl"]: p for p in staging.of_type("aws:sqs/queuePolicy:QueuePolicy")}
    assert set(policies) == {queue.state["url"], dlq.state["url"]}
    for q in (queue, dlq):
        (statement,) = json.loads(policies[q.state["url"]].inputs["policy"])["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Resource"] == q.state["arn"]
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_task_role_reaches_only_the_two_queues_and_their_key_through_sqs(
    staging: ProgramRun,
) -> None:
    queue, dlq = _queues(staging)
    (key,) = [k for k in staging.of_type("aws:kms/key:Key") if "-queue-kms" in k.name]
    all_statements = _task_app_policy(staging)["Statement"]
    statements = {s.get("Sid"): s for s in all_statements}
    assert {"JobQueues", "JobQueueKey"} <= set(statements)
    # Nothing else in the role reaches SQS or KMS.
    others = [s for s in all_statements if s.get("Sid") not in ("JobQueues", "JobQueueKey")]
    assert not any(
        str(action).startswith(("sqs:", "kms:"))
        for s in others
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    )
    assert statements["JobQueues"]["Resource"] == [queue.state["arn"], dlq.state["arn"]]
    assert not any("*" in action for action in statements["JobQueues"]["Action"])
    assert {"sqs:ChangeMessageVisibility", "sqs:DeleteMessage"} <= set(
        statements["JobQueues"]["Action"]
    )
    kms = statements["JobQueueKey"]
    assert kms["Resource"] == key.state["arn"]
    assert set(kms["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}}


def test_rabbitmq_stacks_grant_the_tasks_no_queue_permissions(
    staging_rabbitmq: ProgramRun,
) -> None:
    sids = {s.get("Sid") for s in _task_app_policy(staging_rabbitmq)["Statement"]}
    assert not sids & {"JobQueues", "JobQueueKey"}
    assert "sqs:" not in json.dumps(_task_app_policy(staging_rabbitmq))
    assert staging_rabbitmq.of_type("aws:sqs/queue:Queue") == []


def test_workers_scale_on_visible_sqs_messages_per_running_task(staging: ProgramRun) -> None:
    queue, _ = _queues(staging)
    (policy,) = [
        p
        for p in staging.of_type("aws:appautoscaling/policy:Policy")
        if p.name.endswith("-worker-queue-depth")
    ]
    metrics = policy.inputs["targetTrackingScalingPolicyConfiguration"][
        "customizedMetricSpecification"
    ]["metrics"]
    depth = next(m for m in metrics if m["id"] == "depth")["metricStat"]["metric"]
    assert depth["namespace"] == "AWS/SQS"
    assert depth["metricName"] == "ApproximateNumberOfMessagesVisible"
    assert depth["dimensions"] == [{"name": "QueueName", "value": queue.state["name"]}]


def test_alarms_watch_depth_age_and_the_dlq_on_sqs_metrics(staging: ProgramRun) -> None:
    queue, dlq = _queues(staging)
    alarms = {
        a.name.rsplit("-alarms-", 1)[-1]: a.inputs
        for a in staging.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if "-alarms-" in a.name
    }
    for suffix, metric, name in (
        ("queue-depth", "ApproximateNumberOfMessagesVisible", queue.state["name"]),
        ("queue-age", "ApproximateAgeOfOldestMessage", queue.state["name"]),
        ("dlq-depth", "ApproximateNumberOfMessagesVisible", dlq.state["name"]),
    ):
        alarm = alarms[suffix]
        assert alarm["namespace"] == "AWS/SQS", suffix
        assert alarm["metricName"] == metric
        assert alarm["dimensions"] == {"QueueName": name}
        assert alarm["treatMissingData"] == "notBreaching"  # idle queues send no metrics
    assert alarms["dlq-depth"]["threshold"] == 0
    assert not any(a.get("namespace") == "AWS/AmazonMQ" for a in alarms.values())


def test_production_with_sqs_keeps_every_stateful_resource_multi_az(
    production_sqs: ProgramRun,
) -> None:
    run = production_sqs
    assert run.of_type("aws:mq/broker:Broker") == []
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == 3
    assert run.of_type("aws:ec2/instance:Instance") == []
    assert run.one("aws:rds/instance:Instance").inputs["multiAz"] is True
    cache = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert cache["multiAzEnabled"] is True and cache["numCacheClusters"] >= 2
    for service in run.of_type("aws:ecs/service:Service"):
        assert len(service.inputs["networkConfiguration"]["subnets"]) == 3
    for td in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        assert td.inputs["runtimePlatform"]["cpuArchitecture"] == "ARM64"


def test_without_nat_the_tasks_reach_sqs_through_an_interface_endpoint() -> None:
    from tests.aws.conftest import run_stack

    run = run_stack("staging", queue="sqs", nat="none", interfaceEndpoints="true")
    services = {e.inputs["serviceName"] for e in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert "com.amazonaws.us-east-1.sqs" in services
    with_nat = run_stack("staging", queue="sqs", interfaceEndpoints="true")
    services = {
        e.inputs["serviceName"] for e in with_nat.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert "com.amazonaws.us-east-1.sqs" not in services  # through the NAT instance


def test_nat_instance_is_refused_in_production(helpers: Any) -> None:
    error = helpers.run_failing(
        "production",
        {
            "aws:region": "us-east-1",
            "groundwork:environment": "production",
            "groundwork:insecureHttp": "true",
            "groundwork:nat": "instance",
        },
        helpers.CountingMocks(),
    )
    assert isinstance(error, ConfigError)
    assert "groundwork:nat = 'instance'" in str(error) and "staging-only" in str(error)


def test_nat_instance_routes_private_subnets_and_is_health_checked(staging: ProgramRun) -> None:
    instance = staging.one("aws:ec2/instance:Instance")
    inputs = instance.inputs
    assert inputs["instanceType"] == "t4g.nano"
    assert inputs["sourceDestCheck"] is False  # required to forward others' packets
    assert inputs["associatePublicIpAddress"] is True
    assert inputs["metadataOptions"]["httpTokens"] == "required"
    assert inputs["rootBlockDevice"]["encrypted"] is True
    assert "ami" in (instance.ignore_changes or [])
    assert "MASQUERADE" in inputs["userData"] and "10.40.0.0/16" in inputs["userData"]
    public = {
        s.state["id"] for s in staging.of_type("aws:ec2/subnet:Subnet") if "-public-" in s.name
    }
    assert inputs["subnetId"] in public
    private_rts = [
        r for r in staging.of_type("aws:ec2/routeTable:RouteTable") if "-private-rt-" in r.name
    ]
    assert len(private_rts) == 2
    for rt in private_rts:
        assert rt.inputs["routes"] == [
            {
                "cidrBlock": "0.0.0.0/0",
                "networkInterfaceId": instance.state["primaryNetworkInterfaceId"],
            }
        ]
    actions = {
        a.inputs["metricName"]: a.inputs["alarmActions"]
        for a in staging.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.inputs.get("namespace") == "AWS/EC2"
    }
    assert actions == {
        "StatusCheckFailed_System": ["arn:aws:automate:us-east-1:ec2:recover"],
        "StatusCheckFailed_Instance": ["arn:aws:automate:us-east-1:ec2:reboot"],
    }
    (sg,) = [
        g for g in staging.of_type("aws:ec2/securityGroup:SecurityGroup") if "-nat-sg" in g.name
    ]
    ingress = [
        r
        for r in staging.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == sg.state["id"]
    ]
    assert [r.inputs["cidrIpv4"] for r in ingress] == ["10.40.0.0/16"]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"delivery_limit": 0}, "delivery_limit"),
        ({"delivery_limit": 5, "visibility_timeout_seconds": 50_000}, "43200"),
        ({"delivery_limit": 5, "dlq_retention_seconds": 345_600}, "expire early"),
    ],
)
def test_job_queue_args_reject_what_sqs_would(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        SqsJobQueueArgs(**kwargs)


def test_nat_instance_args_need_a_graviton_type() -> None:
    NatInstanceArgs(vpc_id="v", vpc_cidr="10.0.0.0/16", public_subnet_id="s")
    NatInstanceArgs(
        vpc_id="v", vpc_cidr="10.0.0.0/16", public_subnet_id="s", instance_type="c7gn.medium"
    )
    with pytest.raises(ValueError, match="arm64"):
        NatInstanceArgs(
            vpc_id="v", vpc_cidr="10.0.0.0/16", public_subnet_id="s", instance_type="t3.nano"
        )
