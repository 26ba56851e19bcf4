"""The AWS stack's image source (prebuilt imageUri vs a local build) and API rollout
strategy (rolling vs ECS blue/green), end to end under mocks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.aws.container_service import (
    ECS_LOAD_BALANCER_POLICY,
)
from groundwork.mockrun import FAKE_ACCOUNT, ProgramRun, RecordedResource
from groundwork.plan.pricing import estimate
from groundwork.policyrun import format_verdicts, mandatory_violations, run_policies
from stacks.config import ConfigError
from tests.aws.conftest import AWS_CONFIG, PasswordMocks, run_stack

DIGEST = "sha256:" + "4f" * 32
DOCKER_IMAGE = "docker:index/image:Image"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"


def ecr_uri(stack: str, *, account: str = FAKE_ACCOUNT, region: str = "us-east-1") -> str:
    """An image in the stack's own repository (the mock names it after the resource)."""
    return f"{account}.dkr.ecr.{region}.amazonaws.com/groundwork-{stack}-app-repo@{DIGEST}"


def images(run: ProgramRun) -> dict[str, str]:
    found = {}
    for td in run.of_type(TASK_DEFINITION):
        (container,) = json.loads(td.inputs["containerDefinitions"])
        found[container["name"]] = container["image"]
    return found


def api_service(run: ProgramRun) -> RecordedResource:
    return next(r for r in run.of_type(SERVICE) if r.name.endswith("-api"))


def arn_of(run: ProgramRun, name: str) -> str:
    return str(run.named(name).state["arn"])


# --- image: build once in CI, deploy that digest -----------------------------------------


@pytest.fixture(scope="module")
def prebuilt() -> ProgramRun:
    return run_stack("staging", imageUri=ecr_uri("staging"))


def test_image_uri_builds_nothing_and_every_task_runs_exactly_it(prebuilt: ProgramRun) -> None:
    assert prebuilt.of_type(DOCKER_IMAGE) == []
    assert images(prebuilt) == dict.fromkeys(
        ("api", "worker", "relay", "migrate"), ecr_uri("staging")
    )
    # CI still needs the repository to push to, with its lifecycle rules.
    assert prebuilt.one("aws:ecr/repository:Repository").inputs["imageTagMutability"] == "IMMUTABLE"
    assert prebuilt.one("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    assert prebuilt.outputs["ecr_repository_url"] == ecr_uri("staging").split("@")[0]


def test_without_image_uri_the_stack_builds_and_deploys_the_build(staging: ProgramRun) -> None:
    (image,) = staging.of_type(DOCKER_IMAGE)
    digest = image.state["repoDigest"]
    assert "@sha256:" in digest
    assert set(images(staging).values()) == {digest}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"imageUri": "groundwork-app:3f2c1ab"}, r"imageUri = .*pinned by digest"),
        (
            {"imageUri": f"{FAKE_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/repo:3f2c1ab"},
            r"imageUri = .*pinned by digest",
        ),
        ({"imageUri": f"ghcr.io/acme/groundwork-app@{DIGEST}"}, r"imageUri = .*this stack's ECR"),
        ({"imageUri": ecr_uri("staging", region="eu-west-1")}, r"stack's region us-east-1"),
        ({"imageUri": ecr_uri("staging", account="210987654321")}, r"deploying account"),
        ({"imageUri": ecr_uri("staging"), "imageTag": "3f2c1ab"}, r"imageTag .*conflicts"),
    ],
)
def test_bad_image_uri_is_a_config_error(
    config: dict[str, str], message: str, helpers: Any
) -> None:
    full = {**AWS_CONFIG, "groundwork:environment": "staging"}
    full |= {f"groundwork:{k}": v for k, v in config.items()}
    error = helpers.run_failing("staging", full, PasswordMocks())
    assert isinstance(error, ConfigError), error
    assert "groundwork:" in str(error)
    assert re.search(message, str(error)), str(error)


def test_image_from_another_repository_of_the_account_is_refused(helpers: Any) -> None:
    # Right account and region, but production's repository: the staging execution role
    # may not pull from it, so the deploy stops instead of the tasks failing to start.
    full = {
        **AWS_CONFIG,
        "groundwork:environment": "staging",
        "groundwork:imageUri": ecr_uri("production"),
    }
    error = helpers.run_failing("staging", full, PasswordMocks())
    assert "is not in this stack's repository" in str(error)
    assert "groundwork-staging-app-repo" in str(error)


@pytest.fixture(scope="module")
def blue_green() -> ProgramRun:
    return run_stack(
        "production",
        apiDeploymentStrategy="blue-green",
        domain="api.example.com",
        certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d",
        imageUri=ecr_uri("production"),
    )


