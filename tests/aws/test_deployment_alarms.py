"""Alarm-gated API deployments: ECS deployment alarms on the 5xx-rate and p95-latency
alarms, by name (the alarms are built after the services, which they watch).

ECS looks the alarms up by name when a deployment starts and rolls back to the last
COMPLETED deployment when one goes to ALARM during the rollout or its bake time
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html);
DeploymentAlarms work with the ECS deployment controller only (API_DeploymentAlarms).
"""

from __future__ import annotations

import pytest

from components.aws.alarms import DEPLOYMENT_ALARMS, deployment_alarm_names
from groundwork.mockrun import ProgramRun, RecordedResource

# The blue/green production stack, built as the rollout tests build it.
from tests.aws.test_image_and_rollout import blue_green  # noqa: F401 - a fixture

SERVICE = "aws:ecs/service:Service"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


def services(run: ProgramRun) -> dict[str, RecordedResource]:
    return {r.name.rsplit("-", 1)[-1]: r for r in run.of_type(SERVICE)}


def gating_alarms(run: ProgramRun, prefix: str) -> list[RecordedResource]:
    return [run.named(f"{prefix}-alarms-{suffix}") for suffix in DEPLOYMENT_ALARMS]


@pytest.mark.parametrize("stack", ["staging", "production", "blue_green"])
def test_the_api_service_is_gated_by_the_alarms_it_names(
    stack: str, request: pytest.FixtureRequest
) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    tier = "staging" if stack == "staging" else "production"
    prefix = f"groundwork-{tier}"
    api = services(run)["api"].inputs
    assert api["alarms"]["enable"] is True
    assert api["alarms"]["rollback"] is True
    # The names the service carries are exactly the names the alarms were created with.
    names = [alarm.inputs["name"] for alarm in gating_alarms(run, prefix)]
    assert api["alarms"]["alarmNames"] == names
    assert names == deployment_alarm_names(f"{prefix}-alarms")
    metrics = {a.inputs.get("metricName") for a in gating_alarms(run, prefix)}
    assert "TargetResponseTime" in metrics  # p95 latency; the 5xx alarm is a metric math
    assert gating_alarms(run, prefix)[0].inputs["metricQueries"][-1]["id"] == "rate"
    # Only the ECS deployment controller honours deployment alarms.
    assert api["deploymentController"] == {"type": "ECS"}
    # The alarms watch the API's load balancer: the worker and relay are not gated by them.
    assert "alarms" not in services(run)["worker"].inputs
    assert "alarms" not in services(run)["relay"].inputs


def test_alarm_names_differ_per_stack(staging: ProgramRun, production: ProgramRun) -> None:
    """CloudWatch alarm names are unique per account and region: staging and production
    in one account must not share (and so overwrite) one."""
    ours = {a.inputs["name"] for a in gating_alarms(staging, "groundwork-staging")}
    theirs = {a.inputs["name"] for a in gating_alarms(production, "groundwork-production")}
    assert ours and theirs and not ours & theirs


def _dependencies(run: ProgramRun, urn: str) -> set[str]:
    by_urn = {r.urn: r for r in run.resources}
    seen: set[str] = set()
    todo = [urn]
    while todo:
        resource = by_urn.get(todo.pop())
        if resource is None:
            continue
        for dep in [*resource.depends_on, resource.parent]:
            if dep and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_first_deploy_creates_the_gating_alarms_before_the_services(
    production: ProgramRun,
) -> None:
    """The first deploy runs `pulumi up --exclude <services> --exclude-dependents`, then
    the migration, then the full `up`. The gating alarms depend on the load balancer
    only, so that first `up` creates them and they exist when the services are
    created. (ECS accepts names of alarms that do not exist yet; a first deployment has
    no COMPLETED deployment to roll back to in any case.)"""
    service_urns = {r.urn for r in production.of_type(SERVICE)}
    for alarm in gating_alarms(production, "groundwork-production"):
        assert not _dependencies(production, alarm.urn) & service_urns, alarm.name
    # The walk does see a dependency on a service where there is one.
    watcher = production.named("groundwork-production-alarms-api-tasks-below-desired")
    assert _dependencies(production, watcher.urn) & service_urns


def test_other_alarms_keep_their_generated_names(production: ProgramRun) -> None:
    """Only the gating alarms get fixed names (an alarm rename is a replacement)."""
    named = [a.name for a in production.of_type(ALARM) if a.inputs.get("name")]
    assert sorted(named) == sorted(
        f"groundwork-production-alarms-{suffix}" for suffix in DEPLOYMENT_ALARMS
    )
