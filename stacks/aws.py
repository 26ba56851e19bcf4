"""The AWS environment: every component of a staging or production stack, in order.

Staging and production differ only through ``Settings`` (stacks/config.py holds each
tier's defaults). Read top to bottom, ``build`` is the whole environment.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws import (
    Alarms,
    AlarmsArgs,
    Cache,
    CacheArgs,
    ContainerService,
    ContainerServiceArgs,
    Database,
    DatabaseArgs,
    DeploymentMode,
    Edge,
    EdgeArgs,
    EncryptionKey,
    EncryptionKeyArgs,
    ImageSource,
    NatStrategy,
    Network,
    NetworkArgs,
    ProcessSize,
    RabbitMqJobQueue,
    RabbitMqJobQueueArgs,
    SecretStore,
    SecretStoreArgs,
    ServiceFirewall,
    ServiceFirewallArgs,
)
from components.aws.alarms import deployment_alarm_names
from components.aws.container_service import DeploymentStrategy, PrebuiltImage
from components.aws.database import app_connect_statement
from components.aws.job_queue_sqs import SqsJobQueue, SqsJobQueueArgs
from components.aws.network import DEFAULT_INTERFACE_ENDPOINTS
from components.aws.rotation import KeyRotation, KeyRotationArgs
from components.image_ref import ImageReference
from groundwork.stack_outputs import AwsOutputs
from stacks.arg_keys import config_keys
from stacks.config import (
    CONFIG_NAMESPACE,
    ConfigError,
    Settings,
    invalid_value,
    resource_prefix,
)
from stacks.rds_ca import proxy_root_cas, rds_root_ca
from stacks.service_env import DELIVERY_ATTEMPTS, application_env, token_claims

QUEUE_NAME = "jobs"
DLQ_NAME = "jobs.dlq"
# SQS_VISIBILITY_TIMEOUT_SECONDS and the queue's default visibility: above the job's
# deadline with the stacks' LLM settings (30 s timeout x 4 tries + 3 backoffs of <= 5 s).
SQS_VISIBILITY_TIMEOUT_SECONDS = 300
# asyncpg statement cache when tasks connect to PostgreSQL directly (no RDS Proxy).
DIRECT_STATEMENT_CACHE = 100
CONTAINER_PORT = 8000
STOP_TIMEOUT_SECONDS = 120
"""ECS stopTimeout, SIGTERM to SIGKILL: the most Fargate allows (ECS
ContainerDefinition.stopTimeout, "Max value is 120 seconds" on Fargate)."""
SHUTDOWN_TIMEOUT_SECONDS = 100
"""The app's drain of in-flight LLM calls (SHUTDOWN_TIMEOUT_SECONDS): ends 20 s before
the SIGKILL so unfinished messages are nacked and connections closed in time."""
IMAGE_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


def build(settings: Settings) -> AwsOutputs:
    """Create the environment described by ``settings``; return the stack outputs."""
    region = resolve_region(settings)
    validate(settings)
    config_args = build_config_args(settings)
    # Before any resource: a region without a committed RDS root is a ConfigError, not a
    # half-created stack.
    instance_ca = rds_root_ca(region)
    tag_everything(settings.tags)
    prefix = resource_prefix(settings, pulumi.get_stack())
    provider = aws.Provider(f"{prefix}-aws", region=region, default_tags={"tags": settings.tags})
    opts = pulumi.ResourceOptions(providers=[provider])
    if settings.image_uri:
        account = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=provider)).account_id
        validate_image_uri(settings.image_uri, region, account)
    api_deployment = DeploymentStrategy(settings.api_deployment_strategy)
    recovery_days = 30 if settings.is_production else 7
    # Stateful resources of a protected tier refuse `pulumi destroy` and replacement.
    protect = settings.deletion_protection

    # groundwork:cmek: customer-managed keys for the data stores and logs, or the AWS-managed
    # ones (docs/deploy-aws.md). Fixed at first deploy: checked against the live database.
    refuse_cmek_change(settings.cmek, prefix, provider)
    cmk = settings.cmek
    logs_key_arn: pulumi.Output[str] | None = None
    if cmk:
        logs_key_arn = EncryptionKey(
            f"{prefix}-logs",
            EncryptionKeyArgs(
                description=f"{prefix}: CloudWatch log groups",
                service_principals=[f"logs.{region}.amazonaws.com"],
                protect=protect,
            ),
            opts=opts,
        ).key_arn

    network = Network(
        f"{prefix}-net",
        dataclasses.replace(config_args.network, flow_log_kms_key_arn=logs_key_arn),
        opts=opts,
    )

    firewall = ServiceFirewall(
        f"{prefix}-fw",
        ServiceFirewallArgs(
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, container_port=CONTAINER_PORT
        ),
        opts=opts,
    )
    tasks = firewall.task_security_group_ids
    app_tasks = {p: tasks[p] for p in ("api", "worker", "relay")}

    secrets = SecretStore(
        f"{prefix}-secrets",
        SecretStoreArgs(
            recovery_window_days=recovery_days, customer_managed_key=cmk, protect=protect
        ),
        opts=opts,
    )

    database = Database(
        f"{prefix}-db",
        DatabaseArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.isolated_subnet_ids,
            client_security_group_ids=tasks,  # migrate included: it owns the schema
            instance_class=settings.db_instance_class,
            allocated_storage_gb=settings.db_allocated_storage_gb,
            max_allocated_storage_gb=settings.db_max_storage_gb,
            multi_az=settings.db_multi_az,
            backup_retention_days=settings.db_backup_retention_days,
            deletion_protection=settings.deletion_protection,
            final_snapshot=settings.is_production or settings.deletion_protection,
            protect=protect,
            proxy=settings.db_proxy,
            log_retention_days=settings.log_retention_days,
            log_kms_key_arn=logs_key_arn,
            customer_managed_key=cmk,
            backup_replica_provider=(
                aws.Provider(
                    f"{prefix}-aws-backups",
                    region=dr_region,
                    default_tags={"tags": settings.tags},
                )
                if (dr_region := backup_region(settings, region))
                else None
            ),
        ),
        opts=opts,
    )

    cache = Cache(
        f"{prefix}-cache",
        CacheArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            client_security_group_ids=app_tasks,
            secrets_kms_key_arn=secrets.kms_key_arn,
            node_type=settings.cache_node_type,
            nodes=settings.cache_nodes,
            automatic_failover=settings.cache_nodes >= 2,
            snapshot_retention_days=settings.cache_snapshot_retention_days,
            secret_recovery_window_days=recovery_days,
            log_retention_days=settings.log_retention_days,
            log_kms_key_arn=logs_key_arn,
            customer_managed_key=cmk,
            protect=protect,
        ),
        opts=opts,
    )

    broker: RabbitMqJobQueue | None = None
    queue: SqsJobQueue | None = None
    if settings.queue == "sqs":
        queue = SqsJobQueue(
            f"{prefix}-queue",
            SqsJobQueueArgs(
                delivery_limit=DELIVERY_ATTEMPTS,
                visibility_timeout_seconds=SQS_VISIBILITY_TIMEOUT_SECONDS,
                protect=protect,
            ),
            opts=opts,
        )
    else:
        broker = RabbitMqJobQueue(
            f"{prefix}-mq",
            RabbitMqJobQueueArgs(
                vpc_id=network.vpc_id,
                subnet_ids=network.private_subnet_ids,
                client_security_group_ids=app_tasks,
                secrets_kms_key_arn=secrets.kms_key_arn,
                broker_name=f"{prefix}-broker",
                management_client_security_group_ids={"migrate": tasks["migrate"]},
                protect=protect,
                instance_type=settings.broker_instance_type,
                deployment_mode=(
                    DeploymentMode.CLUSTER_MULTI_AZ
                    if settings.broker_cluster
                    else DeploymentMode.SINGLE_INSTANCE
                ),
                secret_recovery_window_days=recovery_days,
            ),
            opts=opts,
        )

    alb = Edge(
        f"{prefix}-edge",
        EdgeArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.public_subnet_ids,
            security_group_id=firewall.alb_security_group_id,
            container_port=CONTAINER_PORT,
            domain=settings.domain,
            certificate_arn=settings.certificate_arn,
            hosted_zone_id=settings.hosted_zone_id,
            deletion_protection=settings.deletion_protection,
            waf=settings.waf,
            waf_log_retention_days=settings.log_retention_days,
            waf_log_kms_key_arn=logs_key_arn,
            api_deployment=api_deployment,
        ),
        opts=opts,
    )

    environment = service_environment(settings, database, cache, broker, instance_ca, queue)
    secret_refs: dict[str, pulumi.Input[str]] = {
        # The master password, for migrate alone; the others authenticate with IAM tokens.
        "DB_PASSWORD": database.master_secret_arn.apply(lambda arn: f"{arn}:password::"),
        "REDIS_PASSWORD": cache.auth_secret_arn,
        "JWT_SECRET": secrets.secret_arns["jwt-secret"],
        "WEBHOOK_SECRET": secrets.secret_arns["webhook-secret"],
        "LLM_API_KEY": secrets.secret_arns["llm-api-key"],
    }
    secret_arns: dict[str, pulumi.Input[str]] = {
        **secrets.secret_arns,
        "db-master": database.master_secret_arn,
        "cache-auth": cache.auth_secret_arn,
    }
    if broker is not None:
        secret_refs["RABBITMQ_PASSWORD"] = broker.credentials_secret_arn.apply(
            lambda a: f"{a}:password::"
        )
        # The broker administrator, for migrate alone (it creates the application user).
        secret_refs["RABBITMQ_ADMIN_PASSWORD"] = broker.admin_secret_arn.apply(
            lambda a: f"{a}:password::"
        )
        secret_arns["broker-credentials"] = broker.credentials_secret_arn
        secret_arns["broker-admin"] = broker.admin_secret_arn

    app = ContainerService(
        f"{prefix}-app",
        ContainerServiceArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            security_group_ids=tasks,
            target_group_arn=alb.target_group_arn,
            load_balancer_arn_suffix=alb.arn_suffix,
            target_group_arn_suffix=alb.target_group_arn_suffix,
            environment=environment,
            secrets=secret_refs,
            secret_arns=list(secret_arns.values()),
            process_environment={"migrate": migrate_environment(database, instance_ca)},
            migrate_only_secrets=frozenset({"DB_PASSWORD", "RABBITMQ_ADMIN_PASSWORD"})
            & set(secret_refs),
            task_policy_statements=[
                database.app_connect_arn.apply(lambda arn: app_connect_statement([arn])),
                *(queue.task_statements(region) if queue else []),
            ],
            kms_key_arns=[k for k in (secrets.kms_key_arn, database.kms_key_arn) if k is not None],
            broker_name=broker.broker_name if broker else None,
            sqs_queue_name=queue.queue_name if queue else None,
            cpu_architecture=settings.cpu_architecture.upper(),
            image=config_args.image,
            api=config_args.api,
            worker=config_args.worker,
            relay_count=settings.relay_count,
            container_port=CONTAINER_PORT,
            stop_timeout_seconds=STOP_TIMEOUT_SECONDS,
            # Amazon MQ's MessageCount includes the messages workers hold (prefetch =
            # slots): one more full set of slots waiting per task is about one LLM
            # latency of queueing, past which another task pays for itself.
            worker_backlog_per_task=2.0 * settings.worker_slots,
            worker_spot=settings.worker_spot,
            api_spot=settings.api_spot,
            relay_spot=settings.relay_spot,
            ecs_exec=settings.ecs_exec,
            log_retention_days=settings.log_retention_days,
            log_kms_key_arn=logs_key_arn,
            repository_cmk=cmk,
            repository_force_delete=not settings.deletion_protection,
            protect=protect,
            queue_name=QUEUE_NAME,
            depends_on=[alb],
            api_deployment=api_deployment,
            blue_green=alb.blue_green,
            # The alarms watch the services, so they come after them: the service gets
            # the alarms' names (alarms.py makes them) instead of the resources.
            deployment_alarm_names=deployment_alarm_names(f"{prefix}-alarms"),
        ),
        opts=opts,
    )

    if settings.secret_rotation_days:
        KeyRotation(
            f"{prefix}-key-rotation",
            KeyRotationArgs(
                secret_arns={s: secrets.secret_arns[s] for s in ("jwt-secret", "webhook-secret")},
                secrets_kms_key_arn=secrets.kms_key_arn,
                cluster_name=app.cluster_name,
                service_names=[app.service_names[p] for p in ("api", "worker", "relay")],
                log_retention_days=settings.log_retention_days,
                log_kms_key_arn=logs_key_arn,
                rotation_days=settings.secret_rotation_days,
                protect=protect,
            ),
            opts=opts,
        )

    alarms = Alarms(
        f"{prefix}-alarms",
        AlarmsArgs(
            load_balancer_arn_suffix=alb.arn_suffix,
            target_group_arn_suffix=alb.target_group_arn_suffix,
            alternate_target_group_arn_suffix=(
                alb.blue_green.alternate_target_group_arn_suffix if alb.blue_green else None
            ),
            cluster_name=app.cluster_name,
            service_names=app.service_names,
            db_instance_identifier=database.instance_identifier,
            db_allocated_storage_gb=settings.db_allocated_storage_gb,
            db_max_connections=int(approx_max_connections(settings.db_instance_class) * 0.8),
            db_freeable_memory_bytes=instance_memory_bytes(settings.db_instance_class) * 0.1,
            db_proxy_name=database.proxy_name,
            nat_gateways=network.nat_gateway_count,
            service_max_counts={"api": settings.api_max_count, "worker": settings.worker_max_count},
            cache_cluster_ids=cache.member_cluster_ids,
            broker_name=broker.broker_name if broker else None,
            sqs_queue_name=queue.queue_name if queue else None,
            sqs_dlq_name=queue.dlq_name if queue else None,
            email=settings.alarm_email,
            queue_name=QUEUE_NAME,
            dlq_name=DLQ_NAME,
            job_log_group_names=[app.log_group_names[p] for p in ("worker", "relay")],
            protect=protect,
        ),
        opts=opts,
    )

    claims = token_claims(settings)
    return {
        "cloud": "aws",
        "region": region,
        "api_url": alb.url,
        "dashboard_url": alarms.dashboard_name.apply(
            lambda name: (
                f"https://{region}.console.aws.amazon.com/cloudwatch/home"
                f"?region={region}#dashboards:name={name}"
            )
        ),
        "cluster_name": app.cluster_name,
        "api_service_name": app.service_names["api"],
        "worker_service_name": app.service_names["worker"],
        "relay_service_name": app.service_names["relay"],
        "migrate_task_definition_arn": app.migrate_task_definition_arn,
        "task_subnet_ids": app.task_subnet_ids,
        "task_security_group_ids": app.migrate_security_group_ids,
        "api_target_group_arn": alb.target_group_arn,
        "db_instance_identifier": database.instance_identifier,
        "ecr_repository_url": app.repository_url,
        # What the task definitions run: previews and manual `pulumi up` pin it
        # (groundwork:imageUri) instead of rebuilding from a working copy.
        "deployed_image": app.image_ref,
        "jwt_issuer": claims["jwt_issuer"],
        "jwt_audience": claims["jwt_audience"],
        "alarm_topic_arn": alarms.topic_arn,
        "queue_backend": "sqs" if queue else "rabbitmq",
        "broker_id": broker.broker_id if broker else None,
        "dlq_name": queue.dlq_name if queue else DLQ_NAME,
        "queue_url": queue.queue_url if queue else None,
        "dlq_url": queue.dlq_url if queue else None,
        "secret_arns": secret_arns,
        "log_group_names": {**app.log_group_names, "vpc-flow-logs": network.flow_log_group_name},
        "logs_kms_key_arn": logs_key_arn,
        "log_retention_days": str(settings.log_retention_days),
    }


def refuse_cmek_change(cmek: bool, prefix: str, provider: aws.Provider) -> None:
    """``groundwork:cmek`` cannot be switched for a live stack.

    RDS ``kms_key_id``, ElastiCache ``kms_key_id`` and ECR ``encryption_configurations``
    force new resources (groundwork/plan/replacement.yaml): the toggle would replace the
    database, the cache and the image repository. The database (fixed identifier
    ``<prefix>-db``, created with the stack and encrypted either way) witnesses how the
    stack was created: its storage key is AWS-managed (``aws/rds``, KeyManager AWS) or
    this stack's CMK (KeyManager CUSTOMER; DescribeKey, KMS API reference). No instance
    yet (first deploy) skips the check; any lookup error stops.

    Existence is asked with a ``db-instance-id`` filter, which answers an empty list when
    nothing matches (DescribeDBInstances, RDS API reference, ``Filters``), rather than by
    the single-instance lookup, whose "not found" is an error told apart from other
    errors only by its text (terraform-provider-aws ``SingularDataSourceFindError``).
    """
    identifier = f"{prefix}-db"
    invoke = pulumi.InvokeOptions(provider=provider)
    try:
        found = aws.rds.get_instances(
            filters=[aws.rds.GetInstancesFilterArgs(name="db-instance-id", values=[identifier])],
            opts=invoke,
        )
        if identifier not in (found.instance_identifiers or []):
            return
        live = aws.rds.get_instance(db_instance_identifier=identifier, opts=invoke)
    except Exception as exc:
        raise ConfigError(
            f"could not read RDS instance {identifier} to check groundwork:cmek ({exc}); the "
            "deploy identity needs rds:DescribeDBInstances and kms:DescribeKey"
        ) from exc
    if not live.kms_key_id:
        return  # not created yet (an instance with storage_encrypted always names its key)
    try:
        key = aws.kms.get_key(key_id=live.kms_key_id, opts=invoke)
    except Exception as exc:
        raise ConfigError(
            f"could not describe the key of RDS instance {identifier} ({live.kms_key_id}) to "
            f"check groundwork:cmek ({exc}); the deploy identity needs kms:DescribeKey"
        ) from exc
    live_cmek = key.key_manager == "CUSTOMER"
    if live_cmek == cmek:
        return
    if live_cmek:
        raise ConfigError(
            f"groundwork:cmek = false but this stack was created with customer-managed keys "
            f"(RDS instance {identifier} is encrypted with {live.kms_key_id}): RDS, "
            "ElastiCache and ECR cannot switch encryption in place, so the change would "
            "replace the database, the cache and the image repository. Set "
            "`groundwork:cmek: true` in this stack's Pulumi.<stack>.yaml (staging stacks "
            "created before cmek covered AWS need exactly that), or migrate to a new stack "
            "(docs/deploy-aws.md, 'Customer-managed keys')"
        )
    raise ConfigError(
        f"groundwork:cmek = true but this stack was created with AWS-managed keys (RDS "
        f"instance {identifier} is encrypted with aws/rds): RDS, ElastiCache and ECR cannot "
        "switch encryption in place, so the change would replace the database, the cache "
        "and the image repository. Set `groundwork:cmek: false` back, or migrate to a new "
        "stack (docs/deploy-aws.md, 'Customer-managed keys')"
    )


def service_environment(
    settings: Settings,
    database: Database,
    cache: Cache,
    broker: RabbitMqJobQueue | None,
    instance_ca: str,
    queue: SqsJobQueue | None = None,
) -> dict[str, pulumi.Input[str]]:
    """Plain configuration of every process: exactly the contract's ``env`` names."""
    common: dict[str, pulumi.Input[str]] = {
        **application_env(settings),
        "DB_HOST": database.address,
        # DB_HOST is an endpoint name that the server's certificate carries: the instance's
        # (RDS CA) or the proxy's (ACM, Amazon Trust Services). See stacks/rds_ca.py.
        "DB_SSLMODE": "verify-full",
        "DB_TLS_CA_CERT": proxy_root_cas() if settings.db_proxy else instance_ca,
        "DB_PORT": str(database.port),
        "DB_NAME": database.database_name,
        # api, worker and relay: the application role, a fresh IAM token per connection.
        "DB_USER": database.app_username,
        "DB_IAM_AUTH": "true",
        # Prepared statements only on direct connections: RDS Proxy would pin sessions.
        "DB_STATEMENT_CACHE_SIZE": "0" if settings.db_proxy else str(DIRECT_STATEMENT_CACHE),
        "REDIS_HOST": cache.primary_endpoint,
        "REDIS_PORT": str(cache.port),
        "QUEUE_NAME": QUEUE_NAME,
        "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
    }
    if queue is not None:
        return {
            **common,
            "QUEUE_BACKEND": "sqs",
            "SQS_QUEUE_URL": queue.queue_url,
            "SQS_DLQ_URL": queue.dlq_url,
            "SQS_VISIBILITY_TIMEOUT_SECONDS": str(SQS_VISIBILITY_TIMEOUT_SECONDS),
        }
    assert broker is not None
    return {
        **common,
        "QUEUE_BACKEND": "rabbitmq",
        "RABBITMQ_HOST": broker.host,
        "RABBITMQ_PORT": str(broker.port),
        "RABBITMQ_USER": broker.username,
        "RABBITMQ_ADMIN_USER": broker.admin_username,
        "RABBITMQ_MANAGEMENT_URL": broker.management_url,
        "RABBITMQ_TLS": "true",
        "QUEUE_PREFETCH": str(settings.worker_slots),
    }


