"""ServiceAutoscaling: how the ECS services follow their load.

The api scales on CPU and on requests per task (per target group when rolling; per
running task from the load balancer's total when blue/green, since traffic moves
between the two target groups), workers on queue depth per running task (Amazon MQ's
MessageCount, or SQS's ApproximateNumberOfMessagesVisible).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from components.args import ComposedPart
from components.aws.ecs.blue_green import DeploymentStrategy

if TYPE_CHECKING:
    from components.aws.container_service import ContainerServiceArgs


@dataclass
class ServiceAutoscalingArgs:
    service: ContainerServiceArgs
    """The composing ContainerService's args: sizes, targets, queue and load balancer."""
    cluster: aws.ecs.Cluster
    services: Mapping[str, aws.ecs.Service]
    """At least ``api`` and ``worker``."""

    def __post_init__(self) -> None:
        missing = {"api", "worker"} - set(self.services)
        if missing:
            raise ValueError(f"services lacks {sorted(missing)}")


class ServiceAutoscaling(ComposedPart[ServiceAutoscalingArgs]):
    """Named like its ContainerService (another type, so another URN); the targets and
    policies keep the names they had as the service's direct children."""

    TYPE = "groundwork:aws:ServiceAutoscaling"

    def build(self, name: str, scaling: ServiceAutoscalingArgs) -> None:
        child = self.child_options()
        args, cluster, services = scaling.service, scaling.cluster, scaling.services
        blue_green = args.api_deployment is DeploymentStrategy.BLUE_GREEN
        targets = {}
        for process, size in (("api", args.api), ("worker", args.worker)):
            targets[process] = aws.appautoscaling.Target(
                f"{name}-{process}-scaling",
                service_namespace="ecs",
                scalable_dimension="ecs:service:DesiredCount",
                resource_id=pulumi.Output.concat(
                    "service/", cluster.name, "/", services[process].name
                ),
                min_capacity=size.min_count,
                max_capacity=size.max_count,
                opts=child,
            )

        def policy(suffix: str, target: aws.appautoscaling.Target, config: Any) -> None:
            aws.appautoscaling.Policy(
                f"{name}-{suffix}",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension,
                resource_id=target.resource_id,
                target_tracking_scaling_policy_configuration=config,
                opts=child,
            )

        api = targets["api"]
        policy(
            "api-cpu",
            api,
            {
                "target_value": args.api_cpu_target,
                "predefined_metric_specification": {
                    "predefined_metric_type": "ECSServiceAverageCPUUtilization"
                },
                "scale_in_cooldown": 300,
                "scale_out_cooldown": 60,
            },
        )
        policy(
            "api-requests",
            api,
            {
                "target_value": args.api_requests_per_target,
                **(
                    _requests_per_running_task(args, cluster, services["api"])
                    if blue_green
                    else {
                        "predefined_metric_specification": {
                            "predefined_metric_type": "ALBRequestCountPerTarget",
                            "resource_label": pulumi.Output.concat(
                                args.load_balancer_arn_suffix, "/", args.target_group_arn_suffix
                            ),
                        }
                    }
                ),
                "scale_in_cooldown": 300,
                "scale_out_cooldown": 60,
            },
        )
        policy(
            "worker-queue-depth",
            targets["worker"],
            {
                "target_value": args.worker_backlog_per_task,
                "customized_metric_specification": {
                    "metrics": [
                        _queue_depth(args),
                        _running_tasks(
                            "workers", "running worker tasks", cluster, services["worker"]
                        ),
                        {
                            "id": "backlog",
                            "label": "messages waiting per worker task",
                            "expression": "depth / workers",
                            "return_data": True,
                        },
                    ]
                },
                "scale_in_cooldown": 300,
                "scale_out_cooldown": 60,
            },
        )
        self.register_outputs({})


def _queue_depth(args: ContainerServiceArgs) -> dict[str, Any]:
    """A metric-math input: messages waiting in the work queue."""
    if args.sqs_queue_name is not None:
        # Visible messages only: in-flight ones already have a worker. SQS publishes it
        # every minute (SQS Developer Guide, "Available CloudWatch metrics for Amazon SQS").
        metric: dict[str, Any] = {
            "namespace": "AWS/SQS",
            "metric_name": "ApproximateNumberOfMessagesVisible",
            "dimensions": [{"name": "QueueName", "value": args.sqs_queue_name}],
        }
        label = "messages waiting (SQS)"
    else:
        metric = {
            "namespace": "AWS/AmazonMQ",
            "metric_name": "MessageCount",
            "dimensions": [
                {"name": "Broker", "value": args.broker_name},
                {"name": "VirtualHost", "value": args.queue_vhost},
                {"name": "Queue", "value": args.queue_name},
            ],
        }
        label = f"{args.queue_name} messages (Amazon MQ)"
    return {
        "id": "depth",
        "label": label,
        "metric_stat": {"metric": metric, "stat": "Average"},
        "return_data": False,
    }


def _running_tasks(
    metric_id: str, label: str, cluster: aws.ecs.Cluster, service: aws.ecs.Service
) -> dict[str, Any]:
    """A metric-math input: the service's running task count (Container Insights)."""
    return {
        "id": metric_id,
        "label": label,
        "metric_stat": {
            "metric": {
                "namespace": "ECS/ContainerInsights",
                "metric_name": "RunningTaskCount",
                "dimensions": [
                    {"name": "ClusterName", "value": cluster.name},
                    {"name": "ServiceName", "value": service.name},
                ],
            },
            "stat": "Average",
        },
        "return_data": False,
    }


def _requests_per_running_task(
    args: ContainerServiceArgs, cluster: aws.ecs.Cluster, api: aws.ecs.Service
) -> dict[str, Any]:
    """Load balancer requests per running API task.

    Blue/green moves traffic to whichever target group is green, so a per-target-group
    metric (ALBRequestCountPerTarget) would read an empty group after every other
    deployment and scale the API in; the load balancer's total does not move.
    """
    return {
        "customized_metric_specification": {
            "metrics": [
                {
                    "id": "requests",
                    "label": "API requests per minute (load balancer)",
                    "metric_stat": {
                        "metric": {
                            "namespace": "AWS/ApplicationELB",
                            "metric_name": "RequestCount",
                            "dimensions": [
                                {"name": "LoadBalancer", "value": args.load_balancer_arn_suffix}
                            ],
                        },
                        "stat": "Sum",
                    },
                    "return_data": False,
                },
                _running_tasks("tasks", "running API tasks", cluster, api),
                {
                    "id": "per_task",
                    "label": "requests per running API task",
                    "expression": "requests / tasks",
                    "return_data": True,
                },
            ]
        }
    }
