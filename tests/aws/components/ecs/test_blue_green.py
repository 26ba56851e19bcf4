"""EcsInfrastructureRole and the blue/green pieces (components/aws/ecs/blue_green.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.aws.ecs.blue_green import EcsInfrastructureRole, EcsInfrastructureRoleArgs


def test_infrastructure_role_gets_the_managed_load_balancer_policy(helpers: Any) -> None:
    run = helpers.run_component(lambda: EcsInfrastructureRole("app", EcsInfrastructureRoleArgs()))
    attachment = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment").inputs
    assert attachment["policyArn"] == (
        "arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"
    )
    trust = json.loads(run.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs.amazonaws.com"}


def test_infrastructure_role_args_refuse_an_arn() -> None:
    with pytest.raises(ValueError, match="managed_policy"):
        EcsInfrastructureRoleArgs(managed_policy="arn:aws:iam::aws:policy/X")
