"""Blue/green deployments of the API: the strategy, the load balancer pieces ECS swaps and
EcsInfrastructureRole, the role ECS assumes to swap them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.args import ComposedPart
from components.aws.ecs.iam import policy_document

# AWS managed policy for the ECS infrastructure role of blue/green deployments:
# describe and modify listeners, rules and target groups, nothing else.
ECS_LOAD_BALANCER_POLICY = "AmazonECSInfrastructureRolePolicyForLoadBalancers"


class DeploymentStrategy(StrEnum):
    """How a new API task definition replaces the running one."""

    ROLLING = "rolling"
    """Tasks are replaced in place (100 % min healthy, 200 % max); the deployment circuit
    breaker rolls back a revision whose tasks never turn healthy."""
    BLUE_GREEN = "blue-green"
    """ECS starts a full set of new tasks behind the alternate target group, swaps the
    production listener rule to it once healthy, keeps the old set for the bake time
    and swaps back on failure (circuit breaker or a rollback alarm) or on demand."""


@dataclass
class BlueGreenTraffic:
    """The load balancer pieces ECS swaps during a blue/green deployment."""

    alternate_target_group_arn: pulumi.Input[str]
    alternate_target_group_arn_suffix: pulumi.Input[str]
    production_listener_rule_arn: pulumi.Input[str]
    """A listener RULE forwarding to both target groups: ECS shifts its weights."""
    test_listener_rule_arn: pulumi.Input[str] | None = None


def validate_bake_time(minutes: int) -> None:
    if not 0 <= minutes <= 1440:
        raise ValueError(f"bake_time_minutes={minutes}: ECS allows 0 to 1440")


def blue_green_configuration(
    traffic: BlueGreenTraffic, role_arn: pulumi.Input[str]
) -> dict[str, Any]:
    """The load balancer's ``advanced_configuration`` for an ECS blue/green service."""
    config: dict[str, Any] = {
        "alternate_target_group_arn": traffic.alternate_target_group_arn,
        "production_listener_rule": traffic.production_listener_rule_arn,
        "role_arn": role_arn,
    }
    if traffic.test_listener_rule_arn is not None:
        config["test_listener_rule"] = traffic.test_listener_rule_arn
    return config


@dataclass
class EcsInfrastructureRoleArgs:
    managed_policy: str = ECS_LOAD_BALANCER_POLICY
    """The AWS managed policy attached (in the stack's partition); the default lets ECS
    move a listener rule between target groups and nothing else."""

    def __post_init__(self) -> None:
        if not self.managed_policy or "/" in self.managed_policy or ":" in self.managed_policy:
            raise ValueError(
                f"managed_policy={self.managed_policy!r}: the name of an AWS managed policy"
            )


class EcsInfrastructureRole(ComposedPart[EcsInfrastructureRoleArgs]):
    """The role ECS assumes to move the production listener rule between groups."""

    role_arn: pulumi.Output[str]
    attachment: aws.iam.RolePolicyAttachment
    """A service that uses the role depends on it: ECS assumes it as soon as the service
    exists."""

    TYPE = "groundwork:aws:EcsInfrastructureRole"

    def build(self, name: str, args: EcsInfrastructureRoleArgs) -> None:
        child = self.child_options()
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        role = aws.iam.Role(
            f"{name}-ecs-infra",
            description="ECS blue/green: shift the API listener rule between target groups",
            assume_role_policy=policy_document(
                [
                    {
                        "Sid": "AllowAccessToECSForInfrastructureManagement",
                        "Effect": "Allow",
                        "Principal": {"Service": "ecs.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            ),
            opts=child,
        )
        policy = args.managed_policy
        self.attachment = aws.iam.RolePolicyAttachment(
            f"{name}-ecs-infra-lb",
            role=role.name,
            policy_arn=partition.partition.apply(lambda p: f"arn:{p}:iam::aws:policy/{policy}"),
            opts=child,
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})
