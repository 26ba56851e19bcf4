# ruff: noqa: E501 - the fake tools below are scripts written out verbatim
"""deploy-environment.yml's real steps, run in order with fakes on PATH.

`pulumi` knows the real program's resource graph and enforces the engine's targeting
rule (fake_pulumi.py); `docker buildx` is what deploy.yml's build job runs (attestations
only on a docker-container builder, an OCI archive out) and that job makes the image
artifact; `skopeo` stores the archive's index and refuses to push a tag twice, as an
immutable ECR repository does; AWS is moto's standalone server (ECS services, ECR), driven by the real
`groundwork ops record-release / registry / existing-image / rollback`. The commands
that need a running cluster (migrate, verify, smoke, dlq-depth) are recorded and check
only that the outputs file they get holds what the real command reads.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests.moto_server import moto_server
from tests.ops.images import image_manifest

from .conftest import build_stack
from .test_registry import install_fake_pulumi
from .workflow_runner import JobResult, run_job

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "deploy-environment.yml"
BUILD_WORKFLOW = ROOT / ".github" / "workflows" / "build-image.yml"
SHA = "0123456789abcdef0123456789abcdef01234567"

FAKE_UV = r"""#!{python}
import json, os, subprocess, sys
argv = sys.argv[1:]
if argv[:1] == ["sync"]:
    sys.exit(0)
assert argv[:3] == ["run", "groundwork", "ops"], argv
with open(os.path.join(os.environ["FAKE_PULUMI_DIR"], "calls.log"), "a") as log:
    log.write("groundwork ops " + " ".join(argv[3:]) + "\n")
command = argv[3]
real = ("record-release", "registry", "existing-image", "rollback", "service-urns")
if command in real or (command == "verify" and os.environ.get("FAKE_REAL_VERIFY")):
    sys.exit(subprocess.call([sys.executable, "-c", "from groundwork.cli import main; main()", *argv[2:]]))
# What each emulated command reads from the outputs (as the real ones do, AWS).
needs = {{
    "migrate": ["cluster_name", "migrate_task_definition_arn", "task_subnet_ids", "task_security_group_ids"],
    "verify": ["cluster_name", "api_service_name", "worker_service_name", "relay_service_name"],
    "smoke": ["api_url", "api_target_group_arn"],
    "dlq-depth": ["broker_id"],
    "broker-logs": ["log_retention_days"],  # logs_kms_key_arn: None with cmek off
}}[command]
outputs = json.load(open(argv[argv.index("--outputs-file") + 1]))
if command == "dlq-depth" and outputs.get("dlq_url"):
    needs = ["dlq_url"]  # groundwork:queue = sqs: the DLQ's own counts, no broker
missing = [k for k in needs if k not in outputs or outputs[k] in ("", None, [], "04da6b54-80e4-46f7-96ec-b56ff0331ba9")]
if missing:
    print(f"error: stack 'staging' has no string output {{missing[0]!r}}", file=sys.stderr)
    sys.exit(2)
"""

FAKE_DOCKER = r"""#!{python}
# docker buildx as the build job uses it: the default `docker` driver refuses
# attestations; a docker-container builder writes an OCI archive whose index holds the
# image manifest and, with --sbom/--provenance, an attestation manifest
# (https://docs.docker.com/build/metadata/attestations/attestation-storage/).
import hashlib, io, json, os, sys, tarfile
argv = sys.argv[1:]
base = os.environ["FAKE_PULUMI_DIR"]
with open(os.path.join(base, "calls.log"), "a") as log:
    log.write("docker " + " ".join(argv) + "\n")
builder = os.path.join(base, "builder.txt")
if argv[:2] == ["buildx", "create"]:
    if "--driver" in argv and argv[argv.index("--driver") + 1] == "docker-container" and "--use" in argv:
        open(builder, "w").write("docker-container")
    sys.exit(0)
assert argv[:2] == ["buildx", "build"], argv
attest = [a for a in argv if a.startswith(("--sbom=", "--provenance="))]
if any(not a.endswith("=false") for a in attest) and not os.path.exists(builder):
    print("ERROR: failed to build: Attestation is not supported for the docker driver.", file=sys.stderr)
    sys.exit(1)
