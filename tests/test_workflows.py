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
    assert {
        "ci.yml",
        "preview.yml",
        "deploy.yml",
        "deploy-environment.yml",
        "drift.yml",
        "build-image.yml",
        "review.yml",
    } <= set(all_workflows())


def test_drift_is_a_scheduled_refresh_preview_of_each_stack_reported_in_one_issue() -> None:
    drift = load("drift.yml")
    assert "schedule" in triggers(drift) and "workflow_dispatch" in triggers(drift)
    refresh = drift["jobs"]["refresh"]
    assert refresh["strategy"]["matrix"]["stack"] == ["staging", "production"]
    script = run_text(refresh)
    assert "pulumi refresh --preview-only --expect-no-changes" in script
    assert "pulumi up" not in script
    report = drift["jobs"]["report"]
    assert report["if"] == "${{ !cancelled() }}"
    assert "scripts/drift_issue.py" in run_text(report)


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
    # The replacement diff (docs/plan-diff.md) next to the cost diff.
    assert '--against "${RUNNER_TEMP}/base.json" --markdown' in script
    comment = preview["jobs"]["comment"]
    assert comment["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "groundwork-preview" in run_text(comment)
    assert "scripts/pr_comment.py" in run_text(comment)


def test_deploy_builds_once_and_gates_production_on_an_environment() -> None:
    deploy = load("deploy.yml")
    assert triggers(deploy)["push"]["branches"] == ["main"]
    jobs = deploy["jobs"]
    assert jobs["build"]["uses"] == "$/.github/workflows/build-image.yml"
    assert "docker buildx build" in run_text(load("build-image.yml")["jobs"]["build"])
    assert "docker build " not in (WORKFLOWS / "deploy-environment.yml").read_text()
    assert "buildx build" not in (WORKFLOWS / "deploy-environment.yml").read_text()
    # Both tiers default to arm64; x86_64 stays deployable (groundwork:cpuArchitecture).
    assert "--platform linux/amd64,linux/arm64" in run_text(
        load("build-image.yml")["jobs"]["build"]
    )
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
    ids = [step.get("id") for step in steps(job)]
    migrate = next(i for i, run in enumerate(runs) if "groundwork ops migrate" in run)
    smoke = next(i for i, run in enumerate(runs) if "groundwork ops smoke" in run)
    assert migrate < ids.index("up") < smoke
    # A first deploy creates everything but the services before the migration.
    first = next(i for i, run in enumerate(runs) if "--exclude-dependents" in run)
    assert first < migrate
    assert steps(job)[first]["if"] == "steps.before.outputs.first_deploy == 'true'"
    for index in (first, ids.index("up")):
        assert "--policy-pack policies" in runs[index]
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
            allowed = {"issues"} if (name, job_name) == ("drift.yml", "report") else set()
            assert writes <= {"pull-requests"} | allowed, f"{name}:{job_name} writes {writes}"
            if "issues" in writes:
                assert "id-token" not in perms, f"{name}:{job_name}: no cloud access with it"


@pytest.mark.parametrize("name", ["ci.yml", "preview.yml"])
def test_concurrency_groups(name: str) -> None:
    assert "group" in load(name)["concurrency"]


def test_a_waiting_production_approval_does_not_hold_staging() -> None:
    """A workflow-level group is held by a run until its production job (waiting for a
    reviewer) finishes; the locks are per environment instead."""
    assert "concurrency" not in load("deploy.yml")
    jobs = load("deploy-environment.yml")["jobs"]
    assert jobs["deploy"]["concurrency"]["group"] == "deploy-environment-${{ inputs.environment }}"
    assert jobs["rollback"]["concurrency"]["group"].endswith("-rollback")


def test_ci_tests_job_runs_exactly_the_readme_test_command() -> None:
    """Not a pytest subset: the same script as .ci/run, PgBouncer and cache passes included."""
    job = load("ci.yml")["jobs"]["tests"]
    runs = [step["run"].strip() for step in steps(job) if "run" in step]
    assert runs[-1] == "bash scripts/test.sh"
    assert job["env"]["CI"] == "true"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    # The image tests build on the Dockerfile's official base where Docker Hub answers.
    pull = next(r for r in runs if "docker pull" in r)
    assert "ARG BASE_IMAGE=" in pull and "GROUNDWORK_TEST_BASE_IMAGE" in pull
    dockerfile = (ROOT / "services/app/Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:[^@\s]+@sha256:[0-9a-f]{64}$", dockerfile, re.M)


def test_preview_pins_the_deployed_image_and_reports_after_a_failed_preview() -> None:
    job = load("preview.yml")["jobs"]["preview"]
    pin = next(step for step in steps(job) if "deployed_image" in step.get("run", ""))
    assert "groundwork:imageUri" in pin["run"]
    names = [step.get("name", step.get("uses", "")) for step in steps(job)]
    preview_at = next(i for i, n in enumerate(names) if n.startswith("pulumi preview"))
    assert names.index(pin["name"]) < preview_at
    for step in steps(job)[preview_at + 1 :]:
        assert step.get("if") == "${{ !cancelled() }}", step  # verdicts matter most on failure


def test_the_rollback_job_runs_only_after_a_recorded_release_failed() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "groundwork_workflow_runner", ROOT / "tests" / "ops" / "workflow_runner.py"
    )
    assert spec and spec.loader
    runner = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = runner  # dataclasses look their module up
    spec.loader.exec_module(runner)
    condition = runner.condition
    rule = load("deploy-environment.yml")["jobs"]["rollback"]["if"]
    recorded = {"needs": {"deploy": {"outputs": {"recorded": "true"}}}}
    assert condition(rule, recorded, "failure")
    assert not condition(rule, recorded, "success")
    assert not condition(rule, {"needs": {"deploy": {"outputs": {}}}}, "failure")


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
    # The output is the registry digest of the pushed index, not the tag itself.
    assert 'image="${REPOSITORY}@${pushed}"' in push["run"]
    assert 'echo "image=${image}"' in push["run"]
    migrate = next(s for r, s in by_run.items() if "groundwork ops migrate" in r)
    up = next(s for r, s in by_run.items() if "pulumi up" in r)
    for step in (migrate, up):
        assert step["env"]["IMAGE"] == "${{ steps.push.outputs.image }}"
    assert '--image "${IMAGE}"' in migrate["run"]
    assert '--config "groundwork:imageUri=${IMAGE}"' in up["run"]
    assert "imageTag" not in up["run"]


