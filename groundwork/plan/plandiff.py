"""``groundwork plan STACK --against BASE.json``: what the change replaces or destroys.

BASE.json is an earlier ``groundwork plan --json`` (e.g. of the target branch); its
``resources`` are compared with this plan's through the replacement model
(:mod:`groundwork.plan.replacement`). Output: a rich section for the terminal, a
Markdown block for the pull-request comment, and the ``diff`` object of the JSON plan.
Replacements and deletions of data-holding resources come first, in red, with what
would be lost and whether anything stops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text

from groundwork.plan.program import PlanError
from groundwork.plan.replacement import Action, Change, PlanDiff, Snapshot, diff
from groundwork.plan.report import read_plan_json

_MAX_LISTED = 40


@dataclass(frozen=True)
class BasePlan:
    path: Path
    label: str
    resources: list[Snapshot]


def load_base(path: Path) -> BasePlan:
    data = read_plan_json(path, where=f"--against {path}", rerun="on the base")
    if "resources" not in data:
        raise PlanError(
            f"--against {path}: the plan has no `resources` (written by a groundwork without "
            "the replacement model): re-run `groundwork plan --json` on the base with this version"
        )
    try:
        stack = data["stack"]
        resources = [Snapshot.from_json(r) for r in data["resources"]]
        label = f"{stack['name']} ({stack['cloud']})"
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(
            f"--against {path}: malformed plan JSON ({type(exc).__name__}: {exc})"
        ) from None
    return BasePlan(path=path, label=label, resources=resources)


def compare(base: BasePlan, head: list[Snapshot]) -> PlanDiff:
    return diff(base.resources, head)


def diff_json(base: BasePlan, result: PlanDiff) -> dict[str, Any]:
    return {"against": str(base.path), "base": base.label, **result.to_json()}


def _headline(change: Change) -> str:
    return f"{change.action.value.upper():<8}{change.type}  {change.name}"


def _details(change: Change) -> list[str]:
    lines = []
    if change.loses:
        lines.append(f"loses: {change.loses}")
    lines += [f"because {reason}" for reason in change.reasons]
    if change.destroys_data:
        lines += (
            [f"stopped by {g}" for g in change.guards]
            if change.guards
            else ["NOTHING stops it: no protect, no retainOnDelete, no deletion protection"]
        )
    lines += [f"warning: {w}" for w in change.warnings]
    lines += [f"not applied: {d}" for d in change.dropped]
    if change.action is Action.UPDATE and change.properties:
        lines.append(f"changes: {', '.join(change.properties)}")
    return lines


def render_diff(base: BasePlan, result: PlanDiff) -> Group:
    counts = result.counts()
    parts: list[Any] = [
        Text(
            f"Changes against {base.path} [{base.label}]: "
            + ", ".join(f"{n} {a}" for a, n in counts.items())
            + f"; {len(result.data_loss)} destroy data",
            style="bold",
        )
    ]
    if not result.changes:
        parts.append(Text("No changes.", style="green"))
    for change in result.changes[:_MAX_LISTED]:
        if change.destroys_data:
            style = "bold red"
        elif change.action in (Action.REPLACE, Action.DELETE) or change.dropped:
            style = "yellow"
        else:
            style = ""
        parts.append(Text(_headline(change), style=style))
        for line in _details(change):
            parts.append(Text(f"          {line}", style="red" if change.destroys_data else "dim"))
    if len(result.changes) > _MAX_LISTED:
        parts.append(Text(f"... and {len(result.changes) - _MAX_LISTED} more (see --json)"))
    parts.append(
        Text(
            "A model of the providers' replacement rules, not the engine: docs/plan-diff.md",
            style="dim",
        )
    )
    parts.append(Text(""))
    return Group(*parts)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def diff_markdown(base: BasePlan, result: PlanDiff) -> str:
    counts = result.counts()
    lines = [
        f"### Resources replaced or destroyed: {base.label}",
        "",
        ", ".join(f"{n} {a}" for a, n in counts.items())
        + f"; **{len(result.data_loss)} destroy data**",
        "",
    ]
    if result.data_loss:
        lines.append("> [!CAUTION]")
        lines.append("> This change replaces or deletes resources that hold data:")
        for change in result.data_loss:
            guard = "; ".join(change.guards) or "**nothing stops it**"
            lines.append(
                f"> - **{change.action.value}** `{change.type}` {change.name}: loses "
                f"{change.loses}. {'; '.join(change.reasons)} Guard: {guard}"
            )
        lines.append("")
    shown = [c for c in result.changes if c.action is not Action.UPDATE or c.dropped]
    if shown:
        lines += ["| Action | Resource | Type | Why |", "|---|---|---|---|"]
        for change in shown[:_MAX_LISTED]:
            why = "; ".join(change.reasons + change.warnings + change.dropped)
            lines.append(
                f"| {change.action.value} | {_md_escape(change.name)} | `{change.type}` | "
                f"{_md_escape(why) or '-'} |"
            )
        if len(shown) > _MAX_LISTED:
            lines.append(f"\n... and {len(shown) - _MAX_LISTED} more.")
    updates = counts[Action.UPDATE.value]
    if updates:
        lines += ["", f"{updates} resource(s) updated in place."]
    lines += [
        "",
        "A model of the providers' replacement rules (groundwork/plan/replacement.yaml), "
        "not the engine: docs/plan-diff.md.",
    ]
    return "\n".join(lines) + "\n"
