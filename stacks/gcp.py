"""The GCP environment: Cloud Run services around Cloud SQL, Memorystore and Pub/Sub.

Reads top to bottom like the architecture: network, data stores, queue, secrets,
image, services, push wiring, edge, alarms. Staging and production differ only
through ``settings`` (see ``stacks/config.py`` for the per-environment defaults).
"""

from __future__ import annotations

import dataclasses
from typing import TypedDict

import pulumi
import pulumi_gcp as gcp

from components.args import FROM_RESOURCE
from components.gcp import (
    Alarms,
    AlarmsArgs,
    ApiExposure,
    Availability,
    Cache,
    CacheArgs,
    CacheTier,
    ContainerRegistry,
    ContainerService,
    ContainerServiceArgs,
    Database,
    DatabaseArgs,
    Edge,
    EdgeArgs,
    JobQueue,
    JobQueueArgs,
    Network,
    NetworkArgs,
    PushSubscription,
    PushSubscriptionArgs,
    RegistryArgs,
    SecretReplication,
    SecretSource,
    SecretSpec,
    SecretStore,
    SecretStoreArgs,
    ServiceSize,
    TrafficStrategy,
    carve,
    gcp_labels,
)
from components.gcp.database import AUDIT_FLAGS, DEFAULT_FLAGS
from components.gcp.kms import CmekKey, CmekUse, EncryptionKeys, EncryptionKeysArgs
from components.gcp.logs import ServiceLogs, ServiceLogsArgs
from components.gcp.secrets import replication_of
from components.gcp.services import RelayBilling, is_not_found
from components.image_ref import ImageReference, require_in_repository
from components.source import SERVICE_CONTEXT, source_fingerprint
from groundwork.stack_outputs import GcpOutputs
from stacks.arg_keys import config_keys
from stacks.config import ConfigError, Settings, invalid_value, resource_prefix
from stacks.service_env import DELIVERY_ATTEMPTS, METRICS_PORT, application_env, token_claims

SHUTDOWN_TIMEOUT_SECONDS = 8
"""Cloud Run sends SIGTERM and SIGKILLs 10 s later, not configurable for services
(https://cloud.google.com/run/docs/container-contract, "Instance shutdown"): in-flight
pushes get 8 s; one cut off is not acked, so Pub/Sub redelivers it."""

WORKER_TIMEOUT_SECONDS = 180
"""Worst case of one job (LLM timeout x retries + backoff): the worker's request timeout
and the push subscription's ack deadline."""


SCHEDULED_RELAY_CPU = "0.25"
"""vCPU of the scheduled relay: below 0.5 Cloud Run caps memory at 512 MiB, what the
relay runs in everywhere; one poll cycle per job batch is a few ms of CPU (docs/
performance.md), far below a quarter vCPU at staging's rates."""
SCHEDULED_RELAY_HOLD_SECONDS = 55
"""Each minute's Scheduler call holds the relay's CPU this long (docs/cost-model.md)."""


class RelayArgs(TypedDict, total=False):
    relay_billing: RelayBilling
    relay_cpu: str
    relay_memory: str
    relay_hold_seconds: int
    relay_instances: int


def relay_billing(settings: Settings) -> RelayArgs:
    """The relay's ContainerServiceArgs for ``groundwork:gcpRelayBilling``."""
    if settings.gcp_relay_billing.value == RelayBilling.SCHEDULED.value:
        return {
            "relay_billing": RelayBilling.SCHEDULED,
            "relay_cpu": SCHEDULED_RELAY_CPU,
            "relay_memory": "512Mi",
            "relay_hold_seconds": SCHEDULED_RELAY_HOLD_SECONDS,
            "relay_instances": 1,
        }
    # Several relays are safe (rows are claimed with SKIP LOCKED).
    return {
        "relay_billing": RelayBilling.INSTANCE,
        "relay_instances": RELAY_INSTANCES[settings.is_production],
    }


