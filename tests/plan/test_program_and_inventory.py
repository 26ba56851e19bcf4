"""Stack config layering (Pulumi.yaml < Pulumi.STACK.yaml < --set) and the component tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from groundwork.plan.inventory import STACK_GROUP, build_inventory
from groundwork.plan.program import (
    GCP_PROJECT_PLACEHOLDER,
    SECRET_PLACEHOLDER,
    PlanError,
    find_project_root,
    load_stack_config,
    parse_overrides,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: groundwork\nruntime: python\nconfig:\n"
        "  groundwork:cloud:\n    type: string\n    default: aws\n"
        "  logLevel: info\n"
    )
    (tmp_path / "Pulumi.staging.yaml").write_text(
        "config:\n  aws:region: us-east-1\n  groundwork:nat: single\n"
        "  groundwork:dbMultiAz: false\n  groundwork:alarmEmail:\n    secure: v1:abc==\n"
        "  groundwork:tagsExtra:\n    team: platform\n"
    )
    return tmp_path


def test_layers_in_pulumi_order_with_sources(project: Path) -> None:
    config = load_stack_config(
        "staging", root=project, overrides={"groundwork:nat": "one-per-az"}, cloud="aws"
    )
    assert config.values["groundwork:cloud"] == "aws"
    assert config.sources["groundwork:cloud"] == "--cloud aws"
    # An unqualified project key lands in the project namespace.
    assert config.values["groundwork:logLevel"] == "info"
    assert config.sources["groundwork:logLevel"] == "Pulumi.yaml (project default)"
    assert config.values["aws:region"] == "us-east-1"
    assert config.values["groundwork:nat"] == "one-per-az"
    assert config.sources["groundwork:nat"] == "--set groundwork:nat=one-per-az"
    # Pulumi passes booleans and objects to the program as strings / JSON.
    assert config.values["groundwork:dbMultiAz"] == "false"
    assert config.values["groundwork:tagsExtra"] == '{"team": "platform"}'


def test_encrypted_values_are_replaced_by_a_visible_placeholder(project: Path) -> None:
    config = load_stack_config("staging", root=project)
    assert config.values["groundwork:alarmEmail"] == SECRET_PLACEHOLDER
    assert any("groundwork:alarmEmail is encrypted" in note for note in config.notes)


def test_gcp_plan_gets_a_placeholder_project_only_when_unset(project: Path) -> None:
    config = load_stack_config("staging", root=project, cloud="gcp")
    assert config.values["gcp:project"] == GCP_PROJECT_PLACEHOLDER
    assert any("gcp:project is not set" in note for note in config.notes)
    config = load_stack_config(
        "staging", root=project, cloud="gcp", overrides={"gcp:project": "acme-prod"}
    )
    assert config.values["gcp:project"] == "acme-prod"
    assert config.notes == [n for n in config.notes if "gcp:project" not in n]


def test_unknown_stack_lists_the_known_ones(project: Path) -> None:
    with pytest.raises(PlanError, match=r"unknown stack 'prod': no Pulumi.prod.yaml .*staging"):
        load_stack_config("prod", root=project)


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("novalue", "expected key=value"),
        ("=x", "expected key=value"),
        ("a:b:c=1", "a key is 'name' or 'namespace:name'"),
    ],
)
def test_parse_overrides_rejects_malformed_pairs(pair: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_overrides([pair])


def test_parse_overrides_namespaces() -> None:
    assert parse_overrides(["nat=none", "aws:region=eu-west-1", "x=a=b"]) == {
        "groundwork:nat": "none",
        "aws:region": "eu-west-1",
        "groundwork:x": "a=b",
    }


def test_project_root_found_from_a_subdirectory(tmp_path: Path) -> None:
    assert find_project_root(REPO / "groundwork" / "plan") == REPO


def test_repository_stack_files_stay_override_only() -> None:
    from stacks.config import ENVIRONMENT_DEFAULTS

    defaults = {key for tier in ENVIRONMENT_DEFAULTS.values() for key in tier}
    for stack in ("staging", "production"):
        config = load_stack_config(stack, root=REPO)
        overridden = {
            k.split(":", 1)[1]
            for k, src in config.sources.items()
            if src == f"Pulumi.{stack}.yaml" and k.startswith("groundwork:")
        }
        assert not overridden & defaults, f"{stack} repeats code defaults"
        assert config.values["gcp:region"] == "europe-west1"


# ---------------------------------------------------------------- inventory


def test_inventory_groups_by_top_level_component_and_folds_nested(graph) -> None:
    stack = "urn:pulumi:staging::groundwork::pulumi:pulumi:Stack::groundwork-staging"
    db = graph.add("groundwork:aws:Database", "db", custom=False, parent=stack)
    key = graph.add("groundwork:aws:EncryptionKey", "db-kms", custom=False, parent=db.urn)
    graph.add("aws:kms/key:Key", "db-kms-key", parent=key.urn)
    graph.add("aws:rds/instance:Instance", "db-postgres", parent=db.urn)
    graph.add("groundwork:aws:Network", "net", custom=False, parent=stack)
    graph.add("aws:ec2/vpc:Vpc", "net-vpc", parent=graph.resources[-1].urn)
    graph.add("pulumi:providers:aws", "provider", parent=stack)
    inventory = build_inventory(graph.run())
    assert inventory.counts_by_component() == {STACK_GROUP: 1, "db": 2, "net": 1}
    assert [n.resource.name for n in inventory.roots] == ["db", "net", "provider"]
    assert [n.resource.name for n in inventory.roots[0].children] == ["db-kms", "db-postgres"]


def test_a_single_wrapper_component_is_looked_through(graph) -> None:
    stack = "urn:pulumi:staging::groundwork::pulumi:pulumi:Stack::s"
    env = graph.add("groundwork:gcp:Environment", "env", custom=False, parent=stack)
    graph.add("gcp:compute/network:Network", "env-vpc", parent=env.urn)
    cache = graph.add("groundwork:gcp:Cache", "env", custom=False, parent=env.urn)
    graph.add("gcp:redis/instance:Instance", "env-redis", parent=cache.urn)
    db = graph.add("groundwork:gcp:Database", "env", custom=False, parent=env.urn)
    graph.add("gcp:sql/databaseInstance:DatabaseInstance", "env-sql", parent=db.urn)
    inventory = build_inventory(graph.run())
    # Two components share a name: the type tells them apart.
    assert inventory.counts_by_component() == {"env": 1, "env (Cache)": 1, "env (Database)": 1}
