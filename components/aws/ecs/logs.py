"""TaskLogs: one CloudWatch log group per process, ``/ecs/<service>/<process>``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.args import ComposedPart


@dataclass
class TaskLogsArgs:
    processes: Sequence[str]
    """One log group each (the awslogs driver of that process's container writes there)."""
    retention_days: int = 30
    kms_key_arn: pulumi.Input[str] | None = None
    """A customer key whose policy lets this region's CloudWatch Logs use it."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete``: a destroy keeps the logs."""

    def __post_init__(self) -> None:
        if not self.processes or len(set(self.processes)) != len(self.processes):
            raise ValueError(f"processes={list(self.processes)!r}: distinct names, at least one")
        if self.retention_days < 1:
            raise ValueError(f"retention_days={self.retention_days}: at least 1")


class TaskLogs(ComposedPart[TaskLogsArgs]):
    """Named like its ContainerService; the log groups keep their names and URNs."""

    log_groups: dict[str, aws.cloudwatch.LogGroup]
    log_group_names: dict[str, pulumi.Output[str]]

    TYPE = "groundwork:aws:TaskLogs"

    def build(self, name: str, args: TaskLogsArgs) -> None:
        options = self.child_options(protect=args.protect, retain_on_delete=args.protect)
        self.log_groups = {
            process: aws.cloudwatch.LogGroup(
                f"{name}-{process}-logs",
                name=f"/ecs/{name}/{process}",
                retention_in_days=args.retention_days,
                kms_key_id=args.kms_key_arn,
                opts=options,
            )
            for process in args.processes
        }
        self.log_group_names = {p: g.name for p, g in self.log_groups.items()}
        self.register_outputs({"log_group_names": self.log_group_names})
