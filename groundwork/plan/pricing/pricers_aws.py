"""Pricers of AWS resource types (docs/cost-model.md explains each formula)."""

from __future__ import annotations

import math
import re
from typing import Any

from groundwork_app.settings import Settings as AppSettings

from groundwork.mockrun import RecordedResource
from groundwork.plan.pricing.model import (
    JOBS_PER_PUBSUB_GIB,
    Free,
    LineItem,
    NotPriced,
    PricingContext,
    _hourly,
    _num,
    api_requests_per_month,
    jobs_per_month,
    pricer,
)

# ---------------------------------------------------------------- AWS: network


@pricer("aws:ec2/natGateway:NatGateway")
def _nat_gateway(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        _hourly(ctx, "NAT gateway hours", ctx.price("nat_gateway", "hourly")),
        ctx.assumed(
            "data processed (assumed)",
            "nat_gb_processed_per_gateway",
            "GB",
            "nat_gateway",
            "per_gb_processed",
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
        ctx.assumed(
            "data processed (assumed)",
            "interface_endpoint_gb_per_endpoint",
            "GB",
            "vpc_interface_endpoint",
            "per_gb_processed",
        ),
    ]


def alb_lcu_hours(
    requests: float,
    bytes_per_request: float,
    rules_per_request: int,
    idle_timeout_seconds: float,
    lcu: dict[str, Any],
) -> dict[str, float]:
    """LCU-hours a month on each of the ALB's four billed dimensions, for ``requests`` a
    month (aws.amazon.com/elasticloadbalancing/pricing: an LCU-hour is 25 new connections
    a second, 3,000 active connections a minute, 1 GB processed, 1,000 rule evaluations a
    second; each hour is billed on the highest dimension).

    Every dimension here is a constant times the hour's requests, so the dimension that
    is highest in one hour is highest in every hour, and the sum over hours of the hourly
    maximum is that dimension's monthly total divided by its per-LCU-hour capacity,
    whatever the traffic's shape over the month. The bill is ``max()`` of the result.

    - new connections: one per request, an upper bound (clients without keep-alive);
    - processed bytes: the measured bytes of a request and its response on the wire
      (prices.yaml `measured_traffic`, services/app/tests/worker/test_wire_volume.py);
    - active connections: a connection serving one request closes within the idle
      timeout, so it is counted in at most ceil(timeout / 60) + 1 one-minute windows;
    - rule evaluations: the listener's rules processed per request beyond the free 10.
    """
    seconds_per_lcu_hour = 3600.0
    windows = math.ceil(idle_timeout_seconds / 60) + 1
    billable_rules = max(rules_per_request - int(lcu["free_rules_per_request"]), 0)
    return {
        "new connections": requests / (lcu["new_connections_per_second"] * seconds_per_lcu_hour),
        "active connections": requests * windows / (lcu["active_connections_per_minute"] * 60),
        "processed bytes": requests * bytes_per_request / 1e9 / lcu["gb_processed_per_hour"],
        "rule evaluations": requests
        * billable_rules
        / (lcu["rule_evaluations_per_second"] * seconds_per_lcu_hour),
    }


@pricer("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
def _load_balancer(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    kind = str(r.inputs.get("loadBalancerType") or "application")
    if kind != "application":
        raise NotPriced(f"{kind} load balancers are not in the table")
    if "api_bytes_per_request" not in ctx.measured_traffic:
        raise NotPriced("no measured_traffic.api_bytes_per_request in the table")
    # Every listener rule in the graph, plus the listener's default action: an upper bound
    # on the rules one request is evaluated against.
    rules = len(ctx.run.of_type("aws:lb/listenerRule:ListenerRule")) + 1
    dimensions = alb_lcu_hours(
        api_requests_per_month(ctx.usage),
        float(ctx.measured_traffic["api_bytes_per_request"]),
        rules,
        _num(r.inputs.get("idleTimeout"), 60),
        ctx.price("alb_lcu"),
    )
    dominant = max(dimensions, key=lambda k: dimensions[k])
    items = [
        _hourly(ctx, "ALB hours", ctx.price("alb", "hourly")),
        LineItem(
            f"LCU-hours (highest dimension: {dominant}, at the API's requests)",
            dimensions[dominant],
            "LCU-hours",
            ctx.price("alb", "lcu_hourly"),
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
            arm = arch.upper() == "ARM64"
            rates = ctx.price("fargate", "spot_arm64" if arm else "spot_x86_64")
            label = "Fargate Spot arm64" if arm else "Fargate Spot"
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
    if r.inputs.get("manageMasterUserPassword"):
        # RDS creates and rotates the master user's secret in Secrets Manager itself, outside
        # the graph, and it is billed like any secret ("Password management with Amazon RDS
        # and AWS Secrets Manager", RDS User Guide: "Secrets Manager charges apply").
        items += _secret_items(ctx, "managed master-user secret (Secrets Manager, by RDS)")
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


# A job costs the work queue three requests when jobs arrive one at a time: the relay's
# SendMessageBatch, the worker's ReceiveMessage and its DeleteMessageBatch (fewer when
# batches fill; every action is a request, "Amazon SQS pricing").
SQS_REQUESTS_PER_JOB = 3


def sqs_requests_per_month(ctx: PricingContext) -> float:
    """The work queue's requests: three per job, plus one long poll per wait time for
    each always-on worker task, which an idle worker keeps open (one, whatever its slots:
    services/app ``worker/sqs_consumer.py``, PollGate) and which returns empty when no
    job arrives. The worker's wait time is the service's default; the stack does not
    inject another."""
    wait = float(AppSettings.model_fields["sqs_wait_time_seconds"].default)
    workers = sum(
        _running_tasks(ctx, r.name.removesuffix("-worker"), "worker")
        for r in ctx.run.of_type("aws:ecs/service:Service")
        if r.name.endswith("-worker")
    )
    return SQS_REQUESTS_PER_JOB * jobs_per_month(ctx.usage) + max(workers, 1.0) * ctx.seconds / wait


@pricer("aws:sqs/queue:Queue")
def _sqs_queue(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    if r.inputs.get("fifoQueue"):
        raise NotPriced("FIFO queues are not in the table")
    if not r.inputs.get("redrivePolicy"):
        # The dead-letter queue: written on failures, read by the operator's dlq tools.
        raise Free("a dead-letter queue: requests only on failures and redrives")
    return [
        LineItem(
            "standard queue requests (3 per job + idle workers' long polls)",
            sqs_requests_per_month(ctx) / 1e6,
            "million requests",
            ctx.price("sqs", "standard_per_million_requests"),
        )
    ]


# ---------------------------------------------------------------- AWS: observability, security


# components/aws/rotation.py names its function's group /aws/lambda/<component name>.
ROTATION_LOG_GROUP = re.compile(r"/aws/lambda/.+-key-rotation")
# components/aws/ecs/logs.py (TaskLogs) names each process's group /ecs/<service>/<process>;
# the ECS service running that process is the resource named <service>-<process>.
SERVICE_LOG_GROUP = re.compile(r"/ecs/(?P<service>.+)/(?P<process>api|worker|relay|migrate)")
# Re-exported for services/app/tests/worker/test_log_volume.py.
__all__ = ["JOBS_PER_PUBSUB_GIB", "alb_lcu_hours", "service_log_gb_per_month"]
# The container health check's interval (components/aws/ecs/task_definition.py): on the
# api it is `groundwork-app healthcheck api`, a GET /health/live that the api logs.
CONTAINER_HEALTH_CHECK_SECONDS = 15.0


def service_log_gb_per_month(
    process: str,
    usage: dict[str, float],
    logs: dict[str, Any],
    *,
    tasks: float = 1,
    health_checks_per_hour: float = 0,
    hours: float = 730,
) -> float:
    """GB one process's log group ingests a month: the measured bytes
    (services/app/tests/worker/test_log_volume.py) x the model's traffic x the margin.

    Jobs are the Pub/Sub volume the model already assumes; requests are the API's
    (`api_requests_per_month`: never fewer than two per job). Idle
    volume (background lines, the api's health checks) and start/stop lines are per
    running task; a deploy restarts every task and runs migrate once."""
    facts = logs[process]
    jobs = jobs_per_month(usage)
    requests = api_requests_per_month(usage)
    if process == "migrate":
        volume = facts["bytes_per_run"] * logs["deploys_per_month"]
    else:
        per_unit = facts["bytes_per_request"] * requests if process == "api" else 0.0
        if process in ("worker", "relay"):
            per_unit = facts["bytes_per_job"] * jobs
        idle_per_hour = facts["bytes_per_idle_hour"] + health_checks_per_hour * facts.get(
            "bytes_per_health_check", 0.0
        )
        # Every deploy restarts each task: its start and stop lines, once per task.
        restarts = tasks * logs["deploys_per_month"] * facts["bytes_per_task_start"]
        volume = per_unit + tasks * hours * idle_per_hour + restarts
    return float(volume * logs["safety_margin"] / 1e9)


def _running_tasks(ctx: PricingContext, service: str, process: str) -> float:
    """The process's always-on task count: its ECS service's desired count, or its
    autoscaling minimum when that is higher."""
    counts = [
        _num(r.inputs.get("desiredCount"))
        for r in ctx.run.of_type("aws:ecs/service:Service")
        if r.name == f"{service}-{process}"
    ] + [
        _num(r.inputs.get("minCapacity"))
        for r in ctx.run.of_type("aws:appautoscaling/target:Target")
        if r.name == f"{service}-{process}-scaling"
    ]
    return max([*counts, 1.0])


def _api_health_checks_per_hour(ctx: PricingContext) -> float:
    """Health-check requests one api task answers per hour: the container check, plus
    the ALB's target-group check from every load balancer node, one per enabled AZ
    ("Each load balancer node checks the health of each target", ELB User Guide, "Health
    checks for Application Load Balancer target groups")."""
    nodes = sum(
        len(r.inputs.get("subnets") or r.inputs.get("subnetMappings") or [])
        for r in ctx.run.of_type("aws:lb/loadBalancer:LoadBalancer")
        if (r.inputs.get("loadBalancerType") or "application") == "application"
    )
    intervals = [
        _num((r.inputs.get("healthCheck") or {}).get("interval")) or 30.0
        for r in ctx.run.of_type("aws:lb/targetGroup:TargetGroup")
    ]
    alb = 3600 / min(intervals) * nodes if intervals and nodes else 0.0
    return alb + 3600 / CONTAINER_HEALTH_CHECK_SECONDS


@pricer("aws:cloudwatch/logGroup:LogGroup")
def _log_group(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    ingest = ctx.assume("log_ingestion_gb_per_group")
    label = "log ingestion (assumed)"
    group = str(r.inputs.get("name") or "")
    service_group = SERVICE_LOG_GROUP.fullmatch(group)
    if ROTATION_LOG_GROUP.fullmatch(group):
        # The key-rotation function runs four steps per secret per rotation: its volume is
        # a measured bound (tests/aws/test_rotation.py), not the per-group assumption.
        ingest = ctx.assume("rotation_log_gb_per_month")
        label = "log ingestion (measured bound: key rotation)"
    elif service_group and ctx.measured_logs:
        # What the process logs per request / job / idle hour, measured with the real
        # service (services/app/tests/worker/test_log_volume.py), at the model's traffic.
        service, process = service_group["service"], service_group["process"]
        ingest = service_log_gb_per_month(
            process,
            ctx.usage,
            ctx.measured_logs,
            tasks=_running_tasks(ctx, service, process),
            health_checks_per_hour=_api_health_checks_per_hour(ctx) if process == "api" else 0,
            hours=ctx.hours,
        )
        label = f"log ingestion (measured: {process} x traffic)"
    retention = _num(r.inputs.get("retentionInDays"))
    # Steady state: the stored volume is `retention` days of ingestion; a group that
    # never expires is shown with a year of data.
    months_kept = retention / 30 if retention else 12
    kept = f"{retention:g} days" if retention else "no expiry: 1 year"
    return [
        LineItem(label, ingest, "GB", ctx.price("cloudwatch", "logs_ingestion_gb")),
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


def _filter_metric(r: RecordedResource) -> tuple[str, str, str]:
    t = r.inputs.get("metricTransformation") or {}
    dims = sorted((t.get("dimensions") or {}).items())
    return (str(t.get("namespace") or ""), str(t.get("name") or ""), repr(dims))


@pricer("aws:cloudwatch/logMetricFilter:LogMetricFilter")
def _log_metric_filter(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    """A metric filter publishes a custom metric, billed per metric-month and prorated by
    the hours in which it is published (aws.amazon.com/cloudwatch/pricing). With a
    ``defaultValue`` the filter reports that value for every period in which the group
    receives events that do not match ("default value: the value reported to the metric
    filter during a period when logs are ingested but no matching logs are found",
    CloudWatch Logs User Guide, "Creating metrics from log events using filters"), so the
    metric is published in every hour the group logs anything: all month, as a bound.
    A metric is its namespace, name and dimensions: filters that publish the same one
    (one per log group, as components/aws/alarms.py does) are one metric, priced once."""
    transformation = r.inputs.get("metricTransformation") or {}
    if transformation.get("defaultValue") in (None, ""):
        raise Free(
            "no defaultValue: the metric is published only in hours with a matching line "
            "(an incident), not estimated"
        )
    metric = _filter_metric(r)
    sharing = sorted(
        f.name
        for f in ctx.run.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
        if _filter_metric(f) == metric
        and (f.inputs.get("metricTransformation") or {}).get("defaultValue") not in (None, "")
    )
    if sharing and sharing[0] != r.name:
        raise Free(f"publishes the same metric as {sharing[0]}, priced there")
    return [
        LineItem(
            f"custom metric {metric[0]}/{metric[1]} (defaultValue: published every hour)",
            1,
            "metric-month",
            ctx.price("cloudwatch", "custom_metric_month"),
        )
    ]


@pricer("aws:kms/key:Key")
def _kms_key(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        LineItem("customer managed key", 1, "key-month", ctx.price("kms", "key_month")),
        ctx.assumed(
            "requests (assumed)",
            "kms_requests_per_key",
            "10k requests",
            "kms",
            "per_10k_requests",
            per=10_000,
        ),
    ]


def _secret_items(ctx: PricingContext, what: str = "secret") -> list[LineItem]:
    return [
        LineItem(what, 1, "secret-month", ctx.price("secrets_manager", "secret_month")),
        ctx.assumed(
            "API calls (assumed)",
            "secrets_api_calls_per_secret",
            "10k calls",
            "secrets_manager",
            "per_10k_api_calls",
            per=10_000,
        ),
    ]


@pricer("aws:secretsmanager/secret:Secret")
def _secret(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return _secret_items(ctx)


@pricer("aws:wafv2/webAcl:WebAcl")
def _web_acl(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    rules = len(r.inputs.get("rules") or [])
    return [
        LineItem("web ACL", 1, "ACL-month", ctx.price("waf", "web_acl_month")),
        LineItem(
            "rules and managed rule groups", rules, "rule-month", ctx.price("waf", "rule_month")
        ),
        LineItem(
            "requests inspected (the API's requests, assumed)",
            api_requests_per_month(ctx.usage) / 1e6,
            "million requests",
            ctx.price("waf", "per_million_requests"),
        ),
    ]


@pricer("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
def _bucket(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        ctx.assumed(
            "Standard storage (assumed log volume)",
            "s3_log_storage_gb_per_bucket",
            "GB-month",
            "s3",
            "standard_gb_month",
        )
    ]


@pricer("aws:ecr/repository:Repository")
def _ecr(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        ctx.assumed(
            "image storage (assumed)",
            "ecr_storage_gb_per_repository",
            "GB-month",
            "ecr",
            "storage_gb_month",
        )
    ]
