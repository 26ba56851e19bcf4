"""FargateService: one long-running process as an ECS service on Fargate, and how the API
service's deployments roll (rolling, or ECS blue/green behind the load balancer)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pulumi
import pulumi_aws as aws

from components.args import moved_children

SERVICES = ("api", "worker", "relay")


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
class ServiceLoadBalancer:
    """The target group a service registers its tasks in (the API behind the ALB)."""

    target_group_arn: pulumi.Input[str]
    container_name: str
    container_port: int
    blue_green: BlueGreenTraffic | None = None
    """Set for ECS blue/green (with ``infrastructure_role_arn``); None rolls in place."""
    infrastructure_role_arn: pulumi.Input[str] | None = None
    """The role ECS assumes to shift the listener rule (EcsInfrastructureRole)."""
    bake_time_minutes: int = 10
    """BLUE_GREEN: how long the old tasks stay ready for an instant swap back."""
    health_check_grace_period_seconds: int = 60

    def __post_init__(self) -> None:
        if (self.blue_green is None) != (self.infrastructure_role_arn is None):
            raise ValueError("blue_green and infrastructure_role_arn go together")
        validate_bake_time(self.bake_time_minutes)


@dataclass
class FargateServiceArgs:
    cluster_arn: pulumi.Input[str]
    task_definition_arn: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets: tasks get no public IP and reach out through NAT/endpoints."""
    security_group_id: pulumi.Input[str]
    desired_count: int = 1
    spot: bool = False
    """Run on Fargate Spot (~70 % cheaper; an interruption restarts the task)."""
    autoscaled: bool = True
    """Autoscaling owns the running count: a deploy never resets ``desired_count``."""
    ecs_exec: bool = False
    """Shell access into tasks (ECS Exec). Convenient in staging, an audit finding in prod."""
    load_balancer: ServiceLoadBalancer | None = None
    deployment_alarm_names: Sequence[str] = ()
    """CloudWatch alarms that fail a deployment and roll it back."""
    wait_for_steady_state: bool = False
    """`pulumi up` waits until the new tasks are healthy (and fails if they never are)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """E.g. the cluster's capacity providers and the load balancer listener: ECS refuses a
    target group not attached to a listener."""

    def __post_init__(self) -> None:
        if self.desired_count < 0:
            raise ValueError(f"desired_count={self.desired_count}: at least 0")


class FargateService(pulumi.ComponentResource):
    """Named like its ECS service (``<service>-<process>``)."""

    service: aws.ecs.Service
    service_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: FargateServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:FargateService", name, None, opts)
        extra: dict[str, Any] = {}
        if (balancer := args.load_balancer) is not None:
            target: dict[str, Any] = {
                "target_group_arn": balancer.target_group_arn,
                "container_name": balancer.container_name,
                "container_port": balancer.container_port,
            }
            if balancer.blue_green is not None:
                assert balancer.infrastructure_role_arn is not None  # ServiceLoadBalancer checks it
                target["advanced_configuration"] = blue_green_configuration(
                    balancer.blue_green, balancer.infrastructure_role_arn
                )
                extra["deployment_configuration"] = {
                    "strategy": "BLUE_GREEN",
                    "bake_time_in_minutes": str(balancer.bake_time_minutes),
                }
            extra["load_balancers"] = [target]
            extra["health_check_grace_period_seconds"] = balancer.health_check_grace_period_seconds
        if args.deployment_alarm_names:
            # ECS reads the alarms when a deployment starts, not when the service is
            # created, and can roll back only to a COMPLETED deployment
            # (deployment-alarm-failure.html; aws/copilot-cli#4294 names alarms it
            # creates after the service), so later-created alarms are fine. An alarm
            # already in ALARM when a deployment starts is not watched for that
            # deployment: a fix still ships.
            extra["alarms"] = {
                "alarm_names": list(args.deployment_alarm_names),
                "enable": True,
                "rollback": True,
            }
        self.service = aws.ecs.Service(
            name,
            cluster=args.cluster_arn,
            task_definition=args.task_definition_arn,
            desired_count=args.desired_count,
            capacity_provider_strategies=[
                {"capacity_provider": "FARGATE_SPOT" if args.spot else "FARGATE", "weight": 1}
            ],
            platform_version="LATEST",
            network_configuration={
                "subnets": list(args.subnet_ids),
                "security_groups": [args.security_group_id],
                "assign_public_ip": False,
            },
            deployment_circuit_breaker={"enable": True, "rollback": True},
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            deployment_controller={"type": "ECS"},
            enable_execute_command=args.ecs_exec,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=args.wait_for_steady_state,
            **extra,
            opts=pulumi.ResourceOptions(
                parent=self,
                aliases=moved_children(opts),
                depends_on=list(args.depends_on),
                ignore_changes=["desiredCount"] if args.autoscaled else None,
            ),
        )
        self.service_name = self.service.name
        self.register_outputs({"service_name": self.service_name})
