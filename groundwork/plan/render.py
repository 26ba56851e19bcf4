"""Human output of a plan: the component tree, the verdicts, the cost table."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console, Group
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from groundwork.plan.inventory import Node
from groundwork.plan.pricing import CostStatus, ResourceCost
from groundwork.plan.report import PlanReport

_MAX_NAMES = 4


def money(value: float, currency: str = "USD") -> str:
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{symbol}{value:,.2f}"


def short_type(type_token: str) -> str:
    """``aws:ec2/subnet:Subnet`` -> ``aws:ec2:Subnet``: enough to recognise it."""
    parts = type_token.split(":")
    if len(parts) == 3 and "/" in parts[1]:
        return f"{parts[0]}:{parts[1].split('/')[0]}:{parts[2]}"
    return type_token


def _cost_label(costs: list[ResourceCost], currency: str) -> str:
    statuses = {c.status for c in costs}
    if CostStatus.NOT_PRICED in statuses:
        priced = sum(c.monthly for c in costs)
        extra = f" + {money(priced, currency)}" if priced else ""
        return f"[yellow]not priced[/]{extra}"
    if statuses == {CostStatus.FREE}:
        return "[dim]free[/]"
    return f"[bold]{money(sum(c.monthly for c in costs), currency)}[/]/mo"


def _short_name(name: str, prefix: str) -> str:
    """Children are named ``f"{component}-suffix"``: show the suffix under the component."""
    return name[len(prefix) :] if prefix and name.startswith(prefix) and name != prefix else name


def _add_nodes(
    branch: Tree,
    nodes: list[Node],
    costs: dict[str, ResourceCost],
    currency: str,
    prefix: str = "",
) -> None:
    components = [c for c in nodes if c.resource.is_component]
    leaves = [c for c in nodes if not c.resource.is_component]
    for child in components:
        sub_costs = [costs[r.urn] for r in child.walk() if r.urn in costs]
        sub = branch.add(
            f"[bold cyan]{escape(child.resource.name)}[/] "
            f"[dim]{escape(child.resource.type)}[/]  {_cost_label(sub_costs, currency)}"
        )
        _add_nodes(sub, child.children, costs, currency, f"{child.resource.name}-")
    # Leaves of one type are folded into one line: a VPC's six subnets read better
    # as "Subnet x6" than as six lines.
    by_type: dict[str, list[Node]] = defaultdict(list)
    for leaf in leaves:
        by_type[leaf.resource.type].append(leaf)
    for type_token, group in sorted(by_type.items()):
        names = [_short_name(n.resource.name, prefix) for n in group]
        shown = ", ".join(names[:_MAX_NAMES]) + (", ..." if len(names) > _MAX_NAMES else "")
        group_costs = [costs[n.urn] for n in group if n.urn in costs]
        count = f" x{len(group)}" if len(group) > 1 else ""
        label = (
            f"{escape(short_type(type_token))}{count}  [dim]{escape(shown)}[/]  "
            f"{_cost_label(group_costs, currency)}"
        )
        notes = {c.note for c in group_costs if c.status is CostStatus.NOT_PRICED}
        if notes:
            label += f"  [yellow]({escape('; '.join(sorted(notes)))})[/]"
        branch.add(label)


def inventory_tree(report: PlanReport) -> Tree:
    planned = report.planned
    costs = {c.urn: c for c in report.costs.resources}
    currency = report.costs.currency
    root = Tree(
        f"[bold]{escape(planned.config.project)}/{escape(planned.config.stack)}[/]  "
        f"{planned.cloud} {escape(planned.region)} ({planned.environment})  "
        f"{sum(report.inventory.counts_by_type().values())} resources"
    )
    _add_nodes(root, report.inventory.roots, costs, currency)
    return root


def verdict_list(report: PlanReport) -> Group | Text:
    """Violations first (mandatory, then advisory), each with its rule and the fix.

    A list rather than a table: rule names and remediation hints are long and must
    stay readable (and greppable) in an 80-column CI log."""
    outcome = report.policy
    if not outcome.available:
        return Text(f"Policy verdicts unavailable: {outcome.error}", style="yellow")
    if not outcome.verdicts:
        return Text("Policy: no violations.", style="green")
    advisory = len(outcome.verdicts) - outcome.mandatory_failures
    lines: list[Text | Padding] = [
        Text.from_markup(
            f"[bold]Policy verdicts:[/] [red]{outcome.mandatory_failures} mandatory[/], "
            f"[yellow]{advisory} advisory[/]"
        )
    ]
    for v in outcome.verdicts:
        style = "bold red" if v.mandatory else "yellow"
        resource = v.resource.rsplit("::", 1)[-1] if v.resource else "(stack)"
        head = Text("  ")
        head.append(f"{v.enforcement.upper():<9}", style=style)
        head.append(f" {v.severity:<8} ")
        head.append(v.rule, style="bold")
        head.append(f"  on {resource}", style="cyan")
        lines.append(head)
        lines.append(Padding(Text(v.message), (0, 0, 0, 6)))
        if v.remediation:
            lines.append(Padding(Text(f"fix: {v.remediation}", style="dim"), (0, 0, 0, 6)))
    return Group(*lines)


def cost_table(report: PlanReport) -> Table:
    costs = report.costs
    table = Table(
        title=f"Estimated monthly cost ({costs.currency}, {costs.region}, "
        f"{costs.tier} usage assumptions; prices as of {costs.as_of})",
        title_justify="left",
    )
    table.add_column("component")
    table.add_column("resources", justify="right")
    table.add_column("not priced", justify="right")
    table.add_column("monthly", justify="right")
    counts = report.inventory.counts_by_component()
    for name, group in report.costs_by_component().items():
        missing = sum(1 for c in group if c.status is CostStatus.NOT_PRICED)
        table.add_row(
            escape(name),
            str(counts.get(name, len(group))),
            f"[yellow]{missing}[/]" if missing else "",
            money(sum(c.monthly for c in group), costs.currency),
        )
    table.add_section()
    table.add_row(
        "[bold]total[/]",
        str(sum(counts.values())),
        f"[yellow]{len(costs.not_priced)}[/]" if costs.not_priced else "",
        f"[bold]{money(costs.total, costs.currency)}[/]",
    )
    return table


def not_priced_text(report: PlanReport) -> Text | None:
    missing = report.costs.not_priced
    if not missing:
        return None
    lines = [f"Not priced ({len(missing)}; excluded from the total, not counted as zero):"]
    lines += [f"  - {c.type} {c.name} [{c.component}]: {c.note}" for c in missing]
    return Text("\n".join(lines), style="yellow")


def render(report: PlanReport, console: Console) -> None:
    parts: list[object] = []
    for note in report.planned.config.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    parts.append(inventory_tree(report))
    parts.append(Text(""))
    parts.append(verdict_list(report))
    parts.append(Text(""))
    parts.append(cost_table(report))
    missing = not_priced_text(report)
    if missing is not None:
        parts.append(missing)
    parts.append(Text("Usage assumptions and formulas: docs/cost-model.md", style="dim"))
    if report.exit_code:
        parts.append(
            Text(
                f"FAILED: {report.policy.mandatory_failures} mandatory policy violation(s).",
                style="bold red",
            )
        )
    console.print(Group(*parts))  # type: ignore[arg-type]
