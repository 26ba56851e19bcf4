"""Database (components/aws/database.py): secure defaults, RDS Proxy, conflicts."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws import Database, DatabaseArgs
from groundwork.mockrun import FAKE_ACCOUNT
from tests.aws.components.common import data_store_args
from tests.aws.components.common import role_policy as _policy


def _db(**kwargs: Any) -> DatabaseArgs:
    return data_store_args(DatabaseArgs, secrets_key=False, **kwargs)


def test_database_secure_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: Database("db", _db()))
    db = run.one("aws:rds/instance:Instance").inputs
    assert db["engine"] == "postgres" and db["engineVersion"] == "17"
    assert db["manageMasterUserPassword"] is True and "password" not in db
    assert db["storageEncrypted"] is True and db["kmsKeyId"] == db["masterUserSecretKmsKeyId"]
    assert db["publiclyAccessible"] is False and db["iamDatabaseAuthenticationEnabled"] is True
    assert db["performanceInsightsEnabled"] is True and db["performanceInsightsKmsKeyId"]
    assert db["monitoringInterval"] == 60 and db["monitoringRoleArn"]
    assert set(db["enabledCloudwatchLogsExports"]) >= {"postgresql", "upgrade"}
    assert db["maxAllocatedStorage"] == 100 and db["autoMinorVersionUpgrade"] is True
    assert db["copyTagsToSnapshot"] is True and db["backupRetentionPeriod"] == 7
    assert db["maintenanceWindow"] and db["backupWindow"]
    assert db["skipFinalSnapshot"] is False
    params = run.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert params["family"] == "postgres17"
    values = {p["name"]: p["value"] for p in params["parameters"]}
    assert values["rds.force_ssl"] == "1" and values["log_min_duration_statement"] == "500"
    assert run.of_type("aws:rds/proxy:Proxy") == []
    groups = helpers.ids_by_name(run, "aws:ec2/securityGroup:SecurityGroup")
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert {
        (groups[r.inputs["securityGroupId"]], r.inputs["referencedSecurityGroupId"]) for r in rules
    } == {("db-sg", "sg-api"), ("db-sg", "sg-worker")}


def test_database_waits_for_the_monitoring_policy_and_its_log_groups(helpers: Any) -> None:
    # RDS validates the enhanced-monitoring role when the instance is created; a role
    # without its policy attached yet fails CreateDBInstance. RDS creates a missing
    # /aws/rds/instance/<id>/<log> group itself, unencrypted and never expiring.
    run = helpers.run_component(lambda: Database("db", _db()))
    (instance,) = run.of_type("aws:rds/instance:Instance")
    assert run.named("db-monitoring-policy").urn in instance.depends_on
    groups = {g.inputs["name"]: g for g in run.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == {
        f"/aws/rds/instance/db/{log}" for log in instance.inputs["enabledCloudwatchLogsExports"]
    }
    assert {g.urn for g in groups.values()} <= set(instance.depends_on)


def test_database_proxy_uses_end_to_end_iam(helpers: Any) -> None:
    run = helpers.run_component(lambda: Database("db", _db(proxy=True)))
    proxy = run.one("aws:rds/proxy:Proxy")
    assert proxy.inputs["requireTls"] is True and proxy.inputs["engineFamily"] == "POSTGRESQL"
    # No secret at all: nothing for a rotation to invalidate.
    assert proxy.inputs["defaultAuthScheme"] == "IAM_AUTH" and not proxy.inputs.get("auths")
    # Targets started before the role can connect register as AUTH_FAILURE.
    assert run.named("db-proxy-connect").urn in proxy.depends_on
    assert run.one("aws:rds/proxyTarget:ProxyTarget").inputs["dbInstanceIdentifier"] == "db"
    groups = helpers.ids_by_name(run, "aws:ec2/securityGroup:SecurityGroup")
    rules = run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    edges = {
        (
            groups[r.inputs["securityGroupId"]],
            groups.get(
                r.inputs["referencedSecurityGroupId"], r.inputs["referencedSecurityGroupId"]
            ),
        )
        for r in rules
    }
    # Clients reach only the proxy; the database admits only the proxy.
    assert edges == {
        ("db-proxy-sg", "sg-api"),
        ("db-proxy-sg", "sg-worker"),
        ("db-sg", "db-proxy-sg"),
    }
    (statement,) = _policy(run, "db-proxy-connect")["Statement"]
    assert statement["Action"] == "rds-db:connect"
    assert statement["Resource"] == (
        f"arn:aws:rds-db:us-east-1:{FAKE_ACCOUNT}:dbuser:db-DB-POSTGRES/groundwork_app"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deletion_protection": True, "final_snapshot": False}, "final_snapshot"),
        ({"read_replica": True}, "ManageMasterUserPassword"),
        ({"app_username": "groundwork"}, "differ"),
        ({"allocated_storage_gb": 200, "max_allocated_storage_gb": 100}, "below"),
        ({"monitoring_interval_seconds": 7}, "monitoring_interval"),
    ],
)
def test_database_rejects_conflicts(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _db(**kwargs)