def endpoint_services(settings: Settings) -> tuple[str, ...]:
    """Interface endpoints: ECS Exec's session channel goes to ssmmessages, which without
    a NAT is reachable only through its endpoint (ecs-exec.html, "Using ECS Exec with
    VPC endpoints")."""
    return (
        DEFAULT_INTERFACE_ENDPOINTS
        + (("ssmmessages",) if settings.ecs_exec else ())
        # Without NAT the tasks reach AWS APIs only through endpoints: SQS too.
        + (("sqs",) if settings.queue == "sqs" and settings.nat == NatStrategy.NONE else ())
    )


def migrate_environment(database: Database, instance_ca: str) -> dict[str, pulumi.Input[str]]:
    """migrate connects to the instance as the master user (password from the RDS-managed
    secret, read fresh at each task start) and creates the application role."""
    return {
        "DB_HOST": database.instance_address,
        # The instance itself even behind a proxy: its CA, never the proxy's.
        "DB_TLS_CA_CERT": instance_ca,
        "DB_USER": database.username,
        "DB_IAM_AUTH": "false",
        "DB_APP_USER": database.app_username,
    }


# Where production's automated backups are replicated by default: a nearby region of
# the same partition that supports RDS cross-region automated backups.
BACKUP_REGION_PAIRS = {
    "us-east-1": "us-west-2",
    "us-east-2": "us-west-2",
    "us-west-1": "us-east-1",
    "us-west-2": "us-east-1",
    "ca-central-1": "us-east-1",
    "eu-west-1": "eu-central-1",
    "eu-west-2": "eu-west-1",
    "eu-west-3": "eu-central-1",
    "eu-central-1": "eu-west-1",
    "eu-north-1": "eu-west-1",
    "ap-northeast-1": "ap-northeast-3",
    "ap-northeast-2": "ap-northeast-1",
    "ap-south-1": "ap-southeast-1",
    "ap-southeast-1": "ap-northeast-1",
    "ap-southeast-2": "ap-southeast-1",
    "sa-east-1": "us-east-1",
}


