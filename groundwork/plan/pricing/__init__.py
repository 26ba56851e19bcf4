"""The cost model: resource type + recorded inputs -> estimated monthly cost.

Prices come from the bundled, dated table (``prices.yaml``); usage a resource graph
cannot show (GB through a NAT gateway, log volume, requests) comes from the table's
per-tier ``assumptions``. Every resource ends in exactly one state:

* ``priced``: one or more line items (quantity x unit price) summed to a monthly cost;
* ``free``: a stated price of zero, with the reason (IAM roles, subnets, ...);
* ``not_priced``: no rule or no price for it (an unknown type, an instance class
  missing from the table); listed in the report, never silently counted as zero.

docs/cost-model.md explains each formula and assumption.

The package keeps each job in one module: ``loader`` (the table), ``model`` (line items,
reports, the ``@pricer`` registry), ``pricers_aws`` / ``pricers_gcp`` (one function per
resource type, registered by its decorator) and ``engine`` (price a run).
"""

from __future__ import annotations

from groundwork.plan.pricing import pricers_aws, pricers_gcp  # noqa: F401 (registers pricers)
from groundwork.plan.pricing.engine import estimate, price_resource
from groundwork.plan.pricing.loader import (
    PRICES_PATH,
    PriceTable,
    PriceTableError,
    load_price_table,
)
from groundwork.plan.pricing.model import (
    PRICERS,
    CostReport,
    CostStatus,
    Free,
    LineItem,
    NotPriced,
    Pricer,
    PricingContext,
    ResourceCost,
    pricer,
)

__all__ = [
    "PRICERS",
    "PRICES_PATH",
    "CostReport",
    "CostStatus",
    "Free",
    "LineItem",
    "NotPriced",
    "PriceTable",
    "PriceTableError",
    "Pricer",
    "PricingContext",
    "ResourceCost",
    "estimate",
    "load_price_table",
    "price_resource",
    "pricer",
]
