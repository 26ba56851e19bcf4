"""``groundwork:cmek`` on AWS: customer-managed KMS keys where it is on (production), the
AWS-managed keys and service defaults where it is off (staging), every consumer of a key
following it, and a live stack never switching in place."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.aws.rotation import rotation_policy
from groundwork.mockrun import ProgramRun
from stacks import program
from stacks.config import ConfigError
from tests.aws.conftest import AWS_CONFIG, PasswordMocks, run_failing

KEY = "aws:kms/key:Key"
DB = "aws:rds/instance:Instance"
CACHE = "aws:elasticache/replicationGroup:ReplicationGroup"
SECRET = "aws:secretsmanager/secret:Secret"
REPO = "aws:ecr/repository:Repository"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
TOPIC = "aws:sns/topic:Topic"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def _key_names(run_: ProgramRun) -> dict[str, str]:
    return {k.state["arn"]: k.name for k in run_.of_type(KEY)}


def _statements(run_: ProgramRun, suffix: str) -> list[dict[str, Any]]:
    (policy,) = [p for p in run_.of_type(ROLE_POLICY) if p.name.endswith(suffix)]
    return list(json.loads(policy.inputs["policy"])["Statement"])


def test_production_encrypts_every_store_and_log_with_its_own_cmk(production: ProgramRun) -> None:
    keys = _key_names(production)
    (db,) = production.of_type(DB)
    for field in ("kmsKeyId", "masterUserSecretKmsKeyId", "performanceInsightsKmsKeyId"):
        assert keys[db.inputs[field]] == "groundwork-production-db-kms-key", field
    (cache,) = production.of_type(CACHE)
    assert keys[cache.inputs["kmsKeyId"]] == "groundwork-production-cache-kms-key"
    for secret in production.of_type(SECRET):
        assert keys[secret.inputs["kmsKeyId"]] == "groundwork-production-secrets-kms-key"
    (repo,) = production.of_type(REPO)
    assert keys[repo.inputs["encryptionConfigurations"][0]["kmsKey"]].endswith("-ecr-kms-key")
    for group in production.of_type(LOG_GROUP):
        assert keys[group.inputs["kmsKeyId"]] == "groundwork-production-logs-key", group.name
    decrypt = [
        s for s in _statements(production, "-execution-policy") if s["Action"] == "kms:Decrypt"
    ]
    assert {keys[arn] for s in decrypt for arn in s["Resource"]} == {
        "groundwork-production-secrets-kms-key",
        "groundwork-production-db-kms-key",
    }


def test_staging_uses_the_aws_managed_keys_and_owns_only_the_alarm_topic_key(
    staging_rabbitmq: ProgramRun,
) -> None:
    run_ = staging_rabbitmq
    # CloudWatch alarms cannot publish to a topic under aws/sns: its key policy cannot
    # grant cloudwatch.amazonaws.com (SNS Developer Guide, "Enable compatibility between
    # event sources from AWS services and encrypted topics"), so that key stays.
    (topic,) = run_.of_type(TOPIC)
    assert list(_key_names(run_).values()) == ["groundwork-staging-alarms-kms-key"]
    assert _key_names(run_)[topic.inputs["kmsMasterKeyId"]] == "groundwork-staging-alarms-kms-key"
    (db,) = run_.of_type(DB)
    # storage_encrypted without kms_key_id: RDS uses aws/rds (and aws/secretsmanager for
    # the managed master secret, aws/rds for Performance Insights).
    assert db.inputs["storageEncrypted"] is True
    for field in ("kmsKeyId", "masterUserSecretKmsKeyId", "performanceInsightsKmsKeyId"):
        assert not db.inputs.get(field), field
    (cache,) = run_.of_type(CACHE)
    assert cache.inputs["atRestEncryptionEnabled"] is True and not cache.inputs.get("kmsKeyId")
    secrets = run_.of_type(SECRET)
    assert secrets and not any(s.inputs.get("kmsKeyId") for s in secrets)
    (repo,) = run_.of_type(REPO)
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}]
    assert not any(g.inputs.get("kmsKeyId") for g in run_.of_type(LOG_GROUP))
    # No customer key to decrypt with: no KMS statement (an empty Resource is invalid IAM).
    for suffix in ("-execution-policy", "key-rotation-policy"):
        statements = _statements(run_, suffix)
        assert not [s for s in statements if "kms" in json.dumps(s.get("Action"))], suffix
    assert run_.outputs["logs_kms_key_arn"] is None


def test_staging_with_cmek_on_gets_production_keys() -> None:
    from tests.aws.conftest import run_stack

    run_ = run_stack("staging", cmek="true")
    names = set(_key_names(run_).values())
    assert names == {
        f"groundwork-staging-{k}"
        for k in (
            "logs-key",
            "db-kms-key",
            "cache-kms-key",
            "secrets-kms-key",
            "app-ecr-kms-key",
            "alarms-kms-key",
        )
    }
    rotation = _statements(run_, "key-rotation-policy")
    (use_key,) = [s for s in rotation if s["Sid"] == "UseTheSecretsKeyThroughSecretsManager"]
    assert _key_names(run_)[use_key["Resource"]] == "groundwork-staging-secrets-kms-key"


def test_rotation_policy_without_a_customer_key_has_no_kms_statement() -> None:
    common: dict[str, Any] = {
        "secret_arns": ["arn:aws:secretsmanager:us-east-1:1:secret:jwt"],
        "cluster": "c",
        "services": ["api"],
        "account": "1",
        "region": "us-east-1",
        "partition": "aws",
        "logs": "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/x",
    }
    without = rotation_policy(key=None, **common)["Statement"]
    with_key = rotation_policy(key="arn:aws:kms:us-east-1:1:key/k", **common)["Statement"]
    assert isinstance(without, list) and isinstance(with_key, list)
    assert [s["Sid"] for s in with_key if s not in without] == [
        "UseTheSecretsKeyThroughSecretsManager"
    ]


# --- a live stack never switches ---------------------------------------------------------

CMK_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
AWS_RDS_ARN = "arn:aws:kms:us-east-1:123456789012:key/0987dcba-09fe-87dc-65ba-ab0987654321"


class LiveDatabaseMocks(PasswordMocks):
    """``rds.getInstance`` answers as the provider does for the live database (or fails as
    it does when there is none), ``kms.getKey`` with the key's KeyManager (DescribeKey)."""

    def __init__(self, live_key: str | None, error: str | None = None) -> None:
        super().__init__()
        self.live_key = live_key
        self.error = error
        self.lookups: list[str] = []

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        if args.token == "aws:rds/getInstances:getInstances":
            # DescribeDBInstances with the db-instance-id filter: the matching instances,
            # an empty list when there is none (RDS API reference, Filters).
            (flt,) = args.args["filters"]
            assert flt["name"] == "db-instance-id"
            self.lookups.extend(flt["values"])
            if self.error is not None:
                return {}, [("filters", self.error)]
            ids = list(flt["values"]) if self.live_key is not None else []
            return {
                "instanceIdentifiers": ids,
                "instanceArns": [f"arn:aws:rds:us-east-1:123456789012:db:{i}" for i in ids],
                "id": "us-east-1",
            }, []
        if args.token == "aws:rds/getInstance:getInstance":
            # Only asked once the list found the instance; the provider's answer for a
            # missing one, should it be asked anyway.
            if self.live_key is None:
                return {}, [("dbInstanceIdentifier", "no matching RDS DB Instance found")]
            return {
                "dbInstanceIdentifier": args.args["dbInstanceIdentifier"],
                "kmsKeyId": self.live_key,
                "storageEncrypted": True,
            }, []
        if args.token == "aws:kms/getKey:getKey":
            manager = "CUSTOMER" if args.args["keyId"] == CMK_ARN else "AWS"
            return {"arn": args.args["keyId"], "keyManager": manager, "id": "k"}, []
        return super().call(args)