output = argv[argv.index("--output") + 1]
opts = dict(item.split("=", 1) for item in output.split(","))
assert opts["type"] == "oci", output
blobs = {{}}
def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)
image_digest, image_size = blob(json.dumps({{"revision": [a for a in argv if "REVISION=" in a]}}).encode())
manifests = [{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image_digest,
              "size": image_size, "platform": {{"architecture": "amd64", "os": "linux"}}}}]
predicates = []
if "--sbom=true" in argv:
    predicates.append("https://spdx.dev/Document")
if any(a.startswith("--provenance=mode=") for a in argv):
    predicates.append("https://slsa.dev/provenance/v0.2")
if predicates:
    layers = [{{"mediaType": "application/vnd.in-toto+json", "annotations": {{"in-toto.io/predicate-type": p}}}} for p in predicates]
    att_digest, att_size = blob(json.dumps({{"layers": layers}}).encode())
    manifests.append({{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att_digest,
                      "size": att_size, "platform": {{"architecture": "unknown", "os": "unknown"}},
                      "annotations": {{"vnd.docker.reference.type": "attestation-manifest",
                                      "vnd.docker.reference.digest": image_digest}}}})
index_digest, index_size = blob(json.dumps({{"schemaVersion": 2, "manifests": manifests}}).encode())
layout = {{"schemaVersion": 2, "manifests": [{{"mediaType": "application/vnd.oci.image.index.v1+json",
                                             "digest": index_digest, "size": index_size}}]}}
with tarfile.open(opts["dest"], "w") as tar:
    files = {{"oci-layout": b'{{"imageLayoutVersion": "1.0.0"}}', "index.json": json.dumps(layout).encode()}}
    files.update({{"blobs/sha256/" + d.split(":")[1]: data for d, data in blobs.items()}})
    for name, data in files.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
"""

FAKE_SKOPEO = r"""#!{python}
# skopeo copy --all from the OCI archive: the registry stores the index and every
# manifest it lists unchanged, and refuses an existing tag as an immutable ECR
# repository does.
import hashlib, json, os, sys, tarfile
argv = sys.argv[1:]
base = os.environ["FAKE_PULUMI_DIR"]
with open(os.path.join(base, "calls.log"), "a") as log:
    log.write("skopeo " + " ".join(argv) + "\n")
registry_file = os.path.join(base, "registry.json")
registry = json.load(open(registry_file)) if os.path.exists(registry_file) else {{}}
if argv[0] == "login":
    assert sys.stdin.read().strip(), "empty password"
    sys.exit(0)
assert argv[0] == "copy" and "--all" in argv and "--preserve-digests" in argv, argv
source, dest = argv[-2:]
assert source.startswith("oci-archive:") and dest.startswith("docker://"), argv
ref = dest.removeprefix("docker://")
if ref in registry:
    print(f"tag invalid: The image tag '{{ref.rsplit(':', 1)[1]}}' already exists in the "
          "repository and cannot be overwritten because the repository is immutable.", file=sys.stderr)
    sys.exit(1)
with tarfile.open(source.removeprefix("oci-archive:")) as tar:
    def read(name):
        return tar.extractfile(name).read()
    top = json.loads(read("index.json"))["manifests"][0]["digest"]
    index = read("blobs/sha256/" + top.split(":")[1])
    assert "sha256:" + hashlib.sha256(index).hexdigest() == top
    stored = {{"digest": top, "index": json.loads(index), "manifests": {{}}}}
    for m in json.loads(index)["manifests"]:
        stored["manifests"][m["digest"]] = json.loads(read("blobs/sha256/" + m["digest"].split(":")[1]))
