"""The config walk behind test_replacement_guard.py: every ``groundwork:*`` key through
its values, each built under mocks and diffed against the environment's base graph.

A run costs seconds, so keys are first changed together in batches; a batch whose diff
destroys nothing, collides on no fixed name and is not refused proves every key in it.
Otherwise it is split in halves down to single keys (the batch only saves time: a single
key's result is exactly what one run with that key alone shows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from groundwork.plan.program import PlanError, load_stack_config, plan_program
from groundwork.plan.replacement import Change, PlanDiff, Snapshot, diff, snapshots
from stacks.config import ENVIRONMENT_DEFAULTS, KNOWN_KEYS, Tier, build_settings

CLOUDS = ("aws", "gcp")
ENVIRONMENTS = ("staging", "production")
BASES = [(c, e) for c in CLOUDS for e in ENVIRONMENTS]
TIER_MOVE = "<tier-move>"
"""Pseudo key: the staging stack given every production default that differs."""

_SHA = "a" * 64
# Alternative values per key: every allowed value of an enum or flag, a representative
# different value otherwise. A new key in stacks/config.py fails the coverage test until
# it is listed here.
VALUES: dict[str, dict[str, list[str]]] = {
    "cloud": {"*": ["aws", "gcp"]},
    "environment": {"*": ["staging", "production"]},
    "service": {"*": ["orders"]},
    "costCenter": {"*": ["finance"]},
    "alarmEmail": {"*": ["oncall@example.com"]},
    "domain": {"*": ["api2.example.com"]},
    "certificateArn": {"*": ["arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c"]},
    "insecureHttp": {"*": ["true", "false"]},
    "hostedZoneId": {"*": ["Z9999999999EXAMPLE"]},
    "imageTag": {"*": ["v2"]},
    # In the environment's own registry (stacks refuse any other), as CI pins it.
    "imageUri": {
        "aws-staging": [
            f"123456789012.dkr.ecr.us-east-1.amazonaws.com/groundwork-staging-app-repo@sha256:{_SHA}"
        ],
        "aws-production": [
            f"123456789012.dkr.ecr.us-east-1.amazonaws.com/groundwork-production-app-repo@sha256:{_SHA}"
        ],
        "gcp-staging": [
            f"europe-west1-docker.pkg.dev/groundwork-plan/groundwork-staging-images/app@sha256:{_SHA}"
        ],
        "gcp-production": [
            f"europe-west1-docker.pkg.dev/groundwork-plan/groundwork-production-images/app@sha256:{_SHA}"
        ],
    },
    "apiDeploymentStrategy": {"*": ["rolling", "blue-green"]},
    "region": {"aws": ["us-west-2"], "gcp": ["europe-west4"]},
    "gcpProject": {"*": ["another-project"]},
    "availabilityZones": {"*": ["2", "3"]},
    "nat": {"*": ["none", "instance", "single", "one-per-az"]},
    "vpcCidr": {"*": ["10.50.0.0/16"]},
    "interfaceEndpoints": {"*": ["true", "false"]},
    "dbInstanceClass": {"*": ["db.r7g.large"]},
    "dbAllocatedStorageGb": {"staging": ["50"], "production": ["200"]},
    "dbMaxStorageGb": {"*": ["500"]},
    "dbMultiAz": {"*": ["true", "false"]},
    "dbBackupRetentionDays": {"*": ["14"]},
    "dbReadReplica": {"*": ["true", "false"]},
    "dbBackupRegion": {"*": ["us-west-2", "none"]},
    "dbProxy": {"*": ["true", "false"]},
    "deletionProtection": {"*": ["true", "false"]},
    "cacheNodeType": {"*": ["cache.r7g.large"]},
    "cacheNodes": {"*": ["1", "2", "3"]},
    "cacheSnapshotRetentionDays": {"*": ["0", "7"]},
    "queue": {"*": ["rabbitmq", "sqs"]},
    "brokerInstanceType": {"*": ["mq.m5.large", "mq.m7g.large"]},
    "brokerCluster": {"*": ["true", "false"]},
    "apiCpu": {"*": ["512"]},
    "apiMemoryMb": {"staging": ["1024", "2048"], "production": ["4096", "8192"]},
    "apiMinCount": {"*": ["3"]},
    "apiMaxCount": {"*": ["20"]},
    "workerCpu": {"*": ["512"]},
    "workerMemoryMb": {"staging": ["1024", "2048"], "production": ["4096", "8192"]},
    "workerMinCount": {"*": ["2"]},
    "workerMaxCount": {"*": ["20"]},
    "relayCount": {"*": ["3"]},
    "workerSpot": {"*": ["true", "false"]},
    "workerConcurrency": {"*": ["2"]},
    "llmRequestsPerMinute": {"*": ["0", "600"]},
    "apiSpot": {"*": ["true", "false"]},
    "relaySpot": {"*": ["true", "false"]},
    "cpuArchitecture": {"*": ["x86_64", "arm64"]},
    "ecsExec": {"*": ["true", "false"]},
    "waf": {"*": ["true", "false"]},
    "edgeLoadBalancer": {"*": ["true", "false"]},
    "publicApi": {"*": ["true", "false"]},
    "logRetentionDays": {"*": ["90"]},
    # Not 0: turning the schedule off deletes the rotation function and its log group
    # (the rotations' audit trail) by design; docs/deploy-aws.md says so.
    "secretRotationDays": {"*": ["7"]},
    "secretReplication": {"*": ["automatic", "user-managed"]},
    "cmek": {"*": ["true", "false"]},
    "serviceMetrics": {"*": ["true", "false"]},
    "gcpDbTier": {"*": ["db-custom-4-15360"]},
    "gcpRedisMemoryGb": {"*": ["5"]},
    "gcpRunCpu": {"*": ["2"]},
    "gcpRunMemory": {"*": ["2Gi"]},
    "gcpApiMinInstances": {"*": ["2"]},
    "gcpWorkerMinInstances": {"*": ["0", "1"]},
    "gcpRelayBilling": {"*": ["instance", "scheduled"]},
    "gcpPushAudience": {"*": ["https://worker.example.com"]},
}
# Keys that rename or move the whole environment, or that change a data store's
# immutable shape: run alone (batching them would only cost bisection runs).
ALONE = {
    "aws": (
        "cloud",
        "environment",
        "service",
        "region",
        "vpcCidr",
        "availabilityZones",
        "nat",
        "brokerCluster",
        "cmek",
    ),
    "gcp": (
        "cloud",
        "environment",
        "service",
        "region",
        "gcpProject",
        "vpcCidr",
        "cacheNodes",
        "secretReplication",
        "cmek",
    ),
}


def values_for(key: str, cloud: str, environment: str) -> list[str]:
    table = VALUES[key]
    for scope in (f"{cloud}-{environment}", cloud, environment, "*"):
        if scope in table:
            return table[scope]
    return []


def _config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(getattr(value, "value", value))


@cache
def current_values(cloud: str, environment: str) -> dict[str, str]:
    config = load_stack_config(environment, cloud=cloud)
    settings = build_settings(environment, config.groundwork())
    dumped = settings.model_dump(by_alias=True)
    return {key: _config_string(dumped.get(key)) for key in KNOWN_KEYS}


def alternatives(cloud: str, environment: str, key: str) -> list[str]:
    current = current_values(cloud, environment)[key]
    return [v for v in values_for(key, cloud, environment) if v != current]


# Fixed when a stack is first deployed: a live stack refuses to switch them (cmek:
# stacks/gcp.py and stacks/aws.py refuse_cmek_change, tests/gcp/test_gcp_cmek.py,
# tests/aws/test_aws_cmek.py), so the staging stack
# moved to production sizing keeps its own value. Walked on their own above.
FIXED_AT_CREATE = frozenset({"cmek"})


def tier_move_overrides() -> dict[str, str]:
    staging, production = ENVIRONMENT_DEFAULTS[Tier.STAGING], ENVIRONMENT_DEFAULTS[Tier.PRODUCTION]
    return {
        k: _config_string(v)
        for k, v in production.items()
        if _config_string(staging[k]) != _config_string(v) and k not in FIXED_AT_CREATE
    }


@dataclass
class Outcome:
    """What one change did: refused (the error), or the diff against the base."""

    overrides: dict[str, str]
    refused: str = ""
    crashed: str = ""
    """The program failed with something other than a ConfigError: a bug to fix."""
    result: PlanDiff | None = None
    problems: list[Change] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.refused and not self.crashed and not self.problems


def problems_of(result: PlanDiff) -> list[Change]:
    """Data-holding resources replaced or deleted, and replacements that collide on a
    fixed physical name (`pulumi up` fails half-way)."""
    return [
        c for c in result.changes if c.destroys_data or any("is fixed" in w for w in c.warnings)
    ]


@cache
def base_snapshots(cloud: str, environment: str) -> tuple[Snapshot, ...]:
    return tuple(_build(cloud, environment, ()))


def _build(cloud: str, environment: str, overrides: tuple[tuple[str, str], ...]) -> list[Snapshot]:
    config = load_stack_config(
        environment, cloud=cloud, overrides={f"groundwork:{k}": v for k, v in overrides}
    )
    return snapshots(plan_program(config).run)


@cache
def outcome(cloud: str, environment: str, overrides: tuple[tuple[str, str], ...]) -> Outcome:
    result = Outcome(dict(overrides))
    if dict(overrides).get("cloud", cloud) != cloud:
        # The other cloud's environment is the other base: no extra run needed.
        other = dict(overrides)["cloud"]
        head = list(base_snapshots(other, environment)) if len(overrides) == 1 else None
        if head is None:
            head = _build(cloud, environment, overrides)
    else:
        try:
            head = _build(cloud, environment, overrides)
        except PlanError as exc:
            if "invalid configuration" in str(exc):
                result.refused = str(exc)
            else:
                result.crashed = str(exc)
            return result
    result.result = diff(base_snapshots(cloud, environment), head)
    result.problems = problems_of(result.result)
    return result


def _resolve(
    cloud: str, environment: str, batch: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Outcome]:
    """Outcome per (key, value), splitting a batch that is not clean."""
    found = outcome(cloud, environment, tuple(sorted(batch)))
    if len(batch) == 1:
        return {batch[0]: found}
    if found.clean:
        return dict.fromkeys(batch, found)
    named = [p for p in batch if f"groundwork:{p[0]} " in found.refused]
    if named and len(named) < len(batch):
        # A refusal names its key: take it out rather than bisecting.
        rest = [p for p in batch if p not in named]
        resolved = {p: outcome(cloud, environment, (p,)) for p in named}
        return {**resolved, **_resolve(cloud, environment, rest)}
    half = len(batch) // 2
    return {
        **_resolve(cloud, environment, batch[:half]),
        **_resolve(cloud, environment, batch[half:]),
    }


@cache
def walk(cloud: str, environment: str) -> Mapping[tuple[str, str], Outcome]:
    """Every (key, value) change of this base, resolved."""
    results: dict[tuple[str, str], Outcome] = {}
    by_round: dict[int, list[tuple[str, str]]] = {}
    for key in sorted(KNOWN_KEYS):
        for index, value in enumerate(alternatives(cloud, environment, key)):
            if key in ALONE[cloud]:
                results[(key, value)] = outcome(cloud, environment, ((key, value),))
            else:
                by_round.setdefault(index, []).append((key, value))
    for batch in by_round.values():
        results.update(_resolve(cloud, environment, batch))
    if environment == "staging":
        # The staging stack sized like production (environment stays staging).
        move = tuple(sorted(tier_move_overrides().items()))
        results[(TIER_MOVE, "production")] = outcome(cloud, environment, move)
    return results
