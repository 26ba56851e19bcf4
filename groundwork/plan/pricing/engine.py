"""The engine: every custom resource of a run to exactly one priced / free / not-priced
cost, through the pricer registered for its type."""

from __future__ import annotations

from collections.abc import Iterable

from groundwork.mockrun import ProgramRun, RecordedResource
from groundwork.plan.pricing.loader import PriceTable, load_price_table
from groundwork.plan.pricing.model import (
    PRICERS,
    CostReport,
    CostStatus,
    Free,
    NotPriced,
    PricingContext,
    ResourceCost,
)


def price_resource(
    resource: RecordedResource, ctx: PricingContext, table: PriceTable, component: str
) -> ResourceCost:
    cost = ResourceCost(
        urn=resource.urn,
        type=resource.type,
        name=resource.name,
        component=component,
        status=CostStatus.PRICED,
    )
    rule = PRICERS.get(resource.type)
    if rule is None:
        reason = table.free_reason(resource.type)
        if reason is not None:
            cost.status, cost.note = CostStatus.FREE, reason
        else:
            cost.status, cost.note = CostStatus.NOT_PRICED, "no pricing rule for this type"
        return cost
    try:
        cost.items = rule(resource, ctx)
    except Free as free:
        cost.status, cost.note = CostStatus.FREE, str(free)
    except NotPriced as missing:
        cost.status, cost.note = CostStatus.NOT_PRICED, str(missing)
    except (KeyError, TypeError, ValueError) as exc:
        # A malformed input must surface as "not priced", never as zero.
        cost.status, cost.note = CostStatus.NOT_PRICED, f"cannot read inputs: {exc!r}"
    return cost


def estimate(
    run: ProgramRun,
    *,
    cloud: str,
    region: str,
    tier: str,
    components: dict[str, str] | None = None,
    table: PriceTable | None = None,
    resources: Iterable[RecordedResource] | None = None,
) -> CostReport:
    """Price every custom resource of ``run``; ``components`` maps URN -> component."""
    table = table or load_price_table()
    prices = table.region(cloud, region)
    usage = table.assumptions(tier)
    ctx = PricingContext(
        run=run,
        prices=prices,
        usage=usage,
        hours=table.hours_per_month,
        seconds=table.seconds_per_month,
        measured_logs=dict(table.data.get("measured_logs") or {}),
        measured_traffic=dict(table.data.get("measured_traffic") or {}),
    )
    components = components or {}
    costs = [
        price_resource(r, ctx, table, components.get(r.urn, "(stack)"))
        for r in (resources if resources is not None else run.resources)
        if r.custom
    ]
    return CostReport(
        currency=table.currency,
        cloud=cloud,
        region=region,
        tier=tier,
        as_of=str(prices.get("as_of", "")),
        source=str(prices.get("source", "")),
        resources=costs,
        assumptions=usage,
    )
