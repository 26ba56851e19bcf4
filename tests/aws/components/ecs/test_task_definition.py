"""FargateTaskDefinition (components/aws/ecs/task_definition.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws import ContainerService
from components.aws.ecs.task_definition import FargateTaskDefinitionArgs
from tests.aws.components.service_args import service_args as _service


@pytest.mark.parametrize("ecs_exec", [False, True])
def test_writable_paths_on_a_read_only_root(ecs_exec: bool, helpers: Any) -> None:
    # ECS Exec's SSM agent crashes on a read-only root unless its state and log
    # directories are writable volumes; without ECS Exec only /tmp is writable.
    run = helpers.run_component(lambda: ContainerService("app", _service(ecs_exec=ecs_exec)))
    expected = {"/tmp"} | ({"/var/lib/amazon", "/var/log/amazon"} if ecs_exec else set())
    for td in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        (c,) = helpers.container_definitions(td)
        assert c["readonlyRootFilesystem"] is True
        mounts = {m["containerPath"]: m["sourceVolume"] for m in c["mountPoints"]}
        assert set(mounts) == expected
        assert set(mounts.values()) == {v["name"] for v in td.inputs["volumes"]}


def test_task_definition_args_refuse() -> None:
    base: dict[str, Any] = {
        "image": "repo@sha256:1",
        "log_group_name": "/ecs/app/api",
        "region": "us-east-1",
        "execution_role_arn": "arn:e",
        "task_role_arn": "arn:t",
    }
    with pytest.raises(ValueError, match="process='shell'"):
        FargateTaskDefinitionArgs(process="shell", **base)
    with pytest.raises(ValueError, match="X86_64 or ARM64"):
        FargateTaskDefinitionArgs(process="api", cpu_architecture="arm64", **base)
    with pytest.raises(ValueError, match="both plain environment and secrets"):
        FargateTaskDefinitionArgs(
            process="api", environment={"K": "v"}, secrets={"K": "arn:s"}, **base
        )