def build(settings: Settings) -> GcpOutputs:
    project, region = gcp_location(settings)
    prefix = resource_prefix(settings, pulumi.get_stack())
    labels = gcp_labels(settings.tags)
    exposure = api_exposure(settings)
    validate_rollout(settings)
    if settings.image_uri:
        validate_image_uri(settings.image_uri, project, region, prefix)
    config_args = build_config_args(settings, region, labels, exposure)
    # One explicit provider: groundwork:gcpProject / groundwork:region override the
    # gcp:* keys, and every resource lands in the project the stack names.
    provider = gcp.Provider(f"{prefix}-gcp", project=project, region=region)
    opts = pulumi.ResourceOptions(providers=[provider])

    replication = SecretReplication(settings.secret_replication)
    keys = encryption_keys(settings, prefix, project, region, replication, labels, provider, opts)

    network = Network(prefix, config_args.network, opts)

    database = Database(
        prefix,
        dataclasses.replace(
            config_args.database,
            network_id=network.network_id,
            allocated_ip_range=network.service_access_range_name,
            depends_on=[network.service_networking_connection, *_grant(keys, CmekUse.SQL)],
            encryption_key_name=_key(keys, CmekUse.SQL),
        ),
        opts,
    )
    cache = Cache(
        prefix,
        dataclasses.replace(
            config_args.cache,
            network_id=network.network_id,
            reserved_ip_range=network.service_access_range_name,
            depends_on=[network.service_networking_connection, *_grant(keys, CmekUse.REDIS)],
            customer_managed_key=_key(keys, CmekUse.REDIS),
        ),
        opts,
    )

    queue = JobQueue(
        prefix,
        JobQueueArgs(
            project=project,
            labels=labels,
            protect=settings.deletion_protection,
            kms_key_name=_key(keys, CmekUse.PUBSUB),
            depends_on=_grant(keys, CmekUse.PUBSUB),
        ),
        opts,
    )
    push_audience = settings.gcp_push_audience or f"https://{project}/{prefix}-worker/pubsub/push"

    refuse_replication_change(prefix, project, replication, [region], provider)
    secrets = SecretStore(
        prefix,
        SecretStoreArgs(
            specs=[
                SecretSpec("DB_PASSWORD", SecretSource.PROVIDED, database.password),
                SecretSpec("REDIS_PASSWORD", SecretSource.PROVIDED, cache.auth_string),
                SecretSpec("JWT_SECRET", SecretSource.GENERATED),
                SecretSpec("WEBHOOK_SECRET", SecretSource.GENERATED),
                SecretSpec("LLM_API_KEY", SecretSource.OPERATOR),
            ],
            replication=replication,
            replica_locations=[region] if replication is SecretReplication.USER_MANAGED else [],
            deletion_protection=settings.deletion_protection,
            labels=labels,
            kms_key_names={loc: k.key_id for loc, k in keys.secret_keys.items()} if keys else {},
            depends_on=[r for k in keys.secret_keys.values() for r in k.ready] if keys else [],
        ),
        opts,
    )

    # CI deploys the image it built once (imageUri); by hand, 'latest' means "this
    # checkout" and a content hash keeps tags immutable.
    image_tag = (
        source_fingerprint(SERVICE_CONTEXT)
        if settings.image_tag == "latest" and not settings.image_uri
        else settings.image_tag
    )
    registry = ContainerRegistry(
        prefix,
        RegistryArgs(
            location=region,
            image_tag=image_tag,
            immutable_tags=True,
            labels=labels,
            protect=settings.deletion_protection,
            image_uri=settings.image_uri,
            kms_key_name=_key(keys, CmekUse.REGISTRY),
            depends_on=_grant(keys, CmekUse.REGISTRY),
        ),
        opts,
    )

    app = ContainerService(
        prefix,
        ContainerServiceArgs(
            region=region,
            image=registry.image_ref,
            network_id=network.network_id,
            subnet_id=network.subnet_id,
            network_tags=network.run_network_tags,
            env=service_env(settings, project, database, cache, queue, push_audience),
            secrets=secrets.refs,
            publish_topic=queue.topic_name,
            push_audience=push_audience,
            api=config_args.api,
            worker=config_args.worker,
            **relay_billing(settings),
            api_exposure=exposure,
            # Production rolls out through `groundwork ops shift-traffic` (10/50/100 %).
            api_traffic=(
                TrafficStrategy.PINNED if settings.is_production else TrafficStrategy.LATEST
            ),
            deletion_protection=settings.deletion_protection,
            labels=labels,
            # /metrics to Cloud Monitoring through the Managed Prometheus sidecar.
            project=project,
            metrics_port=METRICS_PORT,
            metrics_export=settings.service_metrics,
            # The config secret is encrypted and replicated like every other secret.
            metrics_config_replication=secrets.replication,
            metrics_config_depends_on=(
                [r for k in keys.secret_keys.values() for r in k.ready] if keys else []
            ),
        ),
        opts,
    )

    push = PushSubscription(
        prefix,
        PushSubscriptionArgs(
            queue=queue,
            push_endpoint=app.push_endpoint,
            audience=push_audience,
            worker_service_name=app.worker.name,
            worker_location=region,
            ack_deadline_seconds=WORKER_TIMEOUT_SECONDS,
            max_delivery_attempts=DELIVERY_ATTEMPTS,
            labels=labels,
            protect=settings.deletion_protection,
        ),
        opts,
    )

    edge: Edge | None = None
    if config_args.edge is not None:
        edge = Edge(
            prefix, dataclasses.replace(config_args.edge, api_service_name=app.api.name), opts
        )
    api_url: pulumi.Output[str] = edge.url if edge else app.api_url

    ServiceLogs(
        prefix,
        ServiceLogsArgs(
            project=project,
            region=region,
            # CloudWatch's longest step (3653) is 3 days over Cloud Logging's maximum.
            retention_days=min(settings.log_retention_days, 3650),
            run_service_prefix=f"{prefix}-",
            sql_instance_id=database.instance_name.apply(lambda n: f"{project}:{n}"),
            labels=labels,
            protect=settings.deletion_protection,
        ),
        opts,
    )

    alarms = Alarms(
        prefix,
        AlarmsArgs(
            project=project,
            region=region,
            api_service_name=app.api.name,
            run_service_names={
                "api": app.api.name,
                "worker": app.worker.name,
                "relay": app.relay.name,
            },
            sql_instance_name=database.instance_name,
            redis_instance_name=cache.instance.name,
            push_subscription_name=push.subscription_name,
            dead_letter_subscription_name=queue.dead_letter_subscription_name,
            uptime_host=(
                None
                if exposure is ApiExposure.PRIVATE
                else api_url.apply(lambda url: url.removeprefix("https://").split("/")[0])
            ),
            notification_email=settings.alarm_email,
            labels=labels,
            service_metrics=settings.service_metrics,
            relay_scheduled=app.relay_scheduler is not None,
        ),
        opts,
    )

    claims = token_claims(settings)
    return {
        "cloud": "gcp",
        "project": project,
        "region": region,
        "api_url": api_url,
        "dashboard_url": alarms.dashboard_url,
        "api_service_name": app.api.name,
        "worker_service_name": app.worker.name,
        "relay_service_name": app.relay.name,
        "migrate_job_name": app.migrate.name,
        "db_instance_name": database.instance_name,
        "pubsub_topic": queue.topic_name,
        "dead_letter_topic": queue.dead_letter_topic_name,
        "dead_letter_subscription": queue.dead_letter_subscription_name,
        "artifact_registry_url": registry.repository_url,
        # What the revisions run: previews and manual `pulumi up` pin it
        # (groundwork:imageUri) instead of rebuilding from a working copy.
        "deployed_image": registry.image_ref,
        "jwt_issuer": claims["jwt_issuer"],
        "jwt_audience": claims["jwt_audience"],
        "secret_ids": secrets.secret_ids,
    }


