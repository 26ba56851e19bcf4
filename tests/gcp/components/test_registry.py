"""ContainerRegistry (components/gcp/registry.py): cleanup policies, deploy by digest."""

from __future__ import annotations

import pytest

from components.gcp.registry import ContainerRegistry, RegistryArgs
from tests.gcp.helpers import REGION, run


def test_registry_has_cleanup_policies_and_deploys_by_digest() -> None:
    captured: dict[str, str] = {}

    def program() -> None:
        registry = ContainerRegistry("app", RegistryArgs(location=REGION, image_tag="abc123"))
        registry.image_ref.apply(lambda v: captured.setdefault("ref", v))

    graph = run(program)
    repo = graph.one("gcp:artifactregistry/repository:Repository").inputs
    assert repo["format"] == "DOCKER"
    assert repo["dockerConfig"] == {"immutableTags": True}
    assert repo["cleanupPolicyDryRun"] is False
    policies = {p["id"]: p for p in repo["cleanupPolicies"]}
    assert policies["delete-untagged"]["condition"]["tagState"] == "UNTAGGED"
    assert policies["keep-recent"]["action"] == "KEEP"
    image = graph.one("docker:index/image:Image").inputs
    assert image["imageName"].endswith("/app-images/app:abc123")
    assert image["build"]["platform"] == "linux/amd64"
    assert image["build"]["context"].endswith("services/app")
    assert image["registry"]["username"] == "oauth2accesstoken"
    assert "@sha256:" in captured["ref"]


def test_registry_refuses_latest_with_immutable_tags() -> None:
    with pytest.raises(ValueError, match="immutable"):
        RegistryArgs(location=REGION)
    RegistryArgs(location=REGION, immutable_tags=False)
