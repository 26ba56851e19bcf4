"""FargateTaskDefinition: one process of the service image as a Fargate task definition.

One container: read-only root filesystem, a non-root user, all capabilities dropped,
secrets only through ``secrets``, logs through awslogs in non-blocking mode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.args import FARGATE_CPU_ARCHITECTURES, ComposedPart
from components.aws.ecs.sizes import ProcessSize

PROCESSES = ("api", "worker", "relay", "migrate")
RUN_AS = "10001:10001"
"""The uid/gid the image creates (services/app/Dockerfile); stated again so ECS enforces it."""
SCRATCH_VOLUME = ("tmp", "/tmp")  # noqa: S108
# The SSM agent that ECS Exec injects writes its state and logs under these paths; on a
# read-only root filesystem it crashes at start unless they are writable volumes
# (github.com/aws/containers-roadmap/issues/1359). Mounted only when ECS Exec is on.
ECS_EXEC_VOLUMES = (("ssm-state", "/var/lib/amazon"), ("ssm-logs", "/var/log/amazon"))


def task_volumes(ecs_exec: bool) -> list[tuple[str, str]]:
    """(volume name, container path) of every writable bind mount of a task."""
    return [SCRATCH_VOLUME, *(ECS_EXEC_VOLUMES if ecs_exec else ())]


def validate_task_settings(cpu_architecture: str, stop_timeout_seconds: int) -> None:
    """The one check of what Fargate accepts for every task of the service."""
    if cpu_architecture not in FARGATE_CPU_ARCHITECTURES:
        raise ValueError(f"cpu_architecture={cpu_architecture!r}: X86_64 or ARM64")
    # Any of them on Fargate Spot as well: the services run platform LATEST, which is
    # 1.4.0 for Linux (see FARGATE_CPU_ARCHITECTURES).
    if not 2 <= stop_timeout_seconds <= 120:
        raise ValueError("stop_timeout_seconds: Fargate allows 2 to 120")


@dataclass
class FargateTaskDefinitionArgs:
    process: str
    """One of ``PROCESSES``: the container's name and the image's command."""
    image: pulumi.Input[str]
    """``repo@sha256:...``: tasks run exactly these bytes."""
    log_group_name: pulumi.Input[str]
    region: pulumi.Input[str]
    """The log group's region (the awslogs driver needs it)."""
    execution_role_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    size: ProcessSize = field(default_factory=ProcessSize)
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain configuration, never a secret."""
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Env name -> Secrets Manager ``valueFrom``, resolved by the ECS agent at start."""
    cpu_architecture: str = "X86_64"
    container_port: int = 8000
    """The API's port (the other processes expose none)."""
    stop_timeout_seconds: int = 30
    """SIGTERM-to-SIGKILL: the app drains within its SHUTDOWN_TIMEOUT_SECONDS."""
    ecs_exec: bool = False
    """Mount the writable paths ECS Exec's SSM agent needs."""

    def __post_init__(self) -> None:
        if self.process not in PROCESSES:
            raise ValueError(f"process={self.process!r}: one of {PROCESSES}")
        validate_task_settings(self.cpu_architecture, self.stop_timeout_seconds)
        overlap = sorted(set(self.environment) & set(self.secrets))
        if overlap:
            raise ValueError(f"{overlap} are both plain environment and secrets")


class FargateTaskDefinition(ComposedPart[FargateTaskDefinitionArgs]):
    """Named like its task definition and family (``<service>-<process>``)."""

    arn: pulumi.Output[str]

    TYPE = "groundwork:aws:FargateTaskDefinition"

    def build(self, name: str, args: FargateTaskDefinitionArgs) -> None:
        definitions = pulumi.Output.all(
            args.image,
            pulumi.Output.all(**args.environment),
            pulumi.Output.all(**args.secrets),
            args.log_group_name,
            args.region,
        ).apply(lambda a: json.dumps([container_definition(args.process, *a, **_fixed(args))]))
        task_definition = aws.ecs.TaskDefinition(
            name,
            family=name,
            cpu=str(args.size.cpu),
            memory=str(args.size.memory_mb),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform={
                "operating_system_family": "LINUX",
                "cpu_architecture": args.cpu_architecture,
            },
            execution_role_arn=args.execution_role_arn,
            task_role_arn=args.task_role_arn,
            container_definitions=definitions,
            volumes=[{"name": volume} for volume, _ in task_volumes(args.ecs_exec)],
            # Keep each replaced revision ACTIVE: rolling back (ops rollback, the
            # deployment circuit breaker) runs a previous revision.
            skip_destroy=True,
            opts=self.child_options(),
        )
        self.arn = task_definition.arn
        self.register_outputs({"arn": self.arn})


def _fixed(args: FargateTaskDefinitionArgs) -> dict[str, Any]:
    return {
        "container_port": args.container_port,
        "stop_timeout": args.stop_timeout_seconds,
        "ecs_exec": args.ecs_exec,
    }


def container_definition(
    process: str,
    image: str,
    environment: Mapping[str, str],
    secrets: Mapping[str, str],
    log_group: str,
    region: str,
    container_port: int,
    stop_timeout: int,
    ecs_exec: bool = False,
) -> dict[str, object]:
    """One container of ``process``: read-only root, non-root, secrets via ``secrets``."""
    definition: dict[str, object] = {
        "name": process,
        "image": image,
        "essential": True,
        "command": [process],
        "user": RUN_AS,
        "readonlyRootFilesystem": True,
        "stopTimeout": stop_timeout,
        "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
        "secrets": [{"name": k, "valueFrom": secrets[k]} for k in sorted(secrets)],
        # The only writable paths: task-local bind mounts (the root filesystem is read-only).
        "mountPoints": [
            {"sourceVolume": volume, "containerPath": path, "readOnly": False}
            for volume, path in task_volumes(ecs_exec)
        ],
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": process,
                "mode": "non-blocking",
                "max-buffer-size": "4m",
            },
        },
    }
    if process == "api":
        definition["portMappings"] = [
            {"containerPort": container_port, "protocol": "tcp", "name": "http"}
        ]
    if process != "migrate":
        definition["healthCheck"] = {
            "command": ["CMD", "groundwork-app", "healthcheck", process],
            "interval": 15,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 30,
        }
    return definition
