"""FargateService: one long-running process as an ECS service on Fargate (the API behind the
load balancer, rolling or ECS blue/green)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.args import ComposedPart
from components.aws.ecs.blue_green import (
    BlueGreenTraffic,
    blue_green_configuration,
    validate_bake_time,
)

SERVICES = ("api", "worker", "relay")


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


class FargateService(ComposedPart[FargateServiceArgs]):
    """Named like its ECS service (``<service>-<process>``)."""

    service: aws.ecs.Service
    service_name: pulumi.Output[str]

    TYPE = "groundwork:aws:FargateService"

    def build(self, name: str, args: FargateServiceArgs) -> None:
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
            opts=self.child_options(
                depends_on=list(args.depends_on),
                ignore_changes=["desiredCount"] if args.autoscaled else None,
            ),
        )
        self.service_name = self.service.name
        self.register_outputs({"service_name": self.service_name})
