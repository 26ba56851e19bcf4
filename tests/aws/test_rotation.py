"""The JWT/webhook rotation function, run for real against moto's standalone server.

The sequence is Secrets Manager's ("Rotation by Lambda function", Secrets Manager User
Guide): RotateSecret attaches AWSPENDING to a new version ID (the ClientRequestToken)
with no value yet, then invokes the function with createSecret, setSecret, testSecret
and finishSecret and that token, and retries a failed step with the same token. Here the
real RotateSecret API call (moto) does that, and moto's Lambda invocation (which cannot
run code without Docker) is pointed at the real handler, which talks HTTP back to moto.
With RotateImmediately=false, RotateSecret only runs testSecret on an AWSPENDING copy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.models import default_user_config

from components.aws.rotation_lambda import rotate
from groundwork.mockrun import ProgramRun
from groundwork.tokens import mint_token
from tests.aws.conftest import run_stack

CLUSTER = "groundwork-staging"
SERVICES = ["groundwork-staging-api", "groundwork-staging-worker", "groundwork-staging-relay"]
ISSUER, AUDIENCE = "groundwork", "groundwork-api"
SECRET = "groundwork-staging-jwt-secret"
STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]


@pytest.fixture
def world(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A KMS-encrypted secret holding one 64-character key, and the three ECS services."""
    kms = boto3.client("kms", region_name="us-east-1")
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    ecs = boto3.client("ecs", region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    first = secrets.token_hex(32)
    arn = sm.create_secret(Name=SECRET, KmsKeyId=key, SecretString=first)["ARN"]
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family="app",
        containerDefinitions=[{"name": "app", "image": "app:1", "memory": 512}],
    )
    for name in SERVICES:
        ecs.create_service(cluster=CLUSTER, serviceName=name, taskDefinition="app", desiredCount=1)
    monkeypatch.setenv("ECS_CLUSTER", CLUSTER)
    monkeypatch.setenv("ROLL_SERVICES", json.dumps(SERVICES))
    calls: list[dict[str, Any]] = []
    attempts = {"per_step": 1}  # 2: every step runs twice, as after a retried failure

    def invoke(self: Any, function_name: str, qualifier: Any, body: Any, **_: Any) -> bytes:
        event = json.loads(body)
        for _attempt in range(attempts["per_step"]):
            rotate.lambda_handler(event)
            calls.append({**event, "deployments": _deployment_ids(ecs), "value": _pending(sm)})
        return b"null"

    # moto's Docker-free Lambda, whose invoke runs the handler in-process.
    monkeypatch.setitem(default_user_config, "lambda", {"use_docker": False})
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(
        RoleName="rotation",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    function = boto3.client("lambda", region_name="us-east-1").create_function(
        FunctionName="rotation",
        Runtime="python3.12",
        Role=role,
        Handler="rotate.lambda_handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )["FunctionArn"]
    return {
        "sm": sm,
        "ecs": ecs,
        "arn": arn,
        "first": first,
        "fn": function,
        "calls": calls,
        "attempts": attempts,
    }


def _pending(sm: Any) -> str | None:
    try:
        value: str = sm.get_secret_value(SecretId=SECRET, VersionStage="AWSPENDING")["SecretString"]
    except sm.exceptions.ResourceNotFoundException:
        return None
    return value


def _deployment_ids(ecs: Any) -> list[str]:
    described = ecs.describe_services(cluster=CLUSTER, services=SERVICES)["services"]
    return [service["deployments"][0]["id"] for service in described]


def _rotate(world: dict[str, Any], *, immediately: bool = True) -> str:
    """RotateSecret as the schedule (or an operator) calls it; returns the version token."""
    token: str = world["sm"].rotate_secret(
        SecretId=world["arn"],
        RotationLambdaARN=world["fn"],
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=immediately,
    )["VersionId"]
    return token


def _step(arn: str, token: str, step: str) -> None:
    rotate.lambda_handler({"SecretId": arn, "ClientRequestToken": token, "Step": step})


def _stages(sm: Any, arn: str) -> dict[str, list[str]]:
    stages: dict[str, list[str]] = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    return stages


def _accepts(jwt_secret: str, token: str) -> bool:
    """The service's own verifier configured with ``jwt_secret`` as ECS would inject it."""
    from groundwork_app.api.auth import InvalidTokenError, TokenVerifier
    from groundwork_app.settings import Settings

    settings = Settings(jwt_secret=jwt_secret, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    try:
        asyncio.run(TokenVerifier(settings).verify(token))
    except InvalidTokenError:
        return False
    return True


def _token(key: str) -> str:
    return mint_token(key, issuer=ISSUER, audience=AUDIENCE, subject="rotation-test")


def test_rotate_secret_runs_the_four_steps_writes_new_old_and_rolls_the_services(
    world: dict[str, Any],
) -> None:
    sm, ecs, arn, first = world["sm"], world["ecs"], world["arn"], world["first"]
    before = _deployment_ids(ecs)
    old_token = _token(first)  # issued before the rotation
    token = _rotate(world)

    calls = world["calls"]
    assert [c["Step"] for c in calls] == STEPS
    assert {c["ClientRequestToken"] for c in calls} == {token}
    # Nothing restarts before AWSCURRENT has moved (a task would start with the old value).
    assert [c["deployments"] == before for c in calls] == [True, True, True, False]
    value = sm.get_secret_value(SecretId=arn)["SecretString"]
    new, old = value.split()
    assert old == first and new != first and len(new) == 64
    assert "AWSCURRENT" in _stages(sm, arn)[token]
    rolled = _deployment_ids(ecs)
    assert all(a != b for a, b in zip(rolled, before, strict=True))

    # Re-invoked with the same token after the rotation: the value stays; finishSecret
    # rolls again (the first attempt may have died between the label move and the roll).
    for step in STEPS:
        _step(arn, token, step)
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == value
    assert all(a != b for a, b in zip(_deployment_ids(ecs), rolled, strict=True))

    # The overlap: the restarted services accept tokens signed before and after.
    assert _accepts(value, old_token)
    assert _accepts(value, _token(new))
    assert not _accepts(first, _token(new))  # an un-restarted task would refuse new tokens


def test_every_step_retried_with_the_same_token_gives_one_new_key(world: dict[str, Any]) -> None:
    sm, arn, first = world["sm"], world["arn"], world["first"]
    world["attempts"]["per_step"] = 2
    _rotate(world)
    calls = world["calls"]
    assert [c["Step"] for c in calls] == [step for step in STEPS for _ in (1, 2)]
    created = {c["value"] for c in calls if c["Step"] == "createSecret"}
    assert len(created) == 1  # the retried createSecret kept the stored key
    value = sm.get_secret_value(SecretId=arn)["SecretString"]
    assert created == {value} and value.split()[1] == first


def test_the_next_rotation_drops_the_key_before_last(world: dict[str, Any]) -> None:
    sm, arn, first = world["sm"], world["arn"], world["first"]
    _rotate(world)
    middle = sm.get_secret_value(SecretId=arn)["SecretString"].split()[0]
    _rotate(world)
    value = sm.get_secret_value(SecretId=arn)["SecretString"]
    assert value.split()[1] == middle and first not in value
    assert _accepts(value, _token(middle))
    assert not _accepts(value, _token(first))


def test_a_schedule_without_immediate_rotation_only_tests(world: dict[str, Any]) -> None:
    # RotateImmediately=false (what the stack sets): Secrets Manager runs testSecret alone,
    # on an AWSPENDING copy of the current value, and nothing changes.
    sm, ecs, arn, first = world["sm"], world["ecs"], world["arn"], world["first"]
    before = _deployment_ids(ecs)
    _rotate(world, immediately=False)
    assert [c["Step"] for c in world["calls"]] == ["testSecret"]
    assert sm.get_secret_value(SecretId=arn)["SecretString"] == first
    assert _deployment_ids(ecs) == before


def test_a_pending_value_without_overlap_fails_the_test_step(world: dict[str, Any]) -> None:
    sm, arn = world["sm"], world["arn"]
    _rotate(world, immediately=False)  # enables rotation
    sm.put_secret_value(
        SecretId=arn,
        ClientRequestToken="11111111-1111-4111-8111-111111111111",
        SecretString=secrets.token_hex(32),  # the key in use is gone
        VersionStages=["AWSPENDING"],
    )
    with pytest.raises(rotate.RotationError, match="no overlap"):
        _step(arn, "11111111-1111-4111-8111-111111111111", "testSecret")
    with pytest.raises(rotate.RotationError, match="no stage"):
        _step(arn, "00000000-0000-4000-8000-000000000000", "createSecret")


def test_a_secret_without_rotation_is_refused(world: dict[str, Any]) -> None:
    with pytest.raises(rotate.RotationError, match="not enabled for rotation"):
        _step(world["arn"], "00000000-0000-4000-8000-000000000000", "createSecret")


def test_services_not_created_yet_are_skipped(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # First deploy: the services are created after the migration, the rotation before.
    monkeypatch.setenv("ROLL_SERVICES", json.dumps([*SERVICES, "groundwork-staging-gone"]))
    assert rotate.roll_services() == SERVICES
    monkeypatch.setenv("ECS_CLUSTER", "no-such-cluster")
    assert rotate.roll_services() == []


# --- the stack's rotation resources (Pulumi mocks: what `pulumi preview` would send) ----


def test_the_stack_schedules_both_secrets_with_a_least_privilege_function(
    production: ProgramRun,
) -> None:
    rotations = production.of_type("aws:secretsmanager/secretRotation:SecretRotation")
    secret_ids = {r.inputs["secretId"] for r in rotations}
    by_name = {r.name: r for r in production.of_type("aws:secretsmanager/secret:Secret")}
    assert secret_ids == {
        by_name["groundwork-production-secrets-jwt-secret"].state["arn"],
        by_name["groundwork-production-secrets-webhook-secret"].state["arn"],
    }
    for rotation in rotations:
        assert rotation.inputs["rotationRules"]["automaticallyAfterDays"] == 30
        assert rotation.inputs["rotateImmediately"] is False
    function = production.one("aws:lambda/function:Function")
    assert function.inputs["handler"] == "rotate.lambda_handler"
    assert function.inputs["runtime"] == "python3.12"
    assert "vpcConfig" not in function.inputs  # public AWS APIs only (components/aws/rotation.py)
    log_group = production.named("groundwork-production-key-rotation-logs")
    assert function.inputs["loggingConfig"]["logGroup"] == log_group.inputs["name"]
    assert log_group.inputs["retentionInDays"] == 365 and log_group.inputs["kmsKeyId"]
    env = function.inputs["environment"]["variables"]
    ecs_services = production.of_type("aws:ecs/service:Service")
    assert sorted(json.loads(env["ROLL_SERVICES"])) == sorted(r.state["name"] for r in ecs_services)
    assert env["ECS_CLUSTER"] == production.one("aws:ecs/cluster:Cluster").state["name"]
    # Secrets Manager may invoke it only for these secrets of this account.
    permissions = production.of_type("aws:lambda/permission:Permission")
    assert {p.inputs["sourceArn"] for p in permissions} == secret_ids
    assert all(p.inputs["principal"] == "secretsmanager.amazonaws.com" for p in permissions)
    assert all(p.inputs["sourceAccount"] for p in permissions)
    policy = json.loads(
        production.named("groundwork-production-key-rotation-policy").inputs["policy"]
    )
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert set(statements["RotateTheseSecrets"]["Resource"]) == secret_ids
    kms = statements["UseTheSecretsKeyThroughSecretsManager"]
    assert (
        kms["Condition"]["StringEquals"]["kms:ViaService"]
        == "secretsmanager.us-east-1.amazonaws.com"
    )
    assert set(kms["Condition"]["StringEquals"]["kms:EncryptionContext:SecretARN"]) == secret_ids
    roll = statements["RollTheServicesThatReadThem"]
    assert roll["Action"] == "ecs:UpdateService" and len(roll["Resource"]) == 3
    assert all(":service/" in arn for arn in roll["Resource"])
    assert not any(r == "*" for s in policy["Statement"] for r in _resources(s))


def _resources(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else list(resource)


def test_rotation_can_be_turned_off() -> None:
    run = run_stack("staging", secretRotationDays="0")
    assert run.of_type("aws:secretsmanager/secretRotation:SecretRotation") == []
    assert run.of_type("aws:lambda/function:Function") == []


def test_the_lambda_package_is_the_handler_module() -> None:
    from components.aws.rotation import HANDLER_SOURCE

    assert HANDLER_SOURCE.read_text() == Path(rotate.__file__).read_text()


# --- what a rotation writes to its log group (docs/cost-model.md prices it from this) -----

# The Python runtime's default text format: "[LEVEL]\t<time>\t<request id>\t<message>"
# (Lambda Developer Guide, "Log and monitor Python Lambda functions").
_REQUEST_ID = "8f5a6b3c-1d2e-4f5a-9b8c-7d6e5f4a3b2c"
_APP_LINE = "[{level}]\t2026-01-01T00:00:00.000Z\t" + _REQUEST_ID + "\t{message}\n"
# Per invocation the platform writes START, END and REPORT; a cold start adds INIT_START
# (and the first boto3 client its credentials line): counted on every invocation, as if
# each step started cold.
_PLATFORM_LINES = (
    "INIT_START Runtime Version: python:3.12.v38\tRuntime Version ARN: arn:aws:lambda:"
    "us-east-1::runtime:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
    f"START RequestId: {_REQUEST_ID} Version: $LATEST\n",
    f"END RequestId: {_REQUEST_ID}\n",
    f"REPORT RequestId: {_REQUEST_ID}\tDuration: 1234.56 ms\tBilled Duration: 1235 ms\t"
    "Memory Size: 128 MB\tMax Memory Used: 80 MB\tInit Duration: 456.78 ms\t\n",
    _APP_LINE.format(level="INFO", message="Found credentials in environment variables."),
)
# CloudWatch Logs bills each event's UTF-8 bytes plus 26 bytes of metadata (CloudWatch
# pricing, "Data ingested").
_EVENT_OVERHEAD = 26


def test_a_rotation_logs_kilobytes_within_the_priced_log_volume(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from components.aws.rotation import MIN_ROTATION_DAYS
    from groundwork.plan.pricing.loader import load_price_table

    caplog.set_level(logging.INFO)
    _rotate(world)
    invocations = len(world["calls"])
    assert invocations == len(STEPS)
    # What the handler (root logger) and boto3/botocore log; moto's own server is not there
    # in Lambda.
    records = [
        r
        for r in caplog.records
        if r.name == "root" or r.name.split(".")[0] in ("boto3", "botocore")
    ]
    assert any("finishSecret" in r.getMessage() for r in records)
    app = sum(
        len(_APP_LINE.format(level=r.levelname, message=r.getMessage()).encode()) + _EVENT_OVERHEAD
        for r in records
    )
    platform = invocations * sum(len(line.encode()) + _EVENT_OVERHEAD for line in _PLATFORM_LINES)
    per_secret_rotation = app + platform
    # Measured: 4,493 bytes (1,693 from the handler and boto3, 2,800 from the platform).
    assert per_secret_rotation < 10_000  # a few kilobytes, not gigabytes
    # Two secrets, rotated as often as the stack allows (every MIN_ROTATION_DAYS days).
    monthly_bytes = per_secret_rotation * 2 * (30 / MIN_ROTATION_DAYS)
    for tier in ("staging", "production"):
        assumed_gb = load_price_table().assumptions(tier)["rotation_log_gb_per_month"]
        assert monthly_bytes <= assumed_gb * 1e9, tier
        # The assumption is a bound of the measurement, not a figure picked to look cheap
        # or one that still prices gigabytes.
        assert assumed_gb * 1e9 <= 10 * monthly_bytes, tier
