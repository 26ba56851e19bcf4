"""groundwork:imageUri on GCP: CI's prebuilt image is deployed as is, nothing is built."""

from __future__ import annotations

import pytest

from components.gcp import ContainerRegistry, RegistryArgs
from groundwork.mockrun import ProgramRun
from stacks.config import ConfigError
from tests.failing_program import failure_of
from tests.gcp.helpers import PROJECT, REGION, containers, run, run_stack

DIGEST = "sha256:" + "9c" * 32
REPOSITORY = f"{REGION}-docker.pkg.dev/{PROJECT}/groundwork-staging-images"
IMAGE = f"{REPOSITORY}/groundwork-app@{DIGEST}"  # where deploy-environment.yml pushes
PRODUCTION_IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/groundwork-production-images/a@{DIGEST}"


@pytest.fixture(scope="module")
def prebuilt() -> ProgramRun:
    return run_stack("staging", {"imageUri": IMAGE})


def test_image_uri_builds_nothing_and_every_process_runs_exactly_it(prebuilt: ProgramRun) -> None:
    assert prebuilt.of_type("docker:index/image:Image") == []
    found = containers(prebuilt)
    assert set(found) == {"api", "worker", "relay", "migrate"}
    assert {name: c["image"] for name, c in found.items()} == dict.fromkeys(found, IMAGE)
    # The repository CI pushes to is still managed by the stack.
    repo = prebuilt.one("gcp:artifactregistry/repository:Repository").inputs
    assert repo["repositoryId"] == "groundwork-staging-images"
    assert prebuilt.outputs["artifact_registry_url"] == REPOSITORY


def test_without_image_uri_the_stack_builds_and_deploys_the_build(staging: ProgramRun) -> None:
    (image,) = staging.of_type("docker:index/image:Image")
    assert {c["image"] for c in containers(staging).values()} == {image.state["repoDigest"]}


def _fails(overrides: dict[str, str]) -> BaseException:
    return failure_of(lambda: run_stack("staging", overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"imageUri": f"{REPOSITORY}/groundwork-app:3f2c1ab"}, "pinned by digest"),
        (
            {"imageUri": PRODUCTION_IMAGE},
            "this stack's Artifact Registry repository",
        ),
        (
            {"imageUri": f"us-docker.pkg.dev/{PROJECT}/groundwork-staging-images/a@{DIGEST}"},
            REPOSITORY,
        ),
        ({"imageUri": f"gcr.io/{PROJECT}/groundwork-app@{DIGEST}"}, REPOSITORY),
        ({"imageUri": IMAGE, "imageTag": "3f2c1ab"}, "conflicts"),
        ({"apiDeploymentStrategy": "blue-green"}, "AWS only"),
    ],
)
def test_bad_values_are_config_errors(overrides: dict[str, str], message: str) -> None:
    error = _fails(overrides)
    assert isinstance(error, ConfigError), error
    assert message in str(error)
    assert "groundwork:" in str(error)


def test_registry_component_skips_the_build_and_checks_the_repository() -> None:
    captured: dict[str, str] = {}
    image = f"{REGION}-docker.pkg.dev/{PROJECT}/app-images/app@{DIGEST}"

    def program() -> None:
        registry = ContainerRegistry("app", RegistryArgs(location=REGION, image_uri=image))
        registry.image_ref.apply(lambda v: captured.setdefault("ref", v))

    graph = run(program)
    assert graph.of_type("docker:index/image:Image") == []
    assert captured["ref"] == image
    # 'latest' with immutable tags is refused only when something is built.
    with pytest.raises(ValueError, match="pinned by digest"):
        RegistryArgs(location=REGION, image_uri="app:latest")