@dataclasses.dataclass(frozen=True)
class ConfigArgs:
    """The components' Args a config value reaches, built (and so checked by their
    ``__post_init__``) before any resource; the fields other resources' outputs fill
    (``FROM_RESOURCE``) are set with ``dataclasses.replace`` once those exist."""

    network: NetworkArgs
    database: DatabaseArgs
    cache: CacheArgs
    api: ServiceSize
    worker: ServiceSize
    edge: EdgeArgs | None


def build_config_args(
    settings: Settings, region: str, labels: dict[str, str], exposure: ApiExposure
) -> ConfigArgs:
    """Every cloud rule on config values, checked by the Args that own it; an ``ArgError``
    becomes a ``ConfigError`` naming the config key (stacks/arg_keys.py)."""
    subnet_cidr, service_access_cidr = carve(settings.vpc_cidr)
    network = NetworkArgs(
        region=region,
        subnet_cidr=subnet_cidr,
        service_access_cidr=service_access_cidr,
        flow_log_sampling=0.5 if settings.is_production else 0.1,
        labels=labels,
    )
    with config_keys(DatabaseArgs):
        database = DatabaseArgs(
            network_id=FROM_RESOURCE,
            allocated_ip_range=FROM_RESOURCE,
            tier=settings.gcp_db_tier,
            availability=Availability.REGIONAL if settings.db_multi_az else Availability.ZONAL,
            disk_size_gb=settings.db_allocated_storage_gb,
            disk_autoresize_limit_gb=settings.db_max_storage_gb,
            backup_retention_days=settings.db_backup_retention_days,
            backup_location=region,
            flags={
                **DEFAULT_FLAGS,
                **(AUDIT_FLAGS if settings.is_production else {}),
                **connection_flags(settings),
            },
            deletion_protection=settings.deletion_protection,
            database_name=settings.service.replace("-", "_"),
            user_name=f"{settings.service.replace('-', '_')}_app",
            maintenance_track="stable" if settings.is_production else "canary",
            labels=labels,
        )
    with config_keys(CacheArgs):
        cache = CacheArgs(
            network_id=FROM_RESOURCE,
            reserved_ip_range=FROM_RESOURCE,
            tier=CacheTier.STANDARD_HA if settings.cache_nodes > 1 else CacheTier.BASIC,
            memory_size_gb=settings.gcp_redis_memory_gb,
            persistence=settings.cache_snapshot_retention_days > 0,
            deletion_protection=settings.deletion_protection,
            labels=labels,
        )
    with config_keys(ServiceSize, "api"):
        api = ServiceSize(
            cpu=settings.gcp_run_cpu,
            memory=settings.gcp_run_memory,
            min_instances=settings.gcp_api_min_instances,
            max_instances=settings.api_max_count,
            concurrency=80,
            timeout="30s",
        )
    with config_keys(ServiceSize, "worker"):
        worker = ServiceSize(
            cpu=settings.gcp_run_cpu,
            memory=settings.gcp_run_memory,
            min_instances=(
                settings.worker_min_count
                if settings.gcp_worker_min_instances is None
                else settings.gcp_worker_min_instances
            ),
            max_instances=settings.worker_max_count,
            # One push is one job: the same in-flight bound as a RabbitMQ worker.
            concurrency=settings.worker_slots,
            timeout=f"{WORKER_TIMEOUT_SECONDS}s",
        )
    edge = None
    if exposure is ApiExposure.LOAD_BALANCER:
        with config_keys(EdgeArgs):
            edge = EdgeArgs(
                region=region,
                api_service_name=FROM_RESOURCE,
                domain=settings.domain,
                labels=labels,
            )
    return ConfigArgs(
        network=network, database=database, cache=cache, api=api, worker=worker, edge=edge
    )