def backup_region(settings: Settings, region: str) -> str | None:
    """The region automated backups are replicated to, or None."""
    chosen = settings.db_backup_region
    if chosen == "none":
        return None
    if chosen is None:
        if not settings.is_production:
            return None
        chosen = BACKUP_REGION_PAIRS.get(region)
        if chosen is None:
            raise invalid_value(
                "dbBackupRegion",
                "(unset)",
                f"a region to replicate production backups of {region} to (no default "
                "pair is known for it), or 'none' to keep them in one region",
            )
    if chosen == region:
        raise invalid_value("dbBackupRegion", chosen, f"a region other than the stack's ({region})")
    return chosen


def tag_everything(tags: dict[str, str]) -> None:
    """Merge ``tags`` into the ``tags`` input of every resource that has one.

    Done as a stack transformation (not only provider default_tags) so the tags are
    visible in each resource's inputs, where the policy pack and the offline plan look.
    """

    def transform(
        args: pulumi.ResourceTransformationArgs,
    ) -> pulumi.ResourceTransformationResult | None:
        if "tags" not in args.props:
            return None
        own = args.props.get("tags")
        if own is None or isinstance(own, dict):
            merged: Any = {**tags, **(own or {})}
        else:
            merged = pulumi.Output.from_input(own).apply(lambda t: {**tags, **(t or {})})
        return pulumi.ResourceTransformationResult({**args.props, "tags": merged}, args.opts)

    pulumi.runtime.register_stack_transformation(transform)


