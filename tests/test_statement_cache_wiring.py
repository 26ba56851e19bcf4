"""Prepared statements are cached only where no transaction pooler sits in between."""

from __future__ import annotations

import json

import pytest

from groundwork.mockrun import ProgramRun, run_program
from stacks import program

AWS = {
    "groundwork:cloud": "aws",
    "aws:region": "us-east-1",
    "groundwork:domain": "api.example.com",
    "groundwork:hostedZoneId": "Z0123456789EXAMPLE",
}
GCP = {"groundwork:cloud": "gcp", "gcp:project": "acme-prod", "gcp:region": "europe-west1"}


def _aws_values(run: ProgramRun) -> set[str]:
    values = set()
    for task in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        for container in json.loads(task.inputs["containerDefinitions"]):
            env = {e["name"]: e["value"] for e in container["environment"]}
            values.add(env["DB_STATEMENT_CACHE_SIZE"])
    return values


@pytest.mark.parametrize(
    ("stack", "overrides", "expected"),
    [
        ("staging", {}, {"100"}),  # tasks reach RDS directly
        ("production", {}, {"0"}),  # through RDS Proxy
        ("production", {"groundwork:dbProxy": "false"}, {"100"}),
        ("staging", {"groundwork:dbProxy": "true"}, {"0"}),
    ],
)
def test_aws_caches_statements_only_without_rds_proxy(stack, overrides, expected):
    run = run_program(program, stack=stack, config={**AWS, **overrides})
    assert _aws_values(run) == expected


def test_gcp_reaches_cloud_sql_directly_and_caches_statements():
    run = run_program(program, stack="staging", config=GCP)
    values = set()
    for kind in ("gcp:cloudrunv2/service:Service", "gcp:cloudrunv2/job:Job"):
        for resource in run.of_type(kind):
            template = resource.inputs["template"]
            containers = template.get("containers") or template["template"]["containers"]
            for container in containers:
                if container["name"] == "metrics-collector":
                    continue  # the Managed Prometheus sidecar: not the app image
                env = {e["name"]: e.get("value") for e in container.get("envs", [])}
                values.add(env["DB_STATEMENT_CACHE_SIZE"])
    assert values == {"100"}
