"""Pricers of GCP resource types (docs/cost-model.md explains each formula)."""

from __future__ import annotations

import re
from typing import Any

from groundwork.mockrun import RecordedResource
from groundwork.plan.pricing.model import (
    Free,
    LineItem,
    NotPriced,
    PricingContext,
    _hourly,
    _num,
    api_requests_per_month,
    pricer,
)

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


SCHEDULER_JOB = "gcp:cloudscheduler/job:Job"
_EVERY_N_MINUTES = re.compile(r"^(\*|\*/([1-9][0-9]*)) \* \* \* \*$")


def _runs_per_month(schedule: str, seconds: float) -> float:
    """Runs a month of a unix-cron schedule; only every-N-minutes is read (it is all
    the stacks schedule), anything else is not guessed."""
    match = _EVERY_N_MINUTES.match(schedule.strip())
    if not match:
        raise NotPriced(f"cannot count the runs of schedule {schedule!r}")
    return seconds / 60 / int(match.group(2) or 1)


def _held_seconds(job: RecordedResource) -> float:
    """The ``seconds`` a hold call asks for (the relay caps it; worker/health.py)."""
    uri = str(((job.inputs.get("httpTarget") or {}).get("uri")) or "")
    match = re.search(r"[?&]seconds=([0-9]+)", uri)
    if not match:
        raise NotPriced(f"job {job.name} calls {uri!r}, not a hold with seconds=")
    return min(float(match.group(1)), 60.0)


def _holding_jobs(r: RecordedResource, ctx: PricingContext) -> list[RecordedResource]:
    """Cloud Scheduler jobs whose OIDC audience is this service's URL: their calls hold
    its CPU (components/gcp/services.py ``RelayBilling.SCHEDULED``)."""
    uri = r.state.get("uri")
    if not uri:
        return []
    return [
        job
        for job in ctx.run.of_type(SCHEDULER_JOB)
        if ((job.inputs.get("httpTarget") or {}).get("oidcToken") or {}).get("audience") == uri
    ]


