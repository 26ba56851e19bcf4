"""ImageRepository: the stack's ECR repository and the image every task runs.

A prebuilt reference pinned by digest (as CI deploys it), or an image built from
``services/app`` by pulumi-docker and deployed by digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.args import ComposedPart
from components.aws.kms import EncryptionKey, EncryptionKeyArgs
from components.image_ref import ImageReference, require_in_repository
from components.source import source_fingerprint

UNTAGGED_DAYS = 7
"""Untagged layers (a push interrupted, a tag replaced) go after a week."""
KEEP_IMAGES = 30
"""The newest images kept: the rollback window (ops rollback runs a previous digest)."""


@dataclass
class ImageSource:
    """Build ``context`` with pulumi-docker and push it to the stack's ECR repository."""

    context: str = "services/app"
    """Relative to the Pulumi project directory (where `pulumi up` runs)."""
    dockerfile: str = "services/app/Dockerfile"
    platform: str = "linux/amd64"
    tag: str | None = None
    """Immutable tag; None derives one from the build context's content."""
    build_args: dict[str, str] = field(default_factory=dict)


@dataclass
class PrebuiltImage:
    """Deploy exactly ``uri`` (``repo@sha256:...``, in this stack's ECR repository).

    Nothing is built: CI built the image once, pushed it and ran the migration with it,
    so the services must run those very bytes.
    """

    uri: ImageReference | str
    """Parsed once: the stack passes the ImageReference the settings already parsed."""

    reference: ImageReference = field(init=False)

    def __post_init__(self) -> None:
        self.reference = (
            self.uri if isinstance(self.uri, ImageReference) else ImageReference.parse(self.uri)
        )


@dataclass
class ImageRepositoryArgs:
    image: ImageSource | PrebuiltImage = field(default_factory=ImageSource)
    """Build ``services/app`` here, or deploy a prebuilt image CI pushed (by digest)."""
    customer_managed_key: bool = True
    """Encrypt images with a customer-managed KMS key (rotated yearly, its use in
    CloudTrail) instead of ECR's default AES256 (S3-managed keys, no KMS key at all).
    Changing it replaces the repository (ECR fixes encryption at creation)."""
    force_delete: bool = False
    """Let `pulumi destroy` delete a repository that still holds images."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the repository."""


class ImageRepository(ComposedPart[ImageRepositoryArgs]):
    """Named like its ContainerService (another type, so another URN); the repository,
    its key and the image keep the names they had as the service's direct children."""

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    image_ref: pulumi.Output[str]
    """``repo@sha256:...``: what every task definition runs."""

    TYPE = "groundwork:aws:ImageRepository"

    def build(self, name: str, args: ImageRepositoryArgs) -> None:
        child = self.child_options()
        # ECR creates a grant on the key with the deployer's permissions and decrypts
        # layers for pullers itself (encryption-at-rest.html): no key policy entry needed.
        key = (
            EncryptionKey(
                f"{name}-ecr-kms",
                # Kept whenever the images are (a destroy that keeps the repository's
                # images must keep the key that decrypts them).
                EncryptionKeyArgs(
                    description=f"{name}: container images", protect=not args.force_delete
                ),
                opts=child,
            )
            if args.customer_managed_key
            else None
        )
        repository = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[
                {"encryption_type": "KMS", "kms_key": key.key_arn}
                if key is not None
                else {"encryption_type": "AES256"}
            ],
            force_delete=args.force_delete,
            opts=self.child_options(protect=args.protect, retain_on_delete=args.protect),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-repo-lifecycle",
            repository=repository.name,
            policy=lifecycle_policy(),
            opts=child,
        )
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.image_ref = self._image(name, args.image, repository, child)
        self.register_outputs(
            {
                "repository_url": self.repository_url,
                "repository_arn": self.repository_arn,
                "image_ref": self.image_ref,
            }
        )

    def _image(
        self,
        name: str,
        source: ImageSource | PrebuiltImage,
        repository: aws.ecr.Repository,
        child: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        if isinstance(source, PrebuiltImage):
            reference = source.reference
            # Unknown on a first preview (no repository yet); known on every deploy CI
            # makes, since CI pushes to this very repository before `pulumi up`.
            return repository.repository_url.apply(
                lambda url: require_in_repository(reference, url)
            )
        tag = source.tag or source_fingerprint(source.context)
        auth = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker.Image(
            f"{name}-image",
            image_name=repository.repository_url.apply(lambda url: f"{url}:{tag}"),
            build={
                "context": source.context,
                "dockerfile": source.dockerfile,
                "platform": source.platform,
                "builder_version": docker.BuilderVersion.BUILDER_BUILD_KIT,
                "args": {"REVISION": tag, **source.build_args},
            },
            registry={
                "server": repository.repository_url,
                "username": auth.user_name,
                "password": pulumi.Output.secret(auth.password),
            },
            opts=child,
        )
        return image.repo_digest


def lifecycle_policy() -> str:
    """Expire untagged layers after a week; keep the newest images for rollbacks."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "Drop untagged layers after a week",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": UNTAGGED_DAYS,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep the {KEEP_IMAGES} newest images (rollback window)",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": KEEP_IMAGES,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )
