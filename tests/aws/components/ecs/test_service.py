"""FargateService (components/aws/ecs/service.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.ecs.blue_green import BlueGreenTraffic
from components.aws.ecs.service import FargateService, FargateServiceArgs, ServiceLoadBalancer


def _service(**kwargs: Any) -> FargateServiceArgs:
    return FargateServiceArgs(
        cluster_arn="arn:cluster",
        task_definition_arn="arn:td",
        subnet_ids=["subnet-a"],
        security_group_id="sg-1",
        **kwargs,
    )


def test_a_service_without_a_load_balancer_keeps_its_autoscaled_count(helpers: Any) -> None:
    run = helpers.run_component(lambda: FargateService("app-worker", _service(spot=True)))
    service = run.one("aws:ecs/service:Service")
    assert service.name == "app-worker"
    assert service.inputs["capacityProviderStrategies"][0]["capacityProvider"] == "FARGATE_SPOT"
    assert service.inputs["networkConfiguration"]["assignPublicIp"] is False
    assert "loadBalancers" not in service.inputs and "alarms" not in service.inputs
    assert service.ignore_changes == ["desiredCount"]


def test_a_fixed_count_service_may_be_reset_by_a_deploy(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: FargateService("app-relay", _service(autoscaled=False, desired_count=2))
    )
    service = run.one("aws:ecs/service:Service")
    assert service.inputs["desiredCount"] == 2
    assert service.ignore_changes == []


def test_service_args_refuse() -> None:
    traffic = BlueGreenTraffic("arn:alt", "alt/1", "arn:rule")
    with pytest.raises(ValueError, match="go together"):
        ServiceLoadBalancer("arn:tg", "api", 8000, blue_green=traffic)
    with pytest.raises(ValueError, match="0 to 1440"):
        ServiceLoadBalancer(
            "arn:tg",
            "api",
            8000,
            blue_green=traffic,
            infrastructure_role_arn="arn:r",
            bake_time_minutes=-1,
        )
    with pytest.raises(ValueError, match="desired_count"):
        _service(desired_count=-1)
