"""TaskRoles: the ECS tasks' execution role (pull, log, read exactly the injected secrets)
and the application's task role."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.args import ComposedPart

ECS_EXEC_ACTIONS = (
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
"""The SSM channel ECS Exec opens from inside the task."""


def policy_document(statements: list[dict[str, object]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def assume_ecs_tasks(account: str) -> str:
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
                # Only ECS tasks of this account may assume it (confused deputy).
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        ]
    )


@dataclass
class TaskRolesArgs:
    repository_arn: pulumi.Input[str]
    """The only repository the execution role may pull from."""
    log_group_arns: Sequence[pulumi.Input[str]]
    """The only log groups it may write to."""
    secret_arns: Sequence[pulumi.Input[str]]
    """The only secrets it may read (those injected through ``secrets``)."""
    kms_key_arns: Sequence[pulumi.Input[str]]
    """Keys those secrets are encrypted with."""
    task_policy_statements: Sequence[pulumi.Input[Mapping[str, Any]]] = ()
    """IAM statements for the application's task role; none by default."""
    ecs_exec: bool = False
    """Let the task role open ECS Exec's SSM channel."""

    def __post_init__(self) -> None:
        if not self.log_group_arns:
            raise ValueError("log_group_arns: the tasks log through awslogs, name their groups")


class TaskRoles(ComposedPart[TaskRolesArgs]):
    """Named like its ContainerService; the roles and policies keep their names and URNs."""

    execution_role_arn: pulumi.Output[str]
    task_role_arn: pulumi.Output[str]

    TYPE = "groundwork:aws:TaskRoles"

    def build(self, name: str, args: TaskRolesArgs) -> None:
        child = self.child_options()
        account = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        trust = account.apply(assume_ecs_tasks)
        execution = aws.iam.Role(
            f"{name}-execution",
            description="ECS agent: pull the image, write logs, resolve the task's secrets",
            assume_role_policy=trust,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-execution-policy",
            role=execution.id,
            policy=pulumi.Output.all(
                args.repository_arn,
                list(args.log_group_arns),
                list(args.secret_arns),
                list(args.kms_key_arns),
            ).apply(lambda a: execution_policy(a[0], a[1], a[2], a[3])),
            opts=child,
        )
        task = aws.iam.Role(
            f"{name}-task",
            description="Application processes: no AWS permissions beyond what is listed",
            assume_role_policy=trust,
            opts=child,
        )
        if args.task_policy_statements:
            aws.iam.RolePolicy(
                f"{name}-task-policy",
                role=task.id,
                policy=pulumi.Output.all(*args.task_policy_statements).apply(
                    lambda statements: policy_document(list(statements))
                ),
                opts=child,
            )
        if args.ecs_exec:
            aws.iam.RolePolicy(
                f"{name}-task-exec",
                role=task.id,
                policy=policy_document(
                    [
                        {
                            "Sid": "EcsExecChannel",
                            "Effect": "Allow",
                            "Action": list(ECS_EXEC_ACTIONS),
                            "Resource": "*",
                        }
                    ]
                ),
                opts=child,
            )
        self.execution_role_arn = execution.arn
        self.task_role_arn = task.arn
        self.register_outputs(
            {"execution_role_arn": self.execution_role_arn, "task_role_arn": self.task_role_arn}
        )


def execution_policy(
    repository_arn: str, log_group_arns: list[str], secret_arns: list[str], kms_arns: list[str]
) -> str:
    """Exactly what the ECS agent needs to start these tasks, nothing else."""
    return policy_document(
        [
            {
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": "ecr:GetAuthorizationToken",
                "Resource": "*",
            },
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": repository_arn,
            },
            {
                "Sid": "WriteLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{arn}:*" for arn in log_group_arns],
            },
            {
                "Sid": "ReadTaskSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": sorted(set(secret_arns)),
            },
            # kms:Decrypt "only if your secret uses a customer managed key, not the default
            # key" (ECS Developer Guide, task execution IAM role, Secrets Manager); with
            # groundwork:cmek off there is none, and IAM refuses an empty Resource.
            *_decrypt(kms_arns),
        ]
    )


def _decrypt(kms_arns: list[str]) -> list[dict[str, object]]:
    if not kms_arns:
        return []
    return [
        {
            "Sid": "DecryptTaskSecrets",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": sorted(set(kms_arns)),
        }
    ]
