"""Secrets: Secret Manager secrets for the service, generated or provided, never in code.

Access is granted by the consumer (see ``services.py``): one ``secretAccessor``
binding per secret and per service account, never project-wide, so each identity
reads exactly the secrets its container references.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

OPERATOR_PLACEHOLDER = "operator-must-set-this"
"""Initial payload of operator-managed secrets: Secret Manager refuses empty payloads
and Cloud Run refuses to start a revision whose secret has no version."""

VERSION_DELETION_POLICY = "ABANDON"

_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


class SecretReplication(StrEnum):
    AUTOMATIC = "automatic"
    """Google picks the locations: highest availability, no residency guarantee."""
    USER_MANAGED = "user-managed"
    """Payloads stay in the listed locations (data residency)."""


class SecretSource(StrEnum):
    GENERATED = "generated"
    """A random value from pulumi-random (kept in the encrypted stack state)."""
    PROVIDED = "provided"
    """A value another resource produced (database password, Redis AUTH string)."""
    OPERATOR = "operator"
    """Set by an operator with ``gcloud secrets versions add``; a placeholder until then.
    Consumers read ``latest`` so the operator's version is picked up by the next revision."""


@dataclass
class SecretSpec:
    env_name: str
    """The environment variable the service reads it from, e.g. ``JWT_SECRET``."""
    source: SecretSource
    value: pulumi.Input[str] | None = None
    length: int = 48

    def __post_init__(self) -> None:
        self.source = SecretSource(self.source)
        if not _ENV_NAME.match(self.env_name):
            raise ValueError(f"env_name={self.env_name!r}: use UPPER_SNAKE_CASE")
        if (self.value is None) == (self.source is SecretSource.PROVIDED):
            raise ValueError(
                f"{self.env_name}: a value is required for source=provided and refused otherwise"
            )
        if self.source is SecretSource.GENERATED and self.length < 32:
            raise ValueError(f"{self.env_name}: generated secrets need length >= 32")


@dataclass(frozen=True)
class SecretRef:
    """What a Cloud Run container needs to mount a secret as an env var."""

    secret_id: pulumi.Output[str]
    version: pulumi.Input[str]


