"""Both AWS stacks end to end under mocks: inventory, tier differences, contracts, safety."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from groundwork_app.contract import deployment_contract
from groundwork_app.settings import QueueBackend
from groundwork_app.settings import Settings as AppSettings

from groundwork.mockrun import ProgramRun
from groundwork.stack_outputs import AwsOutputs
from stacks.aws import DLQ_NAME, approx_max_connections
from stacks.config import ConfigError
from tests.aws.conftest import run_stack

# The names groundwork ops reads back (groundwork/stack_outputs.py owns them).
CONTRACT_OUTPUTS = AwsOutputs.__required_keys__


LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def _count(run: ProgramRun) -> Counter[str]:
    return Counter(r.type for r in run.resources)


def _service(run: ProgramRun, process: str) -> Any:
    return next(r for r in run.of_type("aws:ecs/service:Service") if r.name.endswith(process))


def _task_def(run: ProgramRun, process: str) -> Any:
    return next(
        r
        for r in run.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if r.name.endswith(f"-{process}")
    )


# --- inventory --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (
            "staging",
            {
                "aws:ec2/subnet:Subnet": 6,
                "aws:ec2/natGateway:NatGateway": 0,
                "aws:ec2/instance:Instance": 1,  # nat = instance
                "aws:ec2/vpcEndpoint:VpcEndpoint": 1,
                "aws:ecs/service:Service": 3,
                "aws:ecs/taskDefinition:TaskDefinition": 4,
                "aws:rds/instance:Instance": 1,
                "aws:rds/proxy:Proxy": 0,
                "aws:wafv2/webAcl:WebAcl": 0,
                "aws:elasticache/replicationGroup:ReplicationGroup": 1,
                "aws:mq/broker:Broker": 0,  # queue = sqs
                "aws:sqs/queue:Queue": 2,
                "aws:lb/loadBalancer:LoadBalancer": 1,
                "aws:lb/listener:Listener": 1,
                "aws:appautoscaling/policy:Policy": 3,
                "aws:cloudwatch/dashboard:Dashboard": 1,
                "aws:sns/topic:Topic": 1,
                "aws:sns/topicSubscription:TopicSubscription": 0,
                "docker:index/image:Image": 1,
                "aws:ecr/repository:Repository": 1,
                "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": 1,
                "aws:ec2/flowLog:FlowLog": 1,
            },
        ),
        (
            "production",
            {
                "aws:ec2/subnet:Subnet": 9,
                "aws:ec2/natGateway:NatGateway": 3,
                "aws:ec2/instance:Instance": 0,
                "aws:ec2/vpcEndpoint:VpcEndpoint": 1,  # S3 gateway; interface endpoints off
                "aws:ecs/service:Service": 3,
                "aws:ecs/taskDefinition:TaskDefinition": 4,
                "aws:rds/instance:Instance": 1,
                "aws:rds/proxy:Proxy": 1,
                "aws:wafv2/webAcl:WebAcl": 1,
                "aws:elasticache/replicationGroup:ReplicationGroup": 1,
                "aws:mq/broker:Broker": 1,
                "aws:sqs/queue:Queue": 0,
                "aws:lb/loadBalancer:LoadBalancer": 1,
                "aws:lb/listener:Listener": 1,
                "aws:appautoscaling/policy:Policy": 3,
                "aws:cloudwatch/dashboard:Dashboard": 1,
                "aws:sns/topic:Topic": 1,
                "docker:index/image:Image": 1,
                "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": 1,
                "aws:ec2/flowLog:FlowLog": 1,
            },
        ),
    ],
)
def test_inventory(stack: str, expected: dict[str, int], request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    counts = _count(run)
    assert {t: counts.get(t, 0) for t in expected} == expected


def test_every_component_is_present(staging: ProgramRun) -> None:
    components = {r.type for r in staging.resources if r.is_component}
    assert components == {
        "groundwork:aws:EncryptionKey",
        "groundwork:aws:Network",
        "groundwork:aws:ServiceFirewall",
        "groundwork:aws:SecretStore",
        "groundwork:aws:Database",
        "groundwork:aws:Cache",
        "groundwork:aws:SqsJobQueue",
        "groundwork:aws:NatInstance",
        "groundwork:aws:Edge",
        # Composed by Edge / ContainerService (issue 19); DnsCertificate only
        # with a hosted zone, which this stack does not set.
        "groundwork:aws:AccessLogBucket",
        "groundwork:aws:ContainerService",
        "groundwork:aws:ImageRepository",
        "groundwork:aws:EcsCluster",
        "groundwork:aws:TaskLogs",
        "groundwork:aws:TaskRoles",
        "groundwork:aws:FargateTaskDefinition",
        "groundwork:aws:FargateService",
        "groundwork:aws:ServiceAutoscaling",
        "groundwork:aws:KeyRotation",
        "groundwork:aws:Alarms",
    }


def test_children_are_parented_to_their_component(staging: ProgramRun) -> None:
    by_urn = staging.by_urn()
    custom = [r for r in staging.resources if r.custom and not r.type.startswith("pulumi:")]
    orphans = [r.name for r in custom if r.parent not in by_urn]
    assert orphans == []


# --- staging vs production --------------------------------------------------------------


def test_database_tiers(staging: ProgramRun, production: ProgramRun) -> None:
    s = staging.one("aws:rds/instance:Instance").inputs
    p = production.one("aws:rds/instance:Instance").inputs
    assert (s["multiAz"], p["multiAz"]) == (False, True)
    assert (s["deletionProtection"], p["deletionProtection"]) == (False, True)
    assert (s["skipFinalSnapshot"], p["skipFinalSnapshot"]) == (True, False)
    assert p["finalSnapshotIdentifier"]
    assert (s["backupRetentionPeriod"], p["backupRetentionPeriod"]) == (7, 30)


def test_retention_tiers(staging: ProgramRun, production: ProgramRun) -> None:
    for run, days in ((staging, 30), (production, 365)):
        groups = run.of_type("aws:cloudwatch/logGroup:LogGroup")
        assert groups and {g.inputs["retentionInDays"] for g in groups} == {days}
    # The logs key follows groundwork:cmek (on in production, off in staging).
    assert all(g.inputs.get("kmsKeyId") for g in production.of_type(LOG_GROUP))
    assert not any(g.inputs.get("kmsKeyId") for g in staging.of_type(LOG_GROUP))


def test_task_counts_and_capacity(staging: ProgramRun, production: ProgramRun) -> None:
    for run, api, worker, relay in ((staging, 1, 1, 1), (production, 2, 2, 2)):
        assert _service(run, "api").inputs["desiredCount"] == api
        assert _service(run, "worker").inputs["desiredCount"] == worker
        assert _service(run, "relay").inputs["desiredCount"] == relay
    # Staging runs every service on Spot (docs/cost-model.md: an interruption restarts a
    # task); production none.
    for process in ("api", "worker", "relay"):
        spot = _service(staging, process).inputs["capacityProviderStrategies"]
        on_demand = _service(production, process).inputs["capacityProviderStrategies"]
        assert [s["capacityProvider"] for s in spot] == ["FARGATE_SPOT"], process
        assert [s["capacityProvider"] for s in on_demand] == ["FARGATE"], process
        # Graviton on both tiers, Spot in staging: "FARGATE_SPOT supports Linux tasks with
        # the ARM64 architecture on platform version 1.4.0 or later" (ECS API reference,
        # CapacityProviderStrategyItem); LATEST is 1.4.0 on Linux.
        for run in (staging, production):
            task_def = _task_def(run, process)
            assert task_def.inputs["runtimePlatform"]["cpuArchitecture"] == "ARM64", process
            assert _service(run, process).inputs["platformVersion"] == "LATEST"


def test_ecs_exec_only_outside_production(staging: ProgramRun, production: ProgramRun) -> None:
    assert all(s.inputs["enableExecuteCommand"] for s in staging.of_type("aws:ecs/service:Service"))
    assert not any(
        s.inputs["enableExecuteCommand"] for s in production.of_type("aws:ecs/service:Service")
    )


def test_high_availability_tiers(
    staging: ProgramRun, production: ProgramRun, staging_rabbitmq: ProgramRun
) -> None:
    s_cache = staging.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    p_cache = production.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs
    assert (s_cache["numCacheClusters"], p_cache["numCacheClusters"]) == (1, 2)
    assert (s_cache["multiAzEnabled"], p_cache["multiAzEnabled"]) == (False, True)
    assert (s_cache["automaticFailoverEnabled"], p_cache["automaticFailoverEnabled"]) == (
        False,
        True,
    )
    assert (s_cache["snapshotRetentionLimit"], p_cache["snapshotRetentionLimit"]) == (0, 7)
    s_mq = staging_rabbitmq.one("aws:mq/broker:Broker").inputs
    p_mq = production.one("aws:mq/broker:Broker").inputs
    assert (s_mq["deploymentMode"], p_mq["deploymentMode"]) == (
        "SINGLE_INSTANCE",
        "CLUSTER_MULTI_AZ",
    )
    s_lb = staging.one("aws:lb/loadBalancer:LoadBalancer").inputs
    p_lb = production.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert (s_lb["enableDeletionProtection"], p_lb["enableDeletionProtection"]) == (False, True)


def test_db_host_is_the_proxy_when_there_is_one(
    staging: ProgramRun, production: ProgramRun, helpers: Any
) -> None:
    def env(run: ProgramRun) -> dict[str, str]:
        (container,) = helpers.container_definitions(_task_def(run, "api"))
        return {e["name"]: e["value"] for e in container["environment"]}

    assert ".proxy-" in env(production)["DB_HOST"]
    assert env(staging)["DB_HOST"].endswith(".rds.amazonaws.com")
    assert ".proxy-" not in env(staging)["DB_HOST"]


# --- contracts --------------------------------------------------------------------------


def test_outputs_match_the_contract(staging: ProgramRun, staging_rabbitmq: ProgramRun) -> None:
    out = staging.outputs
    assert set(out) == set(staging_rabbitmq.outputs) == CONTRACT_OUTPUTS
    assert out["cloud"] == "aws" and out["region"] == "us-east-1"
    assert staging_rabbitmq.outputs["dlq_name"] == DLQ_NAME == "jobs.dlq"
    assert out["queue_backend"] == "sqs" and out["broker_id"] is None
    assert out["dlq_url"].startswith("https://sqs.us-east-1.amazonaws.com/")
    assert out["dlq_name"] == out["dlq_url"].rsplit("/", 1)[-1]
    assert out["db_instance_identifier"] == "groundwork-staging-db"
    assert out["api_url"].startswith("http://")
    assert "#dashboards:name=groundwork-staging-alarms" in out["dashboard_url"]
    assert isinstance(out["task_subnet_ids"], list) and len(out["task_subnet_ids"]) == 2
    assert out["task_security_group_ids"] == [
        r.state["id"]
        for r in staging.of_type("aws:ec2/securityGroup:SecurityGroup")
        if r.name.endswith("-fw-migrate")
    ]
    assert set(out["secret_arns"]) == {
        "jwt-secret",
        "webhook-secret",
        "llm-api-key",
        "db-master",
        "cache-auth",
    }
    assert set(staging_rabbitmq.outputs["secret_arns"]) == {
        *out["secret_arns"],
        "broker-credentials",
        "broker-admin",
    }
    assert set(out["log_group_names"]) == {"api", "worker", "relay", "migrate", "vpc-flow-logs"}


@pytest.mark.parametrize(("stack", "count"), [("staging", 3), ("staging_rabbitmq", 5)])
def test_outputs_hold_no_secret_values(
    stack: str, count: int, request: pytest.FixtureRequest
) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    passwords = run.of_type("random:index/randomPassword:RandomPassword")
    generated = {str(r.state["result"]) for r in passwords if r.state.get("result")}
    assert len(generated) == count  # jwt, webhook, cache AUTH (+ broker app + admin)
    dumped = json.dumps(run.outputs)
    assert not any(value in dumped for value in generated)


@pytest.mark.parametrize("process", ["api", "worker", "relay", "migrate"])
@pytest.mark.parametrize(
    ("stack", "tier", "backend"),
    [
        ("staging", "staging", QueueBackend.SQS),
        ("staging_rabbitmq", "staging", QueueBackend.RABBITMQ),
        ("production", "production", QueueBackend.RABBITMQ),
        ("production_sqs", "production", QueueBackend.SQS),
    ],
)
def test_every_container_gets_exactly_the_contract(
    stack: str,
    tier: str,
    backend: QueueBackend,
    process: str,
    request: pytest.FixtureRequest,
    helpers: Any,
) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    contract = deployment_contract(backend)
    (container,) = helpers.container_definitions(_task_def(run, process))
    env = {e["name"]: e["value"] for e in container["environment"]}
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert set(env) == contract.env
    if process == "migrate":
        assert set(secrets) == contract.secrets
        # The master user, straight to the instance, with the secret read at task start.
        assert env["DB_IAM_AUTH"] == "false" and env["DB_USER"] == "groundwork"
        assert env["DB_APP_USER"] == "groundwork_app"
        assert ".rds.amazonaws.com" in env["DB_HOST"] and ".proxy-" not in env["DB_HOST"]
        assert secrets["DB_PASSWORD"].endswith(":password::")
        assert "rds!" in secrets["DB_PASSWORD"]  # the RDS-managed master secret
    else:
        # No database password at all: a fresh IAM token per connection, so the weekly
        # rotation of the master secret never reaches a running task.
        assert set(secrets) == contract.secrets - {"DB_PASSWORD", "RABBITMQ_ADMIN_PASSWORD"}
        assert env["DB_IAM_AUTH"] == "true" and env["DB_USER"] == "groundwork_app"
    assert env["APP_ENV"] == tier
    assert env["DB_SSLMODE"] == "verify-full"  # CA per tier: test_rds_ca.py
    assert env["REDIS_TLS"] == "true"
    assert env["QUEUE_BACKEND"] == backend.value
    assert all(v.startswith("arn:aws:secretsmanager:") for v in secrets.values())
    if backend is QueueBackend.RABBITMQ:
        assert env["RABBITMQ_TLS"] == "true"
        assert env["RABBITMQ_PORT"] == "5671"
        assert env["RABBITMQ_HOST"].endswith(".mq.us-east-1.amazonaws.com")
        assert secrets["RABBITMQ_PASSWORD"].endswith(":password::")
        return
    (queue,) = [q for q in run.of_type("aws:sqs/queue:Queue") if q.inputs.get("redrivePolicy")]
    (dlq,) = [q for q in run.of_type("aws:sqs/queue:Queue") if not q.inputs.get("redrivePolicy")]
    assert env["SQS_QUEUE_URL"] == queue.state["url"]
    assert env["SQS_DLQ_URL"] == dlq.state["url"]
    # The app refuses a visibility timeout at or below its job deadline: the values the
    # stack injects (LLM settings at their defaults) must pass that check.
    app = AppSettings(**{**{k.lower(): v for k, v in env.items()}, "app_env": "test"})
    assert app.sqs_visibility_timeout_seconds > app.delivery_deadline_seconds
    assert queue.inputs["visibilityTimeoutSeconds"] == app.sqs_visibility_timeout_seconds


def test_execution_role_reads_exactly_the_injected_secrets(
    staging: ProgramRun, helpers: Any
) -> None:
    injected = {
        s["valueFrom"].removesuffix(":password::")
        for process in ("api", "migrate")
        for s in helpers.container_definitions(_task_def(staging, process))[0]["secrets"]
    }
    policy = json.loads(
        next(
            r
            for r in staging.of_type("aws:iam/rolePolicy:RolePolicy")
            if r.name.endswith("-app-execution-policy")
        ).inputs["policy"]
    )
    read = next(s for s in policy["Statement"] if s["Sid"] == "ReadTaskSecrets")
    assert set(read["Resource"]) == injected


# --- security and tags ------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_tags_on_every_taggable_resource(
    stack: str, request: pytest.FixtureRequest, helpers: Any
) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    expected = {
        "environment": stack,
        "service": "groundwork",
        "managed-by": "pulumi",
        "cost-center": "platform",
    }
    taggable = [r for r in run.resources if r.custom and helpers.taggable(r.type)]
    assert len(taggable) > 100
    missing = [
        r.name
        for r in taggable
        if {k: (r.inputs.get("tags") or {}).get(k) for k in expected} != expected
    ]
    assert missing == []
    for provider in run.of_type("pulumi:providers:aws"):  # production: + the backup region's
        assert json.loads(provider.inputs["defaultTags"])["tags"] == expected


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_only_the_alb_is_open_to_the_internet(
    stack: str, request: pytest.FixtureRequest, helpers: Any
) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    groups = helpers.ids_by_name(run, "aws:ec2/securityGroup:SecurityGroup")
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    public = [
        r
        for r in rules
        if r.inputs.get("cidrIpv4") == "0.0.0.0/0" or r.inputs.get("cidrIpv6") == "::/0"
    ]
    assert {
        (groups[r.inputs["securityGroupId"]], r.inputs["fromPort"], r.inputs["toPort"])
        for r in public
    } == {("groundwork-" + stack + "-fw-alb", p, p) for p in (80, 443)}
    assert len(public) == 4  # 80 and 443, IPv4 and IPv6
    # Every other ingress names a source security group (or the VPC for endpoints).
    for rule in rules:
        if rule in public:
            continue
        assert rule.inputs.get("referencedSecurityGroupId") or rule.inputs.get("cidrIpv4") == (
            "10.40.0.0/16"
        ), rule.name


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_every_security_group_and_rule_is_described(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    for token in (
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    ):
        resources = run.of_type(token)
        assert resources
        assert [r.name for r in resources if not r.inputs.get("description")] == []


def test_data_stores_admit_only_task_groups(staging_rabbitmq: ProgramRun, helpers: Any) -> None:
    staging = staging_rabbitmq
    groups = helpers.ids_by_name(staging, "aws:ec2/securityGroup:SecurityGroup")
    rules = staging.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    for store, port in (("db-sg", 5432), ("cache-sg", 6379), ("mq-sg", 5671)):
        into = [r for r in rules if groups[r.inputs["securityGroupId"]].endswith(store)]
        assert into, store
        sources = {groups[r.inputs["referencedSecurityGroupId"]] for r in into}
        assert all("-fw-" in s for s in sources), sources
        ports = {(r.inputs["fromPort"], r.inputs["toPort"]) for r in into}
        # The broker's management API (443) admits the migrate task alone.
        management = {
            groups[r.inputs["referencedSecurityGroupId"]]
            for r in into
            if r.inputs["fromPort"] == 443
        }
        assert ports - {(443, 443)} == {(port, port)}
        assert management <= {"groundwork-staging-fw-migrate"}


def test_autoscaled_services_ignore_desired_count(staging: ProgramRun) -> None:
    assert _service(staging, "api").ignore_changes == ["desiredCount"]
    assert _service(staging, "worker").ignore_changes == ["desiredCount"]


@pytest.mark.parametrize("stack", ["staging_rabbitmq", "production"])
def test_worker_drains_within_the_stop_timeout_and_scales_on_its_measured_slots(
    stack: str, request: pytest.FixtureRequest, helpers: Any
) -> None:
    # Fargate sends SIGTERM, then SIGKILL after stopTimeout (at most 120 s): the drain of
    # in-flight LLM calls (SHUTDOWN_TIMEOUT_SECONDS) must end before it.
    run: ProgramRun = request.getfixturevalue(stack)
    for process in ("api", "worker", "relay"):
        (container,) = helpers.container_definitions(_task_def(run, process))
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert container["stopTimeout"] == 120
        assert float(env["SHUTDOWN_TIMEOUT_SECONDS"]) + 10 <= container["stopTimeout"]
        # Prefetch = slots: the broker stops delivering when every slot is busy.
        assert env["QUEUE_PREFETCH"] == env["WORKER_CONCURRENCY"]
    policy = next(
        r.inputs["targetTrackingScalingPolicyConfiguration"]
        for r in run.of_type("aws:appautoscaling/policy:Policy")
        if r.name.endswith("worker-queue-depth")
    )
    assert policy["targetValue"] == 2 * int(env["WORKER_CONCURRENCY"])


def test_connection_alarm_threshold_tracks_the_instance_size() -> None:
    assert approx_max_connections("db.t4g.micro") == 112
    assert approx_max_connections("db.m7g.large") == 901
    assert approx_max_connections("db.r7g.large") > approx_max_connections("db.m7g.large")


# --- invalid configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        ({"nat": "two"}, ["groundwork:nat", "'two'", "none, instance, single, one-per-az"]),
        ({"queue": "kafka"}, ["groundwork:queue", "'kafka'", "rabbitmq, sqs"]),
        ({"cpuArchitecture": "sparc"}, ["groundwork:cpuArchitecture", "'sparc'", "arm64"]),
        ({"logRetentionDays": "10"}, ["groundwork:logRetentionDays", "10", "must be one of"]),
        ({"vpcCidr": "10.0.0.0/24"}, ["groundwork:vpcCidr", "'10.0.0.0/24'", "/16 to /20"]),
        (
            {"domain": "api.example.com"},
            ["groundwork:domain", "'api.example.com'", "certificateArn", "hostedZoneId"],
        ),
        (
            {"queue": "rabbitmq", "brokerCluster": "true"},
            ["groundwork:brokerInstanceType", "'mq.t3.micro'", "mq.m5"],
        ),
        ({"apiMemoryMb": "4096"}, ["groundwork:apiMemoryMb", "4096", "512, 1024 or 2048"]),
        # Inside the range but off Fargate's 1 GiB step: RegisterTaskDefinition refuses it.
        (
            {"apiCpu": "1024", "apiMemoryMb": "3000"},
            ["groundwork:apiMemoryMb", "3000", "2048 to 8192 in steps of 1024"],
        ),
        ({"workerMemoryMb": "768"}, ["groundwork:workerMemoryMb", "768", "512, 1024 or 2048"]),
        ({"nat": "none"}, ["groundwork:nat", "'none'", "interfaceEndpoints"]),
        ({"workerMinCount": "0"}, ["groundwork:workerMinCount", "0", "at least 1"]),
        ({"alarmEmail": "oncall"}, ["groundwork:alarmEmail", "'oncall'", "e-mail"]),
        ({"secretRotationDays": "1"}, ["groundwork:secretRotationDays", "1", "2 to 365"]),
    ],
)
def test_invalid_config_fails_before_any_resource(
    config: dict[str, str], fragments: list[str], helpers: Any
) -> None:
    mocks = helpers.CountingMocks()
    full = {
        "aws:region": "us-east-1",
        "groundwork:environment": "staging",
        "groundwork:insecureHttp": "true",
    }
    full.update({f"groundwork:{k}": v for k, v in config.items()})
    error = helpers.run_failing("staging", full, mocks)
    assert isinstance(error, ConfigError)
    message = str(error)
    for fragment in fragments:
        assert fragment in message, message
    assert mocks.created == []


def test_plain_http_must_be_asked_for_by_name(helpers: Any) -> None:
    mocks = helpers.CountingMocks()
    config = {"aws:region": "us-east-1", "groundwork:environment": "staging"}
    error = helpers.run_failing("staging", config, mocks)
    assert isinstance(error, ConfigError)
    assert "groundwork:domain is not set" in str(error)
    assert "groundwork:insecureHttp" in str(error)
    assert mocks.created == []


def test_production_refuses_a_single_cache_node(helpers: Any) -> None:
    mocks = helpers.CountingMocks()
    config = {
        "aws:region": "us-east-1",
        "groundwork:cacheNodes": "1",
        "groundwork:insecureHttp": "true",
    }
    error = helpers.run_failing("production", config, mocks)
    assert isinstance(error, ConfigError)
    assert "groundwork:cacheNodes = 1" in str(error) and "failover" in str(error)
    assert mocks.created == []


def test_region_is_required(helpers: Any) -> None:
    mocks = helpers.CountingMocks()
    error = helpers.run_failing("staging", {"groundwork:environment": "staging"}, mocks)
    assert isinstance(error, ConfigError) and "aws:region" in str(error)
    assert mocks.created == []


def test_https_stack_with_certificate(helpers: Any) -> None:
    run = helpers.run_stack(
        "staging",
        domain="api.example.com",
        certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/abc",
    )
    assert run.outputs["api_url"] == "https://api.example.com"
    listeners = {r.inputs["port"]: r.inputs for r in run.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["protocol"] == "HTTPS"
    assert listeners[80]["defaultActions"][0]["type"] == "redirect"
    (container,) = helpers.container_definitions(_task_def(run, "api"))
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["CORS_ORIGINS"] == "https://api.example.com"


# The longest service name the settings allow: every name derived from it must still fit.
LONGEST_SERVICE = "s" * 21
ELB_NAME = re.compile(r"^(?!internal-)[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$")


@pytest.fixture(scope="module")
def long_named_production() -> ProgramRun:
    return run_stack("production", service=LONGEST_SERVICE)


def test_load_balancer_names_fit_elb_limits(
    production: ProgramRun, long_named_production: ProgramRun
) -> None:
    # Pulumi's auto-name (logical name + 8 characters) breaks the 32-character limit of
    # load balancers and target groups for every stack prefix; the names must be explicit.
    for run in (production, long_named_production):
        for type_token in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
            for resource in run.of_type(type_token):
                name = resource.inputs.get("name")
                assert name and ELB_NAME.match(name), (resource.name, name)
    albs = [r.inputs["name"] for r in production.of_type("aws:lb/loadBalancer:LoadBalancer")]
    assert albs == ["groundwork-production-edge-alb"]


def test_fixed_names_fit_their_services_limits(long_named_production: ProgramRun) -> None:
    run = long_named_production
    (group,) = run.of_type("aws:elasticache/replicationGroup:ReplicationGroup")
    assert len(group.inputs["replicationGroupId"]) <= 40
    for db in run.of_type("aws:rds/instance:Instance"):
        assert len(db.inputs["identifier"]) <= 63
    (broker,) = run.of_type("aws:mq/broker:Broker")
    assert len(broker.inputs["brokerName"]) <= 50
    # Auto-named resources get logical name + 8 characters.
    for role in run.of_type("aws:iam/role:Role"):
        assert len(role.name) + 8 <= 64, role.name
    for bucket in run.of_type("aws:s3/bucket:Bucket"):
        assert len(bucket.name) + 8 <= 63 and bucket.name == bucket.name.lower()


def test_task_definition_revisions_survive_replacement(production: ProgramRun) -> None:
    # `ops rollback` and the circuit breaker run the previous revision: it must stay ACTIVE.
    definitions = production.of_type("aws:ecs/taskDefinition:TaskDefinition")
    assert len(definitions) == 4
    assert all(td.inputs.get("skipDestroy") is True for td in definitions)
