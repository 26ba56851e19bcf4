"""KeyRotation: a Secrets Manager rotation schedule for the JWT and webhook secrets.

One Lambda function (components/aws/rotation_lambda/rotate.py, packaged alone) rotates
each secret to ``"NEW OLD"`` every ``rotation_days`` and then forces a new deployment of
the ECS services, because ECS reads ``secrets`` only when a task starts.

The function runs outside the VPC: it calls only the Secrets Manager and ECS APIs, both
public AWS endpoints, reaches no database or broker, and inside the VPC it would need
NAT or two more interface endpoints (``nat=none``) plus an ENI and security group for
four invocations a month. Its role can do nothing but rotate these secrets and restart
these services.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

HANDLER_SOURCE = Path(__file__).parent / "rotation_lambda" / "rotate.py"
RUNTIME = "python3.12"  # boto3 is part of the Lambda Python runtime: nothing to vendor
MIN_ROTATION_DAYS = 2
MAX_ROTATION_DAYS = 365


@dataclass
class KeyRotationArgs:
    secret_arns: Mapping[str, pulumi.Input[str]]
    """Short name (``jwt-secret``) -> ARN of each secret holding ``NEW OLD`` keys."""
    secrets_kms_key_arn: pulumi.Input[str] | None
    """The customer key the secrets are encrypted with (SecretStore); None when they use
    ``aws/secretsmanager``, whose key policy already lets the account's principals use it
    through Secrets Manager: the function then gets no KMS grant at all."""
    cluster_name: pulumi.Input[str]
    service_names: Sequence[pulumi.Input[str]]
    """ECS services that read these secrets; each rotation gives them a new deployment."""
    log_retention_days: int
    log_kms_key_arn: pulumi.Input[str] | None
    """None: CloudWatch Logs' default encryption."""
    rotation_days: int = 30
    """Days between rotations. The previous key keeps verifying for one more interval, so
    this must exceed the longest token lifetime and the time webhook senders need to pick
    up the new key."""
    protect: bool = False
    """``protect`` + ``retain_on_delete`` on the log group (audit trail of rotations)."""

    def __post_init__(self) -> None:
        if not MIN_ROTATION_DAYS <= self.rotation_days <= MAX_ROTATION_DAYS:
            raise ValueError(
                f"rotation_days={self.rotation_days}: {MIN_ROTATION_DAYS} to "
                f"{MAX_ROTATION_DAYS} (the previous key must outlive the tokens it signed)"
            )
        if not self.secret_arns:
            raise ValueError("secret_arns is empty: nothing to rotate")
        if not self.service_names:
            raise ValueError("service_names is empty: nothing would pick up a new key")


class KeyRotation(pulumi.ComponentResource):
    function_arn: pulumi.Output[str]
    log_group_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: KeyRotationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:KeyRotation", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        region = aws.get_region_output(opts=invoke).region
        partition = aws.get_partition_output(opts=invoke).partition
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{name}",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        role = aws.iam.Role(
            f"{name}-role",
            description=f"{name}: rotates the JWT/webhook secrets and restarts their services",
            assume_role_policy=json.dumps(
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
            opts=child,
        )
        secret_arns = list(args.secret_arns.values())
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(
                secret_arns=pulumi.Output.all(*secret_arns),
                key=args.secrets_kms_key_arn,
                cluster=args.cluster_name,
                services=pulumi.Output.all(*args.service_names),
                account=account,
                region=region,
                partition=partition,
                logs=log_group.arn,
            ).apply(lambda v: json.dumps(rotation_policy(**v))),
            opts=child,
        )
        function = aws.lambda_.Function(
            f"{name}-fn",
            description="Secrets Manager rotation: JWT/webhook keys as 'NEW OLD', then ECS roll",
            runtime=RUNTIME,
            architectures=["arm64"],
            handler="rotate.lambda_handler",
            code=pulumi.AssetArchive({"rotate.py": pulumi.FileAsset(str(HANDLER_SOURCE))}),
            role=role.arn,
            timeout=60,
            memory_size=128,
            environment={
                "variables": {
                    "ECS_CLUSTER": args.cluster_name,
                    "ROLL_SERVICES": pulumi.Output.all(*args.service_names).apply(json.dumps),
                }
            },
            # Our group (retention, KMS) instead of the one Lambda would create itself.
            logging_config={"log_format": "Text", "log_group": log_group.name},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )
        for secret, arn in args.secret_arns.items():
            # Secrets Manager invokes the function as itself: only for this secret of this
            # account (confused deputy; "Permissions for rotation", Secrets Manager Guide).
            permission = aws.lambda_.Permission(
                f"{name}-{secret}-invoke",
                action="lambda:InvokeFunction",
                function=function.name,
                principal="secretsmanager.amazonaws.com",
                source_account=account,
                source_arn=arn,
                opts=child,
            )
            aws.secretsmanager.SecretRotation(
                f"{name}-{secret}",
                secret_id=arn,
                rotation_lambda_arn=function.arn,
                rotation_rules={"automatically_after_days": args.rotation_days},
                # No rotation (and no restart of every service) in the middle of a deploy;
                # Secrets Manager runs testSecret now and rotates on the schedule.
                rotate_immediately=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
            )
        self.function_arn = function.arn
        self.log_group_name = log_group.name
        self.register_outputs(
            {"function_arn": self.function_arn, "log_group_name": self.log_group_name}
        )


def rotation_policy(
    *,
    secret_arns: Sequence[str],
    key: str | None,
    cluster: str,
    services: Sequence[str],
    account: str,
    region: str,
    partition: str,
    logs: str,
) -> dict[str, object]:
    """What the rotation function may do, and on which resources only.

    ``key`` None (``aws/secretsmanager``): no KMS statement. The AWS-managed key's policy
    already admits the account's principals when they call through Secrets Manager
    (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html,
    "Key policy of the AWS managed key"); an IAM grant on it would add nothing.
    """
    use_key: list[dict[str, object]] = []
    if key is not None:
        use_key.append(
            {
                # Secrets Manager encrypts each version with the secret's ARN in the
                # encryption context ("How Secrets Manager uses AWS KMS").
                "Sid": "UseTheSecretsKeyThroughSecretsManager",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": key,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"secretsmanager.{region}.amazonaws.com",
                        "kms:EncryptionContext:SecretARN": sorted(secret_arns),
                    }
                },
            }
        )
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RotateTheseSecrets",
                "Effect": "Allow",
                "Action": [
                    "secretsmanager:DescribeSecret",
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutSecretValue",
                    "secretsmanager:UpdateSecretVersionStage",
                ],
                "Resource": sorted(secret_arns),
            },
            *use_key,
            {
                "Sid": "RollTheServicesThatReadThem",
                "Effect": "Allow",
                "Action": "ecs:UpdateService",
                "Resource": [
                    f"arn:{partition}:ecs:{region}:{account}:service/{cluster}/{service}"
                    for service in sorted(services)
                ],
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{logs}:*",
            },
        ],
    }
