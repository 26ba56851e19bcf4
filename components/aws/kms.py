"""EncryptionKey: a customer-managed KMS key with rotation and an explicit key policy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass
class EncryptionKeyArgs:
    """What the key protects and which AWS services may use it."""

    description: str
    service_principals: Sequence[str] = field(default_factory=list)
    """Services (e.g. ``logs.us-east-1.amazonaws.com``) allowed to encrypt/decrypt with it.

    CloudWatch Logs and CloudWatch alarms publishing to an encrypted SNS topic act as
    themselves, not as a caller's role, so they need a grant in the key policy.
    """
    deletion_window_days: int = 30
    """Longest window: a key scheduled for deletion by mistake can still be recovered."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete``: the key outlives `pulumi destroy` and
    state surgery, so data encrypted with it (snapshots, retained stores) stays readable."""

    def __post_init__(self) -> None:
        if not 7 <= self.deletion_window_days <= 30:
            raise ValueError(
                f"deletion_window_days={self.deletion_window_days}: KMS allows 7 to 30 days"
            )


class EncryptionKey(pulumi.ComponentResource):
    """A symmetric CMK with yearly automatic rotation and an alias."""

    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]
    alias_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: EncryptionKeyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:EncryptionKey", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=invoke)
        # aws, aws-cn or aws-us-gov: the ARNs in the policy must name the stack's partition.
        partition = aws.get_partition_output(opts=invoke).partition
        policy = pulumi.Output.all(identity.account_id, partition).apply(
            lambda v: key_policy(v[0], args, partition=v[1])
        )
        key = aws.kms.Key(
            f"{name}-key",
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=args.deletion_window_days,
            policy=policy,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        alias = aws.kms.Alias(
            f"{name}-alias", name=f"alias/{name}", target_key_id=key.arn, opts=child
        )
        self.key_arn = key.arn
        self.key_id = key.key_id
        self.alias_name = alias.name
        self.register_outputs({"key_arn": self.key_arn, "alias_name": self.alias_name})


def key_policy(account_id: str, args: EncryptionKeyArgs, *, partition: str = "aws") -> str:
    """Account administrators manage the key through IAM; listed services may use it."""
    statements: list[dict[str, object]] = [
        {
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    for principal in sorted(args.service_principals):
        statement: dict[str, object] = {
            "Sid": "Use" + "".join(part.title() for part in principal.split(".")[0].split("-")),
            "Effect": "Allow",
            "Principal": {"Service": principal},
            "Action": [
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            "Resource": "*",
        }
        if principal.startswith("logs."):
            # CloudWatch Logs names the log group in the encryption context: only this
            # account's log groups may use the key. Account-wide on purpose: it covers
            # the groups AWS services create under IDs known only later (Amazon MQ's,
            # which `groundwork ops broker-logs` associates with the key).
            region = principal.split(".")[1]
            groups = f"arn:{partition}:logs:{region}:{account_id}:*"
            statement["Condition"] = {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": groups}}
        statements.append(statement)
    return json.dumps({"Version": "2012-10-17", "Statement": statements})
