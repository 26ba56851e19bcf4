"""ContainerServiceArgs for the component tests: every required field, nothing real."""

from __future__ import annotations

from typing import Any

from components.aws import ContainerServiceArgs, ImageSource
from tests.aws.components.common import SUBNETS

SECURITY_GROUPS = {p: f"sg-{p}" for p in ("api", "worker", "relay", "migrate")}


def service_args(**kwargs: Any) -> ContainerServiceArgs:
    """A service with one secret and a local build (tag ``abc123``)."""
    base: dict[str, Any] = {
        "vpc_id": "vpc-1",
        "subnet_ids": SUBNETS[:2],
        "security_group_ids": SECURITY_GROUPS,
        "target_group_arn": "arn:tg",
        "load_balancer_arn_suffix": "app/lb/1",
        "target_group_arn_suffix": "targetgroup/tg/1",
        "environment": {"APP_ENV": "staging"},
        "secrets": {"JWT_SECRET": "arn:aws:secretsmanager:us-east-1:1:secret:jwt"},
        "secret_arns": ["arn:aws:secretsmanager:us-east-1:1:secret:jwt"],
        "kms_key_arns": ["arn:aws:kms:us-east-1:1:key/s"],
        "broker_name": "b",
        "image": ImageSource(tag="abc123"),
    }
    base.update(kwargs)
    return ContainerServiceArgs(**base)


def bare_service_args(**kwargs: Any) -> ContainerServiceArgs:
    """No environment, no secrets: for the checks of the rollout arguments."""
    return service_args(
        **{"environment": {}, "secrets": {}, "secret_arns": [], "kms_key_arns": [], **kwargs}
    )