def encryption_keys(
    settings: Settings,
    prefix: str,
    project: str,
    region: str,
    replication: SecretReplication,
    labels: dict[str, str],
    provider: gcp.Provider,
    opts: pulumi.ResourceOptions,
) -> EncryptionKeys | None:
    """The CMEK keys (``groundwork:cmek``), after checking the live stack agrees."""
    refuse_cmek_change(settings.cmek, prefix, project, region, provider)
    if not settings.cmek:
        return None
    number = gcp.organizations.get_project_output(
        project_id=project, opts=pulumi.InvokeOutputOptions(provider=provider)
    ).number
    return EncryptionKeys(
        prefix,
        EncryptionKeysArgs(
            project=project,
            project_number=number,
            region=region,
            # Secret Manager: a global key for automatic replication, else one per replica.
            secret_locations=(
                [region] if replication is SecretReplication.USER_MANAGED else ["global"]
            ),
            protect=settings.deletion_protection,
            labels=labels,
        ),
        opts,
    )


def _key(keys: EncryptionKeys | None, use: CmekUse) -> pulumi.Output[str] | None:
    return keys.keys[use].key_id if keys else None


def _grant(keys: EncryptionKeys | None, use: CmekUse) -> list[pulumi.Resource]:
    """The store's agent grant on its key, and the wait for that grant to propagate."""
    found: CmekKey | None = keys.keys[use] if keys else None
    return found.ready if found else []


