"""The mock-runtime harness records what a real `pulumi up` would register."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from groundwork.mockrun import FAKE_ACCOUNT, run_program


class _Pair(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("groundwork:test:Pair", name, None, opts)
        self.key = aws.kms.Key(
            f"{name}-key", enable_key_rotation=True, opts=pulumi.ResourceOptions(parent=self)
        )
        self.log = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            retention_in_days=30,
            kms_key_id=self.key.arn,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["tags"]),
        )
        self.register_outputs({"key_arn": self.key.arn})


def _program() -> None:
    pair = _Pair("pair")
    identity = aws.get_caller_identity()
    pulumi.export("log_kms", pair.log.kms_key_id)
    pulumi.export("account", identity.account_id)
    pulumi.export("nested", {"arns": [pair.key.arn]})


def test_records_types_parents_inputs_options_and_resolves_exports():
    run = run_program(_program, stack="staging", config={"aws:region": "eu-west-1"})
    component = run.one("groundwork:test:Pair")
    assert component.is_component
    children = run.children(component.urn)
    assert sorted(r.type for r in children) == [
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:kms/key:Key",
    ]
    log = run.named("pair-logs")
    assert log.inputs["retentionInDays"] == 30
    assert log.ignore_changes == ["tags"]
    key_arn = run.named("pair-key").state["arn"]
    assert key_arn.startswith(f"arn:aws:kms:eu-west-1:{FAKE_ACCOUNT}:")
    assert run.outputs["log_kms"] == key_arn
    assert run.outputs["account"] == FAKE_ACCOUNT
    assert run.outputs["nested"] == {"arns": [key_arn]}


def test_runs_are_independent_and_repeatable():
    first = run_program(_program, stack="staging")
    second = run_program(_program, stack="production")
    assert [r.name for r in first.resources] == [r.name for r in second.resources]
    assert second.stack == "production"
    assert all(r.urn.startswith("urn:pulumi:production::groundwork::") for r in second.resources)
