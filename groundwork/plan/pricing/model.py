"""What a price is: line items, per-resource costs, the report, and the pricer registry
(``@pricer`` on each function of pricers_aws.py / pricers_gcp.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from groundwork.mockrun import ProgramRun, RecordedResource


class CostStatus(StrEnum):
    PRICED = "priced"
    FREE = "free"
    NOT_PRICED = "not_priced"


@dataclass(frozen=True)
class LineItem:
    """One billed dimension: ``quantity`` ``unit``s at ``unit_price`` a month."""

    description: str
    quantity: float
    unit: str
    unit_price: float

    @property
    def monthly(self) -> float:
        return self.quantity * self.unit_price


@dataclass
class ResourceCost:
    urn: str
    type: str
    name: str
    component: str
    status: CostStatus
    items: list[LineItem] = field(default_factory=list)
    note: str = ""

    @property
    def monthly(self) -> float:
        return sum(item.monthly for item in self.items)


@dataclass
class CostReport:
    currency: str
    cloud: str
    region: str
    tier: str
    as_of: str
    source: str
    resources: list[ResourceCost]
    assumptions: dict[str, float]

    @property
    def total(self) -> float:
        return sum(r.monthly for r in self.resources)

    def by_component(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for cost in self.resources:
            totals[cost.component] = totals.get(cost.component, 0.0) + cost.monthly
        return dict(sorted(totals.items()))

    @property
    def not_priced(self) -> list[ResourceCost]:
        return [r for r in self.resources if r.status is CostStatus.NOT_PRICED]


class Free(Exception):
    """Raised by a pricer when this particular resource costs nothing."""


class NotPriced(Exception):
    """Raised by a pricer when the table cannot price this resource."""


@dataclass
class PricingContext:
    run: ProgramRun
    prices: dict[str, Any]
    usage: dict[str, float]
    hours: float
    seconds: float
    # Allowances granted once per project/account, consumed as resources are priced.
    allowances: dict[str, float] = field(default_factory=dict)
    # Measured log volumes per process (prices.yaml `measured_logs`): not per tier.
    measured_logs: dict[str, Any] = field(default_factory=dict)
    # Measured traffic facts (prices.yaml `measured_traffic`): not per tier.
    measured_traffic: dict[str, Any] = field(default_factory=dict)

    def price(self, *path: str) -> Any:
        node: Any = self.prices
        for part in path:
            if not isinstance(node, dict) or part not in node:
                raise NotPriced(f"no price for {'.'.join(path)} in the table")
            node = node[part]
        return node

    def assume(self, key: str) -> float:
        if key not in self.usage:
            raise NotPriced(f"usage assumption {key!r} missing from the table")
        return self.usage[key]

    def assumed(
        self, what: str, assumption: str, unit: str, *price: str, per: float = 1
    ) -> LineItem:
        """A line billed on assumed usage: the ``assumption`` counted in ``per`` ``unit``s
        (10,000 requests for a per-10k price), at the table's ``price``."""
        quantity = self.assume(assumption)
        if per != 1:
            quantity /= per
        return LineItem(what, quantity, unit, self.price(*price))


# Pub/Sub bills at least 1,000 bytes per message, so 1 GiB published is at most this many
# jobs: the model's job volume (docs/cost-model.md, the SQS paragraph).
JOBS_PER_PUBSUB_GIB = 2**30 / 1000


# A job is submitted once and its result read at least once (a client polling reads it
# more often; the floor counts one read).
REQUESTS_PER_JOB = 2


def jobs_per_month(usage: dict[str, float]) -> float:
    """The model's job volume: the Pub/Sub figure (`pubsub_gib_per_topic`)."""
    return usage["pubsub_gib_per_topic"] * JOBS_PER_PUBSUB_GIB


def api_requests_per_month(usage: dict[str, float]) -> float:
    """Requests the API receives a month: `api_million_requests`, the one owner of that
    fact (WAF, Cloud Armor, the ALB's capacity units, the api's log group), but never
    fewer than two per job: its POST and one GET of its result, the only way a result
    leaves the API (services/app: `GET /v1/jobs/{id}`; there is no callback)."""
    return max(usage["api_million_requests"] * 1e6, REQUESTS_PER_JOB * jobs_per_month(usage))


Pricer = Callable[[RecordedResource, PricingContext], list[LineItem]]
PRICERS: dict[str, Pricer] = {}


def pricer(*type_tokens: str) -> Callable[[Pricer], Pricer]:
    def register(fn: Pricer) -> Pricer:
        for token in type_tokens:
            PRICERS[token] = fn
        return fn

    return register


def _num(value: Any, default: float = 0.0) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _hourly(ctx: PricingContext, what: str, rate: float, count: float = 1) -> LineItem:
    return LineItem(what, count * ctx.hours, "hours", rate)