def refuse_cmek_change(
    cmek: bool, prefix: str, project: str, region: str, provider: gcp.Provider
) -> None:
    """CMEK cannot be switched on or off for live data stores.

    Cloud SQL's ``encryption_key_name``, Memorystore's ``customer_managed_key``, Artifact
    Registry's ``kms_key_name`` and Secret Manager's ``replication`` are immutable
    (groundwork/plan/replacement.yaml; Memorystore: "You can't enable CMEK on existing
    instances", https://cloud.google.com/memorystore/docs/redis/about-cmek): the toggle
    would replace the database, the cache, the registry and every secret. The Artifact
    Registry repository (fixed id, created with the stack) witnesses how the live stack
    was created; a missing repository (first deploy) skips the check, any other lookup
    error stops.
    """
    repository_id = f"{prefix}-images"
    try:
        live = gcp.artifactregistry.get_repository(
            location=region,
            repository_id=repository_id,
            project=project,
            opts=pulumi.InvokeOptions(provider=provider),
        )
    except Exception as exc:
        if is_not_found(exc):
            return
        raise ConfigError(
            f"could not read repository {repository_id} to check groundwork:cmek ({exc}); the "
            "deploy identity needs artifactregistry.repositories.get"
        ) from exc
    if not live.name:
        return
    live_cmek = bool(live.kms_key_name)
    if live_cmek != cmek:
        state = "with" if live_cmek else "without"
        raise ConfigError(
            f"groundwork:cmek = {str(cmek).lower()} but this stack's data stores were created "
            f"{state} customer-managed keys (repository {repository_id}): Cloud SQL, "
            "Memorystore, Artifact Registry and Secret Manager cannot switch encryption in "
            "place, so the change would replace the database, the cache, the registry and "
            f"every secret. Set groundwork:cmek back to {str(live_cmek).lower()}, or migrate "
            "to a new stack (docs/deploy-gcp.md, 'Customer-managed encryption keys')"
        )


def refuse_replication_change(
    prefix: str,
    project: str,
    replication: SecretReplication,
    region_locations: list[str],
    provider: gcp.Provider,
) -> None:
    """Secret Manager ``replication`` is immutable and the secret ids are fixed.

    The provider would replace every secret: create-first fails on "already exists",
    delete-first destroys the operator's LLM_API_KEY versions. So the live replication
    (read from the operator-managed secret) must match ``groundwork:secretReplication``.
    Only a missing secret (first deploy) skips the check; any other lookup error stops.
    """
    secret_id = f"{prefix}-llm-api-key"
    try:
        live = gcp.secretmanager.get_secret(
            secret_id=secret_id, project=project, opts=pulumi.InvokeOptions(provider=provider)
        )
    except Exception as exc:
        if is_not_found(exc):
            return
        raise ConfigError(
            f"could not read secret {secret_id} to check its replication ({exc}); the deploy "
            "identity needs secretmanager.secrets.get"
        ) from exc
    current = replication_of(live)
    if current is None:
        return
    wanted = region_locations if replication is SecretReplication.USER_MANAGED else []
    if current != (replication, sorted(wanted)):
        mode, locations = current
        where = f" in {', '.join(locations)}" if locations else ""
        raise ConfigError(
            f"groundwork:secretReplication = {replication.value!r} (region "
            f"{', '.join(wanted) or 'any'}) differs from the live secrets' replication "
            f"{mode.value!r}{where}: Secret Manager cannot change replication in place, and "
            "replacing the secrets would delete the operator's LLM_API_KEY versions. Set "
            f"groundwork:secretReplication back to {mode.value!r}, or migrate by hand "
            "(docs/deploy-gcp.md, 'Changes that replace a resource')"
        )


# Cloud SQL's default max_connections by tier memory
# (https://cloud.google.com/sql/docs/postgres/flags#postgres-m: 25 for db-f1-micro,
# 50 for db-g1-small, then by memory): (memory GB lower bound, connections).
_MAX_CONNECTIONS_BY_MEMORY = (
    (120, 1000), (60, 800), (30, 600), (15, 500), (7.5, 400), (6, 200), (3.75, 100), (0, 50),
)  # fmt: skip
SUPERUSER_RESERVED_CONNECTIONS = 3
RELAY_INSTANCES = {True: 2, False: 1}


def default_max_connections(tier: str) -> int:
    if tier == "db-f1-micro":
        return 25
    if tier == "db-g1-small":
        return 50
    parts = tier.split("-")
    memory_gb = int(parts[-1]) / 1024 if tier.startswith("db-custom-") else 0.0
    return next(conns for floor, conns in _MAX_CONNECTIONS_BY_MEMORY if memory_gb >= floor)


def peak_connections(settings: Settings) -> int:
    """Every instance's full pool at once: api and worker at max instances, the relays
    (pool + their LISTEN connection), a migrate run, the reserved superuser slots."""
    from groundwork_app.settings import Settings as AppSettings

    fields = AppSettings.model_fields
    per_process = int(fields["db_pool_size"].default) + int(fields["db_max_overflow"].default)
    relays = RELAY_INSTANCES[settings.is_production]
    return (
        (settings.api_max_count + settings.worker_max_count) * per_process
        + relays * (per_process + 1)
        + per_process
        + SUPERUSER_RESERVED_CONNECTIONS
    )


