"""Registry: an Artifact Registry Docker repository and the service image deployed from it.

The image is deployed by **digest** (``repo@sha256:...``), so a re-pushed tag can never
change what runs. Either CI built it once and pushed it (``image_uri``: nothing is built
here), or pulumi-docker builds ``services/app`` into the repository, so every rebuild
rolls a new Cloud Run revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker as docker
import pulumi_gcp as gcp

from components.image_ref import ImageReference, require_in_repository

SERVICE_CONTEXT = Path(__file__).resolve().parents[2] / "services" / "app"


@dataclass
class RegistryArgs:
    location: str
    image_tag: str = "latest"
    image_name: str = "app"
    context: str = str(SERVICE_CONTEXT)
    dockerfile: str | None = None
    """Defaults to ``<context>/Dockerfile``."""
    platform: str = "linux/amd64"
    """Cloud Run runs x86-64 images only."""
    build_args: dict[str, str] = field(default_factory=dict)
    immutable_tags: bool = True
    """A pushed tag can never be moved. Turn off only for a moving tag like ``latest``."""
    keep_recent: int = 20
    """Versions kept whatever their age: room to roll back."""
    delete_older_than: str = "2592000s"
    """Versions older than this (30 days) and not among the recent ones are deleted."""
    delete_untagged_after: str = "604800s"
    labels: dict[str, str] = field(default_factory=dict)
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the repository (Artifact Registry has
    no deletion protection of its own): `pulumi destroy` or a replacing config change
    stops instead of deleting it (docs/plan-diff.md)."""
    kms_key_name: pulumi.Input[str] | None = None
    """CMEK: a Cloud KMS key in the repository's location. Immutable (set at create)."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """With ``kms_key_name``: the Artifact Registry agent's grant on the key."""
    image_uri: ImageReference | str | None = None
    """A prebuilt image in this repository, pinned by digest: deployed as is, nothing is
    built (the tag, context and build settings above are then unused). The stack passes
    the ImageReference its settings parsed; a string is parsed here."""

    def __post_init__(self) -> None:
        if self.keep_recent < 1:
            raise ValueError("keep_recent must keep at least one version (the deployed one)")
        if isinstance(self.image_uri, str):
            self.image_uri = ImageReference.parse(self.image_uri)
        if self.image_uri is not None:
            return
        if not Path(self.context).is_dir():
            raise ValueError(f"context={self.context!r} is not a directory")
        if self.immutable_tags and self.image_tag == "latest":
            raise ValueError(
                "image_tag 'latest' cannot be pushed twice to a repository with immutable tags: "
                "set groundwork:imageTag to a unique value (e.g. the git SHA) or disable "
                "immutable_tags"
            )


class ContainerRegistry(pulumi.ComponentResource):
    """Docker repository with cleanup policies, plus the built and pushed service image."""

    repository: gcp.artifactregistry.Repository
    repository_url: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    """``<repository>/<image>@sha256:<digest>``: what Cloud Run deploys."""

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:gcp:ContainerRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.repository = gcp.artifactregistry.Repository(
            f"{name}-images",
            repository_id=f"{name}-images",
            location=args.location,
            format="DOCKER",
            description=f"{name}: service images, deployed by digest",
            docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(
                immutable_tags=args.immutable_tags
            ),
            # Dry run is the provider default: policies would only be logged.
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED", older_than=args.delete_untagged_after
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=args.delete_older_than
                    ),
                ),
                # KEEP wins over DELETE: the latest versions survive however old they are.
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=args.keep_recent
                    ),
                ),
            ],
            labels=args.labels,
            kms_key_name=args.kms_key_name,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=args.depends_on,
                protect=args.protect,
                retain_on_delete=args.protect,
            ),
        )
        self.repository_url = self.repository.registry_uri

        # __post_init__ turned a string into an ImageReference.
        if isinstance(args.image_uri, ImageReference):
            reference = args.image_uri
            self.image_ref = self.repository_url.apply(
                lambda url: require_in_repository(reference, url)
            )
            self.register_outputs(
                {"repository_url": self.repository_url, "image_ref": self.image_ref}
            )
            return

        token = gcp.organizations.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).access_token
        image = docker.Image(
            f"{name}-image",
            image_name=self.repository_url.apply(
                lambda url: f"{url}/{args.image_name}:{args.image_tag}"
            ),
            build=docker.DockerBuildArgs(
                context=args.context,
                dockerfile=args.dockerfile or str(Path(args.context) / "Dockerfile"),
                platform=args.platform,
                args={"VERSION": args.image_tag, **args.build_args},
            ),
            registry=docker.RegistryArgs(
                server=self.repository_url.apply(lambda url: url.split("/", 1)[0]),
                # Artifact Registry takes a short-lived OAuth token from the deployer's
                # own credentials: no JSON key anywhere.
                username="oauth2accesstoken",
                password=pulumi.Output.secret(token),
            ),
            opts=child,
        )
        self.image_ref = image.repo_digest
        self.register_outputs({"repository_url": self.repository_url, "image_ref": self.image_ref})
