"""ServiceAutoscaling (components/aws/autoscaling.py), as ContainerService composes it."""

from __future__ import annotations

from typing import Any

from components.aws import ContainerService, ProcessSize
from tests.aws.components.service_args import service_args as _service


def test_container_service_autoscaling(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: ContainerService(
            "app", _service(api=ProcessSize(256, 512, 2, 6), worker=ProcessSize(256, 512, 1, 4))
        )
    )
    targets = {r.name: r.inputs for r in run.of_type("aws:appautoscaling/target:Target")}
    assert (
        targets["app-api-scaling"]["minCapacity"],
        targets["app-api-scaling"]["maxCapacity"],
    ) == (2, 6)
    policies = {
        r.name: r.inputs["targetTrackingScalingPolicyConfiguration"]
        for r in run.of_type("aws:appautoscaling/policy:Policy")
    }
    assert policies["app-api-cpu"]["predefinedMetricSpecification"]["predefinedMetricType"] == (
        "ECSServiceAverageCPUUtilization"
    )
    requests = policies["app-api-requests"]["predefinedMetricSpecification"]
    assert requests["predefinedMetricType"] == "ALBRequestCountPerTarget"
    assert requests["resourceLabel"] == "app/lb/1/targetgroup/tg/1"
    metrics = {
        m["id"]: m
        for m in policies["app-worker-queue-depth"]["customizedMetricSpecification"]["metrics"]
    }
    depth = metrics["depth"]["metricStat"]["metric"]
    assert depth["namespace"] == "AWS/AmazonMQ" and depth["metricName"] == "MessageCount"
    assert {d["name"]: d["value"] for d in depth["dimensions"]} == {
        "Broker": "b",
        "VirtualHost": "/",
        "Queue": "jobs",
    }
    assert metrics["backlog"]["expression"] == "depth / workers"
    assert metrics["backlog"]["returnData"] is True