def test_the_build_that_ships_records_an_sbom_and_provenance_pushed_unchanged() -> None:
    """Attestations live in the image index (docs.docker.com/build/metadata/attestations);
    the build that makes the deployed artifact asks for both, on a builder that supports
    them, and the deploy copies every manifest of the index without a rewrite."""
    build = next(
        s
        for s in steps(load("build-image.yml")["jobs"]["build"])
        if "buildx build" in s.get("run", "")
    )
    command = build["run"][build["run"].index("docker buildx build") :].split("services/app")[0]
    assert "--sbom=true" in command and "--provenance=mode=max" in command
    assert "type=oci,dest=" in command
    assert "--driver docker-container --use" in build["run"]
    push = next(
        s for s in steps(load("deploy-environment.yml")["jobs"]["deploy"]) if s.get("id") == "push"
    )
    assert "skopeo copy --all --preserve-digests" in push["run"]
    assert "docker push" not in push["run"] and "docker load" not in push["run"]


# --- OIDC subjects vs the trust in docs/bootstrap.md --------------------------------

BOOTSTRAP = ROOT / "docs" / "bootstrap.md"
IDENTITY_VARS = {
    # workflow variable -> the AWS role / GCP service account docs/bootstrap.md creates
    "AWS_PREVIEW_ROLE_ARN": "groundwork-preview",
    "AWS_DEPLOY_ROLE_ARN": "groundwork-deploy-{env}",
    "AWS_ROLLBACK_ROLE_ARN": "groundwork-rollback-{env}",
    "GCP_PREVIEW_SERVICE_ACCOUNT": "groundwork-preview",
    "GCP_DEPLOY_SERVICE_ACCOUNT": "groundwork-deploy-{env}",
    "GCP_ROLLBACK_SERVICE_ACCOUNT": "groundwork-rollback-{env}",
}


def oidc_subject(workflow: dict[str, Any], job: dict[str, Any], stack: str) -> str:
    """The `sub` GitHub puts in the job's OIDC token (GitHub docs, OpenID Connect
    reference, "Example subject claims"): a job that names an environment gets
    repo:O/R:environment:NAME whatever the event; otherwise a pull_request event gets
    repo:O/R:pull_request and anything else repo:O/R:ref:REF."""
    environment = job.get("environment")
    if environment:
        name = environment["name"] if isinstance(environment, dict) else environment
        name = name.replace("${{ matrix.stack }}", stack).replace(
            "${{ inputs.environment }}", stack
        )
        return f"repo:$OWNER/$REPO:environment:{name}"
    if "pull_request" in triggers(workflow):
        return "repo:$OWNER/$REPO:pull_request"
    return "repo:$OWNER/$REPO:ref:refs/heads/main"


