"""TaskRoles (components/aws/ecs/iam.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws.ecs.iam import ECS_EXEC_ACTIONS, TaskRoles, TaskRolesArgs


def _roles(**kwargs: Any) -> TaskRolesArgs:
    return TaskRolesArgs(
        repository_arn="arn:repo",
        log_group_arns=["arn:logs"],
        secret_arns=["arn:s", "arn:s"],
        kms_key_arns=["arn:k"],
        **kwargs,
    )


def test_execution_role_reads_exactly_its_secrets_and_task_role_gets_nothing(
    helpers: Any,
) -> None:
    run = helpers.run_component(lambda: TaskRoles("app", _roles()))
    (policy,) = run.of_type("aws:iam/rolePolicy:RolePolicy")
    assert policy.name == "app-execution-policy"
    statements = {s["Sid"]: s for s in json.loads(policy.inputs["policy"])["Statement"]}
    assert statements["ReadTaskSecrets"]["Resource"] == ["arn:s"]
    assert statements["PullImage"]["Resource"] == "arn:repo"
    assert statements["WriteLogs"]["Resource"] == ["arn:logs:*"]
    for role in run.of_type("aws:iam/role:Role"):
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        assert trust["Condition"]["StringEquals"]["aws:SourceAccount"]


def test_ecs_exec_adds_only_the_ssm_channel(helpers: Any) -> None:
    run = helpers.run_component(lambda: TaskRoles("app", _roles(ecs_exec=True)))
    exec_policy = run.named("app-task-exec").inputs["policy"]
    (statement,) = json.loads(exec_policy)["Statement"]
    assert statement["Action"] == list(ECS_EXEC_ACTIONS)


def test_iam_args_refuse() -> None:
    with pytest.raises(ValueError, match="log_group_arns"):
        TaskRolesArgs(repository_arn="r", log_group_arns=[], secret_arns=[], kms_key_arns=[])