registry[ref] = stored
json.dump(registry, open(registry_file, "w"))
open(argv[argv.index("--digestfile") + 1], "w").write(top)
"""

FAKE_AWS = "#!/bin/sh\n[ \"$1 $2\" = 'ecr get-login-password' ] && echo token\n"


@dataclass
class World:
    tmp: Path
    state: Path
    bin: Path
    artifacts: Path
    stack: dict[str, Any]
    env: dict[str, str]

    def calls(self) -> list[str]:
        return (self.state / "calls.log").read_text().splitlines()

    def run(
        self, job: str, workflow: Path = WORKFLOW, inputs: dict[str, str] | None = None
    ) -> JobResult:
        context = {
            "inputs": inputs or {"environment": "staging", "canary-steps": "100"},
            "vars": {
                "GROUNDWORK_CLOUD": "aws",
                "PULUMI_BACKEND_URL": "file:///tmp/x",
                "AWS_REGION": "us-east-1",
            },
            "github": {"sha": SHA, "run_id": 42, "repository": "acme/groundwork"},
        }
        return run_job(
            workflow,
            job,
            context=context,
            workdir=self.tmp / job,
            artifacts=self.artifacts,
            path_prefix=[self.bin],
            base_env=self.env,
            skip=("Policy pack dependencies",),
        )

    def deployed(self) -> None:
        """The stack as a previous `pulumi up` left it."""
        graph = json.loads((self.state / "graph.json").read_text())
        state = {"created": [r["urn"] for r in graph["resources"]], "outputs": graph["outputs"]}
        (self.state / "state.json").write_text(json.dumps(state))


# The build job installs qemu-user-static for the arm64 half of the image (GitHub's
# runners have passwordless sudo); here the install is recorded, not run.
FAKE_SUDO = r"""#!{python}
import os, sys
with open(os.path.join(os.environ["FAKE_PULUMI_DIR"], "calls.log"), "a") as log:
    log.write("sudo " + " ".join(sys.argv[1:]) + "\n")
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None) -> Iterator[World]:
    with moto_server(monkeypatch):
        stack = build_stack()  # ECS cluster and services in the moto server
        # The cloud side of the registry (the fake pulumi only keeps the state).
        boto3.client("ecr", region_name="us-east-1").create_repository(
            repositoryName="groundwork-staging-app-repo", imageTagMutability="IMMUTABLE"
        )
        state = install_fake_pulumi(tmp_path, "aws", monkeypatch)
        graph = json.loads((state / "graph.json").read_text())
        # The program's outputs, with the names of what exists in moto.
        graph["outputs"].update({k: v for k, v in stack.items() if not k.startswith("_")})
        (state / "graph.json").write_text(json.dumps(graph))
        bin_dir = tmp_path / "bin"
        _script(bin_dir / "uv", FAKE_UV)
        _script(bin_dir / "docker", FAKE_DOCKER)
        _script(bin_dir / "skopeo", FAKE_SKOPEO)
        _script(bin_dir / "sudo", FAKE_SUDO)
        (bin_dir / "aws").write_text(FAKE_AWS)
        (bin_dir / "aws").chmod(0o755)
        (tmp_path / "runner-image").mkdir()
        artifacts = tmp_path / "artifacts"
        env = {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("AWS_", "FAKE_", "HOME", "PYTHON", "VIRTUAL_ENV"))
        }
        env["PATH"] = os.environ["PATH"]
        world = World(
            tmp=tmp_path, state=state, bin=bin_dir, artifacts=artifacts, stack=stack, env=env
        )
        # The image artifact as deploy.yml's build job really makes it.
        build = world.run("build", BUILD_WORKFLOW)
        assert build.status == "success", "\n".join(s.log for s in build.steps if s.returncode)
        yield world


def _index(calls: list[str], fragment: str) -> int:
    return next(i for i, call in enumerate(calls) if fragment in call)


