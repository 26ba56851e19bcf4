"""The first deploy creates the registry (targeting its parent too), and a re-run reuses
the image the first attempt pushed under the commit's immutable tag."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from groundwork.cli import app
from groundwork.mockrun import run_program
from groundwork.ops import aws
from groundwork.ops.outputs import StackOutputs
from groundwork.ops.registry import ensure_registry
from stacks import program
from tests.moto_server import moto_server as moto_server_at
from tests.ops.images import image_manifest

runner = CliRunner()
HERE = Path(__file__).resolve().parent
CONFIG = {
    "aws": {
        "groundwork:cloud": "aws",
        "aws:region": "us-east-1",
        "groundwork:insecureHttp": "true",
    },
    "gcp": {"groundwork:cloud": "gcp", "gcp:project": "acme", "gcp:region": "europe-west1"},
}
REPOSITORY_TYPE = {
    "aws": ("aws:ecr/repository:Repository", "repositoryUrl", "ecr_repository_url"),
    "gcp": ("gcp:artifactregistry/repository:Repository", "registryUri", "artifact_registry_url"),
}


def real_urn(urn: str) -> str:
    """The engine leaves the root stack's type out of its children's URNs (the mock
    monitor keeps it)."""
    return urn.replace("::pulumi:pulumi:Stack$", "::")


def install_fake_pulumi(directory: Path, cloud: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a `pulumi` on PATH that knows the real program's resource graph."""
    run = run_program(program, stack="staging", config=CONFIG[cloud])
    type_, attribute, output = REPOSITORY_TYPE[cloud]
    resources = []
    for r in run.resources:
        entry: dict[str, Any] = {
            "urn": real_urn(r.urn),
            "type": r.type,
            "parent": real_urn(r.parent),
            "dependencies": [real_urn(d) for d in r.depends_on],
        }
        if r.type == type_:
            entry["outputs"] = {attribute: r.state[attribute]}
        resources.append(entry)
    graph = {"resources": resources, "outputs": run.outputs, "bootstrap_outputs": [output]}
    state = directory / "pulumi"
    state.mkdir()
    (state / "graph.json").write_text(json.dumps(graph, default=str))
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_pulumi.py"}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FAKE_PULUMI_DIR", str(state))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return state


def calls(state: Path) -> list[str]:
    return (state / "calls.log").read_text().splitlines()


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_first_deploy_creates_the_registry_with_its_parent_component(
    cloud: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = install_fake_pulumi(tmp_path, cloud, monkeypatch)
    outputs = StackOutputs(stack="staging", values={}, source="test")
    repository, created = ensure_registry(outputs, cloud, create=True)
    assert created
    up = next(c for c in calls(state) if c.startswith("up "))
    parent = (
        "groundwork:aws:ContainerService" if cloud == "aws" else "groundwork:gcp:ContainerRegistry"
    )
    assert f"::{parent}::" in up  # the component is targeted with its repository
    if cloud == "aws":
        assert repository.startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/")
    else:
        assert (
            repository
            == "europe-west1-docker.pkg.dev/acme/groundwork-staging-images/groundwork-app"
        )
    # A second run finds it in the state and creates nothing.
    assert ensure_registry(outputs, cloud, create=True) == (repository, False)
    assert sum(c.startswith("up ") for c in calls(state)) == 1


def test_the_old_documented_targeted_up_is_refused_by_the_engine_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/bootstrap.md used to target only the repository: an untargeted create."""
    import subprocess

    state = install_fake_pulumi(tmp_path, "aws", monkeypatch)
    graph = json.loads((state / "graph.json").read_text())
    urn = next(r["urn"] for r in graph["resources"] if r["type"] == "aws:ecr/repository:Repository")
    done = subprocess.run(
        ["pulumi", "up", "--stack", "staging", "--yes", "--target", urn],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "untargeted create" in done.stderr


def test_registry_cli_prints_github_outputs_and_refuses_without_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_pulumi(tmp_path, "aws", monkeypatch)
    outputs = tmp_path / "outputs.json"
    outputs.write_text("{}")
    base = ["ops", "registry", "-s", "staging", "--cloud", "aws", "--outputs-file", str(outputs)]
    refused = runner.invoke(app, base)
    assert refused.exit_code == 2
    assert "has no image registry yet" in refused.stderr
    done = runner.invoke(app, [*base, "--create"])
    assert done.exit_code == 0, done.output
    assert "created=true" in done.stdout
    assert "repository=123456789012.dkr.ecr.us-east-1.amazonaws.com/" in done.stdout


# --- a re-run reuses the image pushed under the commit's tag ----------------------


@pytest.fixture
def moto_server(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's standalone server on loopback: real HTTP, as the AWS CLI/boto3 talk to ECR."""
    with moto_server_at(monkeypatch) as url:
        yield url


def _push(ecr: Any, name: str, tag: str, manifest: dict[str, Any]) -> str:
    return ecr.put_image(repositoryName=name, imageManifest=json.dumps(manifest), imageTag=tag)[
        "image"
    ]["imageId"]["imageDigest"]


def test_an_existing_tag_is_reused_instead_of_pushed_again(moto_server: str) -> None:
    ecr = boto3.client("ecr", region_name="us-east-1")
    repo = ecr.create_repository(
        repositoryName="groundwork-staging-app-repo", imageTagMutability="IMMUTABLE"
    )["repository"]
    url = repo["repositoryUri"]
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert aws.existing_image(ecr, url, sha) is None
    manifest = image_manifest("a")
    digest = _push(ecr, repo["repositoryName"], sha, manifest)
    # What a second push of the same tag gets from an immutable repository. moto answers
    # ImageAlreadyExistsException for the same manifest (AWS too, per PutImage's errors;
    # a different manifest gets ImageTagAlreadyExistsException there).
    with pytest.raises(ClientError) as refused:
        _push(ecr, repo["repositoryName"], sha, manifest)
    assert refused.value.response["Error"]["Code"] in {
        "ImageAlreadyExistsException",
        "ImageTagAlreadyExistsException",
    }
    assert aws.existing_image(ecr, url, sha) == f"{url}@{digest}"
    done = runner.invoke(app, ["ops", "existing-image", "--repository", url, "--tag", sha])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == f"{url}@{digest}"
    missing = runner.invoke(app, ["ops", "existing-image", "--repository", url, "--tag", "nope"])
    assert missing.exit_code == 0, missing.output
    assert missing.stdout == ""
