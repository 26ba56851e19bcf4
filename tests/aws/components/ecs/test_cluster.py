"""EcsCluster (components/aws/ecs/cluster.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.ecs.cluster import EcsCluster, EcsClusterArgs


def test_cluster_offers_both_fargate_providers_with_insights(helpers: Any) -> None:
    run = helpers.run_component(lambda: EcsCluster("app", EcsClusterArgs()))
    cluster = run.one("aws:ecs/cluster:Cluster")
    assert cluster.inputs["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    providers = run.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders").inputs
    assert providers["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert providers["defaultCapacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "weight": 1}
    ]


def test_cluster_args_refuse_an_unknown_insights_mode() -> None:
    with pytest.raises(ValueError, match="container_insights"):
        EcsClusterArgs(container_insights="on")
