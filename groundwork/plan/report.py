"""A plan: inventory + policy verdicts + costs for one stack, and its JSON form.

The JSON schema is versioned (``schema_version``); ``plan.schema.json`` beside this
file is the contract, documented in docs/cost-model.md. Add fields freely; renaming
or removing one bumps the version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groundwork.plan.inventory import Inventory, Node, build_inventory
from groundwork.plan.policy import PolicyOutcome, PolicyRunner, evaluate
from groundwork.plan.pricing import CostReport, PriceTable, ResourceCost, estimate
from groundwork.plan.program import PlanError, PlannedRun, _program_location
from groundwork.plan.replacement import snapshots

SCHEMA_VERSION = 1


def read_plan_json(path: Path, *, where: str, rerun: str) -> dict[str, Any]:
    """The object of a ``groundwork plan --json`` file of this schema version.

    ``where`` starts every error message (the path, or the flag that named it) and
    ``rerun`` ends the one for another schema version (how to write a readable plan).
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(
            f"{where}: no such file (write one with `groundwork plan STACK --json`)"
        ) from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{where}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("kind") != "groundwork-plan":
        raise PlanError(f"{where}: not a `groundwork plan --json` output")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise PlanError(
            f"{where}: schema_version {version!r}, this groundwork reads "
            f"{SCHEMA_VERSION}: re-run `groundwork plan --json` {rerun}"
        )
    return data


SCHEMA_PATH = Path(__file__).with_name("plan.schema.json")


@dataclass
class PlanReport:
    planned: PlannedRun
    inventory: Inventory
    policy: PolicyOutcome
    costs: CostReport

    @property
    def exit_code(self) -> int:
        return 1 if self.policy.mandatory_failures else 0

    def costs_by_component(self) -> dict[str, list[ResourceCost]]:
        grouped: dict[str, list[ResourceCost]] = {}
        # Registration order varies run to run (the program is async): sort for stable output.
        for cost in sorted(self.costs.resources, key=lambda c: (c.type, c.name, c.urn)):
            grouped.setdefault(cost.component, []).append(cost)
        return dict(sorted(grouped.items()))


def build_report(
    planned: PlannedRun,
    *,
    policy_runner: PolicyRunner | None = None,
    table: PriceTable | None = None,
) -> PlanReport:
    inventory = build_inventory(planned.run)
    try:
        policy = evaluate(planned.run, planned.environment, policy_runner)
    except Exception as exc:
        where = _program_location(exc, planned.config.root)
        raise PlanError(
            f"the policy pack failed at {where}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    costs = estimate(
        planned.run,
        cloud=planned.cloud,
        region=planned.region,
        tier=planned.environment,
        components=inventory.component_of,
        table=table,
    )
    return PlanReport(planned=planned, inventory=inventory, policy=policy, costs=costs)


def _money(value: float) -> float:
    return round(value + 0.0, 2)


def _node_json(node: Node) -> dict[str, Any]:
    r = node.resource
    return {
        "name": r.name,
        "type": r.type,
        "urn": r.urn,
        "kind": "component" if r.is_component else "resource",
        "children": [_node_json(child) for child in node.children],
    }


def _cost_json(cost: ResourceCost) -> dict[str, Any]:
    return {
        "name": cost.name,
        "type": cost.type,
        "urn": cost.urn,
        "status": cost.status.value,
        "monthly": _money(cost.monthly),
        "note": cost.note,
        "items": [
            {
                "description": i.description,
                "quantity": round(i.quantity, 4),
                "unit": i.unit,
                "unit_price": i.unit_price,
                "monthly": _money(i.monthly),
            }
            for i in cost.items
        ],
    }


def to_json_dict(report: PlanReport) -> dict[str, Any]:
    planned, costs = report.planned, report.costs
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "groundwork-plan",
        "stack": {
            "name": planned.config.stack,
            "project": planned.config.project,
            "cloud": planned.cloud,
            "region": planned.region,
            "environment": planned.environment,
        },
        "config": dict(sorted(planned.config.values.items())),
        "notes": list(planned.config.notes),
        "inventory": {
            "resource_count": sum(report.inventory.counts_by_type().values()),
            "component_count": sum(1 for r in report.inventory.resources if r.is_component),
            "by_component": report.inventory.counts_by_component(),
            "by_type": report.inventory.counts_by_type(),
            "tree": [_node_json(root) for root in report.inventory.roots],
        },
        "verdicts": {
            "available": report.policy.available,
            "error": report.policy.error,
            "mandatory_failures": report.policy.mandatory_failures,
            "items": [
                {
                    "rule": v.rule,
                    "enforcement": v.enforcement,
                    "severity": v.severity,
                    "resource": v.resource,
                    "message": v.message,
                    "remediation": v.remediation,
                }
                for v in report.policy.verdicts
            ],
        },
        "costs": {
            "currency": costs.currency,
            "region": costs.region,
            "tier": costs.tier,
            "prices_as_of": costs.as_of,
            "prices_source": costs.source,
            "total_monthly": _money(costs.total),
            "components": [
                {
                    "name": name,
                    "monthly": _money(sum(c.monthly for c in group)),
                    "resources": [_cost_json(c) for c in group],
                }
                for name, group in report.costs_by_component().items()
            ],
            "not_priced": [
                {"name": c.name, "type": c.type, "component": c.component, "reason": c.note}
                for c in sorted(costs.not_priced, key=lambda c: (c.component, c.type, c.name))
            ],
            "assumptions": dict(sorted(costs.assumptions.items())),
        },
        # Inputs (secrets redacted) and options of every resource: what
        # `groundwork plan --against` compares (groundwork/plan/replacement.py).
        "resources": [s.to_json() for s in snapshots(planned.run)],
        "exit_code": report.exit_code,
    }


def to_json(report: PlanReport) -> str:
    return json.dumps(to_json_dict(report), indent=2, sort_keys=True)
