"""Customer-managed encryption keys (CMEK): Cloud KMS keys for each data store and the
grants that let each service's Google-managed agent use them.

Facts this component is built around (each is documented platform behaviour):

* Key rings and crypto keys cannot be deleted in GCP. The provider's destroy of a
  ``KeyRing`` only forgets it; its destroy of a ``CryptoKey`` schedules every version for
  destruction (after ``destroy_scheduled_duration``) and forgets the key
  (https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/kms_key_ring,
  ``kms_crypto_key``, "This resource cannot be deleted"). Two consequences:
  - a data store encrypted with a destroyed key version is unreadable for good, so with
    ``protect`` on the keys carry Pulumi ``protect`` + ``retain_on_delete``;
  - a re-create after `pulumi destroy` would fail on "already exists" with a fixed ring
    name, so the ring name ends in a random suffix kept in the stack state: a new stack
    (or the same stack after destroy) gets a new ring, the old one stays inert.
* Location: Cloud SQL, Memorystore and Artifact Registry need a key in the resource's
  own region; Secret Manager needs a ``global`` key for automatic replication and one key
  per replica location for user-managed replication (``CustomerManagedEncryption``,
  https://cloud.google.com/secret-manager/docs/cmek); Pub/Sub takes any location, the
  region keeps the job data's key next to the services.
* The data stores encrypt through their service agents, which must hold
  ``roles/cloudkms.cryptoKeyEncrypterDecrypter`` on the key *before* the store is created:
  Cloud SQL, Memorystore and Artifact Registry check the key at create and fail the
  create otherwise. Some agents exist only after ``generateServiceIdentity``
  (``gcloud beta services identity create``, named in Cloud SQL's and Secret Manager's
  CMEK guides), so those are requested explicitly; Memorystore's legacy agent
  (``service-<number>@cloud-redis.iam.gserviceaccount.com``) is created with the API
  (https://cloud.google.com/iam/docs/service-agents) and is only granted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pulumi
import pulumi.dynamic
import pulumi_gcp as gcp
import pulumi_random as random

ENCRYPTER_DECRYPTER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
DEFAULT_ROTATION = "7776000s"
"""90 days: a new primary version for new writes; older versions stay enabled, so data
written under them stays readable (rotation re-encrypts nothing)."""
IAM_PROPAGATION_SECONDS = 120
"""How long the first create waits after the grants: "In most cases, policy changes take
effect within 2 minutes ... in some cases, it can take 7 minutes or more"
(https://cloud.google.com/iam/docs/access-change-propagation). A store created before its
agent's grant has propagated fails its create; past this wait, re-running `pulumi up`
finishes the job (docs/deploy-gcp.md)."""
DESTROY_SCHEDULED = "2592000s"
"""30 days between a version's destroy request and its destruction: the window in which
`gcloud kms keys versions restore` undoes a mistaken destroy (maximum 120 days)."""


class CmekUse(StrEnum):
    """One crypto key per data store; the value is the key's name in the ring."""

    SQL = "sql"
    REDIS = "redis"
    PUBSUB = "pubsub"
    REGISTRY = "registry"
    SECRETS = "secrets"


# The agent that uses each key: (API to generate the identity for, or None when the API
# creates it on enable; the agent's e-mail from the project number).
AGENTS: dict[CmekUse, tuple[str | None, str]] = {
    CmekUse.SQL: (
        "sqladmin.googleapis.com",
        "service-{n}@gcp-sa-cloud-sql.iam.gserviceaccount.com",
    ),
    CmekUse.REDIS: (None, "service-{n}@cloud-redis.iam.gserviceaccount.com"),
    CmekUse.PUBSUB: ("pubsub.googleapis.com", "service-{n}@gcp-sa-pubsub.iam.gserviceaccount.com"),
    CmekUse.REGISTRY: (
        "artifactregistry.googleapis.com",
        "service-{n}@gcp-sa-artifactregistry.iam.gserviceaccount.com",
    ),
    CmekUse.SECRETS: (
        "secretmanager.googleapis.com",
        "service-{n}@gcp-sa-secretmanager.iam.gserviceaccount.com",
    ),
}


class _Wait(pulumi.dynamic.ResourceProvider):
    """Sleeps on create (and on replace, when the grants change); nothing to delete."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        import time

        time.sleep(int(props["seconds"]))
        return pulumi.dynamic.CreateResult(id_="iam-propagation", outs=props)

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        changed = [k for k in ("grants", "seconds") if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(
            changes=bool(changed), replaces=changed, delete_before_replace=True
        )


class IamPropagationWait(pulumi.dynamic.Resource):
    """Created ``seconds`` after every grant in ``grants`` exists (Pulumi has no native
    wait, and pulumiverse-time would add a provider plugin to every deploy)."""

    def __init__(
        self,
        name: str,
        grants: list[pulumi.Input[str]],
        seconds: int,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(_Wait(), name, {"grants": grants, "seconds": seconds}, opts)


@dataclass(frozen=True)
class CmekKey:
    """A key a data store references, and the grant it must be created after."""

    key_id: pulumi.Output[str]
    """``projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>``."""
    location: str
    grant: gcp.kms.CryptoKeyIAMMember
    """The agent's encrypter/decrypter binding: ``depends_on`` it from the data store."""
    ready: list[pulumi.Resource]
    """What a data store using the key waits for: the grant and its propagation."""


@dataclass
class EncryptionKeysArgs:
    project: str
    project_number: pulumi.Input[str]
    region: str
    """Location of the SQL, Redis, Pub/Sub and registry keys (the stores' region)."""
    secret_locations: list[str] = field(default_factory=lambda: ["global"])
    """``["global"]`` for automatic secret replication, else every replica location."""
    rotation_period: str = DEFAULT_ROTATION
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the rings and keys: destroying a key
    destroys every byte it encrypts."""
    propagation_seconds: int = IAM_PROPAGATION_SECONDS
    """Wait between the grants and the first store that needs them (0: no wait)."""
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.secret_locations:
            raise ValueError("secret_locations needs at least one location ('global')")
        if "global" in self.secret_locations and len(self.secret_locations) > 1:
            raise ValueError(
                "secret_locations: 'global' is for automatic replication only; list the "
                "replica regions for user-managed replication"
            )
        if self.region == "global":
            raise ValueError("region must be a region: Cloud SQL and Memorystore are regional")
        seconds = self.rotation_period.removesuffix("s")
        if not self.rotation_period.endswith("s") or not seconds.isdigit():
            raise ValueError(f"rotation_period={self.rotation_period!r}: use seconds, '7776000s'")
        if int(seconds) < 86400:
            raise ValueError("rotation_period must be at least 86400s (Cloud KMS minimum)")


class EncryptionKeys(pulumi.ComponentResource):
    """Key rings (one per location), one crypto key per data store, agent grants."""

    keys: dict[CmekUse, CmekKey]
    """The regional keys (SQL, Redis, Pub/Sub, registry)."""
    secret_keys: dict[str, CmekKey]
    """Secret Manager key per replica location (``global`` for automatic)."""

    def __init__(
        self, name: str, args: EncryptionKeysArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:gcp:EncryptionKeys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        # Part of the (permanent) ring names; see the module docstring.
        suffix = random.RandomId(f"{name}-keyring-suffix", byte_length=3, opts=keep)

        rings: dict[str, gcp.kms.KeyRing] = {}
        for location in [args.region, *args.secret_locations]:
            if location in rings:
                continue
            rings[location] = gcp.kms.KeyRing(
                f"{name}-keyring-{location}",
                name=pulumi.Output.concat(name, "-", location, "-", suffix.hex),
                location=location,
                project=args.project,
                opts=keep,
            )

        agents: dict[CmekUse, pulumi.Output[str]] = {}
        identities: dict[CmekUse, list[pulumi.Resource]] = {}
        for use, (api, email) in AGENTS.items():
            identities[use] = []
            if api is not None:
                identities[use].append(
                    gcp.projects.ServiceIdentity(
                        f"{name}-{use.value}-agent", project=args.project, service=api, opts=child
                    )
                )
            local, domain = email.split("{n}")
            agents[use] = pulumi.Output.concat(
                "serviceAccount:", local, args.project_number, domain
            )

        def key(
            use: CmekUse, location: str, resource_name: str
        ) -> tuple[gcp.kms.CryptoKey, gcp.kms.CryptoKeyIAMMember]:
            crypto_key = gcp.kms.CryptoKey(
                resource_name,
                name=use.value,
                key_ring=rings[location].id,
                purpose="ENCRYPT_DECRYPT",
                rotation_period=args.rotation_period,
                destroy_scheduled_duration=DESTROY_SCHEDULED,
                labels=args.labels,
                opts=keep,
            )
            grant = gcp.kms.CryptoKeyIAMMember(
                f"{resource_name}-agent",
                crypto_key_id=crypto_key.id,
                role=ENCRYPTER_DECRYPTER,
                member=agents[use],
                # Binding a service agent that does not exist yet fails.
                opts=pulumi.ResourceOptions(parent=self, depends_on=identities[use]),
            )
            return crypto_key, grant

        built = {
            use.value: key(use, args.region, f"{name}-{use.value}-key")
            for use in CmekUse
            if use is not CmekUse.SECRETS
        }
        built_secrets = {
            loc: key(CmekUse.SECRETS, loc, f"{name}-secrets-key-{loc}")
            for loc in args.secret_locations
        }
        grants = [g for _, g in [*built.values(), *built_secrets.values()]]
        waits: list[pulumi.Resource] = []
        if args.propagation_seconds:
            waits.append(
                IamPropagationWait(
                    f"{name}-kms-grants-propagated",
                    grants=[g.etag for g in grants],
                    seconds=args.propagation_seconds,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=grants),
                )
            )

        def done(pair: tuple[gcp.kms.CryptoKey, gcp.kms.CryptoKeyIAMMember], loc: str) -> CmekKey:
            crypto_key, grant = pair
            return CmekKey(crypto_key.id, loc, grant, [grant, *waits])

        self.keys = {
            use: done(built[use.value], args.region)
            for use in CmekUse
            if use is not CmekUse.SECRETS
        }
        self.secret_keys = {loc: done(pair, loc) for loc, pair in built_secrets.items()}
        self.register_outputs(
            {
                "key_ids": {use.value: k.key_id for use, k in self.keys.items()},
                "secret_key_ids": {loc: k.key_id for loc, k in self.secret_keys.items()},
            }
        )