@dataclasses.dataclass(frozen=True)
class ConfigArgs:
    """The components' Args that config alone decides, built (and so checked by their
    ``__post_init__``) before any resource; outputs are added with ``dataclasses.replace``."""

    network: NetworkArgs
    api: ProcessSize
    worker: ProcessSize
    image: ImageSource | PrebuiltImage


def build_config_args(settings: Settings) -> ConfigArgs:
    """Every cloud rule on config values, checked by the Args that own it; an ``ArgError``
    becomes a ``ConfigError`` naming the config key (stacks/arg_keys.py)."""
    with config_keys(NetworkArgs):
        network = NetworkArgs(
            cidr_block=settings.vpc_cidr,
            availability_zones=settings.availability_zones,
            nat=NatStrategy(settings.nat),
            interface_endpoints=settings.interface_endpoints,
            endpoint_services=endpoint_services(settings),
            flow_log_retention_days=settings.log_retention_days,
            protect=settings.deletion_protection,
        )
    sizes = {}
    with config_keys(ProcessSize):
        for process, cpu, memory, low, high in (
            (
                "api",
                settings.api_cpu,
                settings.api_memory_mb,
                settings.api_min_count,
                settings.api_max_count,
            ),
            (
                "worker",
                settings.worker_cpu,
                settings.worker_memory_mb,
                settings.worker_min_count,
                settings.worker_max_count,
            ),
        ):
            sizes[process] = ProcessSize(cpu, memory, low, high)
            sizes[process].validate(process)
    image: ImageSource | PrebuiltImage = (
        PrebuiltImage(settings.image_uri)
        if settings.image_uri
        else ImageSource(
            tag=None if settings.image_tag == "latest" else settings.image_tag,
            platform=IMAGE_PLATFORMS[settings.cpu_architecture],
        )
    )
    return ConfigArgs(network=network, api=sizes["api"], worker=sizes["worker"], image=image)


