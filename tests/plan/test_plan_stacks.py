"""`groundwork plan` over the real program: every stack on both clouds, via the CLI."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from groundwork.cli import app
from groundwork.plan.report import SCHEMA_PATH

STACKS = [("aws", "staging"), ("aws", "production"), ("gcp", "staging"), ("gcp", "production")]

# Sanity bands for the monthly estimate with the bundled prices and assumptions: wide
# enough for ordinary sizing changes, narrow enough to catch a unit error (hours vs
# months, MiB vs GiB) or a whole component dropping out of the estimate.
EXPECTED_TOTAL = {
    ("aws", "staging"): (80, 400),
    ("aws", "production"): (900, 4500),
    ("gcp", "staging"): (50, 400),
    ("gcp", "production"): (300, 4000),
}

_cache: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}


def plan_json(cloud: str, stack: str) -> tuple[int, dict[str, Any]]:
    if (cloud, stack) not in _cache:
        result = CliRunner().invoke(app, ["plan", stack, "--cloud", cloud, "--json"])
        assert result.exit_code in (0, 1), result.output
        _cache[(cloud, stack)] = (result.exit_code, json.loads(result.stdout))
    return _cache[(cloud, stack)]


@pytest.mark.parametrize(("cloud", "stack"), STACKS)
def test_plan_output_matches_the_schema(cloud: str, stack: str) -> None:
    _, data = plan_json(cloud, stack)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["schema_version"] == 1
    assert data["stack"] == {
        "name": stack,
        "project": "groundwork",
        "cloud": cloud,
        "region": "us-east-1" if cloud == "aws" else "europe-west1",
        "environment": stack,
    }


@pytest.mark.parametrize(("cloud", "stack"), STACKS)
def test_every_resource_the_stack_creates_is_priced_or_stated_free(cloud: str, stack: str) -> None:
    _, data = plan_json(cloud, stack)
    assert data["costs"]["not_priced"] == []
    statuses = {r["status"] for c in data["costs"]["components"] for r in c["resources"]}
    assert statuses <= {"priced", "free"}


@pytest.mark.parametrize(("cloud", "stack"), STACKS)
def test_totals_within_expected_range_and_consistent(cloud: str, stack: str) -> None:
    _, data = plan_json(cloud, stack)
    low, high = EXPECTED_TOTAL[(cloud, stack)]
    total = data["costs"]["total_monthly"]
    assert low <= total <= high
    components = data["costs"]["components"]
    assert sum(c["monthly"] for c in components) == pytest.approx(total, abs=0.05)
    for component in components:
        assert sum(r["monthly"] for r in component["resources"]) == pytest.approx(
            component["monthly"], abs=0.05
        )
    # Costs are spread over several components, not lumped in one.
    assert sum(1 for c in components if c["monthly"] > 0) >= 5


@pytest.mark.parametrize(("cloud", "stack"), STACKS)
def test_inventory_counts_agree_with_the_tree(cloud: str, stack: str) -> None:
    _, data = plan_json(cloud, stack)
    inventory = data["inventory"]

    def leaves(nodes: list[dict[str, Any]]) -> int:
        return sum((n["kind"] == "resource") + leaves(n["children"]) for n in nodes)

    assert inventory["resource_count"] == leaves(inventory["tree"])
    assert inventory["resource_count"] == sum(inventory["by_type"].values())
    assert inventory["resource_count"] == sum(inventory["by_component"].values())
    assert inventory["resource_count"] >= 60
    assert inventory["component_count"] >= 5


def _type_count(cloud: str, stack: str, type_token: str) -> int:
    return plan_json(cloud, stack)[1]["inventory"]["by_type"].get(type_token, 0)


def test_aws_inventory_shape_differs_by_environment() -> None:
    assert _type_count("aws", "staging", "aws:ec2/natGateway:NatGateway") == 0
    assert _type_count("aws", "staging", "aws:ec2/instance:Instance") == 1  # nat = instance
    assert _type_count("aws", "production", "aws:ec2/natGateway:NatGateway") == 3
    # Staging runs the broker production runs (queue=sqs is an opt-in on both).
    assert _type_count("aws", "staging", "aws:mq/broker:Broker") == 1
    assert _type_count("aws", "staging", "aws:sqs/queue:Queue") == 0
    assert _type_count("aws", "production", "aws:mq/broker:Broker") == 1
    for stack in ("staging", "production"):
        assert _type_count("aws", stack, "aws:ecs/service:Service") == 3
        assert _type_count("aws", stack, "aws:elasticache/replicationGroup:ReplicationGroup") == 1
    assert _type_count("aws", "staging", "aws:rds/proxy:Proxy") == 0
    assert _type_count("aws", "production", "aws:rds/proxy:Proxy") == 1


def test_gcp_inventory_shape() -> None:
    for stack in ("staging", "production"):
        assert _type_count("gcp", stack, "gcp:cloudrunv2/service:Service") == 3
        assert _type_count("gcp", stack, "gcp:sql/databaseInstance:DatabaseInstance") >= 1
        assert _type_count("gcp", stack, "gcp:redis/instance:Instance") == 1


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_staging_is_cheaper_than_production(cloud: str) -> None:
    staging = plan_json(cloud, "staging")[1]["costs"]["total_monthly"]
    production = plan_json(cloud, "production")[1]["costs"]["total_monthly"]
    assert staging * 3 < production


def _resource(cloud: str, stack: str, type_token: str) -> dict[str, Any]:
    for component in plan_json(cloud, stack)[1]["costs"]["components"]:
        for resource in component["resources"]:
            if resource["type"] == type_token:
                return resource
    raise AssertionError(f"no {type_token} in {cloud}/{stack}")


def test_production_database_is_priced_multi_az_and_staging_single() -> None:
    prod = _resource("aws", "production", "aws:rds/instance:Instance")
    staging = _resource("aws", "staging", "aws:rds/instance:Instance")
    assert "Multi-AZ" in prod["items"][0]["description"]
    assert "Single-AZ" in staging["items"][0]["description"]


def test_production_broker_is_a_three_node_cluster() -> None:
    broker = _resource("aws", "production", "aws:mq/broker:Broker")
    assert broker["items"][0]["quantity"] == pytest.approx(3 * 730)


@pytest.mark.parametrize(("cloud", "stack"), STACKS)
def test_exit_code_follows_mandatory_verdicts(cloud: str, stack: str) -> None:
    code, data = plan_json(cloud, stack)
    verdicts = data["verdicts"]
    assert verdicts["available"] is True
    mandatory = [v for v in verdicts["items"] if v["enforcement"] == "mandatory"]
    assert verdicts["mandatory_failures"] == len(mandatory)
    assert code == data["exit_code"] == (1 if mandatory else 0)
    # Violations are listed mandatory first.
    levels = [v["enforcement"] for v in verdicts["items"]]
    assert levels == sorted(levels, key=lambda level: level != "mandatory")


def test_breaking_a_rule_with_set_fails_the_plan() -> None:
    baseline = {v["rule"] for v in plan_json("aws", "production")[1]["verdicts"]["items"]}
    assert "aws-rds-instance-multi-az" not in baseline
    result = CliRunner().invoke(app, ["plan", "production", "--set", "dbMultiAz=false", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    broken = [v for v in data["verdicts"]["items"] if v["rule"] == "aws-rds-instance-multi-az"]
    assert broken and broken[0]["enforcement"] == "mandatory"
    assert broken[0]["resource"].endswith("groundwork-production-db-postgres")
    # And the cost follows the override: a single-AZ database is cheaper.
    assert (
        data["costs"]["total_monthly"] < plan_json("aws", "production")[1]["costs"]["total_monthly"]
    )


def test_human_output_shows_tree_verdicts_and_costs() -> None:
    result = CliRunner().invoke(app, ["plan", "staging"], env={"COLUMNS": "200"})
    assert result.exit_code in (0, 1)
    out = result.stdout
    assert "groundwork/staging  aws us-east-1 (staging)" in out
    assert "groundwork-staging-db groundwork:aws:Database" in out
    assert "aws:rds:Instance  postgres" in out
    assert "Estimated monthly cost" in out
    total = plan_json("aws", "staging")[1]["costs"]["total_monthly"]
    assert f"${total:,.2f}" in out
    assert "Policy" in out