@dataclass
class SecretStoreArgs:
    specs: list[SecretSpec]
    replication: SecretReplication = SecretReplication.AUTOMATIC
    replica_locations: list[str] = field(default_factory=list)
    deletion_protection: bool = False
    """Secret Manager's deletion protection, and Pulumi ``protect`` + ``retain_on_delete``
    on the secrets and the generated values."""
    labels: dict[str, str] = field(default_factory=dict)
    kms_key_names: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    """CMEK, location -> Cloud KMS key: ``{"global": key}`` for automatic replication, one
    key per replica location for user-managed (Secret Manager's rule). Part of the
    immutable ``replication``: set when the secrets are created."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """With ``kms_key_names``: the Secret Manager agent's grants on the keys."""

    def __post_init__(self) -> None:
        self.replication = SecretReplication(self.replication)
        if self.kms_key_names:
            wanted = (
                sorted(self.replica_locations)
                if self.replication is SecretReplication.USER_MANAGED
                else ["global"]
            )
            if sorted(self.kms_key_names) != wanted:
                raise ValueError(
                    f"kms_key_names covers {sorted(self.kms_key_names)}; replication="
                    f"{self.replication.value} needs a key for each of {wanted}"
                )
        if self.replication is SecretReplication.USER_MANAGED and not self.replica_locations:
            raise ValueError("replication=user-managed needs replica_locations, e.g. [region]")
        if self.replication is SecretReplication.AUTOMATIC and self.replica_locations:
            raise ValueError("replica_locations only apply to replication=user-managed")
        names = [spec.env_name for spec in self.specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate secrets: {', '.join(duplicates)}")


def replication_of(
    result: gcp.secretmanager.GetSecretResult,
) -> tuple[SecretReplication, list[str]] | None:
    """The replication of a live secret (``get_secret``), None when it reports none."""
    for replication in result.replications or []:
        if replication.user_manageds:
            locations = sorted(
                replica.location
                for managed in replication.user_manageds
                for replica in managed.replicas
            )
            return SecretReplication.USER_MANAGED, locations
        if replication.autos:
            return SecretReplication.AUTOMATIC, []
    return None


class SecretStore(pulumi.ComponentResource):
    """One Secret Manager secret (and initial version) per spec."""

    refs: dict[str, SecretRef]
    """Env var name -> secret id and version, for Cloud Run ``secret_key_ref``."""
    secret_ids: dict[str, pulumi.Output[str]]
    """Env var name -> full resource id (``projects/.../secrets/...``)."""
    replication: gcp.secretmanager.SecretReplicationArgs

    def __init__(
        self, name: str, args: SecretStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:gcp:SecretStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.replication is SecretReplication.USER_MANAGED:
            replication = gcp.secretmanager.SecretReplicationArgs(
                user_managed=gcp.secretmanager.SecretReplicationUserManagedArgs(
                    replicas=[
                        gcp.secretmanager.SecretReplicationUserManagedReplicaArgs(
                            location=loc,
                            customer_managed_encryption=gcp.secretmanager.SecretReplicationUserManagedReplicaCustomerManagedEncryptionArgs(
                                kms_key_name=args.kms_key_names[loc]
                            )
                            if args.kms_key_names
                            else None,
                        )
                        for loc in args.replica_locations
                    ]
                )
            )
        else:
            replication = gcp.secretmanager.SecretReplicationArgs(
                auto=gcp.secretmanager.SecretReplicationAutoArgs(
                    customer_managed_encryption=gcp.secretmanager.SecretReplicationAutoCustomerManagedEncryptionArgs(
                        kms_key_name=args.kms_key_names["global"]
                    )
                    if args.kms_key_names
                    else None
                )
            )

        self.replication = replication
        """What every secret of the store is created with (replication and CMEK key)."""
        self.refs = {}
        self.secret_ids = {}
        for spec in args.specs:
            slug = spec.env_name.lower().replace("_", "-")
            secret = gcp.secretmanager.Secret(
                f"{name}-{slug}",
                secret_id=f"{name}-{slug}",
                replication=replication,
                labels={**args.labels, "source": spec.source.value},
                deletion_protection=args.deletion_protection,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=args.depends_on,
                    protect=args.deletion_protection,
                    retain_on_delete=args.deletion_protection,
                ),
            )
            version_opts = child
            value: pulumi.Input[str]
            if spec.source is SecretSource.GENERATED:
                value = random.RandomPassword(
                    f"{name}-{slug}-value",
                    length=spec.length,
                    special=False,
                    opts=pulumi.ResourceOptions(
                        parent=self,
                        protect=args.deletion_protection,
                        retain_on_delete=args.deletion_protection,
                    ),
                ).result
            elif spec.source is SecretSource.PROVIDED:
                assert spec.value is not None
                value = spec.value
            else:
                value = OPERATOR_PLACEHOLDER
                # The operator's versions are added outside Pulumi; never fight them.
                version_opts = pulumi.ResourceOptions(parent=self, ignore_changes=["secretData"])
            version = gcp.secretmanager.SecretVersion(
                f"{name}-{slug}-version",
                secret=secret.id,
                secret_data=pulumi.Output.secret(value),
                # Revisions pin a version number (below). With the default DELETE, a new
                # value would destroy the version a revision still serving references,
                # and its next instance could not start. ABANDON leaves the old version
                # enabled in Secret Manager (DISABLE would fail those starts too); prune
                # old versions once no revision uses them (docs/deploy-gcp.md).
                deletion_policy=VERSION_DELETION_POLICY,
                opts=version_opts,
            )
            pinned: pulumi.Input[str] = (
                version.version.apply(lambda v: v or "latest")
                if spec.source is not SecretSource.OPERATOR
                else "latest"
            )
            self.refs[spec.env_name] = SecretRef(secret_id=secret.secret_id, version=pinned)
            self.secret_ids[spec.env_name] = secret.id

        self.register_outputs({"secret_ids": self.secret_ids})