def resolve_region(settings: Settings) -> str:
    region = settings.region or pulumi.Config("aws").get("region")
    if not region:
        raise ConfigError(
            f"no AWS region: set aws:region (or {CONFIG_NAMESPACE}:region), e.g. "
            "`pulumi config set aws:region us-east-1`"
        )
    return region


_ECR_HOST = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)"
    r"\.amazonaws\.com(?:\.cn)?$"
)


def validate_image_uri(uri: ImageReference, region: str, account: str) -> None:
    """``groundwork:imageUri`` must be in this account's ECR in this region.

    The repository itself is named by Pulumi (auto-name), so its path is checked when
    the repository URL is known (ContainerService), not here.
    """
    host = uri.registry
    match = _ECR_HOST.match(host)
    if match is None:
        raise invalid_value(
            "imageUri",
            uri,
            f"an image in this stack's ECR repository ({account}.dkr.ecr.{region}."
            "amazonaws.com/...; see the ecr_repository_url output), not another registry",
        )
    if (found := match["region"]) != region:
        raise invalid_value(
            "imageUri", uri, f"an image in ECR of the stack's region {region}, not {found}"
        )
    if match["account"] != account:
        raise invalid_value(
            "imageUri",
            uri,
            f"an image in ECR of the deploying account {account}, not {match['account']}",
        )


