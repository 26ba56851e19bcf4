"""The cost model: resource type + recorded inputs -> estimated monthly cost.

Prices come from the bundled, dated table (``prices.yaml``); usage a resource graph
cannot show (GB through a NAT gateway, log volume, requests) comes from the table's
per-tier ``assumptions``. Every resource ends in exactly one state:

* ``priced``: one or more line items (quantity x unit price) summed to a monthly cost;
* ``free``: a stated price of zero, with the reason (IAM roles, subnets, ...);
* ``not_priced``: no rule or no price for it (an unknown type, an instance class
  missing from the table); listed in the report, never silently counted as zero.

docs/cost-model.md explains each formula and assumption.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from groundwork.mockrun import ProgramRun, RecordedResource

PRICES_PATH = Path(__file__).with_name("prices.yaml")


class PriceTableError(ValueError):
    """The price table is missing, malformed or lacks a region or tier."""


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


@dataclass(frozen=True)
class PriceTable:
    data: dict[str, Any]
    path: Path

    @property
    def currency(self) -> str:
        return str(self.data.get("currency", "USD"))

    @property
    def hours_per_month(self) -> float:
        return float(self.data["hours_per_month"])

    @property
    def seconds_per_month(self) -> float:
        return float(self.data["seconds_per_month"])

    def regions(self, cloud: str) -> list[str]:
        return sorted((self.data.get(cloud) or {}).keys())

    def region(self, cloud: str, region: str) -> dict[str, Any]:
        regions = self.data.get(cloud) or {}
        if region not in regions:
            raise PriceTableError(
                f"no {cloud} prices for region {region!r} in {self.path.name} "
                f"(priced regions: {', '.join(sorted(regions)) or 'none'})"
            )
        return dict(regions[region])

    def assumptions(self, tier: str) -> dict[str, float]:
        tiers = self.data.get("assumptions") or {}
        if tier not in tiers:
            raise PriceTableError(
                f"no usage assumptions for tier {tier!r} in {self.path.name} "
                f"(tiers: {', '.join(sorted(tiers))})"
            )
        return {str(k): float(v) for k, v in tiers[tier].items()}

    def free_reason(self, type_token: str) -> str | None:
        free = self.data.get("free") or {}
        if type_token in free:
            return str(free[type_token])
        for pattern, reason in free.items():
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(type_token, pattern):
                return str(reason)
        return None


def load_price_table(path: Path | None = None) -> PriceTable:
    path = path or PRICES_PATH
    return _load_cached(path.resolve())


@cache
def _load_cached(path: Path) -> PriceTable:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PriceTableError(f"price table not found: {path}") from None
    except yaml.YAMLError as exc:
        raise PriceTableError(f"price table {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise PriceTableError(f"price table {path} lacks 'schema: 1'")
    for key in ("hours_per_month", "seconds_per_month", "assumptions"):
        if key not in data:
            raise PriceTableError(f"price table {path} lacks {key!r}")
    return PriceTable(data=data, path=path)


@dataclass
class PricingContext:
    run: ProgramRun
    prices: dict[str, Any]
    usage: dict[str, float]
    hours: float
    seconds: float
    # Allowances granted once per project/account, consumed as resources are priced.
    allowances: dict[str, float] = field(default_factory=dict)

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


# ---------------------------------------------------------------- AWS: network


@pricer("aws:ec2/natGateway:NatGateway")
def _nat_gateway(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        _hourly(ctx, "NAT gateway hours", ctx.price("nat_gateway", "hourly")),
        LineItem(
            "data processed (assumed)",
            ctx.assume("nat_gb_processed_per_gateway"),
            "GB",
            ctx.price("nat_gateway", "per_gb_processed"),
        ),
    ]


@pricer("aws:ec2/eip:Eip")
def _eip(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [_hourly(ctx, "public IPv4 address hours", ctx.price("public_ipv4", "hourly"))]


@pricer("aws:ec2/vpcEndpoint:VpcEndpoint")
def _vpc_endpoint(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    kind = str(r.inputs.get("vpcEndpointType") or "Gateway")
    if kind == "Gateway":
        raise Free("gateway endpoints (S3, DynamoDB) are free")
    if kind != "Interface":
        raise NotPriced(f"{kind} endpoints are not in the table")
    azs = len(r.inputs.get("subnetIds") or [])
    if azs == 0:
        raise NotPriced("interface endpoint without subnetIds: AZ count unknown")
    return [
        _hourly(
            ctx,
            f"endpoint AZ-hours ({azs} AZs)",
            ctx.price("vpc_interface_endpoint", "hourly_per_az"),
            azs,
        ),
        LineItem(
            "data processed (assumed)",
            ctx.assume("interface_endpoint_gb_per_endpoint"),
            "GB",
            ctx.price("vpc_interface_endpoint", "per_gb_processed"),
        ),
    ]


@pricer("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
def _load_balancer(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    kind = str(r.inputs.get("loadBalancerType") or "application")
    if kind != "application":
        raise NotPriced(f"{kind} load balancers are not in the table")
    items = [
        _hourly(ctx, "ALB hours", ctx.price("alb", "hourly")),
        _hourly(
            ctx,
            "LCU hours (assumed average LCUs)",
            ctx.price("alb", "lcu_hourly"),
            ctx.assume("alb_average_lcu"),
        ),
    ]
    if not r.inputs.get("internal"):
        azs = len(r.inputs.get("subnets") or r.inputs.get("subnetMappings") or [])
        if azs:
            items.append(
                _hourly(
                    ctx,
                    f"public IPv4 address hours ({azs} AZs)",
                    ctx.price("public_ipv4", "hourly"),
                    azs,
                )
            )
    return items


@pricer("aws:ec2/instance:Instance")
def _ec2_instance(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    instance_type = str(r.inputs.get("instanceType") or "")
    items = [
        _hourly(
            ctx,
            f"{instance_type} instance hours",
            ctx.price("ec2", "instance_hourly", instance_type),
        )
    ]
    root = r.inputs.get("rootBlockDevice") or {}
    volume_type = str(root.get("volumeType") or "gp3")
    items.append(
        LineItem(
            f"root volume ({volume_type})",
            _num(root.get("volumeSize"), 8),
            "GB-month",
            ctx.price("ec2", "ebs_gb_month", volume_type),
        )
    )
    if r.inputs.get("associatePublicIpAddress"):
        items.append(_hourly(ctx, "public IPv4 address hours", ctx.price("public_ipv4", "hourly")))
    return items


# ---------------------------------------------------------------- AWS: compute


def _task_definition(r: RecordedResource, ctx: PricingContext) -> RecordedResource:
    ref = str(r.inputs.get("taskDefinition") or "")
    for candidate in ctx.run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        arn = str(candidate.state.get("arn") or "")
        family = str(candidate.inputs.get("family") or "")
        if ref and ref in (arn, family, candidate.state.get("id")):
            return candidate
        if ref and arn and ref.startswith(arn):
            return candidate
    raise NotPriced(f"task definition {ref or '<none>'} not found in the graph")


def _capacity_split(r: RecordedResource, ctx: PricingContext, tasks: int) -> dict[str, int]:
    strategies = r.inputs.get("capacityProviderStrategies") or []
    if not strategies:
        launch = str(r.inputs.get("launchType") or "FARGATE")
        if launch != "FARGATE":
            raise NotPriced(f"launch type {launch} is not in the table")
        return {"FARGATE": tasks}
    counts = {str(s["capacityProvider"]): 0 for s in strategies}
    remaining = tasks
    # ECS places each strategy's `base` first, then splits the rest by weight.
    for s in strategies:
        take = min(remaining, int(_num(s.get("base"))))
        counts[str(s["capacityProvider"])] += take
        remaining -= take
    weights = {str(s["capacityProvider"]): _num(s.get("weight")) for s in strategies}
    total_weight = sum(weights.values())
    if remaining and total_weight:
        shares = {k: remaining * w / total_weight for k, w in weights.items()}
        floors = {k: math.floor(v) for k, v in shares.items()}
        leftover = remaining - sum(floors.values())
        for k in sorted(shares, key=lambda k: shares[k] - floors[k], reverse=True)[:leftover]:
            floors[k] += 1
        for k, n in floors.items():
            counts[k] += n
    for provider in counts:
        if provider not in ("FARGATE", "FARGATE_SPOT"):
            raise NotPriced(f"capacity provider {provider} is not in the table")
    return counts


@pricer("aws:ecs/service:Service")
def _ecs_service(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    tasks = int(_num(r.inputs.get("desiredCount")))
    if tasks == 0:
        raise Free("desiredCount is 0: no task runs")
    task_def = _task_definition(r, ctx)
    vcpu = _num(task_def.inputs.get("cpu")) / 1024
    memory_gb = _num(task_def.inputs.get("memory")) / 1024
    if not vcpu or not memory_gb:
        raise NotPriced(f"task definition {task_def.name} has no task-level cpu/memory")
    arch = str((task_def.inputs.get("runtimePlatform") or {}).get("cpuArchitecture") or "X86_64")
    items: list[LineItem] = []
    for provider, count in sorted(_capacity_split(r, ctx, tasks).items()):
        if not count:
            continue
        if provider == "FARGATE_SPOT":
            rates = ctx.price("fargate", "spot_x86_64")
            label = "Fargate Spot"
        else:
            rates = ctx.price("fargate", "arm64" if arch.upper() == "ARM64" else "x86_64")
            label = f"Fargate {arch.lower()}"
        items.append(
            _hourly(
                ctx,
                f"{label} vCPU-hours ({count} x {vcpu:g} vCPU)",
                rates["vcpu_hourly"],
                count * vcpu,
            )
        )
        items.append(
            _hourly(
                ctx,
                f"{label} GB-hours ({count} x {memory_gb:g} GB)",
                rates["gb_hourly"],
                count * memory_gb,
            )
        )
    return items


# ---------------------------------------------------------------- AWS: data stores


def _vcpus(ctx: PricingContext, instance_class: str) -> int:
    size = instance_class.rsplit(".", 1)[-1]
    return int(ctx.price("instance_vcpus", size))


@pricer("aws:rds/instance:Instance")
def _rds_instance(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    engine = str(r.inputs.get("engine") or "postgres")
    replica = bool(r.inputs.get("replicateSourceDb"))
    if not engine.startswith("postgres") and not replica:
        raise NotPriced(f"engine {engine} is not in the table")
    instance_class = str(r.inputs.get("instanceClass") or "")
    hourly = ctx.price("rds_postgres", "instance_hourly", instance_class)
    multi_az = bool(r.inputs.get("multiAz"))
    copies = 2 if multi_az else 1
    storage_type = str(r.inputs.get("storageType") or "gp2")
    storage_gb = _num(r.inputs.get("allocatedStorage"), 20)
    az_label = "Multi-AZ, x2" if multi_az else "Single-AZ"
    items = [
        _hourly(ctx, f"{instance_class} instance hours ({az_label})", hourly, copies),
        LineItem(
            f"{storage_type} storage ({az_label})",
            storage_gb * copies,
            "GB-month",
            ctx.price("rds_postgres", "storage_gb_month", storage_type),
        ),
    ]
    retention = _num(r.inputs.get("backupRetentionPeriod"), 0 if replica else 7)
    if retention:
        # Backup storage up to the allocated size is free; beyond it each retained
        # day keeps the day's changed blocks.
        billable = storage_gb * retention * ctx.assume("db_backup_daily_change_fraction")
        items.append(
            LineItem(
                f"backup storage beyond free ({retention:g} days retained)",
                billable,
                "GB-month",
                ctx.price("rds_postgres", "backup_gb_month"),
            )
        )
    return items


@pricer("aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication")
def _rds_backup_replication(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    """A full copy of the source's backups in the second region, kept in step daily:
    storage there at the backup rate plus the cross-region transfer of each day's changes
    (aws.amazon.com/rds/postgresql/pricing, "Cross-Region automated backups")."""
    source_arn = str(r.inputs.get("sourceDbInstanceArn") or "")
    identifier = source_arn.rsplit(":", 1)[-1]
    source = next(
        (
            i
            for i in ctx.run.of_type("aws:rds/instance:Instance")
            if identifier in (str(i.inputs.get("identifier") or ""), i.name)
        ),
        None,
    )
    if source is None:
        raise NotPriced(f"source instance {source_arn or '(unknown)'} not in the plan")
    storage_gb = _num(source.inputs.get("allocatedStorage"), 20)
    retention = _num(r.inputs.get("retentionPeriod"), 7)
    daily_change = storage_gb * ctx.assume("db_backup_daily_change_fraction")
    return [
        LineItem(
            f"replicated backup storage ({retention:g} days)",
            storage_gb + daily_change * retention,
            "GB-month",
            ctx.price("rds_postgres", "backup_gb_month"),
        ),
        LineItem(
            "cross-region transfer of daily changes",
            daily_change * 30,
            "GB",
            ctx.price("rds_postgres", "backup_replication_transfer_gb"),
        ),
    ]


def _proxy_instance(r: RecordedResource, ctx: PricingContext) -> RecordedResource:
    instances = [
        i
        for i in ctx.run.of_type("aws:rds/instance:Instance")
        if not i.inputs.get("replicateSourceDb")
    ]
    proxy_name = {r.name, str(r.inputs.get("name") or ""), str(r.state.get("name") or "")}
    for target in ctx.run.of_type("aws:rds/proxyTarget:ProxyTarget"):
        if str(target.inputs.get("dbProxyName") or "") not in proxy_name:
            continue
        ident = str(target.inputs.get("dbInstanceIdentifier") or "")
        for instance in instances:
            if ident and ident in {
                str(instance.inputs.get("identifier") or ""),
                str(instance.state.get("id") or ""),
                instance.name,
            }:
                return instance
    if len(instances) == 1:
        return instances[0]
    raise NotPriced("cannot tell which DB instance the proxy fronts")


@pricer("aws:rds/proxy:Proxy")
def _rds_proxy(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    instance = _proxy_instance(r, ctx)
    instance_class = str(instance.inputs.get("instanceClass") or "")
    vcpus = max(_vcpus(ctx, instance_class), int(ctx.price("rds_postgres", "proxy_min_vcpus")))
    return [
        _hourly(
            ctx,
            f"proxy vCPU-hours ({vcpus} vCPU of {instance_class})",
            ctx.price("rds_postgres", "proxy_vcpu_hourly"),
            vcpus,
        )
    ]


def _cache_node_hourly(r: RecordedResource, ctx: PricingContext) -> tuple[str, float, str]:
    node_type = str(r.inputs.get("nodeType") or "")
    hourly = float(ctx.price("elasticache", "node_hourly", node_type))
    engine = str(r.inputs.get("engine") or "redis").lower()
    if engine == "valkey":
        hourly *= 1 - float(ctx.price("elasticache", "valkey_discount"))
    elif engine != "redis":
        raise NotPriced(f"ElastiCache engine {engine} is not in the table")
    return node_type, hourly, engine


@pricer("aws:elasticache/replicationGroup:ReplicationGroup")
def _replication_group(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    node_type, hourly, engine = _cache_node_hourly(r, ctx)
    if r.inputs.get("numCacheClusters"):
        nodes = int(_num(r.inputs["numCacheClusters"]))
    else:
        groups = int(_num(r.inputs.get("numNodeGroups"), 1))
        nodes = groups * (int(_num(r.inputs.get("replicasPerNodeGroup"))) + 1)
    return [_hourly(ctx, f"{engine} {node_type} node hours ({nodes} nodes)", hourly, nodes)]


@pricer("aws:elasticache/cluster:Cluster")
def _cache_cluster(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    node_type, hourly, engine = _cache_node_hourly(r, ctx)
    nodes = int(_num(r.inputs.get("numCacheNodes"), 1))
    return [_hourly(ctx, f"{engine} {node_type} node hours ({nodes} nodes)", hourly, nodes)]


@pricer("aws:mq/broker:Broker")
def _mq_broker(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    engine = str(r.inputs.get("engineType") or "")
    if engine.lower() != "rabbitmq":
        raise NotPriced(f"Amazon MQ engine {engine or '<unset>'} is not in the table")
    instance_type = str(r.inputs.get("hostInstanceType") or "")
    hourly = ctx.price("amazon_mq_rabbitmq", "node_hourly", instance_type)
    mode = str(r.inputs.get("deploymentMode") or "SINGLE_INSTANCE")
    nodes = 3 if mode == "CLUSTER_MULTI_AZ" else 1
    family = ".".join(instance_type.split(".")[:2])
    storage = float(ctx.price("amazon_mq_rabbitmq", "storage_gb_per_node", family))
    return [
        _hourly(ctx, f"{instance_type} broker node hours ({mode}, {nodes} nodes)", hourly, nodes),
        LineItem(
            f"broker storage ({storage:g} GB per node)",
            storage * nodes,
            "GB-month",
            ctx.price("amazon_mq_rabbitmq", "storage_gb_month"),
        ),
    ]


@pricer("aws:sqs/queue:Queue")
def _sqs_queue(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    if r.inputs.get("fifoQueue"):
        raise NotPriced("FIFO queues are not in the table")
    if not r.inputs.get("redrivePolicy"):
        # The dead-letter queue: written on failures, read by the operator's dlq tools.
        raise Free("a dead-letter queue: requests only on failures and redrives")
    return [
        LineItem(
            "standard queue requests (assumed)",
            ctx.assume("sqs_million_requests_per_queue"),
            "million requests",
            ctx.price("sqs", "standard_per_million_requests"),
        )
    ]


# ---------------------------------------------------------------- AWS: observability, security


@pricer("aws:cloudwatch/logGroup:LogGroup")
def _log_group(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    ingest = ctx.assume("log_ingestion_gb_per_group")
    retention = _num(r.inputs.get("retentionInDays"))
    # Steady state: the stored volume is `retention` days of ingestion; a group that
    # never expires is shown with a year of data.
    months_kept = retention / 30 if retention else 12
    kept = f"{retention:g} days" if retention else "no expiry: 1 year"
    return [
        LineItem(
            "log ingestion (assumed)", ingest, "GB", ctx.price("cloudwatch", "logs_ingestion_gb")
        ),
        LineItem(
            f"log storage ({kept})",
            ingest * months_kept,
            "GB-month",
            ctx.price("cloudwatch", "logs_storage_gb_month"),
        ),
    ]


@pricer("aws:cloudwatch/metricAlarm:MetricAlarm")
def _metric_alarm(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    queries = r.inputs.get("metricQueries") or []
    metrics = sum(1 for q in queries if q.get("metric")) if queries else 1
    return [
        LineItem(
            "standard-resolution alarm metrics",
            max(metrics, 1),
            "metric-month",
            ctx.price("cloudwatch", "alarm_metric_month"),
        )
    ]


@pricer("aws:cloudwatch/compositeAlarm:CompositeAlarm")
def _composite_alarm(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem(
            "composite alarm", 1, "alarm-month", ctx.price("cloudwatch", "composite_alarm_month")
        )
    ]


@pricer("aws:cloudwatch/dashboard:Dashboard")
def _dashboard(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [LineItem("dashboard", 1, "dashboard-month", ctx.price("cloudwatch", "dashboard_month"))]


@pricer("aws:kms/key:Key")
def _kms_key(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem("customer managed key", 1, "key-month", ctx.price("kms", "key_month")),
        LineItem(
            "requests (assumed)",
            ctx.assume("kms_requests_per_key") / 10_000,
            "10k requests",
            ctx.price("kms", "per_10k_requests"),
        ),
    ]


@pricer("aws:secretsmanager/secret:Secret")
def _secret(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem("secret", 1, "secret-month", ctx.price("secrets_manager", "secret_month")),
        LineItem(
            "API calls (assumed)",
            ctx.assume("secrets_api_calls_per_secret") / 10_000,
            "10k calls",
            ctx.price("secrets_manager", "per_10k_api_calls"),
        ),
    ]


@pricer("aws:wafv2/webAcl:WebAcl")
def _web_acl(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    rules = len(r.inputs.get("rules") or [])
    return [
        LineItem("web ACL", 1, "ACL-month", ctx.price("waf", "web_acl_month")),
        LineItem(
            "rules and managed rule groups", rules, "rule-month", ctx.price("waf", "rule_month")
        ),
        LineItem(
            "requests inspected (assumed)",
            ctx.assume("waf_million_requests"),
            "million requests",
            ctx.price("waf", "per_million_requests"),
        ),
    ]


@pricer("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
def _bucket(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem(
            "Standard storage (assumed log volume)",
            ctx.assume("s3_log_storage_gb_per_bucket"),
            "GB-month",
            ctx.price("s3", "standard_gb_month"),
        )
    ]


@pricer("aws:ecr/repository:Repository")
def _ecr(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem(
            "image storage (assumed)",
            ctx.assume("ecr_storage_gb_per_repository"),
            "GB-month",
            ctx.price("ecr", "storage_gb_month"),
        )
    ]


# ---------------------------------------------------------------- GCP


def _cpu_quantity(value: Any) -> float:
    text = str(value or "1").strip()
    if text.endswith("m"):
        return _num(text[:-1]) / 1000
    return _num(text, 1.0)


_MEMORY_UNITS = {
    "Ki": 2**-20,
    "Mi": 2**-10,
    "Gi": 1.0,
    "Ti": 2**10,
    "K": 1e3 / 2**30,
    "M": 1e6 / 2**30,
    "G": 1e9 / 2**30,
    "T": 1e12 / 2**30,
}


def _memory_gib(value: Any) -> float:
    text = str(value or "512Mi").strip()
    match = re.fullmatch(r"([0-9.]+)\s*([KMGT]i?)?", text)
    if not match:
        raise NotPriced(f"cannot read memory limit {text!r}")
    unit = match.group(2)
    return float(match.group(1)) * (_MEMORY_UNITS[unit] if unit else 2**-30)


@pricer("gcp:cloudrunv2/service:Service")
def _cloud_run(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    template = r.inputs.get("template") or {}
    containers = template.get("containers") or []
    vcpu = (
        sum(
            _cpu_quantity(((c.get("resources") or {}).get("limits") or {}).get("cpu"))
            for c in containers
        )
        or 1.0
    )
    gib = (
        sum(
            _memory_gib(((c.get("resources") or {}).get("limits") or {}).get("memory"))
            for c in containers
        )
        or 0.5
    )
    # cpuIdle false means "CPU always allocated": instance-based billing.
    cpu_idle = all(
        ((c.get("resources") or {}).get("cpuIdle", True)) is not False for c in containers
    )
    scaling = template.get("scaling") or {}
    service_scaling = r.inputs.get("scaling") or {}
    min_instances = max(
        _num(scaling.get("minInstanceCount")), _num(service_scaling.get("minInstanceCount"))
    )
    seconds = ctx.seconds
    items: list[LineItem] = []
    shape = f"{vcpu:g} vCPU / {gib:g} GiB"
    if cpu_idle:
        active = ctx.price("cloud_run", "request_based")
        idle = ctx.price("cloud_run", "idle_min_instance")
        if min_instances:
            items.append(
                LineItem(
                    f"idle min-instance vCPU-seconds ({min_instances:g} x {shape})",
                    min_instances * vcpu * seconds,
                    "vCPU-s",
                    idle["vcpu_second"],
                )
            )
            items.append(
                LineItem(
                    f"idle min-instance GiB-seconds ({min_instances:g} x {shape})",
                    min_instances * gib * seconds,
                    "GiB-s",
                    idle["gib_second"],
                )
            )
        items.append(
            LineItem(
                "requests (assumed)",
                ctx.assume("cloud_run_million_requests_per_service"),
                "million requests",
                ctx.price("cloud_run", "per_million_requests"),
            )
        )
    else:
        active = ctx.price("cloud_run", "instance_based")
        if min_instances:
            items.append(
                LineItem(
                    f"always-on vCPU-seconds ({min_instances:g} x {shape})",
                    min_instances * vcpu * seconds,
                    "vCPU-s",
                    active["vcpu_second"],
                )
            )
            items.append(
                LineItem(
                    f"always-on GiB-seconds ({min_instances:g} x {shape})",
                    min_instances * gib * seconds,
                    "GiB-s",
                    active["gib_second"],
                )
            )
    burst = ctx.assume("cloud_run_burst_instance_hours_per_service") * 3600
    items.append(
        LineItem(
            "instances above the minimum, vCPU-seconds (assumed)",
            burst * vcpu,
            "vCPU-s",
            active["vcpu_second"],
        )
    )
    items.append(
        LineItem(
            "instances above the minimum, GiB-seconds (assumed)",
            burst * gib,
            "GiB-s",
            active["gib_second"],
        )
    )
    return items


_CUSTOM_TIER = re.compile(r"db-custom-(\d+)-(\d+)")


@pricer("gcp:sql/databaseInstance:DatabaseInstance")
def _cloud_sql(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    version = str(r.inputs.get("databaseVersion") or "POSTGRES")
    if not version.startswith("POSTGRES"):
        raise NotPriced(f"{version} is not in the table")
    settings = r.inputs.get("settings") or {}
    if str(settings.get("edition") or "ENTERPRISE") != "ENTERPRISE":
        raise NotPriced(f"Cloud SQL edition {settings.get('edition')} is not in the table")
    tier = str(settings.get("tier") or "")
    regional = str(settings.get("availabilityType") or "ZONAL") == "REGIONAL"
    copies = 2 if regional else 1
    label = "REGIONAL, x2" if regional else "ZONAL"
    items: list[LineItem] = []
    match = _CUSTOM_TIER.fullmatch(tier)
    if match:
        vcpus, memory_gb = int(match.group(1)), int(match.group(2)) / 1024
        items.append(
            _hourly(
                ctx,
                f"{tier} vCPU-hours ({label})",
                ctx.price("cloud_sql_postgres", "vcpu_hourly"),
                vcpus * copies,
            )
        )
        items.append(
            _hourly(
                ctx,
                f"{tier} memory GB-hours ({label})",
                ctx.price("cloud_sql_postgres", "memory_gb_hourly"),
                memory_gb * copies,
            )
        )
    else:
        items.append(
            _hourly(
                ctx,
                f"{tier} instance hours ({label})",
                ctx.price("cloud_sql_postgres", "shared_core_hourly", tier),
                copies,
            )
        )
    disk_type = str(settings.get("diskType") or "PD_SSD")
    disk_gb = _num(settings.get("diskSize"), 10)
    items.append(
        LineItem(
            f"{disk_type} storage ({label})",
            disk_gb * copies,
            "GB-month",
            ctx.price("cloud_sql_postgres", "storage_gb_month", disk_type),
        )
    )
    backup = settings.get("backupConfiguration") or {}
    if backup.get("enabled"):
        retained = _num((backup.get("backupRetentionSettings") or {}).get("retainedBackups"), 7)
        billable = disk_gb * retained * ctx.assume("db_backup_daily_change_fraction")
        items.append(
            LineItem(
                f"backup storage ({retained:g} backups, changed blocks)",
                billable,
                "GB-month",
                ctx.price("cloud_sql_postgres", "backup_gb_month"),
            )
        )
    return items


@pricer("gcp:redis/instance:Instance")
def _memorystore(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    tier = str(r.inputs.get("tier") or "BASIC")
    size = _num(r.inputs.get("memorySizeGb"), 1)
    key = {"BASIC": "basic_gb_hourly", "STANDARD_HA": "standard_ha_gb_hourly"}.get(tier)
    if key is None:
        raise NotPriced(f"Memorystore tier {tier} is not in the table")
    bands = [float(b) for b in ctx.price("memorystore_redis", "bands_gb")]
    rates = ctx.price("memorystore_redis", key)
    band = next((i for i, upper in enumerate(bands) if size <= upper), len(bands))
    return [
        _hourly(
            ctx,
            f"{tier} capacity GB-hours ({size:g} GB, band M{band + 1})",
            float(rates[band]),
            size,
        )
    ]


@pricer("gcp:pubsub/topic:Topic")
def _pubsub_topic(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem(
            "publish throughput (assumed)",
            ctx.assume("pubsub_gib_per_topic") / 1024,
            "TiB",
            ctx.price("pubsub", "per_tib_throughput"),
        )
    ]


@pricer("gcp:pubsub/subscription:Subscription")
def _pubsub_subscription(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem(
            "delivery throughput (assumed)",
            ctx.assume("pubsub_gib_per_subscription") / 1024,
            "TiB",
            ctx.price("pubsub", "per_tib_throughput"),
        )
    ]


def _secret_locations(r: RecordedResource, ctx: PricingContext) -> int:
    ref = str(r.inputs.get("secret") or "")
    for secret in ctx.run.of_type("gcp:secretmanager/secret:Secret"):
        ids = {
            secret.name,
            str(secret.state.get("id") or ""),
            str(secret.state.get("name") or ""),
            str(secret.inputs.get("secretId") or ""),
        }
        if ref in ids or any(i and ref.endswith(f"/{i}") for i in ids):
            replicas = (secret.inputs.get("replication") or {}).get("userManaged") or {}
            # Automatic replication is billed as a single location.
            return max(len(replicas.get("replicas") or []), 1)
    return 1


@pricer("gcp:secretmanager/secretVersion:SecretVersion")
def _secret_version(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    locations = _secret_locations(r, ctx)
    return [
        LineItem(
            f"active version ({locations} location{'s' if locations > 1 else ''})",
            locations,
            "version-location-month",
            ctx.price("secret_manager", "active_version_location_month"),
        ),
        LineItem(
            "access operations (assumed)",
            ctx.assume("secret_accesses_per_version") / 10_000,
            "10k accesses",
            ctx.price("secret_manager", "per_10k_access"),
        ),
    ]


@pricer("gcp:kms/cryptoKey:CryptoKey")
def _gcp_kms_key(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem(
            "active key versions (assumed, rotation keeps old ones)",
            ctx.assume("gcp_kms_active_versions_per_key"),
            "version-month",
            ctx.price("cloud_kms", "key_version_month"),
        ),
        LineItem(
            "cryptographic operations (assumed)",
            ctx.assume("gcp_kms_operations_per_key") / 10_000,
            "10k operations",
            ctx.price("cloud_kms", "per_10k_operations"),
        ),
    ]


@pricer("gcp:artifactregistry/repository:Repository")
def _artifact_registry(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem(
            "image storage (assumed)",
            ctx.assume("artifact_registry_gb_per_repository"),
            "GB-month",
            ctx.price("artifact_registry", "storage_gb_month"),
        )
    ]


@pricer("gcp:compute/securityPolicy:SecurityPolicy")
def _cloud_armor(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    rules = len(r.inputs.get("rules") or [])
    return [
        LineItem("security policy", 1, "policy-month", ctx.price("cloud_armor", "policy_month")),
        LineItem("rules", rules, "rule-month", ctx.price("cloud_armor", "rule_month")),
        LineItem(
            "requests evaluated (assumed)",
            ctx.assume("armor_million_requests"),
            "million requests",
            ctx.price("cloud_armor", "per_million_requests"),
        ),
    ]


@pricer(
    "gcp:compute/globalForwardingRule:GlobalForwardingRule",
    "gcp:compute/forwardingRule:ForwardingRule",
)
def _forwarding_rule(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    items = [
        _hourly(ctx, "forwarding rule hours", ctx.price("load_balancing", "forwarding_rule_hourly"))
    ]
    # Traffic is counted once, on the HTTPS rule (the port-80 rule only redirects).
    if "443" in str(r.inputs.get("portRange") or ""):
        items.append(
            LineItem(
                "data processed (assumed)",
                ctx.assume("lb_gb_processed"),
                "GB",
                ctx.price("load_balancing", "per_gb_processed"),
            )
        )
    return items


@pricer("gcp:compute/routerNat:RouterNat")
def _cloud_nat(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        _hourly(
            ctx,
            "gateway VM-hours (assumed VM equivalents)",
            ctx.price("cloud_nat", "gateway_vm_hourly"),
            ctx.assume("cloud_nat_vm_equivalents"),
        ),
        LineItem(
            "data processed (assumed)",
            ctx.assume("cloud_nat_gb_processed"),
            "GB",
            ctx.price("cloud_nat", "per_gb_processed"),
        ),
    ]


@pricer("gcp:vpcaccess/connector:Connector")
def _vpc_connector(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    machine = str(r.inputs.get("machineType") or "e2-micro")
    instances = _num(r.inputs.get("minInstances"), 2)
    return [
        _hourly(
            ctx,
            f"connector {machine} instance hours ({instances:g} min instances)",
            ctx.price("vpc_access_connector", "instance_hourly", machine),
            instances,
        )
    ]


@pricer("gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig")
def _uptime_check(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    period = _num(str(r.inputs.get("period") or "60s").rstrip("s"), 60)
    regions = len(r.inputs.get("selectedRegions") or []) or 6
    executions = ctx.seconds / period * regions
    rate = ctx.price("monitoring", "uptime_per_1k_executions")
    key = "uptime_executions"
    if key not in ctx.allowances:
        ctx.allowances[key] = float(ctx.price("monitoring", "uptime_free_executions_per_project"))
    free = min(executions, ctx.allowances[key])
    ctx.allowances[key] -= free
    items = [
        LineItem(
            f"executions (every {period:g}s from {regions} regions)",
            executions / 1000,
            "1k executions",
            rate,
        )
    ]
    if free:
        items.append(LineItem("free executions per project", -free / 1000, "1k executions", rate))
    return items


@pricer("gcp:logging/projectBucketConfig:ProjectBucketConfig")
def _log_bucket(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    # Routed logs are billed on ingestion per bucket that stores them (on top of the
    # _Default bucket's copy); storage is free for the first 30 days.
    ingest = ctx.assume("gcp_service_log_gib")
    retention = _num(r.inputs.get("retentionDays")) or 30
    free_days = ctx.price("logging", "default_retention_days")
    extra_months = max(0.0, retention - free_days) / 30
    return [
        LineItem(
            "routed log ingestion (assumed)", ingest, "GiB", ctx.price("logging", "ingestion_gib")
        ),
        LineItem(
            f"log retention beyond {free_days:g} days ({retention:g} days)",
            ingest * extra_months,
            "GiB-month",
            ctx.price("logging", "retention_gib_month"),
        ),
    ]


@pricer("gcp:monitoring/alertPolicy:AlertPolicy")
def _alert_policy(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    conditions = len(r.inputs.get("conditions") or []) or 1
    return [
        LineItem(
            "alert conditions",
            conditions,
            "condition-month",
            ctx.price("monitoring", "alert_condition_month"),
        )
    ]


# ---------------------------------------------------------------- engine


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
