"""Day-2 events against AWS's documented behaviour: credential rotation, replacement,
accidental destroy, regional loss. Each test names the AWS document it reproduces."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.aws.database import connect_arn, proxy_resource_id
from groundwork.mockrun import FAKE_ACCOUNT, ProgramRun
from stacks.config import ConfigError
from tests.aws.conftest import AWS_CONFIG

# rds-db:connect resources (UsingWithRDS.IAMDBAuth.IAMPolicy.html):
#   arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<db-user>     instance
#   arn:aws:rds-db:<region>:<account>:dbuser:prx-<proxy-resource-id>/<db-user>  RDS Proxy
DBUSER_ARN = re.compile(
    r"^arn:aws:rds-db:us-east-1:(?P<account>\d{12}):dbuser:(?P<id>(db|prx)-[A-Za-z0-9-]+)/"
    r"(?P<user>[a-z_][a-z0-9_]*)$"
)


def _policy(run: ProgramRun, suffix: str) -> dict[str, Any]:
    policy = next(
        r for r in run.of_type("aws:iam/rolePolicy:RolePolicy") if r.name.endswith(suffix)
    )
    return json.loads(policy.inputs["policy"])


def _task_def_env(run: ProgramRun, process: str) -> dict[str, str]:
    definition = next(
        r
        for r in run.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if r.name.endswith(f"-{process}")
    )
    (container,) = json.loads(definition.inputs["containerDefinitions"])
    return {e["name"]: e["value"] for e in container["environment"]}


# --- 1. rotation: IAM authentication for the application -------------------------------


def test_connect_arn_shapes_follow_the_rds_docs() -> None:
    proxy = f"arn:aws:rds:eu-west-1:{FAKE_ACCOUNT}:db-proxy:prx-0123456789abcdef0"
    assert proxy_resource_id(proxy) == "prx-0123456789abcdef0"
    assert connect_arn(proxy, proxy_resource_id(proxy), "app") == (
        f"arn:aws:rds-db:eu-west-1:{FAKE_ACCOUNT}:dbuser:prx-0123456789abcdef0/app"
    )
    instance = f"arn:aws-cn:rds:cn-north-1:{FAKE_ACCOUNT}:db:gw-db"
    assert connect_arn(instance, "db-ABCDEFGHIJKL", "app") == (
        f"arn:aws-cn:rds-db:cn-north-1:{FAKE_ACCOUNT}:dbuser:db-ABCDEFGHIJKL/app"
    )
    with pytest.raises(ValueError, match="not an RDS Proxy"):
        proxy_resource_id(instance)


def test_staging_tasks_connect_to_the_instance_with_iam(staging: ProgramRun) -> None:
    # Staging's queue is SQS: its statements (tests/aws/test_sqs_stack.py) sit beside this one.
    (statement,) = [
        s
        for s in _policy(staging, "-app-task-policy")["Statement"]
        if s["Action"] == "rds-db:connect"
    ]
    (resource,) = statement["Resource"]
    match = DBUSER_ARN.match(resource)
    assert match, resource
    instance = staging.one("aws:rds/instance:Instance")
    # The DbiResourceId, not the identifier: IAM would never match a name.
    assert match["id"] == instance.state["resourceId"] and match["id"].startswith("db-")
    assert match["user"] == _task_def_env(staging, "api")["DB_USER"] == "groundwork_app"
    assert match["account"] == FAKE_ACCOUNT
    assert _task_def_env(staging, "api")["DB_HOST"] == instance.state["address"]


def test_production_tasks_connect_through_the_proxy_with_iam(production: ProgramRun) -> None:
    (statement,) = _policy(production, "-app-task-policy")["Statement"]
    (resource,) = statement["Resource"]
    match = DBUSER_ARN.match(resource)
    assert match, resource
    proxy = production.one("aws:rds/proxy:Proxy")
    assert match["id"] == proxy.state["arn"].rsplit(":", 1)[-1] and match["id"].startswith("prx-")
    assert match["user"] == "groundwork_app"
    assert _task_def_env(production, "api")["DB_HOST"] == proxy.state["endpoint"]
    # The proxy logs in to the instance as the same role, with IAM (end-to-end).
    (proxy_statement,) = _policy(production, "-db-proxy-connect")["Statement"]
    instance = production.one("aws:rds/instance:Instance")
    assert proxy_statement["Resource"].endswith(
        f":dbuser:{instance.state['resourceId']}/groundwork_app"
    )
    assert proxy.inputs["defaultAuthScheme"] == "IAM_AUTH"


# --- 2. read replica -------------------------------------------------------------------


def test_read_replica_is_refused_naming_the_key(helpers: Any) -> None:
    error = helpers.run_failing(
        "staging",
        {**AWS_CONFIG, "groundwork:environment": "staging", "groundwork:dbReadReplica": "true"},
        helpers.CountingMocks(),
    )
    assert isinstance(error, ConfigError)
    assert "groundwork:dbReadReplica" in str(error) and "ManageMasterUserPassword" in str(error)


# --- 5. protection of stateful resources -------------------------------------------------


def test_final_snapshot_names_are_unique_per_database(production: ProgramRun) -> None:
    # A second destroy of a re-created database must not collide with the first final
    # snapshot: DBSnapshotAlreadyExists (CreateDBSnapshot / DeleteDBInstance API).
    instance = production.one("aws:rds/instance:Instance").inputs
    suffix = production.named("groundwork-production-db-final-snapshot")
    assert instance["skipFinalSnapshot"] is False
    assert (
        instance["finalSnapshotIdentifier"]
        == f"{instance['identifier']}-final-{suffix.state['hex']}"
    )


@pytest.mark.parametrize(
    "type_token",
    [
        "aws:rds/instance:Instance",
        "aws:kms/key:Key",
        "aws:secretsmanager/secret:Secret",
        "random:index/randomPassword:RandomPassword",
        "aws:elasticache/replicationGroup:ReplicationGroup",
    ],
)
def test_production_state_is_protected_and_retained(
    type_token: str, production: ProgramRun, staging: ProgramRun
) -> None:
    for resource in production.of_type(type_token):
        if resource.name.endswith("-alarms-kms-key"):
            continue  # encrypts alarm notifications in flight only: nothing to lose
        assert resource.protect and resource.retain_on_delete, resource.name
    for resource in staging.of_type(type_token):
        assert not resource.protect, resource.name


# --- 6. nat=none ------------------------------------------------------------------------


def test_nat_none_with_ecs_exec_gets_the_ssmmessages_endpoint() -> None:
    from tests.aws.conftest import run_stack

    run = run_stack("staging", nat="none", interfaceEndpoints="true", ecsExec="true")
    services = {
        e.inputs["serviceName"].rsplit(".", 1)[-1]
        for e in run.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert "ssmmessages" in services  # ECS Exec's channel, without a NAT
    assert {"api", "dkr", "secretsmanager", "logs", "s3"} <= services  # ecr.api, ecr.dkr
    assert run.of_type("aws:ec2/natGateway:NatGateway") == []


def test_nat_none_is_refused_in_production(helpers: Any) -> None:
    error = helpers.run_failing(
        "production",
        {
            **AWS_CONFIG,
            "groundwork:environment": "production",
            "groundwork:nat": "none",
            "groundwork:interfaceEndpoints": "true",
        },
        helpers.CountingMocks(),
    )
    assert isinstance(error, ConfigError)
    assert "groundwork:nat" in str(error) and "LLM" in str(error)


# --- 7. confused deputy -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role_suffix", "service", "source_arn"),
    [
        (
            "-net-flow-logs-role",
            "vpc-flow-logs.amazonaws.com",
            "arn:aws:ec2:us-east-1:{a}:vpc-flow-log/*",
        ),
        (
            "-db-monitoring",
            "monitoring.rds.amazonaws.com",
            "arn:aws:rds:us-east-1:{a}:db:groundwork-production-db",
        ),
        ("-db-proxy-role", "rds.amazonaws.com", None),
    ],
)
def test_service_roles_trust_only_this_account(
    role_suffix: str, service: str, source_arn: str | None, production: ProgramRun
) -> None:
    role = next(r for r in production.of_type("aws:iam/role:Role") if r.name.endswith(role_suffix))
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": service}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": FAKE_ACCOUNT}
    if source_arn is not None:
        assert statement["Condition"]["ArnLike"] == {
            "aws:SourceArn": source_arn.format(a=FAKE_ACCOUNT)
        }


# --- 9. compliance hardening -------------------------------------------------------------


def test_waf_logs_redact_credentials(production: ProgramRun) -> None:
    logging = production.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    group = production.one("aws:wafv2/webAcl:WebAcl")
    assert logging.inputs["resourceArn"] == group.state["arn"]
    (destination,) = logging.inputs["logDestinationConfigs"]
    log_group = next(
        g
        for g in production.of_type("aws:cloudwatch/logGroup:LogGroup")
        if g.state["arn"] == destination
    )
    # WAF refuses a CloudWatch destination not named aws-waf-logs-* (logging-cw-logs.html).
    assert log_group.inputs["name"].startswith("aws-waf-logs-")
    assert log_group.inputs["kmsKeyId"] and log_group.inputs["retentionInDays"]
    redacted = {f["singleHeader"]["name"] for f in logging.inputs["redactedFields"]}
    assert "authorization" in redacted


def test_ecr_repository_uses_a_customer_key_where_cmek_is_on(
    staging: ProgramRun, production: ProgramRun
) -> None:
    (config,) = production.one("aws:ecr/repository:Repository").inputs["encryptionConfigurations"]
    keys = {k.state["arn"]: k.name for k in production.of_type("aws:kms/key:Key")}
    assert config["encryptionType"] == "KMS" and keys[config["kmsKey"]].endswith("-app-ecr-kms-key")
    # Staging (groundwork:cmek off): ECR's default AES256, no key at all.
    (config,) = staging.one("aws:ecr/repository:Repository").inputs["encryptionConfigurations"]
    assert config == {"encryptionType": "AES256"}


def test_every_log_group_has_retention_and_the_logs_key(production: ProgramRun) -> None:
    logs_key = production.named("groundwork-production-logs-key").state["arn"]
    for group in production.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs.get("retentionInDays"), group.name
        assert group.inputs.get("kmsKeyId") == logs_key, group.name


# --- audit: subnet sizes -------------------------------------------------------------------


def test_a_vpc_too_small_for_the_load_balancer_is_refused(helpers: Any) -> None:
    error = helpers.run_failing(
        "staging",
        {**AWS_CONFIG, "groundwork:environment": "staging", "groundwork:vpcCidr": "10.40.0.0/20"},
        helpers.CountingMocks(),
    )
    assert isinstance(error, ConfigError) and "/27" in str(error)


def test_public_subnets_meet_the_alb_minimum(staging: ProgramRun) -> None:
    import ipaddress

    public = [
        s
        for s in staging.of_type("aws:ec2/subnet:Subnet")
        if s.inputs.get("mapPublicIpOnLaunch") is not None and "public" in s.name
    ]
    assert public
    for subnet in public:
        assert ipaddress.ip_network(subnet.inputs["cidrBlock"]).prefixlen <= 27


def test_production_migrate_reaches_the_instance_and_the_broker_console(
    production: ProgramRun, helpers: Any
) -> None:
    """End-to-end IAM on the proxy admits IAM-enabled roles only: migrate (the master
    user) goes to the instance directly; it alone reaches the management API on 443."""
    groups = helpers.ids_by_name(production, "aws:ec2/securityGroup:SecurityGroup")
    edges = {
        (
            groups[r.inputs["securityGroupId"]],
            groups[r.inputs["referencedSecurityGroupId"]],
            r.inputs["fromPort"],
        )
        for r in production.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs.get("referencedSecurityGroupId") in groups
    }
    p = "groundwork-production"
    into = lambda target: {(src, port) for dst, src, port in edges if dst == target}  # noqa: E731
    assert into(f"{p}-db-sg") == {(f"{p}-db-proxy-sg", 5432), (f"{p}-fw-migrate", 5432)}
    assert into(f"{p}-db-proxy-sg") == {(f"{p}-fw-{s}", 5432) for s in ("api", "worker", "relay")}
    assert (f"{p}-fw-migrate", 443) in into(f"{p}-mq-sg")
    assert {src for src, port in into(f"{p}-mq-sg") if port == 443} == {f"{p}-fw-migrate"}


# --- 10. backups in a second region, pinned CA ----------------------------------------------


def test_production_replicates_backups_to_the_paired_region(
    production: ProgramRun, staging: ProgramRun
) -> None:
    # The replication resource is created in the destination region, with a KMS key of
    # that region: RDS cannot use a key across regions (USER_ReplicateBackups.html).
    replication = production.one(
        "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication"
    )
    instance = production.one("aws:rds/instance:Instance")
    assert replication.inputs["sourceDbInstanceArn"] == instance.state["arn"]
    providers = {p.urn: p for p in production.of_type("pulumi:providers:aws")}
    # A provider reference is "<provider urn>::<provider id>".
    dr = providers[replication.provider.rsplit("::", 1)[0]]
    assert dr.inputs["region"] == "us-west-2"
    key = next(
        k
        for k in production.of_type("aws:kms/key:Key")
        if k.state["arn"] == replication.inputs["kmsKeyId"]
    )
    assert key.provider.rsplit("::", 1)[0] == dr.urn
    assert replication.inputs["retentionPeriod"] == instance.inputs["backupRetentionPeriod"]
    assert (
        staging.of_type(
            "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication"
        )
        == []
    )


def test_a_region_without_a_known_pair_must_name_one(helpers: Any) -> None:
    error = helpers.run_failing(
        "production",
        {**AWS_CONFIG, "aws:region": "me-central-1", "groundwork:environment": "production"},
        helpers.CountingMocks(),
    )
    assert isinstance(error, ConfigError) and "groundwork:dbBackupRegion" in str(error)


def test_the_rds_ca_is_pinned(staging: ProgramRun) -> None:
    # Unpinned, RDS applies the region's current default CA, which AWS rotates.
    assert (
        staging.one("aws:rds/instance:Instance").inputs["caCertIdentifier"] == "rds-ca-rsa2048-g1"
    )