def test_first_deploy_creates_the_registry_then_migrates_before_the_services_start(
    world: World,
) -> None:
    """Defect 1: a stack never deployed reaches a migrated, smoke-tested environment, and
    the services start only after the migration (it creates the schema, the database
    role and the broker user they log in with)."""
    result = world.run("deploy")
    assert result.status == "success", "\n".join(
        f"{s.name}: {s.log}" for s in result.steps if s.returncode
    )
    assert result.outputs["recorded"] == "true"
    assert result.step("Record what serves").outputs["first_deploy"] == "true"
    calls = world.calls()
    targeted = calls[_index(calls, "up --stack staging --yes --non-interactive --skip-preview")]
    assert "groundwork:aws:ContainerService::groundwork-staging-app" in targeted
    bootstrap = _index(calls, "--exclude-dependents")
    migrate = _index(calls, "groundwork ops migrate")
    full_up = max(
        i for i, c in enumerate(calls) if c.startswith("up ") and "groundwork:imageUri=" in c
    )
    assert _index(calls, "skopeo copy") < bootstrap < migrate < full_up
    assert full_up < _index(calls, "groundwork ops verify") < _index(calls, "groundwork ops smoke")
    # Amazon MQ's own log group exists only once the broker runs: after the full `up`.
    assert full_up < _index(calls, "groundwork ops broker-logs --stack staging")
    excluded = calls[bootstrap].split("--exclude ")[1:]
    assert len(excluded) == 3
    assert all("$aws:ecs/service:Service::" in urn for urn in excluded)
    # What that `up` left out: the services and what needs them, nothing else.
    state = json.loads((world.state / "state.json").read_text())
    left_out = {urn.split("::")[-1] for urn in state["excluded"]}
    assert {"groundwork-staging-app-api", "groundwork-staging-app-worker"} <= left_out
    assert not any("repo" in name or "migrate" in name or "-db" in name for name in left_out)
    image = result.step("Push the image").outputs["image"]
    assert f"groundwork:imageUri={image}" in calls[full_up]
    assert f"--image {image}" in calls[migrate]
    assert f"--image {image}" in calls[_index(calls, "groundwork ops verify")]


def test_a_rerun_reuses_the_pushed_image_and_migrates_before_up(world: World) -> None:
    """Defect 4: the tag is immutable; the re-run deploys the digest the first attempt pushed."""
    world.deployed()
    ecr = boto3.client("ecr", region_name="us-east-1")
    manifest = image_manifest("b")
    digest = ecr.put_image(
        repositoryName="groundwork-staging-app-repo",
        imageManifest=json.dumps(manifest),
        imageTag=SHA,
    )["image"]["imageId"]["imageDigest"]
    (world.state / "registry.json").write_text(
        json.dumps(
            {f"123456789012.dkr.ecr.us-east-1.amazonaws.com/groundwork-staging-app-repo:{SHA}": {}}
        )
    )

    result = world.run("deploy")
    assert result.status == "success", "\n".join(
        f"{s.name}: {s.log}" for s in result.steps if s.returncode
    )
    calls = world.calls()
    assert not any(c.startswith("skopeo copy") for c in calls)
    image = result.step("Push the image").outputs["image"]
    assert (
        image
        == f"123456789012.dkr.ecr.us-east-1.amazonaws.com/groundwork-staging-app-repo@{digest}"
    )
    assert result.step("Record what serves").outputs["first_deploy"] == "false"
    assert _index(calls, "groundwork ops migrate") < _index(calls, "groundwork:imageUri=")
    assert not any("--target" in c for c in calls)


