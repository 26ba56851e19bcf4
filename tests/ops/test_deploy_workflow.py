# ruff: noqa: E501 - the fake tools below are scripts written out verbatim
"""deploy-environment.yml's real steps, run in order with fakes on PATH.

`pulumi` knows the real program's resource graph and enforces the engine's targeting
rule (fake_pulumi.py); `docker` refuses to push a tag twice, as an immutable ECR
repository does; AWS is moto's standalone server (ECS services, ECR), driven by the real
`groundwork ops record-release / registry / existing-image / rollback`. The commands
that need a running cluster (migrate, verify, smoke, dlq-depth) are recorded and check
only that the outputs file they get holds what the real command reads.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from .conftest import build_stack
from .test_registry import install_fake_pulumi
from .workflow_runner import JobResult, run_job

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "deploy-environment.yml"
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
if command in ("record-release", "registry", "existing-image", "rollback", "service-urns"):
    sys.exit(subprocess.call([sys.executable, "-c", "from groundwork.cli import main; main()", *argv[2:]]))
# What each emulated command reads from the outputs (as the real ones do, AWS).
needs = {{
    "migrate": ["cluster_name", "migrate_task_definition_arn", "task_subnet_ids", "task_security_group_ids"],
    "verify": ["cluster_name", "api_service_name", "worker_service_name", "relay_service_name"],
    "smoke": ["api_url", "api_target_group_arn"],
    "dlq-depth": ["broker_id"],
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
import hashlib, os, sys
argv = sys.argv[1:]
base = os.environ["FAKE_PULUMI_DIR"]
with open(os.path.join(base, "calls.log"), "a") as log:
    log.write("docker " + " ".join(argv) + "\n")
pushed_file = os.path.join(base, "pushed.txt")
pushed = open(pushed_file).read().split() if os.path.exists(pushed_file) else []
if argv[0] == "login":
    sys.stdin.read()
elif argv[0] == "push":
    if argv[1] in pushed:
        # What ECR answers for an immutable repository.
        print(f"tag invalid: The image tag '{{argv[1].rsplit(':', 1)[1]}}' already exists in the "
              "repository and cannot be overwritten because the repository is immutable.", file=sys.stderr)
        sys.exit(1)
    open(pushed_file, "a").write(argv[1] + "\n")
elif argv[:2] == ["image", "inspect"]:
    ref = argv[-1]
    print(ref.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(ref.encode()).hexdigest())
"""

FAKE_SKOPEO = r"""#!{python}
import hashlib, os, sys
argv = sys.argv[1:]
base = os.environ["FAKE_PULUMI_DIR"]
with open(os.path.join(base, "calls.log"), "a") as log:
    log.write("skopeo " + " ".join(argv) + "\n")
pushed_file = os.path.join(base, "pushed.txt")
pushed = open(pushed_file).read().split() if os.path.exists(pushed_file) else []
if argv[0] == "login":
    sys.stdin.read()
elif argv[0] == "copy":
    ref = argv[-1].removeprefix("docker://")
    if ref in pushed:
        # What ECR answers for an immutable repository.
        print("tag invalid: the image tag already exists and the repository is immutable",
              file=sys.stderr)
        sys.exit(1)
    open(pushed_file, "a").write(ref + "\n")
    digestfile = argv[argv.index("--digestfile") + 1]
    open(digestfile, "w").write("sha256:" + hashlib.sha256(ref.encode()).hexdigest())
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

    def run(self, job: str) -> JobResult:
        context = {
            "inputs": {"environment": "staging", "canary-steps": "100"},
            "vars": {
                "GROUNDWORK_CLOUD": "aws",
                "PULUMI_BACKEND_URL": "file:///tmp/x",
                "AWS_REGION": "us-east-1",
            },
            "github": {"sha": SHA, "run_id": 42, "repository": "acme/groundwork"},
        }
        return run_job(
            WORKFLOW,
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


def _script(path: Path, text: str) -> None:
    path.write_text(text.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None) -> Iterator[World]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    # The server's backends are process-wide: start from an empty account.
    urllib.request.urlopen(
        urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
    )
    try:
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
        (bin_dir / "aws").write_text(FAKE_AWS)
        (bin_dir / "aws").chmod(0o755)
        (tmp_path / "runner-image").mkdir()
        artifacts = tmp_path / "artifacts"
        (artifacts / "image").mkdir(parents=True)
        (artifacts / "image" / "image.tar.gz").write_bytes(gzip.compress(b"oci archive"))
        env = {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("AWS_", "FAKE_", "HOME", "PYTHON", "VIRTUAL_ENV"))
        }
        env["PATH"] = os.environ["PATH"]
        yield World(
            tmp=tmp_path, state=state, bin=bin_dir, artifacts=artifacts, stack=stack, env=env
        )
    finally:
        server.stop()


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
    assert _index(calls, "skopeo copy --all") < bootstrap < migrate < full_up
    assert full_up < _index(calls, "groundwork ops verify") < _index(calls, "groundwork ops smoke")
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
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + "b" * 64,
        },
        "layers": [],
    }
    digest = ecr.put_image(
        repositoryName="groundwork-staging-app-repo",
        imageManifest=json.dumps(manifest),
        imageTag=SHA,
    )["image"]["imageId"]["imageDigest"]
    (world.state / "pushed.txt").write_text(
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/groundwork-staging-app-repo:{SHA}\n"
    )

    result = world.run("deploy")
    assert result.status == "success", "\n".join(
        f"{s.name}: {s.log}" for s in result.steps if s.returncode
    )
    calls = world.calls()
    assert not any(c.startswith(("docker push", "skopeo copy")) for c in calls)
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
