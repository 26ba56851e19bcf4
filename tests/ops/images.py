"""An image manifest for pushing to moto's ECR without a Docker daemon."""

from __future__ import annotations

from typing import Any


def image_manifest(fill: str) -> dict[str, Any]:
    """A minimal Docker image manifest v2 whose config digest is ``fill`` repeated (64 hex
    characters): two fills give two images, the same fill the same image."""
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + fill * 64,
        },
        "layers": [],
    }
