"""The delivery workflows: linted by actionlint and zizmor, and holding their promises
(previews with the policy pack on pull requests, production gated by an environment,
OIDC only, pinned actions, least privilege)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as boolean True.
    value: Any = workflow.get("on", workflow.get(True))
    return value if isinstance(value, dict) else dict.fromkeys(value)


def all_workflows() -> dict[str, dict[str, Any]]:
    return {path.name: load(path.name) for path in sorted(WORKFLOWS.glob("*.yml"))}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(job))


def tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed; run `uv sync --all-packages`"
    return found


def test_actionlint_reports_nothing() -> None:
    done = subprocess.run(
        [tool("actionlint"), "-no-color"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_zizmor_reports_nothing() -> None:
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "plain", ".github/workflows"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


def test_expected_workflows_exist() -> None:
    assert {"ci.yml", "preview.yml", "deploy.yml", "deploy-environment.yml"} <= set(all_workflows())


def test_preview_runs_on_pull_requests_with_the_policy_pack_for_both_stacks() -> None:
    preview = load("preview.yml")
    assert "pull_request" in triggers(preview)
    assert "pull_request_target" not in triggers(preview)
    job = preview["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["staging", "production"]
    script = run_text(job)
    assert "pulumi preview" in script
    assert "--policy-pack policies" in script
    assert '--policy-pack-config "policies/config/${STACK}.json"' in script
    for stack in ("staging", "production"):
        assert (ROOT / "policies" / "config" / f"{stack}.json").is_file()
    assert 'groundwork plan "${STACK}" --json' in script
    assert "groundwork cost-diff" in script
    comment = preview["jobs"]["comment"]
    assert comment["permissions"] == {"pull-requests": "write"}
    assert "groundwork-preview" in run_text(comment)


def test_deploy_builds_once_and_gates_production_on_an_environment() -> None:
    deploy = load("deploy.yml")
    assert triggers(deploy)["push"]["branches"] == ["main"]
    jobs = deploy["jobs"]
    build = run_text(jobs["build"])
    assert "docker buildx build" in build
    # Staging runs x86_64, production arm64 (groundwork:cpuArchitecture): one index.
    assert "--platform linux/amd64,linux/arm64" in build
    assert "type=oci" in build
    assert "docker build" not in (WORKFLOWS / "deploy-environment.yml").read_text()
    assert jobs["staging"]["needs"] == "build"
    assert jobs["production"]["needs"] == "staging"
    assert jobs["production"]["with"]["environment"] == "production"
    reusable = load("deploy-environment.yml")
    assert "workflow_call" in triggers(reusable)
    assert jobs["production"]["uses"].endswith(".github/workflows/deploy-environment.yml")
    env_job = reusable["jobs"]["deploy"]
    assert env_job["environment"]["name"] == "${{ inputs.environment }}"
    assert env_job["concurrency"]["group"] == "deploy-environment-${{ inputs.environment }}"
    assert env_job["concurrency"]["cancel-in-progress"] is False


def test_deploy_migrates_before_up_and_smokes_after_with_rollback_on_failure() -> None:
    reusable = load("deploy-environment.yml")
    job = reusable["jobs"]["deploy"]
    runs = [step.get("run", "") for step in steps(job)]
    order = [
        next(i for i, run in enumerate(runs) if needle in run)
        for needle in ("groundwork ops migrate", "pulumi up", "groundwork ops smoke")
    ]
    assert order == sorted(order)
    up = next(run for run in runs if "pulumi up" in run)
    assert "--policy-pack policies" in up
    rollback = reusable["jobs"]["rollback"]
    assert rollback["needs"] == "deploy"
    assert rollback["if"].startswith("failure()")
    assert "groundwork ops rollback" in run_text(rollback)


def test_every_action_is_pinned_to_a_commit_and_checkouts_drop_credentials() -> None:
    for name, workflow in all_workflows().items():
        for job_name, job in workflow["jobs"].items():
            for step in steps(job):
                uses = step.get("uses")
                if not uses:
                    continue
                assert PINNED.match(uses), f"{name}:{job_name} uses unpinned {uses}"
                if uses.startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, f"{name}:{job_name}"


def test_least_privilege_and_oidc_only() -> None:
    for name, workflow in all_workflows().items():
        assert workflow["permissions"] == {}, f"{name}: top-level permissions must be {{}}"
        text = (WORKFLOWS / name).read_text()
        assert "aws-access-key-id" not in text, f"{name}: long-lived AWS keys"
        assert "credentials_json" not in text, f"{name}: long-lived Google keys"
        for job_name, job in workflow["jobs"].items():
            assert "permissions" in job, f"{name}:{job_name} has no permissions block"
            perms = job["permissions"]
            cloud_auth = any(
                str(step.get("uses", "")).startswith(
                    ("aws-actions/configure-aws-credentials@", "google-github-actions/auth@")
                )
                for step in steps(job)
            )
            calls_reusable = "uses" in job
            if perms.get("id-token") == "write":
                assert cloud_auth or calls_reusable, f"{name}:{job_name} id-token without OIDC"
            writes = {k for k, v in perms.items() if v == "write"} - {"id-token"}
            assert writes <= {"pull-requests"}, f"{name}:{job_name} writes {writes}"


@pytest.mark.parametrize("name", ["ci.yml", "preview.yml", "deploy.yml"])
def test_concurrency_groups(name: str) -> None:
    assert "group" in load(name)["concurrency"]


def test_ci_runs_every_gate() -> None:
    ci = load("ci.yml")
    assert {"pull_request", "push"} <= set(triggers(ci))
    script = "\n".join(run_text(job) for job in ci["jobs"].values())
    for needle in (
        "ruff check",
        "ruff format --check",
        "mypy",
        "pytest",
        "hadolint",
        "docker build",
        "pip-audit",
        "bandit",
        "detect-secrets-hook --baseline .secrets.baseline",
        "actionlint",
        "zizmor",
    ):
        assert needle in script, needle
    assert (ROOT / ".secrets.baseline").is_file()


def test_migrate_and_up_deploy_the_same_pushed_digest_and_nothing_is_rebuilt() -> None:
    job = load("deploy-environment.yml")["jobs"]["deploy"]
    by_run = {step.get("run", ""): step for step in steps(job)}
    push = next(step for step in steps(job) if step.get("id") == "push")
    # The output is the registry digest of the pushed index (both architectures), not
    # the tag itself.
    assert "skopeo copy --all --digestfile" in push["run"]
    assert 'image="${repository}@${digest}"' in push["run"]
    assert 'echo "image=${image}"' in push["run"]
    migrate = next(s for r, s in by_run.items() if "groundwork ops migrate" in r)
    up = next(s for r, s in by_run.items() if "pulumi up" in r)
    for step in (migrate, up):
        assert step["env"]["IMAGE"] == "${{ steps.push.outputs.image }}"
    assert '--image "${IMAGE}"' in migrate["run"]
    assert '--config "groundwork:imageUri=${IMAGE}"' in up["run"]
    assert "imageTag" not in up["run"]
