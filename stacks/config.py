"""Stack configuration, read once into a typed, validated settings object.

Each environment's defaults live here in code; ``Pulumi.<stack>.yaml`` only overrides
them. A bad value stops the program before any resource is registered, with a
message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from components.args import FARGATE_CPU_ARCHITECTURES, vpc_block
from components.image_ref import ImageReference
from groundwork.tier import Tier

CONFIG_NAMESPACE = "groundwork"


class ConfigError(pulumi.RunError):
    """A user error in stack configuration; Pulumi prints it without a traceback."""


def invalid_value(key: str, value: object, allowed: str) -> ConfigError:
    """The one shape of a bad-value error: the key, the value and what is allowed."""
    return ConfigError(f"{CONFIG_NAMESPACE}:{key} = {value!r} is invalid: {allowed}")


class Cloud(StrEnum):
    AWS = "aws"
    GCP = "gcp"


class GcpRelayBilling(StrEnum):
    """How the GCP relay service gets (and pays for) CPU; docs/cost-model.md, "GCP staging"."""

    INSTANCE = "instance"
    """Always-on, instance-based billing at 1 vCPU (Cloud Run allows CPU-always-allocated
    only from 1 vCPU up): the relay polls every moment of the month."""
    SCHEDULED = "scheduled"
    """Request-based billing at a fractional vCPU: Cloud Scheduler calls the relay's
    authenticated hold endpoint every minute and the request keeps the instance's CPU
    allocated for most of it. A few seconds a minute without relay CPU; a Cloud
    Scheduler outage pauses the relay until it returns (the outbox keeps every job)."""


class Settings(BaseModel):
    """Every ``groundwork:*`` key a stack understands (camelCase in the YAML)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    cloud: Cloud = Field(default=Cloud.AWS, description="aws | gcp")
    tier: Tier = Field(
        alias="environment",
        description="staging | production (defaults to the stack name)",
    )
    service: str = Field(default="groundwork", pattern=r"^[a-z][a-z0-9-]{1,20}$")
    cost_center: str = Field(default="platform", alias="costCenter", min_length=1)
    alarm_email: str | None = Field(default=None, alias="alarmEmail")
    domain: str | None = Field(default=None, description="API hostname, e.g. api.example.com")
    certificate_arn: str | None = Field(default=None, alias="certificateArn")
    insecure_http: bool = Field(
        default=False,
        alias="insecureHttp",
        description="INSECURE: let the AWS load balancer serve plain HTTP when no domain is "
        "set. For throwaway environments only; the policy pack still flags it.",
    )
    hosted_zone_id: str | None = Field(
        default=None,
        alias="hostedZoneId",
        pattern=r"^Z[A-Z0-9]{1,31}$",
        description="AWS: Route 53 zone of `domain`; a DNS-validated ACM certificate and an "
        "alias record are created in it",
    )
    image_tag: str = Field(default="latest", alias="imageTag", pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    image_uri: ImageReference | None = Field(
        default=None,
        alias="imageUri",
        description="A prebuilt image pinned by digest (repo@sha256:...) in this environment's "
        "registry: the stack deploys exactly it and builds nothing (CI sets it). Unset, "
        "`pulumi up` builds services/app itself.",
    )
    api_deployment_strategy: str = Field(
        default="rolling",
        alias="apiDeploymentStrategy",
        description="AWS API rollouts: rolling (circuit breaker rolls back) | blue-green "
        "(ECS swaps the load balancer rule to a full new task set after it is healthy)",
    )
    region: str | None = Field(default=None, description="Overrides aws:region / gcp:region")
    gcp_project: str | None = Field(default=None, alias="gcpProject")

    # network
    availability_zones: int = Field(alias="availabilityZones", ge=2, le=3)
    nat: str = Field(
        description="none | instance (one small NAT instance, staging only) | single | one-per-az"
    )
    vpc_cidr: str = Field(default="10.40.0.0/16", alias="vpcCidr")
    interface_endpoints: bool = Field(alias="interfaceEndpoints")

    # data stores
    db_instance_class: str = Field(alias="dbInstanceClass")
    db_allocated_storage_gb: int = Field(alias="dbAllocatedStorageGb", ge=20, le=65536)
    db_max_storage_gb: int = Field(alias="dbMaxStorageGb", ge=20, le=65536)
    db_multi_az: bool = Field(alias="dbMultiAz")
    db_backup_retention_days: int = Field(alias="dbBackupRetentionDays", ge=1, le=35)
    db_read_replica: bool = Field(
        default=False,
        alias="dbReadReplica",
        description="AWS: refused (RDS cannot replicate an instance with an RDS-managed "
        "master password, and the service never reads from a replica)",
    )
    db_backup_region: str | None = Field(
        default=None,
        alias="dbBackupRegion",
        pattern=r"^([a-z]{2}(-[a-z]+)+-\d+|none)$",
        description="AWS: region that receives replicated automated backups (point-in-time "
        "restore after a regional outage). Production default: the region's pair (see "
        "docs/deploy-aws.md); 'none' turns it off",
    )
    db_proxy: bool = Field(alias="dbProxy")
    deletion_protection: bool = Field(alias="deletionProtection")
    cache_node_type: str = Field(alias="cacheNodeType")
    cache_nodes: int = Field(alias="cacheNodes", ge=1, le=6)
    cache_snapshot_retention_days: int = Field(alias="cacheSnapshotRetentionDays", ge=0, le=35)
    queue: str = Field(
        default="rabbitmq",
        description="AWS job queue: rabbitmq (Amazon MQ broker) | sqs (SQS queue + DLQ)",
    )
    broker_instance_type: str = Field(alias="brokerInstanceType")
    broker_cluster: bool = Field(alias="brokerCluster")

    # compute
    api_cpu: int = Field(alias="apiCpu", description="Fargate CPU units / Cloud Run millicores")
    api_memory_mb: int = Field(alias="apiMemoryMb")
    api_min_count: int = Field(alias="apiMinCount", ge=0, le=100)
    api_max_count: int = Field(alias="apiMaxCount", ge=1, le=100)
    worker_cpu: int = Field(alias="workerCpu")
    worker_memory_mb: int = Field(alias="workerMemoryMb")
    worker_min_count: int = Field(alias="workerMinCount", ge=0, le=100)
    worker_max_count: int = Field(alias="workerMaxCount", ge=1, le=100)
    relay_count: int = Field(alias="relayCount", ge=1, le=10, description="always-on relays")
    worker_concurrency: int | None = Field(
        default=None,
        alias="workerConcurrency",
        ge=1,
        le=1000,
        description="Jobs (LLM calls) one worker task keeps in flight; unset: derived from "
        "the worker's memory and vCPUs (worker_concurrency_for). Also the prefetch, the Cloud "
        "Run request concurrency and, doubled, the AWS backlog-per-task scaling target",
    )
    llm_requests_per_minute: int = Field(
        default=0,
        alias="llmRequestsPerMinute",
        ge=0,
        description="The organisation's request limit for the model (provider console); each "
        "worker task paces itself at this / workerMaxCount. 0: no pacing (429s still honoured)",
    )
    worker_spot: bool = Field(alias="workerSpot")
    api_spot: bool = Field(default=False, alias="apiSpot", description="API on Fargate Spot")
    relay_spot: bool = Field(default=False, alias="relaySpot", description="relay on Fargate Spot")
    cpu_architecture: str = Field(
        default="x86_64",
        alias="cpuArchitecture",
        description="AWS Fargate tasks: x86_64 | arm64 (Graviton; Fargate Spot too)",
    )
    ecs_exec: bool = Field(alias="ecsExec")
    waf: bool = Field(alias="waf")
    edge_load_balancer: bool = Field(alias="edgeLoadBalancer", description="GCP HTTPS LB + Armor")
    public_api: bool = Field(default=True, alias="publicApi")
    log_retention_days: int = Field(alias="logRetentionDays")
    secret_rotation_days: int = Field(
        default=30,
        alias="secretRotationDays",
        description="AWS: days between automatic rotations of the JWT and webhook secrets "
        "('NEW OLD', then the services restart); 0 turns the schedule off",
    )
    secret_replication: str = Field(
        default="automatic", alias="secretReplication", pattern=r"^(automatic|user-managed)$"
    )
    service_metrics: bool = Field(
        alias="serviceMetrics",
        description="GCP: the api, worker and relay export their Prometheus metrics to Cloud "
        "Monitoring through the Managed Prometheus sidecar, and the PromQL alerts use them. "
        "Off: platform metrics and log-based alerts only (the sidecar's CPU is most of its "
        "cost, docs/cost-model.md)",
    )
    cmek: bool = Field(
        alias="cmek",
        description="Customer-managed encryption keys this stack owns. GCP: Cloud SQL, "
        "Memorystore, Pub/Sub, Artifact Registry and Secret Manager (Cloud KMS). AWS: RDS, "
        "ElastiCache, Secrets Manager, ECR and CloudWatch Logs (KMS CMKs); off, the "
        "AWS-managed keys (aws/rds, aws/secretsmanager), ElastiCache's and CloudWatch Logs' "
        "default encryption and ECR's AES256. Fixed at first deploy: the stores cannot switch "
        "in place (docs/deploy-gcp.md, docs/deploy-aws.md)",
    )

    # GCP sizing (the AWS sizes above do not map onto Cloud SQL / Memorystore / Cloud Run)
    gcp_db_tier: str = Field(
        alias="gcpDbTier",
        pattern=r"^db-[a-z0-9-]+$",
        description="Cloud SQL machine tier (Enterprise edition)",
    )
    # The Memorystore and Cloud Run rules on these (1-300 GB; 1, 2, 4, 6 or 8 vCPUs and
    # the memory that fits them) belong to CacheArgs and ServiceSize: the GCP stack
    # builds those before any resource (stacks/gcp.py build_config_args).
    gcp_redis_memory_gb: int = Field(alias="gcpRedisMemoryGb")
    gcp_run_cpu: str = Field(
        alias="gcpRunCpu",
        pattern=r"^[1-9][0-9]?$",
        description="Cloud Run vCPUs per instance: 1, 2, 4, 6 or 8 (below 1 would force "
        "concurrency 1)",
    )
    gcp_run_memory: str = Field(alias="gcpRunMemory", pattern=r"^[0-9]+(Mi|Gi)$")
    gcp_api_min_instances: int = Field(alias="gcpApiMinInstances", ge=0, le=100)
    gcp_worker_min_instances: int | None = Field(
        default=None,
        alias="gcpWorkerMinInstances",
        ge=0,
        le=100,
        description="Cloud Run worker minimum instances (default workerMinCount). 0 lets the "
        "push-driven worker scale to zero: the first job after an idle spell waits for a "
        "cold start (Pub/Sub retries the push meanwhile)",
    )
    gcp_relay_billing: GcpRelayBilling = Field(
        alias="gcpRelayBilling",
        description="GCP relay CPU: instance (always-on, 1 vCPU) | scheduled (a fraction of a "
        "vCPU, request-billed, held by a Cloud Scheduler call every minute; docs/cost-model.md)",
    )
    gcp_push_audience: str | None = Field(
        default=None,
        alias="gcpPushAudience",
        description="OIDC audience of Pub/Sub pushes to the worker (default derived from names)",
    )

    @field_validator("nat")
    @classmethod
    def _nat(cls, value: str) -> str:
        allowed = ("none", "instance", "single", "one-per-az")
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    @field_validator("queue")
    @classmethod
    def _queue(cls, value: str) -> str:
        if value not in ("rabbitmq", "sqs"):
            raise ValueError("must be one of rabbitmq, sqs")
        return value

    @field_validator("cpu_architecture")
    @classmethod
    def _cpu_architecture(cls, value: str) -> str:
        allowed = [a.lower() for a in FARGATE_CPU_ARCHITECTURES]
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    @field_validator("image_uri", mode="before")
    @classmethod
    def _image_uri(cls, value: object) -> ImageReference | None:
        # Parsed here, once: stacks and components receive the ImageReference.
        if value is None or isinstance(value, ImageReference):
            return value
        return ImageReference.parse(value)  # type: ignore[arg-type]

    @field_serializer("image_uri")
    def _dump_image_uri(self, value: ImageReference | None) -> str | None:
        return None if value is None else str(value)

    @field_validator("api_deployment_strategy")
    @classmethod
    def _api_deployment_strategy(cls, value: str) -> str:
        allowed = ("rolling", "blue-green")
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        # The rule both clouds share; NetworkArgs adds the AWS one (at most /19).
        vpc_block(value)
        return value

    @field_validator("alarm_email")
    @classmethod
    def _alarm_email(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value:
            raise ValueError("an e-mail address")
        return value

    @field_validator("secret_rotation_days")
    @classmethod
    def _rotation(cls, value: int) -> int:
        # The previous key verifies for one interval only: a day could cut tokens short.
        if value != 0 and not 2 <= value <= 365:
            raise ValueError("must be 0 (no schedule) or 2 to 365 days")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        # CloudWatch accepts only these values; Cloud Logging is configured alike.
        allowed = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
        if value not in allowed:
            raise ValueError(f"must be one of {allowed}")
        return value

    @property
    def is_production(self) -> bool:
        return self.tier is Tier.PRODUCTION

    @property
    def worker_task_memory_mb(self) -> int:
        """Memory of one worker: workerMemoryMb on AWS, gcpRunMemory on Cloud Run."""
        if self.cloud is Cloud.GCP:
            number, unit = self.gcp_run_memory[:-2], self.gcp_run_memory[-2:]
            return int(number) * (1024 if unit == "Gi" else 1)
        return self.worker_memory_mb

    @property
    def worker_slots(self) -> int:
        """In-flight jobs per worker task: workerConcurrency, or what the memory allows."""
        if self.worker_concurrency is not None:
            return self.worker_concurrency
        return worker_concurrency_for(self.worker_task_memory_mb, self.worker_task_vcpus)

    @property
    def worker_jobs_per_second(self) -> float:
        """Jobs one worker task completes at the design LLM latency: its slots turned over
        every DESIGN_LLM_LATENCY_S, unless its CPU (at WORKER_CPU_TARGET) binds first."""
        by_slots = self.worker_slots / DESIGN_LLM_LATENCY_S
        by_cpu = self.worker_task_vcpus * WORKER_CPU_TARGET * 1000 / WORKER_CPU_MS_PER_JOB
        return min(by_slots, by_cpu)

    @property
    def worker_task_vcpus(self) -> float:
        """vCPUs of one worker: workerCpu / 1024 on Fargate, gcpRunCpu on Cloud Run."""
        if self.cloud is Cloud.GCP:
            return float(self.gcp_run_cpu)
        return self.worker_cpu / 1024

    @property
    def llm_requests_per_minute_per_task(self) -> int:
        """Every worker task at this pace stays within the organisation's limit together."""
        if not self.llm_requests_per_minute:
            return 0
        return self.llm_requests_per_minute // self.worker_max_count

    @property
    def tags(self) -> dict[str, str]:
        return {
            "environment": self.tier.value,
            "service": self.service,
            "managed-by": "pulumi",
            "cost-center": self.cost_center,
        }


# Worker sizing from bench/pipeline.py (docs/performance.md, "Capacity of one worker"):
# one asyncio worker process kept 1,024-4,096 calls in flight at 2,000 ms of LLM
# latency on 105-173 MiB resident (~68 MiB idle) and, since the third round of cuts,
# 0.39-0.55 ms of CPU per job on one machine and 0.85-0.94 ms on a slower one with the
# same code (real HTTP calls to the bench's fake LLM server, aiohttp client; Celery was
# as much slower there). A task's vCPU is not known to be the faster kind, so the
# budgets below are the slower machine's, widened: WORKER_CPU_MS_PER_JOB is 1.0 (room
# for a real provider's TLS), and WORKER_MIB_PER_CALL leaves room for its connection
# and response body, which the simulation does not allocate.
WORKER_BASE_MIB = 160
WORKER_MIB_PER_CALL = 0.25
WORKER_CPU_MS_PER_JOB = 1.0
# The LLM latency the defaults are sized for (a real model answers in 1-10 s).
DESIGN_LLM_LATENCY_S = 2.0
# Cloud Run's maximum request concurrency; also past it one event loop's CPU binds.
MAX_WORKER_CONCURRENCY = 1000
# Keep a quarter of the task's memory, and 30 % of its CPU, for what the budget omits.
WORKER_MEMORY_HEADROOM = 0.75
WORKER_CPU_TARGET = 0.7


def worker_memory_bound(memory_mb: int) -> int:
    """In-flight calls that fit ``memory_mb`` (0 when the task is too small for any)."""
    usable = memory_mb * WORKER_MEMORY_HEADROOM - WORKER_BASE_MIB
    return max(0, int(usable / WORKER_MIB_PER_CALL))


def worker_cpu_bound(vcpus: float) -> int:
    """In-flight calls whose completions ``vcpus`` keep up with at the design latency:
    jobs/s the CPU sustains x seconds each call stays in flight (Little's law)."""
    jobs_per_s = vcpus * WORKER_CPU_TARGET * 1000 / WORKER_CPU_MS_PER_JOB
    return int(jobs_per_s * DESIGN_LLM_LATENCY_S)


def worker_concurrency_for(memory_mb: int, vcpus: float = 1.0) -> int:
    bound = min(worker_memory_bound(memory_mb), worker_cpu_bound(vcpus))
    return max(1, min(MAX_WORKER_CONCURRENCY, bound))


# Defaults per environment: staging is cheap, production is highly available.
ENVIRONMENT_DEFAULTS: dict[Tier, dict[str, Any]] = {
    Tier.STAGING: {
        "availabilityZones": 2,
        # docs/cost-model.md: what each of these staging savings costs in behaviour.
        "nat": "instance",
        "interfaceEndpoints": False,
        "dbInstanceClass": "db.t4g.micro",
        "dbAllocatedStorageGb": 20,
        "dbMaxStorageGb": 100,
        "dbMultiAz": False,
        "dbBackupRetentionDays": 7,
        "dbProxy": False,
        "deletionProtection": False,
        "cacheNodeType": "cache.t4g.micro",
        "cacheNodes": 1,
        "cacheSnapshotRetentionDays": 0,
        "brokerInstanceType": "mq.t3.micro",
        "brokerCluster": False,
        "apiCpu": 256,
        "apiMemoryMb": 512,
        "apiMinCount": 1,
        "apiMaxCount": 3,
        "workerCpu": 256,
        "workerMemoryMb": 512,
        "workerMinCount": 1,
        "workerMaxCount": 3,
        "relayCount": 1,
        "workerSpot": True,
        "apiSpot": True,
        "relaySpot": True,
        # Graviton on Fargate Spot too (platform 1.4.0+): ~20 % below x86 Spot, and the
        # same architecture as production (docs/cost-model.md).
        "cpuArchitecture": "arm64",
        "ecsExec": True,
        "waf": False,
        "edgeLoadBalancer": False,
        "logRetentionDays": 30,
        "gcpDbTier": "db-g1-small",
        "gcpRedisMemoryGb": 1,
        "gcpRunCpu": "1",
        "gcpRunMemory": "512Mi",
        "gcpApiMinInstances": 0,
        "gcpWorkerMinInstances": 0,
        "gcpRelayBilling": "scheduled",
        "serviceMetrics": False,
        "cmek": False,
    },
    Tier.PRODUCTION: {
        "availabilityZones": 3,
        "nat": "one-per-az",
        # Off: at the modelled traffic four endpoints x 3 AZs cost ~10x the NAT processing
        # of the same bytes (docs/cost-model.md); set true for a private path to AWS APIs.
        "interfaceEndpoints": False,
        "dbInstanceClass": "db.m7g.large",
        "dbAllocatedStorageGb": 100,
        "dbMaxStorageGb": 1000,
        "dbMultiAz": True,
        "dbBackupRetentionDays": 30,
        "dbProxy": True,
        "deletionProtection": True,
        "cacheNodeType": "cache.m7g.large",
        "cacheNodes": 2,
        "cacheSnapshotRetentionDays": 7,
        "brokerInstanceType": "mq.m5.large",
        "brokerCluster": True,
        "apiCpu": 1024,
        "apiMemoryMb": 2048,
        "apiMinCount": 2,
        "apiMaxCount": 10,
        "workerCpu": 1024,
        "workerMemoryMb": 2048,
        "workerMinCount": 2,
        "workerMaxCount": 10,
        "relayCount": 2,
        "workerSpot": False,
        # Graviton: ~20 % less per vCPU- and GB-hour; CI builds the image for both
        # architectures (docs/image.md). Fargate Spot would need x86_64.
        "cpuArchitecture": "arm64",
        "ecsExec": False,
        "waf": True,
        "edgeLoadBalancer": True,
        "logRetentionDays": 365,
        "gcpDbTier": "db-custom-2-7680",
        "gcpRedisMemoryGb": 2,
        "gcpRunCpu": "1",
        "gcpRunMemory": "1Gi",
        "gcpApiMinInstances": 1,
        # Production's relays stay always-on: no minute-scale pause, no Scheduler in the path.
        "gcpRelayBilling": "instance",
        "serviceMetrics": True,
        # Keys the organisation controls (and can revoke); see docs/deploy-gcp.md.
        "cmek": True,
    },
}

# Review stacks (review.yml: `review-pr-<number>`, one per labelled pull request): the
# staging tier (no deletion protection, so `pulumi destroy` removes everything) at its
# smallest; keys set in the stack's config still win.
REVIEW_STACK_PREFIX = "review-"
REVIEW_DEFAULTS: dict[str, Any] = {
    "apiMaxCount": 1,
    "workerMaxCount": 1,
    "dbBackupRetentionDays": 1,
    "logRetentionDays": 7,
}


def review_label(stack: str) -> str | None:
    """``review-pr-123`` -> ``pr123``; None for any other stack name.

    The label replaces the tier in physical names and prefixes the domain, so a review
    stack never takes a name or hostname staging holds; ``pr<number>`` is shorter than
    ``staging``, so every name length that fits staging fits it.
    """
    if not stack.startswith(REVIEW_STACK_PREFIX):
        return None
    rest = stack.removeprefix(REVIEW_STACK_PREFIX)
    if not (rest.startswith("pr-") and rest[3:].isdigit() and len(rest[3:]) <= 6):
        raise ConfigError(
            f"stack {stack!r}: review stacks are named review-pr-<pull request number> "
            "(review.yml creates them), e.g. review-pr-123"
        )
    return "pr" + rest[3:]


def resource_prefix(settings: Settings, stack: str) -> str:
    """The prefix of every resource and physical name: ``<service>-<tier>``, or
    ``<service>-pr<number>`` for a review stack."""
    return f"{settings.service}-{review_label(stack) or settings.tier.value}"


KNOWN_KEYS = frozenset({field.alias or name for name, field in Settings.model_fields.items()})


def _coerce(raw: str) -> Any:
    """Pulumi config values arrive as strings; YAML-style scalars become typed."""
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return raw


def build_settings(stack: str, values: Mapping[str, Any]) -> Settings:
    """Validate ``values`` (``groundwork:`` keys without the prefix) for ``stack``."""
    reject_unknown_keys(values)
    review = review_label(stack)
    raw_env = values.get("environment", Tier.STAGING.value if review else stack)
    try:
        tier = Tier(raw_env)
    except ValueError:
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:environment is {raw_env!r}; allowed: staging, production "
            "(set it explicitly when the stack name is neither)"
        ) from None
    if review and tier is not Tier.STAGING:
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:environment is {raw_env!r} on review stack {stack!r}; review "
            f"stacks use the staging tier (`pulumi config rm {CONFIG_NAMESPACE}:environment`)"
        )
    merged: dict[str, Any] = {
        **ENVIRONMENT_DEFAULTS[tier],
        **(REVIEW_DEFAULTS if review else {}),
        "environment": tier.value,
    }
    merged.update({key: _coerce(v) if isinstance(v, str) else v for key, v in values.items()})
    if review and merged.get("domain"):
        # Copied from staging's config: serve on pr<number>.<that domain> instead of
        # taking staging's hostname; the certificate is then issued for that name in
        # hostedZoneId (staging's certificateArn does not cover it).
        merged["domain"] = f"{review}.{merged['domain']}"
        merged.pop("certificateArn", None)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        value = merged.get(key, "<missing>")
        raise invalid_value(key, value, error["msg"].removeprefix("Value error, ")) from None
    if settings.api_min_count > settings.api_max_count:
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:apiMinCount ({settings.api_min_count}) exceeds "
            f"apiMaxCount ({settings.api_max_count})"
        )
    if settings.worker_min_count > settings.worker_max_count:
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:workerMinCount ({settings.worker_min_count}) exceeds "
            f"workerMaxCount ({settings.worker_max_count})"
        )
    if settings.worker_concurrency is not None:
        bound = worker_memory_bound(settings.worker_task_memory_mb)
        memory_key = "gcpRunMemory" if settings.cloud is Cloud.GCP else "workerMemoryMb"
        if settings.worker_concurrency > bound:
            raise ConfigError(
                f"{CONFIG_NAMESPACE}:workerConcurrency ({settings.worker_concurrency}) does not "
                f"fit {CONFIG_NAMESPACE}:{memory_key} ({settings.worker_task_memory_mb} MiB): "
                f"at most "
                f"{bound} in-flight calls ({WORKER_BASE_MIB} MiB + {WORKER_MIB_PER_CALL} MiB per "
                f"call within {WORKER_MEMORY_HEADROOM:.0%} of the memory); raise "
                f"{memory_key} or lower workerConcurrency"
            )
    if settings.llm_requests_per_minute and (
        settings.llm_requests_per_minute < settings.worker_max_count
    ):
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:llmRequestsPerMinute ({settings.llm_requests_per_minute}) is "
            f"below {CONFIG_NAMESPACE}:workerMaxCount ({settings.worker_max_count}): each "
            "worker task gets the limit divided by workerMaxCount, which would be 0"
        )
    if settings.image_uri and settings.image_tag != "latest":
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:imageTag = {settings.image_tag!r} conflicts with "
            f"{CONFIG_NAMESPACE}:imageUri: imageUri deploys a prebuilt image and nothing is "
            f"built or tagged; remove imageTag (`pulumi config rm {CONFIG_NAMESPACE}:imageTag`)"
        )
    if settings.certificate_arn and not settings.domain:
        raise ConfigError(f"{CONFIG_NAMESPACE}:certificateArn needs {CONFIG_NAMESPACE}:domain")
    if (
        settings.cloud is Cloud.GCP
        and settings.gcp_relay_billing is GcpRelayBilling.SCHEDULED
        and settings.service_metrics
    ):
        # Below 1 vCPU Cloud Run requires request-based billing and the first-generation
        # execution environment ("Configure CPU limits"), and its requirements table lists
        # sidecars too; the metrics sidecar would also get no CPU between the holds.
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:gcpRelayBilling = 'scheduled' conflicts with "
            f"{CONFIG_NAMESPACE}:serviceMetrics = true: a relay below 1 vCPU cannot run the "
            f"metrics sidecar; set {CONFIG_NAMESPACE}:gcpRelayBilling instance or "
            f"{CONFIG_NAMESPACE}:serviceMetrics false"
        )
    return settings


