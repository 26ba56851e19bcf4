"""The replacement model and the diff: sources, coverage, and what a change really does.

Facts asserted here come from the providers' schemas cited in replacement.yaml, e.g.
terraform-provider-aws internal/service/mq/broker.go declares `deployment_mode` and
`broker_name` ForceNew and suppresses every diff of RabbitMQ `user` after creation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from groundwork.cli import app
from groundwork.plan.replacement import (
    Action,
    Snapshot,
    diff,
    load_model,
    redact,
)
from groundwork.plan.report import SCHEMA_PATH
from policies.protection_rules import AWS_DATA_HOLDING, GCP_DATA_HOLDING
from tests.plan import guard

MODEL = load_model()
STACK = "urn:pulumi:production::groundwork::"


def snap(type_token: str, name: str, inputs: dict[str, Any], **options: Any) -> Snapshot:
    return Snapshot(
        urn=f"{STACK}{type_token}::{name}",
        type=type_token,
        name=name,
        inputs=inputs,
        refs=tuple(options.pop("refs", (f"{name}-0123456789abcdef0",))),
        **options,
    )


BROKER = "aws:mq/broker:Broker"
RDS = "aws:rds/instance:Instance"
REDIS = "gcp:redis/instance:Instance"
SECRET = "gcp:secretmanager/secret:Secret"


# -- the model -------------------------------------------------------------------------


def test_every_entry_cites_a_declared_source() -> None:
    for token, entry in MODEL.types.items():
        assert entry.source.split()[0] in MODEL.sources, token
        assert entry.checked == "recalled" or len(entry.checked) == 40, token


def test_data_holding_entries_were_read_from_the_schema_at_a_commit() -> None:
    # "recalled" is allowed for stateless types only; what decides data loss is checked.
    recalled = sorted(t for t in MODEL.data_holding_types() if MODEL.types[t].checked == "recalled")
    assert recalled == [], "read the schema and record the commit"


def test_the_policy_pack_protects_exactly_the_data_holding_types() -> None:
    assert set(AWS_DATA_HOLDING) | set(GCP_DATA_HOLDING) == MODEL.data_holding_types()


@pytest.mark.parametrize(("cloud", "environment"), guard.BASES)
def test_every_resource_type_the_stacks_create_is_modelled(cloud: str, environment: str) -> None:
    types = {s.type for s in guard.base_snapshots(cloud, environment)}
    assert sorted(types - set(MODEL.types)) == []


def test_model_forces_what_the_provider_schemas_say() -> None:
    broker = MODEL.of(BROKER)
    assert broker is not None
    assert broker.forces_replacement("deploymentMode")
    assert broker.forces_replacement("brokerName")
    assert not broker.forces_replacement("hostInstanceType")  # updated in place
    assert "users" in broker.ignored_after_create
    redis = MODEL.of(REDIS)
    assert redis is not None and redis.forces_replacement("tier")
    assert not redis.forces_replacement("memorySizeGb")
    secret = MODEL.of(SECRET)
    assert secret is not None and secret.forces_replacement("replication")
    task = MODEL.of("aws:ecs/taskDefinition:TaskDefinition")
    assert (
        task is not None and task.forces_replacement("cpu") and not task.forces_replacement("tags")
    )


# -- the diff --------------------------------------------------------------------------


def test_an_in_place_update_is_an_update() -> None:
    base = [snap(BROKER, "mq", {"brokerName": "gw-broker", "hostInstanceType": "mq.m5.large"})]
    head = [snap(BROKER, "mq", {"brokerName": "gw-broker", "hostInstanceType": "mq.m7g.large"})]
    (change,) = diff(base, head).changes
    assert change.action is Action.UPDATE and change.properties == ["hostInstanceType"]
    assert not change.destroys_data


def test_a_forcing_property_replaces_names_the_reason_and_the_fixed_name_collision() -> None:
    base = [snap(BROKER, "mq", {"brokerName": "gw-broker", "deploymentMode": "SINGLE_INSTANCE"})]
    head = [snap(BROKER, "mq", {"brokerName": "gw-broker", "deploymentMode": "CLUSTER_MULTI_AZ"})]
    (change,) = diff(base, head).changes
    assert change.action is Action.REPLACE
    assert change.reasons[0].startswith("deploymentMode SINGLE_INSTANCE -> CLUSTER_MULTI_AZ")
    assert "internal/service/mq/broker.go" in change.reasons[0]
    assert "queued" in change.loses and change.guards == []
    assert any("brokerName is fixed (gw-broker)" in w for w in change.warnings)


def test_rabbitmq_users_changed_after_create_are_reported_as_never_applied() -> None:
    users = [{"username": "groundwork", "password": "x"}]
    base = [snap(BROKER, "mq", {"brokerName": "b", "users": users})]
    head = [snap(BROKER, "mq", {"brokerName": "b", "users": [{**users[0], "username": "app"}]})]
    (change,) = diff(base, head).changes
    assert change.action is Action.UPDATE and change.properties == []
    assert change.dropped and change.dropped[0].startswith("users: RabbitMQ brokers")


def test_replace_on_changes_option_forces_a_replacement_the_schema_would_not() -> None:
    opts = {"replace_on_changes": ("hostInstanceType",), "delete_before_replace": True}
    base = [snap(BROKER, "mq", {"brokerName": "b", "hostInstanceType": "mq.m5.large"}, **opts)]
    head = [snap(BROKER, "mq", {"brokerName": "b", "hostInstanceType": "mq.m7g.large"}, **opts)]
    (change,) = diff(base, head).changes
    assert change.action is Action.REPLACE and "replaceOnChanges option" in change.reasons[0]
    assert change.warnings == [
        "deleteBeforeReplace: the old one is deleted before the new one exists"
    ]


def test_replace_on_changes_cannot_force_what_the_provider_suppresses() -> None:
    # The engine matches replaceOnChanges against the provider's diff; the AWS provider's
    # DiffSuppressFunc removes RabbitMQ `user` from it, so nothing is replaced.
    opts = {"replace_on_changes": ("users",)}
    base = [snap(BROKER, "mq", {"brokerName": "b", "users": [{"username": "a"}]}, **opts)]
    head = [snap(BROKER, "mq", {"brokerName": "b", "users": [{"username": "b"}]}, **opts)]
    (change,) = diff(base, head).changes
    assert change.action is Action.UPDATE and change.dropped


def test_protect_and_provider_deletion_protection_are_guards() -> None:
    inputs = {"identifier": "db", "deletionProtection": True}
    base = [snap(RDS, "db", inputs, protect=True)]
    (change,) = diff(base, []).changes
    assert change.action is Action.DELETE and change.destroys_data
    assert [g.split(":")[0] for g in change.guards] == ["protect", "deletionProtection"]
    assert not change.unguarded_data_loss


def test_replacement_cascades_through_references_and_providers() -> None:
    provider = snap("pulumi:providers:gcp", "gcp", {"region": "europe-west1"})
    secret = snap(SECRET, "s", {"secretId": "s", "replication": {"auto": {}}})
    version = snap(
        "gcp:secretmanager/secretVersion:SecretVersion",
        "v",
        {"secret": secret.refs[0], "secretData": "<redacted>"},
    )
    redis = snap(REDIS, "r", {"name": "r", "tier": "BASIC"}, provider=provider.urn)
    base = [provider, secret, version, redis]
    head = [
        snap("pulumi:providers:gcp", "gcp", {"region": "europe-west4"}),
        snap(SECRET, "s", {"secretId": "s", "replication": {"userManaged": {}}}),
        version,
        redis,
    ]
    changes = {c.name: c for c in diff(base, head).changes}
    assert changes["v"].action is Action.REPLACE
    assert changes["v"].reasons == ["secret refers to s, which is replaced"]
    assert changes["r"].action is Action.REPLACE
    assert changes["r"].reasons == ["its provider gcp is replaced"]
    # Data loss first.
    assert [c.name for c in diff(base, head).changes][:2] == ["r", "s"]


def test_created_and_deleted_resources_and_aliases() -> None:
    old = snap(RDS, "db", {"identifier": "db"})
    renamed = Snapshot(
        urn=f"{STACK}{RDS}::database",
        type=RDS,
        name="database",
        inputs={"identifier": "db"},
        aliases=(old.urn,),
    )
    assert diff([old], [renamed]).changes == []
    changes = diff([old], [snap(RDS, "other", {"identifier": "other"})]).changes
    assert sorted(c.action.value for c in changes) == ["create", "delete"]


def test_secret_inputs_are_redacted_but_still_compared() -> None:
    value = {"masterPassword": "hunter2", "users": [{"password": "p"}], "secret": "projects/x"}
    red = redact(value)
    assert "hunter2" not in json.dumps(red) and '"p"' not in json.dumps(red)
    assert red["secret"] == "projects/x"  # a reference to a secret, not a secret
    assert redact({"masterPassword": "other"}) != {"masterPassword": red["masterPassword"]}


# -- the CLI (the done-when) ---------------------------------------------------


def _plan(tmp_path: Path, name: str, *args: str) -> Path:
    result = CliRunner().invoke(app, ["plan", *args, "--json"])
    assert result.exit_code in (0, 1), result.output
    path = tmp_path / name
    path.write_text(result.stdout)
    return path


@pytest.mark.parametrize(
    ("setting", "replaced", "reason"),
    [
        ("cacheNodes=1", "groundwork-production-redis", "tier STANDARD_HA -> BASIC"),
        ("secretReplication=user-managed", "groundwork-production-jwt-secret", "replication"),
    ],
)
def test_plan_against_a_base_names_the_replaced_resource_and_why(
    tmp_path: Path, setting: str, replaced: str, reason: str
) -> None:
    base = _plan(tmp_path, "base.json", "production", "--cloud", "gcp")
    changed = ["plan", "production", "--cloud", "gcp", "--set", setting, "--against", str(base)]
    result = CliRunner().invoke(app, [*changed, "--json"])
    data = json.loads(result.stdout)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    change = next(c for c in data["diff"]["changes"] if c["name"] == replaced)
    assert change["action"] == "replace" and change["reasons"][0].startswith(reason)
    assert change["loses"]
    # Data loss leads the list.
    assert data["diff"]["changes"][0]["loses"]
    markdown = CliRunner().invoke(app, [*changed, "--markdown"]).stdout
    assert markdown.startswith("### Resources replaced or destroyed: production (gcp)")
    assert f"{replaced}: loses" in markdown and "[!CAUTION]" in markdown


def test_plan_against_a_base_whose_broker_users_differ(tmp_path: Path) -> None:
    base_path = _plan(tmp_path, "base.json", "production", "--cloud", "aws")
    data = json.loads(base_path.read_text())
    broker = next(r for r in data["resources"] if r["type"] == BROKER)
    broker["inputs"]["users"][0]["username"] = "legacy"  # the base branch's user
    base_path.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["plan", "production", "--against", str(base_path)])
    assert "groundwork-production-mq-broker" in result.stdout
    assert "not applied: users: RabbitMQ brokers" in " ".join(result.stdout.split())


def test_against_rejects_a_plan_without_resources(tmp_path: Path) -> None:
    base = _plan(tmp_path, "base.json", "staging")
    data = json.loads(base.read_text())
    del data["resources"]
    base.write_text(json.dumps(data))
    result = CliRunner().invoke(app, ["plan", "staging", "--against", str(base)])
    assert result.exit_code == 2
    assert "has no `resources`" in result.stderr and "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["plan", "staging", "--against", str(tmp_path / "no.json")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    lonely = CliRunner().invoke(app, ["plan", "staging", "--markdown"])
    assert lonely.exit_code == 2 and "--markdown needs --against" in lonely.stderr


def test_the_same_tree_plans_no_change_and_a_code_change_shows(tmp_path: Path) -> None:
    """A pull request's plan diff must not flag the key-rotation function on every run.

    The engine identifies an archive by its contents' SHA-256 (pulumi's asset.go), so the
    same source gives the same `code`; a different handler must still show as an update.
    """
    base_path = _plan(tmp_path, "base.json", "staging", "--cloud", "aws")
    same = CliRunner().invoke(
        app, ["plan", "staging", "--cloud", "aws", "--against", str(base_path), "--json"]
    )
    assert json.loads(same.stdout)["diff"]["changes"] == []

    data = json.loads(base_path.read_text())
    function = next(r for r in data["resources"] if r["type"] == "aws:lambda/function:Function")
    handler = function["inputs"]["code"]["archive"]["rotate.py"]
    assert handler["file"] == "rotate.py" and len(handler["sha256"]) == 64
    handler["sha256"] = "0" * 64  # the base branch's handler was another file
    base_path.write_text(json.dumps(data))
    changed = CliRunner().invoke(
        app, ["plan", "staging", "--cloud", "aws", "--against", str(base_path), "--json"]
    )
    changes = json.loads(changed.stdout)["diff"]["changes"]
    assert [(c["name"], c["action"]) for c in changes] == [(function["name"], "update")]