def test_a_failed_up_changes_nothing_so_the_rollback_restores_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 3: the policy pack (or anything) stops `pulumi up` before a change: the
    rollback job runs against the record and leaves every service where it was."""
    world.deployed()
    ecs = boto3.client("ecs", region_name="us-east-1")
    names = [world.stack[f"{p}_service_name"] for p in ("api", "worker", "relay")]
    before = [
        s["taskDefinition"]
        for s in ecs.describe_services(cluster=world.stack["cluster_name"], services=names)[
            "services"
        ]
    ]
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "up")
    world.env["FAKE_PULUMI_FAIL"] = "up"
    deploy = world.run("deploy")
    assert deploy.status == "failure"
    assert deploy.step("pulumi up").returncode != 0
    assert deploy.outputs["recorded"] == "true"
    assert not deploy.step("Verify").ran
    rollback = world.run("rollback")
    assert rollback.status == "success", "\n".join(
        f"{s.name}: {s.log}" for s in rollback.steps if s.returncode
    )
    assert rollback.step("Return api").outputs["restored"] == "false"
    assert "already serves its pre-deploy revision" in rollback.step("Return api").log
    assert not rollback.step("Readiness").ran
    after = [
        s["taskDefinition"]
        for s in ecs.describe_services(cluster=world.stack["cluster_name"], services=names)[
            "services"
        ]
    ]
    assert after == before  # the old rule would have moved each one revision back


def test_the_shipped_image_carries_its_sbom_and_provenance_and_its_digest_is_recorded(
    world: World,
) -> None:
    """Supply chain: the registry holds the index the build made (image + attestation
    manifest with the SPDX SBOM and SLSA provenance predicates), deployed by that digest,
    recorded in the run summary and the stack's deployed_image export."""
    result = world.run("deploy")
    assert result.status == "success", "\n".join(
        f"{s.name}: {s.log}" for s in result.steps if s.returncode
    )
    built = (world.artifacts / "image" / "digest.txt").read_text().strip()
    assert built.startswith("sha256:")
    image = result.step("Push the image").outputs["image"]
    repository = "123456789012.dkr.ecr.us-east-1.amazonaws.com/groundwork-staging-app-repo"
    assert image == f"{repository}@{built}"
    stored = json.loads((world.state / "registry.json").read_text())[f"{repository}:{SHA}"]
    assert stored["digest"] == built
    # https://docs.docker.com/build/metadata/attestations/attestation-storage/
    attestations = [
        m
        for m in stored["index"]["manifests"]
        if m.get("annotations", {}).get("vnd.docker.reference.type") == "attestation-manifest"
    ]
    assert len(attestations) == 1
    layers = stored["manifests"][attestations[0]["digest"]]["layers"]
    assert {layer["annotations"]["in-toto.io/predicate-type"] for layer in layers} == {
        "https://spdx.dev/Document",
        "https://slsa.dev/provenance/v0.2",
    }
    summary = (world.tmp / "deploy" / "runner-temp" / "summary.md").read_text()
    assert f"`{image}`" in summary and SHA in summary
    state = json.loads((world.state / "state.json").read_text())
    assert state["outputs"]["deployed_image"] == image


def test_a_push_that_changes_the_digest_fails_before_anything_deploys(world: World) -> None:
    """--preserve-digests aside, the step compares what the registry holds with the build."""
    (world.artifacts / "image" / "digest.txt").write_text("sha256:" + "0" * 64 + "\n")
    result = world.run("deploy")
    assert result.status == "failure"
    assert result.step("Push the image").returncode != 0
    assert "the build made sha256:000" in result.step("Push the image").log
    assert not any(
        c.startswith(("up ", "groundwork ops migrate"))
        for c in world.calls()
        if "--target" not in c
    )


def test_a_review_stack_deploys_from_staging_config_under_its_own_name_without_rollback(
    world: World,
) -> None:
    """review.yml calls this workflow with review-pr: the stack review-pr-<n> is selected
    (created) with staging's config file, gets a first deploy with staging's policy
    config, reports its URL, and a failure does not start the rollback job."""
    from .workflow_runner import condition

    workdir = world.tmp / "deploy"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Pulumi.staging.yaml").write_text("config:\n  groundwork:environment: staging\n")
    inputs = {"environment": "review", "canary-steps": "100", "review-pr": "123"}
    result = world.run("deploy", inputs=inputs)
    assert result.status == "success", "\n".join(
        f"{s.name}: {s.log}" for s in result.steps if s.returncode
    )
    assert (workdir / "Pulumi.review-pr-123.yaml").read_text() == (
        workdir / "Pulumi.staging.yaml"
    ).read_text()
    calls = world.calls()
    assert "stack select --create review-pr-123" in calls
    ups = [c for c in calls if c.startswith("up ")]
    assert ups and all("--stack review-pr-123" in c for c in ups)
    checked = [c for c in ups if "--policy-pack " in c]
    assert len(checked) == 2  # the first deploy's up without services, then the full up
    assert all("policies/config/staging.json" in c for c in checked)
    assert result.step("Record what serves").outputs["first_deploy"] == "true"
    assert result.outputs["url"] == world.stack["api_url"]
    rule = yaml.safe_load(WORKFLOW.read_text())["jobs"]["rollback"]["if"]
    failed = {"needs": {"deploy": {"outputs": {"recorded": "true"}}}}
    assert not condition(rule, {**failed, "inputs": inputs}, "failure")
    assert condition(rule, {**failed, "inputs": {"review-pr": ""}}, "failure")


