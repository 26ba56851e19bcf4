"""ContainerService (components/aws/container_service.py), the composer: what its parts
add up to, and the arguments it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws import ContainerService, ProcessSize
from components.aws.container_service import BlueGreenTraffic, DeploymentStrategy
from tests.aws.components.common import role_policy as _policy
from tests.aws.components.service_args import bare_service_args as _args
from tests.aws.components.service_args import service_args as _service


def test_container_service_defaults(helpers: Any) -> None:
    run = helpers.run_component(lambda: ContainerService("app", _service()))
    repo = run.one("aws:ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    image = run.one("docker:index/image:Image").inputs
    assert image["build"]["platform"] == "linux/amd64"
    assert image["build"]["context"] == "services/app"
    assert image["imageName"].endswith(":abc123")
    cluster = run.one("aws:ecs/cluster:Cluster").inputs
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    for td in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        (c,) = helpers.container_definitions(td)
        process = c["name"]
        assert "@sha256:" in c["image"]  # deployed by digest, not by tag
        assert c["command"] == [process] and c["user"] == "10001:10001"
        assert c["readonlyRootFilesystem"] is True and c["stopTimeout"] == 30
        assert c["mountPoints"][0]["containerPath"] == "/tmp"
        assert c["logConfiguration"]["logDriver"] == "awslogs"
        assert c["secrets"] == [
            {"name": "JWT_SECRET", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:jwt"}
        ]
        assert "JWT_SECRET" not in {e["name"] for e in c["environment"]}
        assert td.inputs["executionRoleArn"] != td.inputs["taskRoleArn"]
        assert td.inputs["skipDestroy"] is True
        if process == "migrate":
            assert "healthCheck" not in c
        else:
            assert c["healthCheck"]["command"] == ["CMD", "groundwork-app", "healthcheck", process]
    for service in run.of_type("aws:ecs/service:Service"):
        assert service.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert service.inputs["networkConfiguration"]["assignPublicIp"] is False
        assert service.inputs["enableExecuteCommand"] is False
    execution = _policy(run, "app-execution-policy")["Statement"]
    assert {s["Sid"]: s["Resource"] for s in execution}["ReadTaskSecrets"] == [
        "arn:aws:secretsmanager:us-east-1:1:secret:jwt"
    ]
    # The task role gets no policy at all unless ECS Exec is on.
    assert [r.name for r in run.of_type("aws:iam/rolePolicy:RolePolicy")] == [
        "app-execution-policy"
    ]


def test_container_service_exec_and_spot(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: ContainerService("app", _service(ecs_exec=True, worker_spot=True))
    )
    services = {r.name: r.inputs for r in run.of_type("aws:ecs/service:Service")}
    assert all(s["enableExecuteCommand"] for s in services.values())
    assert services["app-worker"]["capacityProviderStrategies"][0]["capacityProvider"] == (
        "FARGATE_SPOT"
    )
    assert services["app-api"]["capacityProviderStrategies"][0]["capacityProvider"] == "FARGATE"
    exec_policy = _policy(run, "app-task-exec")["Statement"][0]
    assert all(a.startswith("ssmmessages:") for a in exec_policy["Action"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"worker": ProcessSize(256, 4096)}, "memory_mb"),
        ({"worker": ProcessSize(256, 512, 0, 2)}, "at least 1"),
        ({"relay_count": 0}, "relay_count"),
        ({"security_group_ids": {"api": "sg"}}, "lacks"),
        ({"environment": {"JWT_SECRET": "x"}}, "both plain environment and secrets"),
    ],
)
def test_container_service_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _service(**kwargs)


TRAFFIC = BlueGreenTraffic("arn:tg-alt", "targetgroup/alt/1", "arn:rule")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_deployment": DeploymentStrategy.BLUE_GREEN}, "needs blue_green"),
        ({"blue_green": TRAFFIC}, "api_deployment is rolling"),
        (
            {"api_deployment": "blue-green", "blue_green": TRAFFIC, "bake_time_minutes": 2000},
            "0 to 1440",
        ),
    ],
)
def test_container_service_rejects_conflicting_rollout_args(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _args(**kwargs)


def test_strategy_strings_become_the_enum() -> None:
    args = _args(api_deployment="blue-green", blue_green=TRAFFIC)
    assert args.api_deployment is DeploymentStrategy.BLUE_GREEN


@pytest.mark.parametrize(
    "names", [["a", "a"], [""], ["x" * 256]], ids=["duplicate", "empty", "too-long"]
)
def test_container_service_rejects_bad_alarm_names(names: list[Any]) -> None:
    with pytest.raises(ValueError, match="deployment_alarm_names"):
        _args(deployment_alarm_names=names)
