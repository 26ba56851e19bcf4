"""``groundwork prices refresh``: update the AWS part of the price table from the
AWS Price List API (``pricing.get_products`` through boto3).

Each table entry is fetched with one query (service code + attribute filters, the
usage type matched by suffix so region prefixes such as ``USE1-`` do not matter);
the first non-zero on-demand price wins. An entry with no match keeps its old value
and is reported, so a renamed SKU never turns into a zero. The region's ``as_of``
and ``source`` are rewritten only when at least one price came from the API.

GCP prices are not covered: the Cloud Billing Catalog API needs an API key and
maps poorly to these entries; edit them by hand (docs/cost-model.md).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from groundwork.plan.pricing import PRICES_PATH
from groundwork.plan.program import PlanError

# The Price List API is served from us-east-1 (also ap-south-1, eu-central-1).
PRICING_ENDPOINT_REGION = "us-east-1"
API_SOURCE = "AWS Price List API (pricing.get_products), on-demand"


@dataclass(frozen=True)
class PriceQuery:
    """Where one table value lives and how to find it in the Price List API."""

    path: tuple[str, ...]
    service: str
    filters: dict[str, str]
    usagetype_suffix: str = ""
    # Some prices are quoted per another unit (per 10k requests vs per request).
    multiplier: float = 1.0


@dataclass
class RefreshResult:
    updated: dict[str, tuple[float, float]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def queries_for(region_prices: dict[str, Any]) -> list[PriceQuery]:
    """The queries for every AWS entry the table holds (instance classes included)."""
    q: list[PriceQuery] = [
        PriceQuery(
            ("nat_gateway", "hourly"),
            "AmazonEC2",
            {"productFamily": "NAT Gateway"},
            "NatGateway-Hours",
        ),
        PriceQuery(
            ("nat_gateway", "per_gb_processed"),
            "AmazonEC2",
            {"productFamily": "NAT Gateway"},
            "NatGateway-Bytes",
        ),
        PriceQuery(("public_ipv4", "hourly"), "AmazonVPC", {}, "PublicIPv4:InUseAddress"),
        PriceQuery(
            ("alb", "hourly"),
            "AWSELB",
            {"productFamily": "Load Balancer-Application"},
            "LoadBalancerUsage",
        ),
        PriceQuery(
            ("alb", "lcu_hourly"),
            "AWSELB",
            {"productFamily": "Load Balancer-Application"},
            "LCUUsage",
        ),
        PriceQuery(
            ("vpc_interface_endpoint", "hourly_per_az"),
            "AmazonVPC",
            {"productFamily": "VpcEndpoint"},
            "VpcEndpoint-Hours",
        ),
        PriceQuery(
            ("vpc_interface_endpoint", "per_gb_processed"),
            "AmazonVPC",
            {"productFamily": "VpcEndpoint"},
            "VpcEndpoint-Bytes",
        ),
        PriceQuery(
            ("fargate", "x86_64", "vcpu_hourly"), "AmazonECS", {}, "Fargate-vCPU-Hours:perCPU"
        ),
        PriceQuery(("fargate", "x86_64", "gb_hourly"), "AmazonECS", {}, "Fargate-GB-Hours"),
        PriceQuery(
            ("fargate", "arm64", "vcpu_hourly"), "AmazonECS", {}, "Fargate-ARM-vCPU-Hours:perCPU"
        ),
        PriceQuery(("fargate", "arm64", "gb_hourly"), "AmazonECS", {}, "Fargate-ARM-GB-Hours"),
        PriceQuery(
            ("fargate", "spot_x86_64", "vcpu_hourly"),
            "AmazonECS",
            {},
            "SpotUsage:Fargate-vCPU-Hours:perCPU",
        ),
        PriceQuery(
            ("fargate", "spot_x86_64", "gb_hourly"), "AmazonECS", {}, "SpotUsage:Fargate-GB-Hours"
        ),
        PriceQuery(
            ("fargate", "spot_arm64", "vcpu_hourly"),
            "AmazonECS",
            {},
            "SpotUsage:Fargate-ARM-vCPU-Hours:perCPU",
        ),
        PriceQuery(
            ("fargate", "spot_arm64", "gb_hourly"),
            "AmazonECS",
            {},
            "SpotUsage:Fargate-ARM-GB-Hours",
        ),
        PriceQuery(
            ("rds_postgres", "storage_gb_month", "gp3"),
            "AmazonRDS",
            {"databaseEngine": "PostgreSQL", "deploymentOption": "Single-AZ"},
            "RDS:GP3-Storage",
        ),
        PriceQuery(
            ("rds_postgres", "storage_gb_month", "gp2"),
            "AmazonRDS",
            {"databaseEngine": "PostgreSQL", "deploymentOption": "Single-AZ"},
            "RDS:GP2-Storage",
        ),
        PriceQuery(("rds_postgres", "backup_gb_month"), "AmazonRDS", {}, "RDS:ChargedBackupUsage"),
        PriceQuery(("rds_postgres", "proxy_vcpu_hourly"), "AmazonRDS", {}, "RDS:ProxyUsage"),
        PriceQuery(
            ("cloudwatch", "logs_ingestion_gb"), "AmazonCloudWatch", {}, "DataProcessing-Bytes"
        ),
        PriceQuery(
            ("cloudwatch", "logs_storage_gb_month"), "AmazonCloudWatch", {}, "TimedStorage-ByteHrs"
        ),
        PriceQuery(
            ("cloudwatch", "alarm_metric_month"), "AmazonCloudWatch", {}, "CW:AlarmMonitorUsage"
        ),
        PriceQuery(
            ("cloudwatch", "dashboard_month"), "AmazonCloudWatch", {}, "DashboardsUsageHour-Basic"
        ),
        PriceQuery(
            ("secrets_manager", "secret_month"),
            "AWSSecretsManager",
            {},
            "AWSSecretsManager-Secrets",
        ),
        PriceQuery(
            ("secrets_manager", "per_10k_api_calls"),
            "AWSSecretsManager",
            {},
            "AWSSecretsManager-APIRequest",
            10_000,
        ),
        PriceQuery(("kms", "key_month"), "awskms", {}, "KMS-Keys"),
        PriceQuery(("kms", "per_10k_requests"), "awskms", {}, "KMS-Requests", 10_000),
        PriceQuery(("waf", "web_acl_month"), "awswaf", {}, "WebACL"),
        PriceQuery(("waf", "rule_month"), "awswaf", {}, "Rule"),
        PriceQuery(("waf", "per_million_requests"), "awswaf", {}, "Request", 1_000_000),
        PriceQuery(
            ("s3", "standard_gb_month"),
            "AmazonS3",
            {"storageClass": "General Purpose"},
            "TimedStorage-ByteHrs",
        ),
        PriceQuery(("ecr", "storage_gb_month"), "AmazonECR", {}, "TimedStorage-ByteHrs"),
    ]
    rds = region_prices.get("rds_postgres", {}).get("instance_hourly", {})
    for cls in sorted(rds):
        q.append(
            PriceQuery(
                ("rds_postgres", "instance_hourly", cls),
                "AmazonRDS",
                {
                    "instanceType": cls,
                    "databaseEngine": "PostgreSQL",
                    "deploymentOption": "Single-AZ",
                },
            )
        )
    cache = region_prices.get("elasticache", {}).get("node_hourly", {})
    for node in sorted(cache):
        q.append(
            PriceQuery(
                ("elasticache", "node_hourly", node),
                "AmazonElastiCache",
                {"instanceType": node, "cacheEngine": "Redis"},
            )
        )
    brokers = region_prices.get("amazon_mq_rabbitmq", {}).get("node_hourly", {})
    for broker in sorted(brokers):
        q.append(
            PriceQuery(
                ("amazon_mq_rabbitmq", "node_hourly", broker),
                "AmazonMQ",
                {"instanceType": broker, "brokerEngine": "RabbitMQ"},
            )
        )
    return q


def _products(client: Any, query: PriceQuery, region: str) -> Iterator[dict[str, Any]]:
    filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    filters += [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in query.filters.items()]
    kwargs: dict[str, Any] = {
        "ServiceCode": query.service,
        "Filters": filters,
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    while True:
        page = client.get_products(**kwargs)
        for item in page.get("PriceList", []):
            yield json.loads(item) if isinstance(item, str) else item
        token = page.get("NextToken")
        if not token:
            return
        kwargs["NextToken"] = token


def _on_demand_price(product: dict[str, Any]) -> float | None:
    for term in (product.get("terms", {}).get("OnDemand") or {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            usd = float((dimension.get("pricePerUnit") or {}).get("USD", "0") or 0)
            if usd > 0:
                return usd
    return None


def find_price(client: Any, query: PriceQuery, region: str) -> float | None:
    for product in _products(client, query, region):
        usagetype = str(product.get("product", {}).get("attributes", {}).get("usagetype", ""))
        if query.usagetype_suffix and not usagetype.endswith(query.usagetype_suffix):
            continue
        price = _on_demand_price(product)
        if price is not None:
            return round(price * query.multiplier, 10)
    return None


def _set(node: dict[str, Any], path: tuple[str, ...], value: float) -> float | None:
    for part in path[:-1]:
        node = node.setdefault(part, {})
    old = node.get(path[-1])
    node[path[-1]] = value
    return float(old) if old is not None else None


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def default_client() -> Any:
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        session = boto3.Session()
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        raise PlanError(f"cannot read AWS credentials: {exc}") from None
    if credentials is None:
        raise PlanError(
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY (pricing:GetProducts permission) and re-run; "
            "the bundled table is unchanged"
        )
    return session.client("pricing", region_name=PRICING_ENDPOINT_REGION)


def refresh_aws_prices(
    *,
    region: str = "us-east-1",
    path: Path = PRICES_PATH,
    output: Path | None = None,
    client_factory: Callable[[], Any] = default_client,
    today: dt.date | None = None,
) -> RefreshResult:
    try:
        table = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"cannot read price table {path}: {exc}") from None
    regions = table.setdefault("aws", {})
    prices = regions.setdefault(region, {})
    client = client_factory()
    result = RefreshResult()
    from botocore.exceptions import BotoCoreError, ClientError

    for query in queries_for(prices):
        key = ".".join(query.path)
        try:
            value = find_price(client, query, region)
        except (BotoCoreError, ClientError) as exc:
            raise PlanError(f"AWS Price List API call for {key} failed: {exc}") from None
        if value is None:
            result.missing.append(key)
            continue
        old = _set(prices, query.path, value)
        if old is not None and abs(old - value) < 1e-12:
            result.unchanged.append(key)
        else:
            result.updated[key] = (old if old is not None else float("nan"), value)
    if result.updated or result.unchanged:
        prices["source"] = API_SOURCE
        prices["as_of"] = (today or dt.date.today()).isoformat()
    target = output or path
    header = _leading_comments(path.read_text()) if target == path else ""
    target.write_text(header + yaml.safe_dump(table, sort_keys=False, width=100))
    return result