def test_a_review_pr_that_is_not_a_number_stops_before_any_stack_is_touched(
    world: World,
) -> None:
    result = world.run("deploy", inputs={"environment": "review", "review-pr": "1; rm -rf /"})
    assert result.status == "failure"
    assert "review-pr must be a pull request number" in result.step("Stack (a review").log
    assert not (world.state / "calls.log").exists() or not any(
        c.startswith(("stack select", "up ")) for c in world.calls()
    )


def test_a_deployment_alarm_rollback_fails_the_deploy_and_is_recorded(world: World) -> None:
    """The API's 5xx-rate alarm fires in the bake time and ECS returns the API to what
    served before (deployment-alarm-failure.html); worker and relay run the new image.
    The real `ops verify` (moto's ECS and CloudWatch) fails the deploy, the run summary
    and the release artifact record which alarm did it, and the rollback job leaves the
    API where ECS put it."""
    from moto.ecs.models import ecs_backends

    from .test_release import ALARMS, ecs_reports_rollback, put_alarms

    world.deployed()
    ecs = boto3.client("ecs", region_name="us-east-1")
    cluster = world.stack["cluster_name"]
    api = world.stack["api_service_name"]
    recorded_api = ecs.describe_services(cluster=cluster, services=[api])["services"][0][
        "taskDefinition"
    ]
    # What `pulumi up` and ECS leave behind: worker and relay on the new image, the API
    # back on its old revision after its deployment alarm fired.
    hook = world.tmp / "after_up.py"
    hook.write_text(
        "import sys\n"
        "from tests.ops.test_release import ship\n"
        f"ship({json.dumps({k: v for k, v in world.stack.items() if k.endswith('_name')})}, "
        "sys.argv[1], ('worker', 'relay'))\n"
    )
    world.env["FAKE_PULUMI_AFTER_UP"] = str(hook)
    world.env["PYTHONPATH"] = str(ROOT)
    ecs_reports_rollback(world.stack, gated="api")
    put_alarms({ALARMS[0]: "ALARM"})
    world.env["FAKE_REAL_VERIFY"] = "1"
    deploy = world.run("deploy")
    assert deploy.status == "failure"
    verify = deploy.step("Verify every service")
    assert verify.returncode == 1, verify.log
    assert f"alarm(s) {ALARMS[0]} went to ALARM" in verify.log
    assert "--timeout 1800" in next(
        c for c in world.calls() if c.startswith("groundwork ops verify")
    )
    summary = (world.tmp / "deploy" / "runner-temp" / "summary.md").read_text()
    assert f"- {api}: deployment-alarm ({ALARMS[0]})" in summary
    report = json.loads((world.artifacts / "release-staging" / "verify.json").read_text())
    assert [r["service"] for r in report["rolled_back"]] == [api]
    assert (world.artifacts / "release-staging" / "serving.json").exists()
    # The rollback job: the API already serves its recorded revision (ECS did it);
    # worker and relay go back to theirs.
    backend = ecs_backends["123456789012"]["us-east-1"]
    assert backend.services[f"{cluster}:{api}"].task_definition == recorded_api
    for service in backend.services.values():
        service.running_count = service.desired_count  # the restored tasks run (moto)
    rollback = world.run("rollback")
    assert rollback.status == "success", "\n".join(
        f"{s.name}: {s.log}" for s in rollback.steps if s.returncode
    )
    log = rollback.step("Return api").log
    assert f"{api}: already serves its pre-deploy revision" in log
    assert "groundwork-staging-worker: " in log and " -> " in log
