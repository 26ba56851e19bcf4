"""review.yml: who gets a review stack, and its destroy job run with the workflow runner,
a fake `pulumi` (tests/ops/fake_pulumi.py, the backend's stack list in stacks.json) and
a fake `gh` answering `gh pr view N --json state --jq .state`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from .workflow_runner import JobResult, condition, run_job

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "review.yml"
HERE = Path(__file__).resolve().parent
FAKE_GH = '#!/bin/sh\n[ "$3" = 5 ] && echo OPEN || echo CLOSED\n'
RECENT = "2099-01-01T00:00:00Z"  # never idle beyond the TTL


def document() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def triggers() -> dict[str, Any]:
    doc = document()
    return doc.get("on", doc.get(True))


def destroy(
    tmp_path: Path, event: dict[str, Any], stacks: list[str]
) -> tuple[JobResult, list[str]]:
    state = tmp_path / "pulumi"
    state.mkdir()
    (state / "graph.json").write_text(json.dumps({"resources": [], "outputs": {}}))
    (state / "stacks.json").write_text(
        json.dumps([{"name": name, "lastUpdate": RECENT} for name in stacks])
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_pulumi.py"}" "$@"\n'
    )
    (bin_dir / "gh").write_text(FAKE_GH)
    for tool in ("pulumi", "gh"):
        (bin_dir / tool).chmod(0o755)
    workdir = tmp_path / "destroy"
    (workdir / "scripts").mkdir(parents=True)
    (workdir / "scripts" / "review_stacks.py").write_text(
        (ROOT / "scripts" / "review_stacks.py").read_text()
    )
    context = {
        "github": {"sha": "0" * 40, "run_id": 7, "repository": "acme/groundwork", **event},
        "vars": {"GROUNDWORK_CLOUD": "aws", "PULUMI_BACKEND_URL": "file:///tmp/x"},
    }
    job = document()["jobs"]["destroy"]
    assert condition(job["if"], context, "success"), "the destroy job would not run"
    result = run_job(
        WORKFLOW,
        "destroy",
        context=context,
        workdir=workdir,
        artifacts=tmp_path / "artifacts",
        path_prefix=[bin_dir],
        base_env={"PATH": os.environ["PATH"], "FAKE_PULUMI_DIR": str(state), "HOME": str(tmp_path)},
    )
    log = (state / "calls.log").read_text().splitlines()
    return result, log


def closed(number: int, repo: str = "acme/groundwork") -> dict[str, Any]:
    return {
        "event_name": "pull_request",
        "event": {
            "action": "closed",
            "pull_request": {"number": number, "head": {"repo": {"full_name": repo}}},
        },
    }


def test_closing_a_pull_request_destroys_its_stack_and_removes_it(tmp_path: Path) -> None:
    result, calls = destroy(tmp_path, closed(12), ["staging", "review-pr-12", "review-pr-120"])
    assert result.status == "success", [s.log for s in result.steps if s.returncode]
    destroyed = [c for c in calls if c.startswith("destroy")]
    assert destroyed == [
        "destroy --stack review-pr-12 --yes --non-interactive --suppress-progress --remove"
    ]


def test_closing_a_pull_request_without_a_stack_destroys_nothing(tmp_path: Path) -> None:
    result, calls = destroy(tmp_path, closed(13), ["staging", "production"])
    assert result.status == "success"
    assert not any(c.startswith("destroy") for c in calls)


def test_the_sweeper_destroys_stacks_of_closed_pull_requests_only(tmp_path: Path) -> None:
    result, calls = destroy(
        tmp_path,
        {"event_name": "schedule", "event": {}},
        ["staging", "production", "review-pr-5", "review-pr-6"],
    )
    assert result.status == "success", [s.log for s in result.steps if s.returncode]
    destroyed = [c.split()[2] for c in calls if c.startswith("destroy")]
    assert destroyed == ["review-pr-6"]  # 5 is open and recent


def test_fork_pull_requests_and_unlabelled_ones_get_no_stack_or_credentials() -> None:
    """`pull_request` (fork runs get no OIDC token nor secrets), never
    `pull_request_target`; the gate needs the label, the same repository and a user
    with write access; every credentialed job depends on the gate or is the destroy."""
    assert "pull_request_target" not in triggers()
    assert set(triggers()["pull_request"]["types"]) == {
        "labeled",
        "synchronize",
        "reopened",
        "closed",
    }
    jobs = document()["jobs"]
    gate = jobs["gate"]["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in gate
    assert "contains(github.event.pull_request.labels.*.name, 'review-stack')" in gate
    assert "github.event.action != 'closed'" in gate
    assert "collaborators/${SENDER}/permission" in jobs["gate"]["steps"][0]["run"]
    assert "admin|maintain|write)" in jobs["gate"]["steps"][0]["run"]
    assert jobs["build"]["needs"] == "gate" and jobs["deploy"]["needs"] == "build"
    assert jobs["deploy"]["with"]["review-pr"] == "${{ github.event.pull_request.number }}"
    # A fork's close event does not reach the cloud either.
    fork = {**closed(9, repo="mallory/groundwork"), "repository": "acme/groundwork"}
    own = {**closed(9), "repository": "acme/groundwork"}
    assert not condition(jobs["destroy"]["if"], {"github": fork}, "success")
    assert condition(jobs["destroy"]["if"], {"github": own}, "success")
