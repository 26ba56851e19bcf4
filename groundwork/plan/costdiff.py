"""``groundwork cost-diff BASE.json HEAD.json``: the monthly cost change as Markdown.

Both files are ``groundwork plan --json`` outputs (schema_version 1). The table lists
every component present in either plan, its base and head monthly cost and the
change, then the total; resources that are not priced are called out because a
change there is invisible in the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundwork.plan.program import PlanError
from groundwork.plan.report import read_plan_json


@dataclass(frozen=True)
class PlanCosts:
    label: str
    currency: str
    total: float
    components: dict[str, float]
    not_priced: set[tuple[str, str]]


def load_plan_costs(path: Path) -> PlanCosts:
    data = read_plan_json(path, where=str(path), rerun="with this version")
    try:
        costs: dict[str, Any] = data["costs"]
        stack = data["stack"]
        return PlanCosts(
            label=f"{stack['name']} ({stack['cloud']})",
            currency=str(costs["currency"]),
            total=float(costs["total_monthly"]),
            components={str(c["name"]): float(c["monthly"]) for c in costs["components"]},
            not_priced={(str(n["type"]), str(n["name"])) for n in costs["not_priced"]},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{path}: malformed plan JSON ({type(exc).__name__}: {exc})") from None


def _money(value: float) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _change(base: float, head: float) -> str:
    delta = head - base
    if abs(delta) < 0.005:
        return "0.00"
    sign = "+" if delta > 0 else "-"
    pct = f" ({sign}{abs(delta) / base * 100:.1f}%)" if base else " (new)"
    return f"{sign}${abs(delta):,.2f}{pct}"


def cost_diff_markdown(base: PlanCosts, head: PlanCosts) -> str:
    if base.currency != head.currency:
        raise PlanError(f"currencies differ: base {base.currency}, head {head.currency}")
    lines = [
        f"### Monthly cost change: {base.label} -> {head.label}",
        "",
        "| Component | Base | Head | Change |",
        "|---|---:|---:|---:|",
    ]
    for name in sorted(set(base.components) | set(head.components)):
        before = base.components.get(name)
        after = head.components.get(name)
        lines.append(
            f"| {name} | {_money(before) if before is not None else '-'} | "
            f"{_money(after) if after is not None else '-'} | "
            f"{_change(before or 0.0, after or 0.0)} |"
        )
    lines.append(
        f"| **Total** | **{_money(base.total)}** | **{_money(head.total)}** | "
        f"**{_change(base.total, head.total)}** |"
    )
    added = sorted(head.not_priced - base.not_priced)
    if head.not_priced:
        lines += [
            "",
            f"{len(head.not_priced)} resource(s) in head are not priced and are "
            "excluded from these totals.",
        ]
        lines += [f"- newly not priced: `{t}` {n}" for t, n in added]
    lines += [
        "",
        "Estimates from the bundled price table and the usage assumptions in docs/cost-model.md.",
    ]
    return "\n".join(lines) + "\n"