@pricer(SCHEDULER_JOB)
def _scheduler_job(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    # Per job and month whatever it runs; the 3 free jobs are per billing account, which
    # other projects may use up, so they are not subtracted.
    return [LineItem("job", 1, "job-month", ctx.price("cloud_scheduler", "job_month"))]


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
    jobs = _holding_jobs(r, ctx) if cpu_idle else []
    if jobs:
        # Request-billed only while a held call is in flight: hold x runs, from the
        # job's own schedule and URI, instead of the burst and request assumptions.
        active = ctx.price("cloud_run", "request_based")
        runs = sum(_runs_per_month(str(j.inputs.get("schedule") or ""), seconds) for j in jobs)
        held = sum(
            _held_seconds(j) * _runs_per_month(str(j.inputs.get("schedule") or ""), seconds)
            for j in jobs
        )
        return [
            LineItem(
                f"held by Cloud Scheduler, vCPU-seconds ({held / seconds:.1%} of the month "
                f"x {shape})",
                held * vcpu,
                "vCPU-s",
                active["vcpu_second"],
            ),
            LineItem(
                f"held by Cloud Scheduler, GiB-seconds ({held / seconds:.1%} of the month "
                f"x {shape})",
                held * gib,
                "GiB-s",
                active["gib_second"],
            ),
            LineItem(
                "scheduled requests",
                runs / 1e6,
                "million requests",
                ctx.price("cloud_run", "per_million_requests"),
            ),
        ]
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
            ctx.assumed(
                "requests (assumed)",
                "cloud_run_million_requests_per_service",
                "million requests",
                "cloud_run",
                "per_million_requests",
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
    items += _prometheus_samples(containers, min_instances * seconds + burst, ctx)
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


def _prometheus_samples(
    containers: list[dict[str, Any]], instance_seconds: float, ctx: PricingContext
) -> list[LineItem]:
    """Managed Prometheus samples the sidecar of a scraped service ingests: series per
    instance (by process) x instance-seconds / scrape interval."""
    if not any("cloud-run-gmp-sidecar" in str(c.get("image", "")) for c in containers):
        return []
    role = str((containers[0].get("args") or ["api"])[0])
    series = ctx.assume(f"gmp_series_per_instance_{role}")
    interval = ctx.assume("gmp_scrape_interval_seconds")
    return [
        LineItem(
            f"Managed Prometheus samples ({series:g} series/instance every {interval:g}s, assumed)",
            series * instance_seconds / interval / 1e6,
            "million samples",
            ctx.price("monitoring", "prometheus_per_million_samples"),
        )
    ]


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
        ctx.assumed(
            "publish throughput (assumed)",
            "pubsub_gib_per_topic",
            "TiB",
            "pubsub",
            "per_tib_throughput",
            per=1024,
        )
    ]


@pricer("gcp:pubsub/subscription:Subscription")
def _pubsub_subscription(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        ctx.assumed(
            "delivery throughput (assumed)",
            "pubsub_gib_per_subscription",
            "TiB",
            "pubsub",
            "per_tib_throughput",
            per=1024,
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
        ctx.assumed(
            "access operations (assumed)",
            "secret_accesses_per_version",
            "10k accesses",
            "secret_manager",
            "per_10k_access",
            per=10_000,
        ),
    ]


@pricer("gcp:kms/cryptoKey:CryptoKey")
def _gcp_kms_key(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        ctx.assumed(
            "active key versions (assumed, rotation keeps old ones)",
            "gcp_kms_active_versions_per_key",
            "version-month",
            "cloud_kms",
            "key_version_month",
        ),
        ctx.assumed(
            "cryptographic operations (assumed)",
            "gcp_kms_operations_per_key",
            "10k operations",
            "cloud_kms",
            "per_10k_operations",
            per=10_000,
        ),
    ]


@pricer("gcp:artifactregistry/repository:Repository")
def _artifact_registry(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        ctx.assumed(
            "image storage (assumed)",
            "artifact_registry_gb_per_repository",
            "GB-month",
            "artifact_registry",
            "storage_gb_month",
        )
    ]


@pricer("gcp:compute/securityPolicy:SecurityPolicy")
def _cloud_armor(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    rules = len(r.inputs.get("rules") or [])
    return [
        LineItem("security policy", 1, "policy-month", ctx.price("cloud_armor", "policy_month")),
        LineItem("rules", rules, "rule-month", ctx.price("cloud_armor", "rule_month")),
        LineItem(
            "requests evaluated (the API's requests, assumed)",
            api_requests_per_month(ctx.usage) / 1e6,
            "million requests",
            ctx.price("cloud_armor", "per_million_requests"),
        ),
    ]


@pricer(
    "gcp:compute/globalForwardingRule:GlobalForwardingRule",
    "gcp:compute/forwardingRule:ForwardingRule",
)
def _forwarding_rule(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    items = _forwarding_rule_hours(r, ctx)
    # Traffic is counted once, on the HTTPS rule (the port-80 rule only redirects): the
    # API's requests x the bytes one request and its response measured on the wire (the
    # same figures the AWS ALB's processed-bytes dimension uses; one owner each).
    if "443" in str(r.inputs.get("portRange") or ""):
        if "api_bytes_per_request" not in ctx.measured_traffic:
            raise NotPriced("no measured_traffic.api_bytes_per_request in the table")
        processed_gb = (
            api_requests_per_month(ctx.usage)
            * float(ctx.measured_traffic["api_bytes_per_request"])
            / 2**30
        )
        items.append(
            LineItem(
                "data processed (the API's requests x measured bytes per request)",
                processed_gb,
                "GiB",
                ctx.price("load_balancing", "per_gib_processed"),
            )
        )
    if not items:
        raise Free("within the project's forwarding-rule minimum charge (first five rules)")
    return items


def _forwarding_rule_hours(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    """Google bills a project's first five forwarding rules in a scope (global, or one
    region) as one flat hourly minimum, and each further rule on its own: the first rule
    priced in a scope carries the minimum, the next four use up what it covers, the rest
    pay the additional rate. Priced as if the stack were alone in its project: rules of
    other stacks in the same project share the minimum and lower the real bill."""
    lb = ctx.price("load_balancing")
    scope = (
        "global" if "globalForwardingRule" in r.type else str(r.inputs.get("region") or "region")
    )
    key = f"forwarding_rules_in_minimum:{scope}"
    included = int(lb["forwarding_rules_in_minimum"])
    if key not in ctx.allowances:
        ctx.allowances[key] = included - 1
        what = f"forwarding rules: the {scope} minimum charge (covers the first {included})"
        return [_hourly(ctx, what, float(lb["forwarding_rules_minimum_hourly"]))]
    if ctx.allowances[key] > 0:
        ctx.allowances[key] -= 1
        return []
    what = f"forwarding rule hours (beyond the first {included} in {scope})"
    return [_hourly(ctx, what, float(lb["forwarding_rule_additional_hourly"]))]


@pricer("gcp:compute/routerNat:RouterNat")
def _cloud_nat(r: RecordedResource, ctx: PricingContext) -> list[LineItem]:
    return [
        _hourly(
            ctx,
            "gateway VM-hours (assumed VM equivalents)",
            ctx.price("cloud_nat", "gateway_vm_hourly"),
            ctx.assume("cloud_nat_vm_equivalents"),
        ),
        ctx.assumed(
            "data processed (assumed)",
            "cloud_nat_gb_processed",
            "GB",
            "cloud_nat",
            "per_gb_processed",
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
