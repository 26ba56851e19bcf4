"""The policy rules that keep production data stores protected against deletion.

`protect` is a resource option the engine hands to stack policies (PolicyResource.opts);
`retainOnDelete` is not handed to policies by the engine, only by the offline runner,
which reads it from mockrun's recorded options.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import pulumi_aws as aws
import pulumi_gcp as gcp
import pytest
from pulumi_policy import Policy

from groundwork.mockrun import ProgramRun
from groundwork.policyrun import Verdict, load_pack_config, run_policies
from policies.pack import POLICIES
from tests.policies.helpers import TAGS, record

AWS_RULE = "aws-pulumi-datastore-protected"
GCP_RULE = "gcp-pulumi-datastore-protected"


def _rule(name: str) -> list[Policy]:
    return [p for p in POLICIES if p.name == name]


def _verdicts(run: ProgramRun, environment: str, rule: str) -> list[Verdict]:
    config = {rule: load_pack_config(environment)[rule]}  # as CI passes it
    return run_policies(run, config=config, policies=_rule(rule))


def _messages(run: ProgramRun, environment: str, rule: str) -> list[str]:
    return [v.message for v in _verdicts(run, environment, rule)]


def _database(**opts: object) -> Callable[[], None]:
    def program() -> None:
        aws.rds.Instance(
            "db",
            instance_class="db.t4g.micro",
            engine="postgres",
            allocated_storage=20,
            deletion_protection=True,
            tags=TAGS,
            opts=pulumi.ResourceOptions(**opts),  # type: ignore[arg-type]
        )

    return program


def test_mockrun_records_protect_and_retain_on_delete() -> None:
    run = record(_database(protect=True, retain_on_delete=True, delete_before_replace=True))
    db = run.one("aws:rds/instance:Instance")
    assert (db.protect, db.retain_on_delete, db.delete_before_replace) == (True, True, True)
    plain = record(_database()).one("aws:rds/instance:Instance")
    assert (plain.protect, plain.retain_on_delete, plain.delete_before_replace) == (
        False,
        False,
        False,
    )


def test_unprotected_production_database_is_blocked() -> None:
    run = record(_database())
    messages = _messages(run, "production", AWS_RULE)
    assert len(messages) == 1 and "Instance db holds data but is not protected" in messages[0]
    assert _verdicts(run, "production", AWS_RULE)[0].mandatory


@pytest.mark.parametrize("opts", [{"protect": True}, {"retain_on_delete": True}])
def test_protect_or_retain_on_delete_satisfies_it(opts: dict[str, bool]) -> None:
    assert _messages(record(_database(**opts)), "production", AWS_RULE) == []


def test_staging_is_not_required_to_protect() -> None:
    assert _messages(record(_database(), stack="staging"), "staging", AWS_RULE) == []


def test_provider_deletion_protection_is_required_too() -> None:
    def program() -> None:
        gcp.redis.Instance(
            "cache",
            memory_size_gb=1,
            deletion_protection=False,
            labels=TAGS,
            opts=pulumi.ResourceOptions(protect=True),
        )

    messages = _messages(record(program), "production", GCP_RULE)
    assert messages and "does not set deletionProtection=True" in messages[0]


def test_a_resource_without_data_is_not_concerned() -> None:
    def program() -> None:
        aws.iam.Role("role", assume_role_policy="{}", tags=TAGS)

    assert _messages(record(program), "production", AWS_RULE) == []


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_real_production_stacks_protect_every_data_store(cloud: str) -> None:
    from groundwork.plan.program import load_stack_config, plan_program

    run = plan_program(load_stack_config("production", cloud=cloud)).run
    assert _messages(run, "production", f"{cloud}-pulumi-datastore-protected") == []


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_production_data_stores_carry_protect_and_retain_on_delete(cloud: str) -> None:
    # Both options, not either: under `pulumi preview` the policy only sees `protect`,
    # and `retainOnDelete` is what keeps the cloud resource if someone lifts `protect`
    # and destroys anyway (docs/runbook.md, accidental destroy).
    from groundwork.plan.program import load_stack_config, plan_program
    from policies.protection_rules import AWS_DATA_HOLDING, GCP_DATA_HOLDING

    types = AWS_DATA_HOLDING if cloud == "aws" else GCP_DATA_HOLDING
    run = plan_program(load_stack_config("production", cloud=cloud)).run
    stores = [r for r in run.resources if r.type in types]
    assert {r.type for r in stores} == set(types)  # every kind of store is looked at
    unguarded = sorted(r.name for r in stores if not (r.protect and r.retain_on_delete))
    assert unguarded == []


def test_production_on_sqs_protects_the_queues_key() -> None:
    # queue=sqs swaps the broker for SQS queues encrypted with their own KMS key: a
    # deleted key makes every message still encrypted under it unreadable.
    from groundwork.plan.program import load_stack_config, plan_program

    config = load_stack_config("production", overrides={"groundwork:queue": "sqs"})
    run = plan_program(config).run
    assert _messages(run, "production", AWS_RULE) == []
    queues = run.of_type("aws:sqs/queue:Queue")
    assert len(queues) == 2 and all(q.protect and q.retain_on_delete for q in queues)
