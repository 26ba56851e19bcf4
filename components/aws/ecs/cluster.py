"""EcsCluster: the ECS cluster with Container Insights and both Fargate capacity providers."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.args import ComposedPart

CONTAINER_INSIGHTS = ("enhanced", "enabled", "disabled")


@dataclass
class EcsClusterArgs:
    container_insights: str = "enhanced"
    """Task- and container-level metrics; ServiceAutoscaling's queue-depth and blue/green
    policies read RunningTaskCount from it, so only turn it off without them."""

    def __post_init__(self) -> None:
        if self.container_insights not in CONTAINER_INSIGHTS:
            raise ValueError(
                f"container_insights={self.container_insights!r}: one of {CONTAINER_INSIGHTS}"
            )


class EcsCluster(ComposedPart[EcsClusterArgs]):
    """Named like its ContainerService; the cluster keeps its name and URN (alias)."""

    cluster: aws.ecs.Cluster
    capacity_providers: aws.ecs.ClusterCapacityProviders
    """Services depend on it, so the capacity providers their strategies name are the
    cluster's before they are created."""
    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]

    TYPE = "groundwork:aws:EcsCluster"

    def build(self, name: str, args: EcsClusterArgs) -> None:
        child = self.child_options()
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            settings=[{"name": "containerInsights", "value": args.container_insights}],
            opts=child,
        )
        self.capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=[{"capacity_provider": "FARGATE", "weight": 1}],
            opts=child,
        )
        self.cluster_name = self.cluster.name
        self.cluster_arn = self.cluster.arn
        self.register_outputs({"cluster_name": self.cluster_name, "cluster_arn": self.cluster_arn})
