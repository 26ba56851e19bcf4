"""SecretStore: the application's own secrets in Secrets Manager, under a customer KMS key
or Secrets Manager's AWS-managed key (``aws/secretsmanager``)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.args import renamed_from
from components.aws.kms import EncryptionKey, EncryptionKeyArgs

# Secrets Manager refuses an empty string; the operator replaces this value with
# `aws secretsmanager put-secret-value` and Pulumi leaves it alone afterwards.
PLACEHOLDER = " "


@dataclass
class SecretStoreArgs:
    recovery_window_days: int = 30
    """Days a deleted secret can be restored; 0 deletes at once (never the default)."""
    generated: tuple[str, ...] = ("jwt-secret", "webhook-secret")
    """Secrets the platform owns: 64 random characters each, never seen by a human."""
    operator_supplied: tuple[str, ...] = ("llm-api-key",)
    """Secrets only the operator knows: created with a placeholder, value set out of band."""
    generated_length: int = 64
    customer_managed_key: bool = True
    """Encrypt with a KMS key this component owns (its use in CloudTrail, revocable).
    False: Secrets Manager's AWS-managed ``aws/secretsmanager`` key, free of the key's
    monthly fee, but it cannot be disabled, scheduled for deletion or shared with another
    account, and its key policy cannot be edited. Readers then need no ``kms:Decrypt``
    grant: that key's policy admits every principal of the account calling through
    Secrets Manager (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html)."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the key, the generated values and the
    secrets: a destroy or a replacement would otherwise log every user out (JWT) and
    break every webhook sender."""

    def __post_init__(self) -> None:
        if self.recovery_window_days != 0 and not 7 <= self.recovery_window_days <= 30:
            raise ValueError(f"recovery_window_days={self.recovery_window_days}: 0 or 7 to 30 days")
        if self.generated_length < 32:
            raise ValueError("generated_length must be at least 32 (the app refuses shorter)")
        overlap = set(self.generated) & set(self.operator_supplied)
        if overlap:
            raise ValueError(f"secrets both generated and operator-supplied: {sorted(overlap)}")


class SecretStore(pulumi.ComponentResource):
    """Generated and operator-supplied secrets plus the CMK other stores reuse."""

    kms_key_arn: pulumi.Output[str] | None
    """None when the secrets use ``aws/secretsmanager`` (customer_managed_key=False)."""
    secret_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: SecretStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "groundwork:aws:SecretStore",
            name,
            None,
            renamed_from("groundwork:aws:AppSecrets", opts),
        )
        self._name = name
        self._args = args
        self.kms_key_arn = None
        if args.customer_managed_key:
            key = EncryptionKey(
                f"{name}-kms",
                EncryptionKeyArgs(
                    description=f"{name}: Secrets Manager secrets", protect=args.protect
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.kms_key_arn = key.key_arn
        self.secret_arns = {}
        for secret in args.generated:
            value = random.RandomPassword(
                f"{name}-{secret}-value",
                length=args.generated_length,
                special=False,
                opts=pulumi.ResourceOptions(
                    parent=self, protect=args.protect, retain_on_delete=args.protect
                ),
            )
            # Generated once; afterwards rotations write the value in Secrets Manager
            # ('NEW OLD' during the overlap, docs/runbook.md) and Pulumi leaves it alone.
            self.secret_arns[secret] = self.store(
                secret, value.result, f"generated {secret}", operator_owned=True
            )
        for secret in args.operator_supplied:
            self.secret_arns[secret] = self.store(
                secret,
                PLACEHOLDER,
                f"{secret}: set by the operator (put-secret-value)",
                operator_owned=True,
            )
        self.register_outputs({"kms_key_arn": self.kms_key_arn, "secret_arns": self.secret_arns})

    def store(
        self,
        secret: str,
        value: pulumi.Input[str],
        description: str,
        *,
        operator_owned: bool = False,
    ) -> pulumi.Output[str]:
        """Create ``secret`` under this component's key and return its ARN."""
        return store_secret(
            f"{self._name}-{secret}",
            value,
            description,
            kms_key_arn=self.kms_key_arn,
            recovery_window_days=self._args.recovery_window_days,
            parent=self,
            operator_owned=operator_owned,
            protect=self._args.protect,
        )


def store_secret(
    name: str,
    value: pulumi.Input[str],
    description: str,
    *,
    kms_key_arn: pulumi.Input[str] | None,
    recovery_window_days: int,
    parent: pulumi.Resource,
    operator_owned: bool = False,
    protect: bool = False,
) -> pulumi.Output[str]:
    """A KMS-encrypted secret with one version; returns the secret's ARN.

    ``kms_key_arn`` None: Secrets Manager's AWS-managed key ``aws/secretsmanager``.

    ``protect``: pulumi ``protect`` + ``retain_on_delete`` on the secret, so neither
    `pulumi destroy` nor a replacement schedules its deletion.
    """
    secret = aws.secretsmanager.Secret(
        name,
        description=description,
        kms_key_id=kms_key_arn,
        recovery_window_in_days=recovery_window_days,
        opts=pulumi.ResourceOptions(parent=parent, protect=protect, retain_on_delete=protect),
    )
    aws.secretsmanager.SecretVersion(
        f"{name}-version",
        secret_id=secret.id,
        secret_string=pulumi.Output.secret(value),
        opts=pulumi.ResourceOptions(
            parent=parent,
            # The operator's value must survive the next `pulumi up`.
            ignore_changes=["secretString"] if operator_owned else None,
        ),
    )
    return secret.arn
