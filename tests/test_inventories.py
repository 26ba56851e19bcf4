"""Inventories as data: what each stack creates, compared with the mock graph.

For every stack (aws/gcp x staging/production) ``tests/inventories/<cloud>-<stack>.yaml``
holds the resource counts by type, selected input values (sizes, versions, HA and
retention settings: the values a reviewer should see change) and the stack outputs.
A change to the program shows up as a diff of that file in review, as
cloud-foundation-fabric's inventory tests do. Regenerate after an intended change:

    GROUNDWORK_UPDATE_INVENTORIES=1 uv run pytest tests/test_inventories.py

and review ``git diff tests/inventories``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.source import SERVICE_CONTEXT, source_fingerprint
from groundwork.mockrun import ProgramRun
from groundwork.plan.program import load_stack_config, plan_program

ROOT = Path(__file__).resolve().parents[1]
INVENTORIES = ROOT / "tests" / "inventories"
UPDATE_FLAG = "GROUNDWORK_UPDATE_INVENTORIES"
STACKS = [("aws", "staging"), ("aws", "production"), ("gcp", "staging"), ("gcp", "production")]

# Per resource type, the inputs recorded in the inventory (dotted paths; a number
# indexes a list). Sizes, versions, availability and retention: what a cost or an
# outage hangs on. Everything else is covered by the counts and the component tests.
SELECTED: dict[str, tuple[str, ...]] = {
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("cidrBlock",),
    "aws:rds/instance:Instance": (
        "instanceClass",
        "engineVersion",
        "allocatedStorage",
        "maxAllocatedStorage",
        "multiAz",
        "backupRetentionPeriod",
        "deletionProtection",
    ),
    "aws:elasticache/replicationGroup:ReplicationGroup": (
        "engine",
        "engineVersion",
        "nodeType",
        "numCacheClusters",
        "multiAzEnabled",
        "snapshotRetentionLimit",
    ),
    "aws:mq/broker:Broker": ("engineVersion", "hostInstanceType", "deploymentMode"),
    "aws:sqs/queue:Queue": (
        "visibilityTimeoutSeconds",
        "messageRetentionSeconds",
        "receiveWaitTimeSeconds",
        "redrivePolicy",
    ),
    "aws:ec2/instance:Instance": ("instanceType", "sourceDestCheck"),
    "aws:ecs/taskDefinition:TaskDefinition": ("cpu", "memory", "runtimePlatform.cpuArchitecture"),
    "aws:ecs/service:Service": ("desiredCount", "capacityProviderStrategies"),
    "aws:appautoscaling/target:Target": ("minCapacity", "maxCapacity"),
    "aws:cloudwatch/logGroup:LogGroup": ("retentionInDays",),
    "aws:secretsmanager/secretRotation:SecretRotation": ("rotationRules.automaticallyAfterDays",),
    "aws:lb/loadBalancer:LoadBalancer": ("internal", "enableDeletionProtection"),
    "gcp:compute/subnetwork:Subnetwork": ("ipCidrRange",),
    "gcp:compute/globalAddress:GlobalAddress": ("address", "prefixLength"),
    "gcp:sql/databaseInstance:DatabaseInstance": (
        "databaseVersion",
        "settings.tier",
        "settings.availabilityType",
        "settings.diskSize",
        "settings.backupConfiguration.backupRetentionSettings.retainedBackups",
        "deletionProtection",
    ),
    "gcp:redis/instance:Instance": ("tier", "memorySizeGb", "redisVersion"),
    "gcp:cloudrunv2/service:Service": (
        "ingress",
        "template.scaling",
        "template.maxInstanceRequestConcurrency",
        "template.containers.0.resources.limits",
    ),
    "gcp:cloudrunv2/job:Job": ("template.template.containers.0.resources.limits",),
    "gcp:pubsub/subscription:Subscription": (
        "ackDeadlineSeconds",
        "messageRetentionDuration",
        "deadLetterPolicy.maxDeliveryAttempts",
    ),
}

# The service image's tag is a hash of services/app: normalised so that a change to the
# service's code does not count as a change of the infrastructure.
FINGERPRINT = "<source-fingerprint>"


def _at(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _normalised(value: Any, fingerprint: str) -> Any:
    if isinstance(value, str):
        return value.replace(fingerprint, FINGERPRINT)
    if isinstance(value, dict):
        return {k: _normalised(v, fingerprint) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v, fingerprint) for v in value]
    return value


def inventory(run: ProgramRun) -> dict[str, Any]:
    """The inventory of one recorded run: counts, selected values, outputs."""
    custom = Counter(r.type for r in run.resources if r.custom)
    components = Counter(r.type for r in run.resources if not r.custom)
    values = {
        f"{r.type}::{r.name}": {path: _at(r.inputs, path) for path in SELECTED[r.type]}
        for r in run.resources
        if r.custom and r.type in SELECTED
    }
    data = {
        "resources": sum(custom.values()),
        "counts": dict(custom),
        "components": dict(components),
        "values": values,
        "outputs": run.outputs,
    }
    return _normalised(data, source_fingerprint(SERVICE_CONTEXT))


def render(cloud: str, stack: str, data: dict[str, Any]) -> str:
    head = (
        f"# Inventory of the {cloud} {stack} stack under Pulumi mocks: tests/test_inventories.py\n"
        f"# Generated: {UPDATE_FLAG}=1 uv run pytest tests/test_inventories.py\n"
    )
    # Sorted throughout: registration order and input key order vary from run to run.
    return head + yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=100)


def _differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    lines = []
    for section in sorted(set(expected) | set(actual)):
        want, got = expected.get(section), actual.get(section)
        if not isinstance(want, dict) or not isinstance(got, dict):
            if want != got:
                lines.append(f"{section}: file {want!r}, graph {got!r}")
            continue
        for key in sorted(set(want) | set(got), key=str):
            if want.get(key) != got.get(key):
                lines.append(f"{section}.{key}: file {want.get(key)!r}, graph {got.get(key)!r}")
    return lines


@pytest.fixture(scope="module", params=STACKS, ids=lambda s: f"{s[0]}-{s[1]}")
def stack_inventory(request: pytest.FixtureRequest) -> tuple[Path, str, dict[str, Any]]:
    cloud, stack = request.param
    planned = plan_program(load_stack_config(stack, root=ROOT, cloud=cloud))
    data = inventory(planned.run)
    return INVENTORIES / f"{cloud}-{stack}.yaml", render(cloud, stack, data), data


def test_inventory_matches_the_mock_graph(stack_inventory) -> None:
    path, text, actual = stack_inventory
    if os.environ.get(UPDATE_FLAG) == "1":
        if os.environ.get("CI"):
            pytest.fail(f"{UPDATE_FLAG}=1 in CI: inventories are regenerated and reviewed locally")
        path.write_text(text)
    if not path.is_file():
        pytest.fail(
            f"{path.relative_to(ROOT)} is missing: run {UPDATE_FLAG}=1 uv run pytest {__file__}"
        )
    expected = yaml.safe_load(path.read_text())
    differences = _differences(expected, actual)
    assert not differences, (
        f"{path.relative_to(ROOT)} differs from the program ({len(differences)}):\n"
        + "\n".join(differences[:40])
        + f"\nIf intended: {UPDATE_FLAG}=1 uv run pytest tests/test_inventories.py"
    )
    # The file is exactly what the generator writes (no hand edits that happen to load).
    assert path.read_text() == text


def test_the_inventory_reads_what_it_claims() -> None:
    # Guards the reader itself: paths, list indexes and the fingerprint mask.
    inputs = {"a": {"b": [{"c": 1}]}, "image": "repo:src-1234"}
    assert _at(inputs, "a.b.0.c") == 1
    assert _at(inputs, "a.b.1.c") is None and _at(inputs, "a.x") is None
    assert _normalised(inputs, "src-1234")["image"] == f"repo:{FINGERPRINT}"
