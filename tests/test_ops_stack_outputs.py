"""The ops commands and the deploy workflow read outputs the stacks really export."""

from __future__ import annotations

import inspect
import json
import re
import typing
from pathlib import Path

import pytest

from groundwork.mockrun import run_program
from groundwork.ops import cli as ops_cli
from groundwork.stack_outputs import AwsOutputs, GcpOutputs, OutputName
from stacks import program

ROOT = Path(__file__).resolve().parents[1]
AWS = {
    "groundwork:cloud": "aws",
    "aws:region": "us-east-1",
    "groundwork:insecureHttp": "true",
}
GCP = {"groundwork:cloud": "gcp", "gcp:project": "acme-prod", "gcp:region": "europe-west1"}


@pytest.fixture(scope="module")
def aws_run():
    return run_program(program, stack="staging", config=AWS)


@pytest.fixture(scope="module")
def aws_outputs(aws_run) -> dict:
    return aws_run.outputs


@pytest.fixture(scope="module")
def gcp_outputs() -> dict:
    return run_program(program, stack="staging", config=GCP).outputs


def test_smoke_default_jwt_secret_name_is_exported_by_the_aws_stack(aws_outputs):
    default = inspect.signature(ops_cli.smoke).parameters["jwt_secret_name"].default
    assert default in aws_outputs["secret_arns"]


def test_deploy_workflow_reads_a_gcp_secret_id_the_stack_exports(gcp_outputs):
    workflow = (ROOT / ".github/workflows/deploy-environment.yml").read_text()
    keys = set(re.findall(r"\.secret_ids\.([A-Za-z0-9_]+)", workflow))
    assert keys
    assert keys <= set(gcp_outputs["secret_ids"])


def _injected(run, name: str) -> set[str]:
    values = set()
    for task in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        for container in json.loads(task.inputs["containerDefinitions"]):
            values.update(e["value"] for e in container.get("environment", []) if e["name"] == name)
            if name == "image":
                values.add(container["image"])
    return values


@pytest.mark.parametrize("service", [None, "billing"])
def test_smoke_mints_tokens_for_the_issuer_and_audience_the_stacks_inject(service):
    """Renaming groundwork:service renames JWT_ISSUER/JWT_AUDIENCE; the smoke test reads
    the exported claims instead of assuming the default name."""
    config = dict(AWS, **({"groundwork:service": service} if service else {}))
    run = run_program(program, stack="staging", config=config)
    assert {run.outputs["jwt_issuer"]} == _injected(run, "JWT_ISSUER")
    assert {run.outputs["jwt_audience"]} == _injected(run, "JWT_AUDIENCE")
    params = inspect.signature(ops_cli.smoke).parameters
    assert params["issuer"].default is None  # None: take the exported claim
    if service is None:
        assert run.outputs["jwt_issuer"] == ops_cli.DEFAULT_ISSUER
        assert run.outputs["jwt_audience"] == ops_cli.DEFAULT_AUDIENCE


def test_both_stacks_export_the_image_they_deploy(aws_run, gcp_outputs):
    """Previews and manual `pulumi up` pin groundwork:imageUri to this output."""
    assert {aws_run.outputs["deployed_image"]} == _injected(aws_run, "image")
    assert "@sha256:" in aws_run.outputs["deployed_image"]
    assert "@sha256:" in gcp_outputs["deployed_image"]
    assert {"jwt_issuer", "jwt_audience"} <= set(gcp_outputs)


def test_pinning_the_exported_image_builds_nothing(aws_run):
    """What the preview does: imageUri = deployed_image, so no docker build is planned
    and every task definition keeps that exact image."""
    assert aws_run.of_type("docker:index/image:Image")  # unpinned: pulumi up would build
    image = f"{aws_run.outputs['ecr_repository_url']}@sha256:{'1' * 64}"
    pinned = run_program(
        program, stack="staging", config=dict(AWS, **{"groundwork:imageUri": image})
    )
    assert not pinned.of_type("docker:index/image:Image")
    assert pinned.outputs["deployed_image"] == image


def test_stacks_export_exactly_the_typed_outputs(aws_outputs, gcp_outputs):
    # mypy checks build()'s dict against the TypedDict; this checks what a run exports.
    assert set(aws_outputs) == AwsOutputs.__required_keys__
    assert set(gcp_outputs) == GcpOutputs.__required_keys__
    assert aws_outputs["cloud"] == "aws" and gcp_outputs["cloud"] == "gcp"


def test_ops_reads_only_names_the_stack_of_its_cloud_exports(aws_outputs, gcp_outputs):
    source = "\n".join(
        (ROOT / "groundwork" / "ops" / f).read_text() for f in ("cli.py", "aws.py", "gcp.py")
    )
    read = set(re.findall(r"outputs\.(?:string|strings|mapping)\(\"([a-z_]+)\"\)", source))
    assert {"region", "cluster_name", "api_url", "project"} <= read
    assert read <= set(typing.get_args(OutputName))
    assert read <= set(aws_outputs) | set(gcp_outputs)