def reject_unknown_keys(keys: Iterable[str]) -> None:
    """A misspelled key would otherwise be ignored and its default silently deployed."""
    unknown = sorted(set(keys) - KNOWN_KEYS)
    if not unknown:
        return
    key = unknown[0]
    nearest = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.6)
    hint = (
        f"did you mean {CONFIG_NAMESPACE}:{nearest[0]}? "
        f"(`pulumi config rm {CONFIG_NAMESPACE}:{key}` then "
        f"`pulumi config set {CONFIG_NAMESPACE}:{nearest[0]} ...`)"
        if nearest
        else f"known keys: {', '.join(sorted(KNOWN_KEYS))}"
    )
    raise ConfigError(f"unknown config key {CONFIG_NAMESPACE}:{key}; {hint}")


def stack_config_keys() -> set[str]:
    """Every ``groundwork:*`` key in the running program's config bag (without prefix).

    ``pulumi.Config.get`` only answers for keys it is asked about, so the bag the language
    host handed the program is read directly to find keys nobody asks about.
    """
    from pulumi.runtime import config as runtime_config

    bag = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{CONFIG_NAMESPACE}:"
    return {key.removeprefix(prefix) for key in bag if key.startswith(prefix)}


def load_settings(
    config_getter: Callable[[str], str | None] | None = None, stack: str | None = None
) -> Settings:
    """Read every known ``groundwork:*`` key from the running Pulumi program."""
    if config_getter is None:
        reject_unknown_keys(stack_config_keys())
        config = pulumi.Config(CONFIG_NAMESPACE)
        config_getter = config.get
    values = {key: v for key in KNOWN_KEYS if (v := config_getter(key)) is not None}
    return build_settings(stack or pulumi.get_stack(), values)