def connection_flags(settings: Settings) -> dict[str, str]:
    """Raise max_connections when the tier's default is below the peak the services can
    open; otherwise scaling out ends in "remaining connection slots are reserved".
    Changing the flag restarts the instance (docs/deploy-gcp.md)."""
    peak = peak_connections(settings)
    if peak <= default_max_connections(settings.gcp_db_tier):
        return {}
    return {"max_connections": str(-(-peak // 25) * 25)}


def gcp_location(settings: Settings) -> tuple[str, str]:
    """Project and region: ``groundwork:gcpProject``/``region`` win over ``gcp:*``."""
    config = pulumi.Config("gcp")
    project = settings.gcp_project or config.get("project")
    if not project:
        raise ConfigError(
            "gcp:project is not set; the GCP stack needs the project to deploy into: "
            "`pulumi config set gcp:project YOUR_PROJECT_ID`"
        )
    region = settings.region or config.get("region")
    if not region:
        raise ConfigError(
            "gcp:region is not set; Cloud Run, Cloud SQL and Memorystore are regional: "
            "`pulumi config set gcp:region europe-west1`"
        )
    return project, region


def registry_repository_url(project: str, region: str, prefix: str) -> str:
    """The Artifact Registry repository ContainerRegistry creates (its ``registry_uri``)."""
    return f"{region}-docker.pkg.dev/{project}/{prefix}-images"


def validate_image_uri(uri: ImageReference, project: str, region: str, prefix: str) -> None:
    """``groundwork:imageUri`` must live in this stack's Artifact Registry repository."""
    expected = registry_repository_url(project, region, prefix)
    try:
        require_in_repository(uri, expected)
    except ValueError:
        raise invalid_value(
            "imageUri",
            uri,
            f"an image in this stack's Artifact Registry repository, "
            f"{expected}/<image>@sha256:<digest> (each environment deploys images from its "
            "own registry only; CI pushes there)",
        ) from None


def validate_rollout(settings: Settings) -> None:
    if settings.api_deployment_strategy != "rolling":
        raise ConfigError(
            f"groundwork:apiDeploymentStrategy = {settings.api_deployment_strategy!r} is "
            "AWS only: on GCP new API revisions start at 0 % in production and "
            "`groundwork ops shift-traffic` moves traffic gradually; remove the key"
        )


def api_exposure(settings: Settings) -> ApiExposure:
    if settings.edge_load_balancer and not settings.public_api:
        raise ConfigError(
            "groundwork:edgeLoadBalancer=true publishes the API on the internet but "
            "groundwork:publicApi=false asks for a private API; set one of them to match"
        )
    if settings.edge_load_balancer:
        return ApiExposure.LOAD_BALANCER
    return ApiExposure.PUBLIC if settings.public_api else ApiExposure.PRIVATE


def service_env(
    settings: Settings,
    project: str,
    database: Database,
    cache: Cache,
    queue: JobQueue,
    push_audience: str,
) -> dict[str, pulumi.Input[str]]:
    """The plain half of the deployment contract (``deployment_contract(PUBSUB).env``)."""
    return {
        **application_env(settings),
        "DB_HOST": database.private_ip,
        "DB_PORT": "5432",
        "DB_NAME": database.database_name,
        "DB_USER": database.user_name,
        # Authenticate the server, not just encrypt: chain to the instance's own CA.
        # verify-ca, not verify-full: the certificate's CN is "<project>:<instance>",
        # it names no IP, and the services connect by private IP.
        "DB_SSLMODE": "verify-ca",
        "DB_TLS_CA_CERT": database.server_ca_pem,
        # Cloud SQL is reached directly (no pooler in between): cache prepared statements.
        "DB_STATEMENT_CACHE_SIZE": "100",
        "REDIS_HOST": cache.host,
        "REDIS_PORT": cache.port.apply(str),
        # Memorystore's server CA is private to the instance: not in any system store.
        "REDIS_TLS_CA_CERT": cache.server_ca_pem,
        "QUEUE_BACKEND": "pubsub",
        "QUEUE_NAME": queue.topic_name,
        "PUBSUB_PROJECT_ID": project,
        "PUBSUB_PUSH_AUDIENCE": push_audience,
        "PUBSUB_PUSH_SERVICE_ACCOUNT": queue.push_service_account.email,
        "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
        # The worker keeps Cloud Run's invoker check: Cloud Run validates the push token
        # and strips its signature, the app checks the claims (adapters/pubsub.py).
        "PUBSUB_PUSH_AUTH": "cloud-run-iam",
    }