def validate(settings: Settings) -> None:
    """AWS-specific rules on top of the settings model, checked before any resource."""
    if settings.nat == NatStrategy.NONE and not settings.interface_endpoints:
        raise invalid_value(
            "nat",
            settings.nat,
            "'none' needs interfaceEndpoints=true (otherwise tasks "
            "cannot pull images, read secrets or ship logs)",
        )
    if settings.nat == NatStrategy.INSTANCE and settings.is_production:
        raise invalid_value(
            "nat",
            settings.nat,
            "'instance' is staging-only (one EC2 instance in one AZ); production keeps "
            "one-per-az NAT gateways (or single / none with interfaceEndpoints)",
        )
    if settings.nat == NatStrategy.NONE and settings.is_production:
        raise invalid_value(
            "nat",
            settings.nat,
            "'single' or 'one-per-az' in production: the worker calls the LLM provider "
            f"({application_env(settings)['LLM_BASE_URL']}) on the internet, which a VPC "
            "without NAT cannot reach (no endpoint exists for it). 'none' suits staging with "
            "the simulated LLM (the llm-api-key secret left unset)",
        )
    if settings.db_read_replica:
        raise invalid_value(
            "dbReadReplica",
            "true",
            "false: RDS refuses a read replica of an instance whose master password it "
            "manages ('Creating read replicas for source instance ... where "
            "ManageMasterUserPassword is enabled is not supported'), and the service never "
            "reads from one; use dbMultiAz for availability and dbBackupRegion for DR",
        )
    if settings.domain and not (settings.certificate_arn or settings.hosted_zone_id):
        raise invalid_value(
            "domain",
            settings.domain,
            "needs certificateArn (an issued ACM certificate "
            "in the stack's region) or hostedZoneId (Route 53 zone to validate one)",
        )
    if not settings.domain and not settings.insecure_http:
        raise ConfigError(
            f"{CONFIG_NAMESPACE}:domain is not set: the API load balancer needs a domain and "
            f"{CONFIG_NAMESPACE}:hostedZoneId (or {CONFIG_NAMESPACE}:certificateArn) to serve "
            f"HTTPS. Set them with `pulumi config set {CONFIG_NAMESPACE}:domain api.example.com`"
            f"; for a throwaway environment only, `{CONFIG_NAMESPACE}:insecureHttp true` serves "
            "plain HTTP (the policy pack flags it)"
        )
    if settings.hosted_zone_id and not settings.domain:
        raise invalid_value("hostedZoneId", settings.hosted_zone_id, "needs domain")
    # Any partition (aws, aws-cn, aws-us-gov): the stack runs in whichever the region is.
    if settings.certificate_arn and not re.match(
        r"arn:aws(-[a-z]+)*:acm:", settings.certificate_arn
    ):
        raise invalid_value("certificateArn", settings.certificate_arn, "an ACM certificate ARN")
    if settings.db_max_storage_gb < settings.db_allocated_storage_gb:
        raise invalid_value(
            "dbMaxStorageGb",
            settings.db_max_storage_gb,
            f"at least dbAllocatedStorageGb ({settings.db_allocated_storage_gb})",
        )
    if settings.is_production and settings.cache_nodes < 2:
        raise invalid_value(
            "cacheNodes",
            settings.cache_nodes,
            "at least 2 in production (a replica for automatic failover)",
        )
    if settings.broker_cluster and settings.broker_instance_type.startswith("mq.t3"):
        raise invalid_value(
            "brokerInstanceType",
            settings.broker_instance_type,
            "mq.m5.* or mq.m7g.* when brokerCluster=true (Amazon MQ clusters)",
        )


# Approximate RDS PostgreSQL max_connections (LEAST(DBInstanceClassMemory/9531392, 5000)).
_MEMORY_GIB = {
    "micro": 1,
    "small": 2,
    "medium": 4,
    "large": 8,
    "xlarge": 16,
    "2xlarge": 32,
    "4xlarge": 64,
}


def instance_memory_bytes(instance_class: str) -> int:
    size = instance_class.rsplit(".", 1)[-1]
    memory = _MEMORY_GIB.get(size, 8) * 1024**3
    if instance_class.startswith(("db.r", "db.x")):
        memory *= 2
    return memory


def approx_max_connections(instance_class: str) -> int:
    return min(instance_memory_bytes(instance_class) // 9_531_392, 5000)