def test_rolling_is_the_default_with_a_rolling_back_circuit_breaker(
    production: ProgramRun,
) -> None:
    api = api_service(production).inputs
    assert api["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert api["deploymentController"] == {"type": "ECS"}
    assert "deploymentConfiguration" not in api
    assert "advancedConfiguration" not in api["loadBalancers"][0]
    assert len(production.of_type(TARGET_GROUP)) == 1
    assert production.of_type(LISTENER_RULE) == []
    assert not [r for r in production.of_type("aws:iam/role:Role") if "ecs-infra" in r.name]
    requests = production.named("groundwork-production-app-api-requests").inputs
    spec = requests["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"]
    assert spec["predefinedMetricType"] == "ALBRequestCountPerTarget"


def test_blue_green_inventory(blue_green: ProgramRun) -> None:
    groups = {r.name for r in blue_green.of_type(TARGET_GROUP)}
    assert groups == {"groundwork-production-edge-api-tg", "groundwork-production-edge-api-tg-alt"}
    assert [r.name for r in blue_green.of_type(LISTENER_RULE)] == [
        "groundwork-production-edge-api-rule"
    ]
    roles = [r for r in blue_green.of_type("aws:iam/role:Role") if "ecs-infra" in r.name]
    assert [r.name for r in roles] == ["groundwork-production-app-ecs-infra"]


def test_blue_green_wiring(blue_green: ProgramRun) -> None:
    api = api_service(blue_green).inputs
    assert api["deploymentConfiguration"] == {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": "10"}
    # Failed green tasks still roll back on their own (ECS-native blue/green supports it).
    assert api["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert api["deploymentController"] == {"type": "ECS"}
    (balancer,) = api["loadBalancers"]
    assert balancer["targetGroupArn"] == arn_of(blue_green, "groundwork-production-edge-api-tg")
    assert balancer["advancedConfiguration"] == {
        "alternateTargetGroupArn": arn_of(blue_green, "groundwork-production-edge-api-tg-alt"),
        "productionListenerRule": arn_of(blue_green, "groundwork-production-edge-api-rule"),
        "roleArn": arn_of(blue_green, "groundwork-production-app-ecs-infra"),
    }
    # ECS may assume the role only once its policy is attached.
    attachment = blue_green.named("groundwork-production-app-ecs-infra-lb")
    assert attachment.inputs["policyArn"] == f"arn:aws:iam::aws:policy/{ECS_LOAD_BALANCER_POLICY}"
    assert attachment.urn in api_service(blue_green).depends_on
    trust = json.loads(
        blue_green.named("groundwork-production-app-ecs-infra").inputs["assumeRolePolicy"]
    )
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "ecs.amazonaws.com"}


def test_blue_green_rule_is_on_the_production_listener_and_owned_by_ecs(
    blue_green: ProgramRun,
) -> None:
    rule = blue_green.named("groundwork-production-edge-api-rule")
    assert rule.inputs["listenerArn"] == arn_of(blue_green, "groundwork-production-edge-https")
    (action,) = rule.inputs["actions"]
    assert action["type"] == "forward"
    assert action["forward"]["targetGroups"] == [
        {"arn": arn_of(blue_green, "groundwork-production-edge-api-tg"), "weight": 100},
        {"arn": arn_of(blue_green, "groundwork-production-edge-api-tg-alt"), "weight": 0},
    ]
    assert rule.inputs["conditions"] == [{"pathPattern": {"values": ["/*"]}}]
    # After the first swap ECS owns the weights; pulumi up must not reset them.
    assert rule.ignore_changes == ["actions"]
    alternate = blue_green.named("groundwork-production-edge-api-tg-alt").inputs
    primary = blue_green.named("groundwork-production-edge-api-tg").inputs
    assert alternate["healthCheck"] == primary["healthCheck"]
    assert (alternate["port"], alternate["targetType"]) == (primary["port"], primary["targetType"])
    assert alternate["name"] != primary["name"] and len(alternate["name"]) <= 32


def test_blue_green_scales_on_requests_per_running_task(blue_green: ProgramRun) -> None:
    # The serving target group alternates, so scaling reads the load balancer's total.
    requests = blue_green.named("groundwork-production-app-api-requests").inputs
    config = requests["targetTrackingScalingPolicyConfiguration"]
    assert "predefinedMetricSpecification" not in config
    metrics = {m["id"]: m for m in config["customizedMetricSpecification"]["metrics"]}
    dims = metrics["requests"]["metricStat"]["metric"]["dimensions"]
    assert [d["name"] for d in dims] == ["LoadBalancer"]
    assert metrics["per_task"]["expression"] == "requests / tasks"


def test_blue_green_passes_the_policy_pack_and_is_priced(blue_green: ProgramRun) -> None:
    blocked = mandatory_violations(run_policies(blue_green, environment="production"))
    assert blocked == [], format_verdicts(blocked)
    report = estimate(blue_green, cloud="aws", region="us-east-1", tier="production")
    assert [r.type for r in report.not_priced] == []


def test_blue_green_staging_passes_the_policy_pack() -> None:
    run = run_stack(
        "staging",
        apiDeploymentStrategy="blue-green",
        domain="api.example.com",
        certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d",
    )
    assert mandatory_violations(run_policies(run, environment="staging")) == []
    rule = run.named("groundwork-staging-edge-api-rule")
    assert rule.inputs["listenerArn"] == arn_of(run, "groundwork-staging-edge-https")


def test_unknown_strategy_is_a_config_error(helpers: Any) -> None:
    full = {
        **AWS_CONFIG,
        "groundwork:environment": "staging",
        "groundwork:apiDeploymentStrategy": "canary",
    }
    error = helpers.run_failing("staging", full, PasswordMocks())
    assert isinstance(error, ConfigError)
    assert "groundwork:apiDeploymentStrategy = 'canary'" in str(error)
    assert "rolling, blue-green" in str(error)


def test_unhealthy_host_alarms_watch_both_blue_green_target_groups(
    blue_green: ProgramRun, production: ProgramRun
) -> None:
    def watched_groups(run: ProgramRun) -> set[str]:
        return {
            r.inputs["dimensions"]["TargetGroup"]
            for r in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if r.inputs.get("metricName") == "UnHealthyHostCount"
        }

    def suffix(run: ProgramRun, name: str) -> str:
        return run.named(name).state["arnSuffix"]

    assert watched_groups(blue_green) == {
        suffix(blue_green, "groundwork-production-edge-api-tg"),
        suffix(blue_green, "groundwork-production-edge-api-tg-alt"),
    }
    assert watched_groups(production) == {suffix(production, "groundwork-production-edge-api-tg")}
