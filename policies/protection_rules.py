"""Production data stores are protected against deletion, in Pulumi and in the provider.

A stack rule because the ``protect`` resource option is only visible to stack policies
(``PolicyResource.opts``), never to resource policies. ``retainOnDelete`` is not part of
what the engine hands a policy; the offline runner (groundwork/policyrun.py) adds it
from the mocked graph, so offline either option passes while under ``pulumi preview``
only ``protect`` can.

The data-holding types are the ones groundwork/plan/replacement.yaml marks with
``holds`` (tests/plan/test_protection_policy.py keeps both lists equal); the pack runs
in its own virtualenv and does not import groundwork.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from policies.registry import Rule, Severity, StackSubject, Tier, get, safe_props

AWS_DATA_HOLDING = (
    "aws:rds/instance:Instance",
    "aws:elasticache/replicationGroup:ReplicationGroup",
    "aws:mq/broker:Broker",
    "aws:secretsmanager/secret:Secret",
    "aws:kms/key:Key",
    "aws:cloudwatch/logGroup:LogGroup",
    "aws:ecr/repository:Repository",
    "aws:s3/bucket:Bucket",
)
GCP_DATA_HOLDING = (
    "gcp:sql/databaseInstance:DatabaseInstance",
    "gcp:sql/database:Database",
    "gcp:redis/instance:Instance",
    "gcp:secretmanager/secret:Secret",
    "gcp:pubsub/topic:Topic",
    "gcp:pubsub/subscription:Subscription",
    "gcp:artifactregistry/repository:Repository",
    "gcp:logging/projectBucketConfig:ProjectBucketConfig",
    # A destroyed CMEK key makes everything it encrypted unreadable.
    "gcp:kms/cryptoKey:CryptoKey",
)
# The providers' own delete guards (input path -> the value that protects). Cloud SQL's
# settings.deletionProtectionEnabled is checked by gcp-sql-instance-deletion-protection.
PROVIDER_GUARDS: Mapping[str, tuple[str, Any]] = {
    "aws:rds/instance:Instance": ("deletionProtection", True),
    "gcp:sql/databaseInstance:DatabaseInstance": ("deletionProtection", True),
    "gcp:redis/instance:Instance": ("deletionProtection", True),
    "gcp:secretmanager/secret:Secret": ("deletionProtection", True),
}


def _guarded_by_pulumi(resource: PolicyResource) -> bool:
    opts = resource.opts
    return bool(getattr(opts, "protect", False) or getattr(opts, "retain_on_delete", False))


def _unprotected(s: StackSubject, types: tuple[str, ...]) -> Iterator[tuple[str, str | None]]:
    if s.tier is not Tier.PRODUCTION:
        return
    for resource in s.of_type(*types):
        label = f"{resource.resource_type.rsplit(':', 1)[-1]} {resource.name}"
        if not _guarded_by_pulumi(resource):
            yield (
                f"Production {label} holds data but is not protected: a config change that "
                "replaces it, or a `pulumi destroy`, deletes it.",
                resource.urn,
            )
        guard = PROVIDER_GUARDS.get(resource.resource_type)
        if guard is not None:
            prop, value = guard
            if get(safe_props(resource), prop) != value:
                yield (f"Production {label} does not set {prop}={value}.", resource.urn)


def _aws(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    return _unprotected(s, AWS_DATA_HOLDING)


def _gcp(s: StackSubject) -> Iterator[tuple[str, str | None]]:
    return _unprotected(s, GCP_DATA_HOLDING)


_REMEDIATION = (
    "Register it with opts=pulumi.ResourceOptions(protect=True) (or retain_on_delete=True) "
    "and the provider's deletion protection where it has one. To remove one on purpose: "
    "docs/plan-diff.md#removing-a-protected-resource."
)

RULES: list[Rule] = [
    Rule(
        "aws-pulumi-datastore-protected",
        "Production data-holding resources (database, cache, broker, secrets, KMS keys, log "
        "groups, image repository, log bucket) are protected against deletion.",
        AWS_DATA_HOLDING,
        Severity.HIGH,
        _REMEDIATION,
        stack_check=_aws,
    ),
    Rule(
        "gcp-pulumi-datastore-protected",
        "Production data-holding resources (Cloud SQL, Memorystore, secrets, Pub/Sub topics "
        "and subscriptions, image repository, log bucket, CMEK keys) are protected against "
        "deletion.",
        GCP_DATA_HOLDING,
        Severity.HIGH,
        _REMEDIATION,
        stack_check=_gcp,
    ),
]
