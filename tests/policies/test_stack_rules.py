"""Stack-level rules over small real graphs: each must reject a gap and accept the fix."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest

from groundwork.mockrun import ProgramRun
from groundwork.policyrun import run_policies
from policies import stack_rules
from policies.pack import POLICIES
from tests.policies.helpers import TAGS, record

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STACK_POLICIES = {p.name: p for p in POLICIES if p.name in {r.name for r in stack_rules.RULES}}


def _stack_violations(run: ProgramRun, rule: str) -> list[str]:
    verdicts = run_policies(run, config={}, policies=[STACK_POLICIES[rule]])
    return [f"{v.resource_name}: {v.message}" for v in verdicts if v.rule == rule]


def _rds() -> aws.rds.Instance:
    return aws.rds.Instance(
        "db",
        identifier="groundwork-production-db",
        engine="postgres",
        instance_class="db.m7g.large",
        allocated_storage=100,
        storage_encrypted=True,
        username="app",
        manage_master_user_password=True,
        tags=TAGS,
    )


def _alarm(name: str, dimensions: dict[str, pulumi.Input[str]]) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        name,
        comparison_operator="GreaterThanThreshold",
        evaluation_periods=1,
        metric_name="CPUUtilization",
        namespace="AWS/RDS",
        period=300,
        statistic="Average",
        threshold=80,
        dimensions=dimensions,
        alarm_actions=["arn:aws:sns:us-east-1:1:alarms"],
        tags=TAGS,
    )


def _cache() -> aws.elasticache.ReplicationGroup:
    return aws.elasticache.ReplicationGroup(
        "cache",
        description="c",
        replication_group_id="gw-cache",
        node_type="cache.t4g.micro",
        tags=TAGS,
    )


def _broker() -> aws.mq.Broker:
    return aws.mq.Broker(
        "mq",
        broker_name="gw-broker",
        engine_type="RabbitMQ",
        engine_version="3.13",
        host_instance_type="mq.t3.micro",
        users=[{"username": "app", "password": "test-fixture-pass"}],
        tags=TAGS,
    )


def test_datastore_without_alarm_is_rejected() -> None:
    def program() -> None:
        _rds()
        _alarm("other", {"DBInstanceIdentifier": "someone-elses-db"})
        _cache()
        _broker()

    found = _stack_violations(record(program), "aws-cloudwatch-datastore-alarmed")
    assert len(found) == 3, found


def test_datastores_with_alarms_pass() -> None:
    def program() -> None:
        db = _rds()
        _alarm("db-cpu", {"DBInstanceIdentifier": db.identifier})
        # ElastiCache alarms name member nodes "<group id>-001", a plain string.
        _cache()
        _alarm("cache-cpu", {"CacheClusterId": "gw-cache-001"})
        broker = _broker()
        _alarm("dlq", {"Broker": broker.broker_name, "Queue": "jobs.dlq"})

    assert _stack_violations(record(program), "aws-cloudwatch-datastore-alarmed") == []


def _world_sg(name: str) -> aws.ec2.SecurityGroup:
    sg = aws.ec2.SecurityGroup(name, vpc_id="vpc-1", description="edge", tags=TAGS)
    aws.vpc.SecurityGroupIngressRule(
        f"{name}-https",
        security_group_id=sg.id,
        ip_protocol="tcp",
        from_port=443,
        to_port=443,
        cidr_ipv4="0.0.0.0/0",
        description="HTTPS",
        tags=TAGS,
    )
    return sg


def test_internet_facing_security_group_on_tasks_is_rejected() -> None:
    def program() -> None:
        sg = _world_sg("edge")
        aws.lb.LoadBalancer("alb", security_groups=[sg.id], subnets=["a", "b"], tags=TAGS)
        aws.ecs.Service(
            "api",
            cluster="c",
            task_definition="td",
            network_configuration={"subnets": ["a"], "security_groups": [sg.id]},
            tags=TAGS,
        )

    found = _stack_violations(record(program), "aws-ec2-securitygroup-public-lb-only")
    assert len(found) == 1 and found[0].startswith("api:"), found


def test_internet_facing_security_group_on_the_load_balancer_only_passes() -> None:
    def program() -> None:
        sg = _world_sg("edge")
        tasks = aws.ec2.SecurityGroup("tasks", vpc_id="vpc-1", description="tasks", tags=TAGS)
        aws.vpc.SecurityGroupIngressRule(
            "tasks-from-lb",
            security_group_id=tasks.id,
            referenced_security_group_id=sg.id,
            ip_protocol="tcp",
            from_port=8000,
            to_port=8000,
            description="from LB",
            tags=TAGS,
        )
        aws.lb.LoadBalancer("alb", security_groups=[sg.id], subnets=["a", "b"], tags=TAGS)
        aws.ecs.Service(
            "api",
            cluster="c",
            task_definition="td",
            network_configuration={"subnets": ["a"], "security_groups": [tasks.id]},
            tags=TAGS,
        )

    assert _stack_violations(record(program), "aws-ec2-securitygroup-public-lb-only") == []


def test_vpc_flow_logs_and_bucket_access_blocks() -> None:
    def missing() -> None:
        aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16", tags=TAGS)
        aws.s3.Bucket("logs", tags=TAGS)

    def present() -> None:
        vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16", tags=TAGS)
        aws.ec2.FlowLog(
            "flow",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination="arn:lg",
            iam_role_arn="arn:role",
            tags=TAGS,
        )
        bucket = aws.s3.Bucket("logs", tags=TAGS)
        aws.s3.BucketPublicAccessBlock(
            "logs-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )

    bad, good = record(missing), record(present)
    assert _stack_violations(bad, "aws-ec2-vpc-flow-logs")
    assert _stack_violations(bad, "aws-s3-bucket-access-blocked")
    assert _stack_violations(good, "aws-ec2-vpc-flow-logs") == []
    assert _stack_violations(good, "aws-s3-bucket-access-blocked") == []


def _gcp_graph(*, alerts: bool, dead_letter: bool) -> ProgramRun:
    def program() -> None:
        sql = gcp.sql.DatabaseInstance(
            "postgres", database_version="POSTGRES_16", settings={"tier": "db-f1-micro"}
        )
        redis = gcp.redis.Instance("cache", memory_size_gb=1)
        jobs = gcp.pubsub.Topic("jobs")
        dlq = gcp.pubsub.Topic("jobs-dlq")
        policy: gcp.pubsub.SubscriptionDeadLetterPolicyArgsDict | None = (
            {"dead_letter_topic": dlq.id, "max_delivery_attempts": 5} if dead_letter else None
        )
        gcp.pubsub.Subscription("jobs-push", topic=jobs.id, dead_letter_policy=policy)
        dlq_sub = gcp.pubsub.Subscription("jobs-dlq-pull", topic=dlq.id)
        if alerts:
            for name, filter_ in (
                (
                    "sql-cpu",
                    sql.name.apply(lambda n: f'resource.label.database_id="groundwork-test:{n}"'),
                ),
                ("redis-memory", redis.name.apply(lambda n: f'resource.label.instance_id="{n}"')),
                (
                    "dead-letters",
                    dlq_sub.name.apply(lambda n: f'resource.label.subscription_id="{n}"'),
                ),
            ):
                gcp.monitoring.AlertPolicy(
                    name,
                    display_name=name,
                    combiner="OR",
                    conditions=[
                        {
                            "display_name": name,
                            "condition_threshold": {
                                "filter": filter_,
                                "comparison": "COMPARISON_GT",
                                "duration": "60s",
                            },
                        }
                    ],
                )

    return record(program)


def test_gcp_datastores_and_dead_letters_need_alerts() -> None:
    found = _stack_violations(
        _gcp_graph(alerts=False, dead_letter=True), "gcp-monitoring-datastore-alerted"
    )
    assert len(found) == 3, found
    assert (
        _stack_violations(
            _gcp_graph(alerts=True, dead_letter=True), "gcp-monitoring-datastore-alerted"
        )
        == []
    )


def test_work_subscription_needs_a_dead_letter_policy() -> None:
    found = _stack_violations(
        _gcp_graph(alerts=True, dead_letter=False), "gcp-pubsub-subscription-dead-letter"
    )
    # Without a dead-letter policy nothing marks jobs-dlq as a DLQ, so both subscriptions
    # are work subscriptions.
    assert {f.split(":")[0] for f in found} == {"jobs-push", "jobs-dlq-pull"}
    assert (
        _stack_violations(
            _gcp_graph(alerts=True, dead_letter=True), "gcp-pubsub-subscription-dead-letter"
        )
        == []
    )


def test_http_proxy_must_redirect() -> None:
    def program(redirect: bool) -> None:
        if redirect:
            url_map = gcp.compute.URLMap(
                "http-redirect", default_url_redirect={"https_redirect": True, "strip_query": False}
            )
        else:
            url_map = gcp.compute.URLMap("http-serve", default_service="backend")
        gcp.compute.TargetHttpProxy("http", url_map=url_map.id)

    assert _stack_violations(
        record(lambda: program(False)), "gcp-compute-targethttpproxy-https-redirect"
    )
    assert (
        _stack_violations(
            record(lambda: program(True)), "gcp-compute-targethttpproxy-https-redirect"
        )
        == []
    )