def trusted_subjects(identity: str, env: str) -> set[str]:
    """Subjects docs/bootstrap.md lets assume the AWS role / impersonate the GCP account."""
    text = BOOTSTRAP.read_text(encoding="utf-8").replace("\\\n", " ")
    found: set[str] = set()
    for line in text.splitlines():
        for loop_env in ("staging", "production"):
            expanded = line.replace("$env", loop_env)
            name = identity.format(env=loop_env)
            if loop_env != env and "{env}" in identity:
                continue
            aws = re.search(
                rf"--role-name {re.escape(name)}\s.*trust ((?:\"[^\"]+\"\s*)+)", expanded
            )
            if aws:
                found |= set(re.findall(r"\"([^\"]+)\"", aws.group(1)))
            gcp_sa = re.match(rf"\s*sa \"?{re.escape(name)}\"? \"([^\"]+)\"", expanded)
            if gcp_sa:
                found.add(gcp_sa.group(1))
            binding = re.search(
                rf"{re.escape(name)}@\$PROJECT.*workloadIdentityUser.*subject/(\S+?)\"", expanded
            )
            if binding:
                found.add(binding.group(1))
    return found


def cloud_jobs() -> list[tuple[str, str, str, str]]:
    """(workflow, job, stack, identity variable) for every job that assumes an identity."""
    found = []
    for name, workflow in all_workflows().items():
        for job_name, job in workflow["jobs"].items():
            for step in steps(job):
                inputs = step.get("with", {})
                value = inputs.get("role-to-assume") or inputs.get("service_account") or ""
                match = re.search(r"vars\.(\w+)", value)
                if not match:
                    continue
                stacks = job.get("strategy", {}).get("matrix", {}).get("stack", [])
                for stack in stacks or ["staging", "production"]:
                    found.append((name, job_name, stack, match.group(1)))
    return found


@pytest.mark.parametrize(
    ("workflow", "job", "stack", "variable"),
    [c for c in cloud_jobs() if c[0] in ("preview.yml", "drift.yml", "deploy-environment.yml")],
)
def test_every_cloud_job_presents_a_subject_its_identity_trusts(
    workflow: str, job: str, stack: str, variable: str
) -> None:
    doc = load(workflow)
    subject = oidc_subject(doc, doc["jobs"][job], stack)
    if job == "rollback":
        subject = f"repo:$OWNER/$REPO:environment:{stack}-rollback"
    trusted = trusted_subjects(IDENTITY_VARS[variable], stack)
    assert trusted, f"docs/bootstrap.md creates no {IDENTITY_VARS[variable]}"
    assert subject in trusted, f"{workflow}:{job} ({stack}) presents {subject}, trusted: {trusted}"


def test_previews_run_in_per_stack_environments_without_a_branch_policy() -> None:
    """A pull request's ref is refs/pull/N/merge, no protected branch: the preview
    environments must exist with no branch policy, and carry the per-stack variables."""
    for workflow in ("preview.yml", "drift.yml"):
        job = next(j for j in load(workflow)["jobs"].values() if j.get("environment"))
        assert job["environment"]["name"] == "${{ matrix.stack }}-preview"
    text = BOOTSTRAP.read_text(encoding="utf-8")
    loop = re.search(
        r"for env in staging-preview production-preview; do\n.*?environments/\$env\".*?\n"
        r"(\{.*?\})\nJSON",
        text,
        re.S,
    )
    assert loop and '"deployment_branch_policy": null' in loop.group(1)
    assert '--env "$env-preview" --body "arn:aws:iam::$ACCOUNT:role/groundwork-preview"' in text
    assert "repo:$OWNER/$REPO:pull_request" not in text


def test_bootstrap_puts_the_stacks_in_the_region_the_workflows_log_in_to() -> None:
    """The committed stack files name an example region; the deploy logs in to ECR with
    AWS_REGION (a token for that region's registry only), so the bootstrap must set the
    stacks' region to the same $REGION."""
    text = BOOTSTRAP.read_text(encoding="utf-8")
    assert 'pulumi config set --stack "$stack" aws:region "$REGION"' in text
    assert 'pulumi config set --stack "$stack" gcp:region "$REGION"' in text
    assert 'gh variable set AWS_REGION --repo "$OWNER/$REPO" --body "$REGION"' in text
    login = next(
        s["run"]
        for s in steps(load("deploy-environment.yml")["jobs"]["deploy"])
        if s.get("id") == "push"
    )
    assert "aws ecr get-login-password |" in login
