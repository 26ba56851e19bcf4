"""Prebuilt image references: what a stack deploys when CI has already built the image.

CI builds the service image once, pushes it to the environment's registry, runs the
migration with it and hands ``pulumi up`` the very same reference. Only a digest names
one set of bytes (a tag can be re-pointed, or resolved at a different moment by the
migration and by the services), so a prebuilt reference must be pinned by digest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# <registry host[:port]>/<repository path>@sha256:<64 hex>; the host must contain a dot
# so a Docker Hub shorthand ("library/app") is never mistaken for a registry.
_REFERENCE = re.compile(
    r"^(?P<registry>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
    r"(?::[0-9]{1,5})?)"
    r"/(?P<repository>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
EXPECTED_SHAPE = (
    "a full image reference pinned by digest, <registry host>/<repository>@sha256:<64 hex "
    "digits> (a tag such as :v1 is not enough; after `docker push`, "
    "`docker image inspect --format '{{index .RepoDigests 0}}' IMAGE` prints it)"
)


@dataclass(frozen=True)
class ImageReference:
    """A parsed ``registry/repository@sha256:...`` reference."""

    registry: str
    repository: str
    digest: str

    @classmethod
    def parse(cls, uri: str) -> ImageReference:
        """Split ``uri``; ValueError naming the expected shape when it does not fit."""
        match = _REFERENCE.match(uri.strip()) if isinstance(uri, str) else None
        if match is None or uri != uri.strip():
            raise ValueError(f"{uri!r} is not {EXPECTED_SHAPE}")
        return cls(match["registry"], match["repository"], match["digest"])

    @property
    def repository_url(self) -> str:
        """``registry/repository``: the form registries report a repository's URL in."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.repository_url}@{self.digest}"


def require_in_repository(reference: ImageReference, repository_url: str) -> str:
    """``reference`` as a string if it lives in ``repository_url`` (a repository or a
    path below one).

    Each environment runs only images from its own repository (on AWS the task
    execution role may pull from nowhere else, so anything else would fail at task
    start); refusing it at deploy time says why.
    """
    base = repository_url.rstrip("/")
    if reference.repository_url != base and not reference.repository_url.startswith(f"{base}/"):
        raise ValueError(
            f"image {reference} is not in this stack's repository {base}: push it there first "
            "(each environment deploys images from its own registry only)"
        )
    return str(reference)
