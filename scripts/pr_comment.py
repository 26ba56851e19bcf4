#!/usr/bin/env python3
"""Assemble the one pull-request comment of preview.yml (standard library only).

Usage: python3 scripts/pr_comment.py DIR --head-sha SHA --result RESULT --run-url URL > body.md

DIR holds what each preview job uploaded, per stack: ``cost-STACK.md`` (the offline cost
diff), ``replace-STACK.md`` (what the change replaces or destroys, docs/plan-diff.md),
``preview-STACK.txt`` (the whole `pulumi preview` output) and
``preview-STACK.status`` (its exit code). Any of them may be missing when a job failed
early; the comment still posts and says so.

GitHub refuses comments over 65,536 characters
(https://docs.github.com/en/rest/issues/comments: "body ... maximum 65536 characters";
the API answers 422 "Body is too long"). The policy verdicts, the part a reviewer needs
most when a preview fails, are extracted and kept whole (within their own budget); the
preview text gets what is left, keeping its end (the summary and the errors) and
linking to the run, whose artifacts hold the full log.

Each section is built by its own function and ``SECTIONS`` lists them in order: a new
section (a replacement diff, say) is one more function in that list.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAX_BODY = 65_536
MARKER = "<!-- groundwork-preview -->"
STACKS = ("staging", "production")
VERDICT_BUDGET = 12_000  # per stack
# Room for the fences, headings and the cut notice around each preview tail.
FRAME = 400


@dataclass
class Inputs:
    directory: Path
    head_sha: str
    result: str
    run_url: str

    def read(self, name: str) -> str | None:
        path = self.directory / name
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None


def policy_verdicts(preview: str) -> str:
    """The ``Policies:`` block of `pulumi preview` (each pack, each violation)."""
    lines = preview.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Policies:"]
    if not starts:
        return ""
    start = starts[0]
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            break  # the next top-level section (Resources:, Outputs:, Diagnostics:)
        block.append(line)
    return "\n".join(block).rstrip()


def tail(text: str, budget: int, run_url: str) -> str:
    if len(text) <= budget:
        return text
    keep = max(budget - 200, 0)
    cut = len(text) - keep
    return (
        f"... {cut:,} characters cut; the full log is an artifact of {run_url} ...\n"
        + text[len(text) - keep :]
    )


def header(inputs: Inputs) -> str:
    return (
        f"{MARKER}\n## Pulumi preview and cost diff for {inputs.head_sha}\n\n"
        f"Preview jobs: **{inputs.result}** (policy pack `policies` with "
        f"`policies/config/<stack>.json`). Full logs: [workflow run]({inputs.run_url}) "
        "(artifacts `log-preview-<stack>`).\n"
    )


def stack_summary(inputs: Inputs, stack: str) -> str:
    status = (inputs.read(f"preview-{stack}.status") or "").strip()
    if status == "0":
        verdict = "preview succeeded"
    elif status:
        verdict = f"**preview failed (exit {status})**"
    else:
        verdict = "**no preview output (the job failed before it; see the run log)**"
    cost = (inputs.read(f"cost-{stack}.md") or "_no cost diff (the job failed before it)_").strip()
    return f"\n### {stack}: {verdict}\n\n#### Monthly cost change\n{cost}\n"


def stack_verdicts(inputs: Inputs, stack: str) -> str:
    verdicts = policy_verdicts(inputs.read(f"preview-{stack}.txt") or "")
    if not verdicts:
        return ""
    return f"\n#### Policy verdicts\n```\n{tail(verdicts, VERDICT_BUDGET, inputs.run_url)}\n```\n"


def stack_replacements(inputs: Inputs, stack: str) -> str:
    """``replace-STACK.md``: what the change replaces or destroys (docs/plan-diff.md)."""
    diff = (inputs.read(f"replace-{stack}.md") or "").strip()
    return f"\n{diff}\n" if diff else ""


Section = Callable[[Inputs, str], str]
# Per-stack sections, in order; the preview text itself is added last, to fit.
SECTIONS: list[Section] = [stack_summary, stack_replacements, stack_verdicts]


def build(inputs: Inputs) -> str:
    parts = {stack: "".join(section(inputs, stack) for section in SECTIONS) for stack in STACKS}
    fixed = len(header(inputs)) + sum(len(p) for p in parts.values())
    previews = {stack: inputs.read(f"preview-{stack}.txt") for stack in STACKS}
    shown = [s for s in STACKS if previews[s]]
    budget = max((MAX_BODY - fixed) // max(len(shown), 1) - FRAME, 0)
    body = header(inputs)
    for stack in STACKS:
        body += parts[stack]
        text = previews[stack]
        if text:
            body += (
                "\n<details><summary>pulumi preview</summary>\n\n```\n"
                + tail(text.rstrip(), budget, inputs.run_url).replace("```", "'''")
                + "\n```\n</details>\n"
            )
    if len(body) > MAX_BODY:  # only if the verdicts alone overflow: keep the start
        body = body[: MAX_BODY - 100] + f"\n\n... cut; see {inputs.run_url}\n"
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--head-sha", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--run-url", required=True)
    args = parser.parse_args(argv)
    sys.stdout.write(build(Inputs(args.directory, args.head_sha, args.result, args.run_url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
