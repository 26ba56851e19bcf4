"""TaskLogs (components/aws/ecs/logs.py)."""

from __future__ import annotations

from typing import Any

import pytest

from components.aws.ecs.logs import TaskLogs, TaskLogsArgs


def test_one_protected_group_per_process(helpers: Any) -> None:
    run = helpers.run_component(
        lambda: TaskLogs(
            "app",
            TaskLogsArgs(
                processes=("api", "worker"), retention_days=7, kms_key_arn="arn:k", protect=True
            ),
        )
    )
    groups = {r.inputs["name"]: r for r in run.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == {"/ecs/app/api", "/ecs/app/worker"}
    for group in groups.values():
        assert group.inputs["retentionInDays"] == 7 and group.inputs["kmsKeyId"] == "arn:k"
        assert group.protect is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"processes": ()}, "at least one"),
        ({"processes": ("api", "api")}, "distinct"),
        ({"processes": ("api",), "retention_days": 0}, "retention_days"),
    ],
)
def test_log_args_refuse(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskLogsArgs(**kwargs)
