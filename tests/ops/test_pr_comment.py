"""scripts/pr_comment.py: the preview comment always posts, whole verdicts, <= 65,536."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pr_comment.py"
RUN = "https://github.com/acme/groundwork/actions/runs/42"
# The shape `pulumi preview` prints a policy violation in (Policies: section).
VERDICTS = """Policies:
    \u274c groundwork-policies@v0.0.1 (local: policies)
        - [mandatory]  aws-s3-bucket-encrypted  (aws:s3/bucketV2:BucketV2: logs)
          S3 buckets must be encrypted with KMS.
        - [advisory]  aws-rds-multi-az  (aws:rds/instance:Instance: postgres)
          Single-AZ database.
"""


def build(directory: Path, result: str = "failure") -> str:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(directory),
            "--head-sha",
            "abc123",
            "--result",
            result,
            "--run-url",
            RUN,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_huge_previews_fit_with_every_verdict_and_a_link_to_the_full_log(tmp_path: Path) -> None:
    for stack in ("staging", "production"):
        noise = "".join(
            f"    ~ aws:ecs/taskDefinition:TaskDefinition {stack}-{i} update\n" for i in range(5000)
        )
        (tmp_path / f"preview-{stack}.txt").write_text(
            f"Previewing update ({stack}):\n{noise}\n{VERDICTS}\nResources:\n    ~ 5000 to update\n"
        )
        (tmp_path / f"preview-{stack}.status").write_text("255\n")
        (tmp_path / f"cost-{stack}.md").write_text("| total | +$0.00 |\n")
    assert (tmp_path / "preview-staging.txt").stat().st_size > 2 * 65_536
    body = build(tmp_path)
    assert len(body) <= 65_536
    assert body.startswith("<!-- groundwork-preview -->")
    assert body.count("[mandatory]  aws-s3-bucket-encrypted") >= 2  # each stack's verdicts whole
    assert "preview failed (exit 255)" in body
    assert "characters cut; the full log is an artifact of " + RUN in body
    assert "5000 to update" in body  # the tail (summary) survives the cut


def test_a_job_that_failed_early_still_gets_its_section(tmp_path: Path) -> None:
    (tmp_path / "cost-staging.md").write_text("cost table")
    body = build(tmp_path)
    assert "### staging: **no preview output" in body
    assert "cost table" in body
    assert "### production: **no preview output" in body
    assert "_no cost diff" in body
    assert RUN in body


def test_a_fence_in_the_preview_cannot_close_the_code_block(tmp_path: Path) -> None:
    (tmp_path / "preview-staging.txt").write_text("before\n```\nafter\n")
    (tmp_path / "preview-staging.status").write_text("0")
    body = build(tmp_path, "success")
    assert "staging: preview succeeded" in body
    section = body.split("<summary>pulumi preview</summary>", 1)[1]
    assert section.count("```") == 2


def test_each_stack_shows_its_replacement_diff_after_its_cost_diff(tmp_path: Path) -> None:
    # replace-STACK.md is `groundwork plan STACK --against base.json --markdown`.
    (tmp_path / "cost-production.md").write_text("| total | +$0.00 |\n")
    (tmp_path / "replace-production.md").write_text(
        "### Resources replaced or destroyed: production (gcp)\n\n> [!CAUTION]\n"
    )
    body = build(tmp_path)
    production = body[body.index("### production") :]
    assert production.index("| total | +$0.00 |") < production.index(
        "### Resources replaced or destroyed: production (gcp)"
    )
    assert "Resources replaced or destroyed" not in body[: body.index("### production")]
