"""The image registry a deploy pushes to, including on the very first deploy.

The registry is a resource of the stack, but CI pushes the image *before* ``pulumi up``
(the migration and the services must run the same, already pushed digest). On a stack
that was never deployed the registry therefore does not exist yet, and it is created
alone by a targeted ``pulumi up``.

Pulumi's engine refuses a targeted create of a resource whose parent is neither
targeted nor already in the state ("untargeted create", pulumi/pulumi
pkg/resource/deploy/step_generator.go; providers and the root stack are targeted
implicitly). The registry's parent is a component (ContainerService /
ContainerRegistry), so both are targeted. A targeted update does not run the rest of
the program's resources, so the registry's URL is read from the state (``pulumi stack
export``) rather than from the stack outputs.
"""

from __future__ import annotations

import json
import shutil
import subprocess  # nosec B404 - runs the pulumi CLI with fixed argument lists
from collections.abc import Callable, Sequence
from typing import Any

from groundwork.ops.errors import OpsError, UserError
from groundwork.ops.outputs import StackOutputs
from groundwork.ops.release import known

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

REPOSITORY_TYPES = {
    "aws": "aws:ecr/repository:Repository",
    "gcp": "gcp:artifactregistry/repository:Repository",
}
# The attribute of the repository resource that holds the push URL.
REPOSITORY_URL_ATTRIBUTE = {"aws": "repositoryUrl", "gcp": "registryUri"}
REPOSITORY_URL_OUTPUT = {"aws": "ecr_repository_url", "gcp": "artifact_registry_url"}
# Artifact Registry holds many images per repository; CI pushes this one.
GCP_IMAGE_NAME = "groundwork-app"


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv is built here, never from a shell string
        list(argv), capture_output=True, text=True, check=False, timeout=3600
    )


def _pulumi(argv: list[str], runner: Runner, what: str) -> str:
    if runner is _run and shutil.which("pulumi") is None:
        raise UserError("the pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/)")
    done = runner(["pulumi", *argv])
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise OpsError(f"{what}: `pulumi {' '.join(argv)}` failed: {' | '.join(detail[-5:])}")
    return done.stdout


def push_repository(cloud: str, repository_url: str) -> str:
    """Where CI pushes: the ECR repository, or one image inside the AR repository."""
    return repository_url if cloud == "aws" else f"{repository_url}/{GCP_IMAGE_NAME}"


def repository_from_state(stack: str, cloud: str, runner: Runner = _run) -> str | None:
    """The registry URL recorded in the stack's state, or None when it does not exist."""
    text = _pulumi(["stack", "export", "--stack", stack], runner, "read the stack's state")
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpsError(f"`pulumi stack export` printed no JSON: {exc.msg}") from None
    resources: list[dict[str, Any]] = (state.get("deployment") or {}).get("resources") or []
    for resource in resources:
        if resource.get("type") == REPOSITORY_TYPES[cloud] and not resource.get("delete"):
            url = (resource.get("outputs") or {}).get(REPOSITORY_URL_ATTRIBUTE[cloud])
            if known(url):
                return str(url)
    return None


SERVICE_TYPES = {"aws": "aws:ecs/service:Service", "gcp": "gcp:cloudrunv2/service:Service"}


def _planned_creates(
    stack: str, runner: Runner, what: str, config: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """URN -> new state of every resource `pulumi preview` would create."""
    argv = ["preview", "--stack", stack, "--json", "--non-interactive"]
    for item in config:
        argv += ["--config", item]
    text = _pulumi(argv, runner, what)
    try:
        preview = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpsError(f"`pulumi preview --json` printed no JSON: {exc.msg}") from None
    steps = preview.get("steps") or []
    return {step["urn"]: step.get("newState") or {} for step in steps if step.get("op") == "create"}


def service_urns(
    stack: str, cloud: str, runner: Runner = _run, config: Sequence[str] = ()
) -> list[str]:
    """The api/worker/relay services a first deploy creates only after the migration.

    Before the migration the services cannot work (migrate creates the schema, the
    database role and the broker user), so the first ``pulumi up`` excludes them and
    what depends on them (``--exclude-dependents``).
    """
    if cloud not in SERVICE_TYPES:
        raise UserError(f"--cloud must be aws or gcp, got {cloud!r}")
    states = _planned_creates(stack, runner, "preview the stack to find its services", config)
    urns = sorted(u for u, new in states.items() if new.get("type") == SERVICE_TYPES[cloud])
    if len(urns) != 3:
        raise OpsError(
            f"expected the preview of {stack} to create 3 {SERVICE_TYPES[cloud]} (api, "
            f"worker, relay), found {len(urns)}: is this really a first deploy?"
        )
    return urns


def registry_targets(stack: str, cloud: str, runner: Runner = _run) -> list[str]:
    """URNs a targeted ``pulumi up`` must name to create the registry: it and its parents."""
    states = _planned_creates(stack, runner, "preview the stack to find the registry")
    repositories = [
        urn for urn, new in states.items() if new.get("type") == REPOSITORY_TYPES[cloud]
    ]
    if len(repositories) != 1:
        raise OpsError(
            f"expected the preview of {stack} to create one {REPOSITORY_TYPES[cloud]}, "
            f"found {len(repositories)}; is groundwork:cloud set to {cloud}?"
        )
    # The repository, its ancestors and what it depends on (its KMS key, say), each with
    # its own ancestors and dependencies: everything the engine would otherwise have to
    # create untargeted. The root stack and providers are targeted implicitly.
    targets: list[str] = []
    pending = [repositories[0]]
    while pending:
        urn = pending.pop()
        if urn in targets or urn not in states:
            continue
        new = states[urn]
        if new.get("type") == "pulumi:pulumi:Stack" or str(new.get("type", "")).startswith(
            "pulumi:providers:"
        ):
            continue
        targets.append(urn)
        pending += [new.get("parent") or "", *(new.get("dependencies") or [])]
    return sorted(targets, key=lambda urn: (urn.count("$"), urn))


def ensure_registry(
    outputs: StackOutputs, cloud: str, *, create: bool, runner: Runner = _run
) -> tuple[str, bool]:
    """(push repository, created now). Creates the registry when the stack has none."""
    if cloud not in REPOSITORY_TYPES:
        raise UserError(f"--cloud must be aws or gcp, got {cloud!r}")
    exported = outputs.values.get(REPOSITORY_URL_OUTPUT[cloud])
    if known(exported):
        return push_repository(cloud, str(exported)), False
    found = repository_from_state(outputs.stack, cloud, runner)
    if found:
        return push_repository(cloud, found), False
    if not create:
        raise UserError(
            f"stack {outputs.stack!r} has no image registry yet; run "
            f"`groundwork ops registry --stack {outputs.stack} --cloud {cloud} --create` "
            "(a targeted `pulumi up` of the registry and its parent component)"
        )
    targets = registry_targets(outputs.stack, cloud, runner)
    argv = ["up", "--stack", outputs.stack, "--yes", "--non-interactive", "--skip-preview"]
    for urn in targets:
        argv += ["--target", urn]
    _pulumi(argv, runner, "create the image registry")
    found = repository_from_state(outputs.stack, cloud, runner)
    if not found:
        raise OpsError(
            f"the targeted `pulumi up` of {outputs.stack} finished but the state holds no "
            f"{REPOSITORY_TYPES[cloud]}"
        )
    return push_repository(cloud, found), True
