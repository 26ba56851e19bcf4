"""Secrets Manager rotation function for the JWT and webhook secrets: writes ``NEW OLD``.

Runs in AWS Lambda (python3.12: boto3 is part of the runtime), packaged alone from this
file by components/aws/rotation.py. The four steps and the staging labels are AWS's
("Rotation by Lambda function", Secrets Manager User Guide; the steps follow the
``SecretsManagerRotationTemplate``):

1. ``createSecret``: a new key, stored as ``"NEW OLD"`` under the request's token with
   the AWSPENDING label. ``OLD`` is the key that signs today (the first of AWSCURRENT),
   so tokens and webhook signatures made before the rotation keep verifying for one
   more rotation interval; the key before that is dropped.
2. ``setSecret``: nothing: no server holds these keys, the services read them at start.
3. ``testSecret``: the pending value is well formed and still contains today's key.
4. ``finishSecret``: AWSCURRENT moves to the new version, then the ECS services that
   read the secret are given a new deployment: ECS resolves ``secrets`` only when a task
   starts ("Pass sensitive data to an Amazon ECS container", ECS Developer Guide), so
   running tasks keep the old value until replaced.

Secrets Manager retries a failed step with the same token, so every step is idempotent;
``finishSecret`` repeats the roll when AWSCURRENT has already moved (the earlier
attempt may have failed between the two), a second forced deployment being harmless.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from typing import Any

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

KEY_BYTES = 32
"""64 hex characters: as long as the value Pulumi generated first (SecretStoreArgs)."""
MIN_KEY_LENGTH = 32
"""The service refuses shorter keys (groundwork_app.settings.MIN_SECRET_LENGTH)."""
MAX_KEYS = 2
"""``NEW OLD``: the service refuses more (groundwork_app.settings.MAX_ROTATION_KEYS)."""
# A service that is gone or not yet created runs no task holding the old value.
_NOTHING_TO_ROLL = {
    "ServiceNotFoundException",
    "ServiceNotActiveException",
    "ClusterNotFoundException",
}


class RotationError(Exception):
    """A step cannot run: Secrets Manager marks the rotation failed and retries."""


def lambda_handler(event: dict[str, Any], context: object = None) -> None:
    arn = event["SecretId"]
    token = event["ClientRequestToken"]
    step = event["Step"]
    client = boto3.client("secretsmanager")
    metadata = client.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise RotationError(f"secret {arn} is not enabled for rotation")
    versions: dict[str, list[str]] = metadata.get("VersionIdsToStages", {})
    if token not in versions:
        raise RotationError(f"secret version {token} has no stage for rotation of {arn}")
    if "AWSCURRENT" in versions[token]:
        logger.info("%s: version %s is already AWSCURRENT", step, token)
        if step == "finishSecret":
            _clear_pending(client, arn, token, versions)
            roll_services()
        return
    if "AWSPENDING" not in versions[token]:
        raise RotationError(f"secret version {token} is not AWSPENDING for rotation of {arn}")
    if step == "createSecret":
        create_secret(client, arn, token)
    elif step == "setSecret":
        logger.info("setSecret: nothing to set; the services read the secret at start")
    elif step == "testSecret":
        test_secret(client, arn, token)
    elif step == "finishSecret":
        finish_secret(client, arn, token, versions)
        _clear_pending(client, arn, token, {token: ["AWSPENDING"]})
        roll_services()
    else:
        raise RotationError(f"unknown step {step!r}")


def _current(client: Any, arn: str) -> str:
    value: str = client.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"]
    return value


def _pending(client: Any, arn: str, token: str) -> str | None:
    try:
        value: str = client.get_secret_value(
            SecretId=arn, VersionId=token, VersionStage="AWSPENDING"
        )["SecretString"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    return value


def create_secret(client: Any, arn: str, token: str) -> None:
    if _pending(client, arn, token) is not None:
        logger.info("createSecret: version %s already holds a value", token)
        return
    keys = _current(client, arn).split()
    value = " ".join([secrets.token_hex(KEY_BYTES), *keys[:1]])
    client.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString=value, VersionStages=["AWSPENDING"]
    )
    logger.info("createSecret: stored a new key for version %s", token)


def test_secret(client: Any, arn: str, token: str) -> None:
    pending = _pending(client, arn, token)
    if pending is None:
        raise RotationError(f"version {token} of {arn} has no value to test")
    keys = pending.split()
    if not 1 <= len(keys) <= MAX_KEYS:
        raise RotationError(f"pending value holds {len(keys)} keys; 'NEW OLD' at most")
    if any(len(key) < MIN_KEY_LENGTH for key in keys):
        raise RotationError(f"every key must be at least {MIN_KEY_LENGTH} characters")
    signing_today = _current(client, arn).split()[:1]
    if signing_today and signing_today[0] not in keys:
        # What was signed with today's key would be refused right after the roll.
        raise RotationError("pending value drops the key in use: no overlap")
    logger.info("testSecret: version %s is well formed and overlaps", token)


def finish_secret(client: Any, arn: str, token: str, versions: dict[str, list[str]]) -> None:
    current = next((v for v, stages in versions.items() if "AWSCURRENT" in stages), None)
    client.update_secret_version_stage(
        SecretId=arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=token,
        **({"RemoveFromVersionId": current} if current else {}),
    )
    logger.info("finishSecret: version %s is AWSCURRENT (was %s)", token, current)


def _clear_pending(client: Any, arn: str, token: str, versions: dict[str, list[str]]) -> None:
    """Leave no AWSPENDING label: the next RotateSecret must not see a rotation in progress
    ("AWSPENDING ... not attached to any version" is one of the two valid end states)."""
    if "AWSPENDING" in versions.get(token, []):
        client.update_secret_version_stage(
            SecretId=arn, VersionStage="AWSPENDING", RemoveFromVersionId=token
        )


def roll_services() -> list[str]:
    """Force a new deployment of every service in ``ROLL_SERVICES``; returns those rolled."""
    cluster = os.environ["ECS_CLUSTER"]
    services: list[str] = json.loads(os.environ["ROLL_SERVICES"])
    ecs = boto3.client("ecs")
    rolled = []
    for service in services:
        try:
            ecs.update_service(cluster=cluster, service=service, forceNewDeployment=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOTHING_TO_ROLL:
                logger.info("no running service %s/%s to roll", cluster, service)
                continue
            raise
        rolled.append(service)
    logger.info("rolled %s on %s", rolled, cluster)
    return rolled