def _config(stack: str, **settings: str) -> dict[str, str]:
    return {
        **AWS_CONFIG,
        "groundwork:environment": stack,
        **{f"groundwork:{k}": v for k, v in settings.items()},
    }


def test_a_staging_stack_created_with_cmks_is_told_to_set_cmek_true() -> None:
    """Staging stacks deployed before cmek governed AWS carry CMKs: the new default (off)
    must not replace their database, cache and registry."""
    mocks = LiveDatabaseMocks(CMK_ARN)
    error = run_failing("staging", _config("staging"), mocks)
    assert isinstance(error, ConfigError), error
    assert "`groundwork:cmek: true`" in str(error)
    assert "replace the database, the cache and the image repository" in str(error)
    assert mocks.lookups == ["groundwork-staging-db"]


def test_switching_cmek_on_for_a_live_stack_is_refused() -> None:
    error = run_failing("production", _config("production"), LiveDatabaseMocks(AWS_RDS_ARN))
    assert isinstance(error, ConfigError), error
    assert "groundwork:cmek = true" in str(error) and "aws/rds" in str(error)


@pytest.mark.parametrize(
    ("stack", "live_key", "settings"),
    [
        ("staging", AWS_RDS_ARN, {}),
        ("staging", CMK_ARN, {"cmek": "true"}),
        ("production", CMK_ARN, {}),
        ("staging", None, {}),  # first deploy
        ("production", None, {}),
    ],
)
def test_unchanged_cmek_and_first_deploy_pass(
    stack: str, live_key: str | None, settings: dict[str, str]
) -> None:
    from groundwork.mockrun import run_program

    mocks = LiveDatabaseMocks(live_key)
    run_ = run_program(program, stack=stack, config=_config(stack, **settings), mocks=mocks)
    assert run_.of_type(DB)
    assert mocks.lookups == [f"groundwork-{stack}-db"]


def test_a_failed_database_lookup_stops_the_deploy() -> None:
    denied = (
        "reading RDS DB Instance: operation error RDS: DescribeDBInstances, https response "
        "error StatusCode: 403, api error AccessDenied"
    )
    error = run_failing("staging", _config("staging"), LiveDatabaseMocks(None, error=denied))
    assert isinstance(error, ConfigError), error
    assert "rds:DescribeDBInstances" in str(error) and "groundwork:cmek" in str(error)
