"""Cache: an ElastiCache (Valkey or Redis OSS) replication group, TLS + AUTH, KMS at rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws.firewall import admit
from components.aws.kms import EncryptionKey, EncryptionKeyArgs
from components.aws.secrets import store_secret

PORT = 6379


class CacheEngine(StrEnum):
    VALKEY = "valkey"
    """Open-source Redis fork: same protocol, ~20 % cheaper nodes on ElastiCache."""
    REDIS = "redis"


ENGINE_VERSIONS = {CacheEngine.VALKEY: "8.0", CacheEngine.REDIS: "7.1"}
PARAMETER_FAMILIES = {CacheEngine.VALKEY: "default.valkey8", CacheEngine.REDIS: "default.redis7"}


@dataclass
class CacheArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_ids: Mapping[str, pulumi.Input[str]]
    secrets_kms_key_arn: pulumi.Input[str] | None
    """Key of the Secrets Manager secret holding the AUTH token (None: aws/secretsmanager)."""
    engine: CacheEngine = CacheEngine.VALKEY
    node_type: str = "cache.t4g.micro"
    nodes: int = 1
    """Primary plus replicas (cluster mode disabled): 1 in staging, 2+ for failover."""
    automatic_failover: bool = False
    snapshot_retention_days: int = 0
    secret_recovery_window_days: int = 30
    maintenance_window: str = "sun:05:30-sun:06:30"
    snapshot_window: str = "03:00-04:00"
    log_retention_days: int = 30
    log_kms_key_arn: pulumi.Input[str] | None = None
    customer_managed_key: bool = True
    """Encrypt the data at rest with a KMS key this component owns. False: ElastiCache's
    default at-rest encryption (no ``kms_key_id``), with no key to revoke. ``kms_key_id``
    forces a new replication group (groundwork/plan/replacement.yaml): fixed at creation."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the replication group, its key and
    AUTH token: a destroy or replacement would empty the cache and rate-limit counters."""

    def __post_init__(self) -> None:
        self.engine = CacheEngine(self.engine)
        if not 1 <= self.nodes <= 6:
            raise ValueError(f"nodes={self.nodes}: 1 to 6 (a primary and up to 5 replicas)")
        if self.automatic_failover and self.nodes < 2:
            raise ValueError(
                "automatic_failover needs nodes >= 2: there must be a replica to promote"
            )
        if not self.client_security_group_ids:
            raise ValueError("client_security_group_ids is empty: nothing could reach the cache")


class Cache(pulumi.ComponentResource):
    replication_group_id: pulumi.Output[str]
    member_cluster_ids: list[str]
    """``<group>-001``...: ElastiCache names members this way; CloudWatch metrics use them."""
    primary_endpoint: pulumi.Output[str]
    port: int
    auth_secret_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:Cache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group_id = name[:40]
        keep = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        key = (
            EncryptionKey(
                f"{name}-kms",
                EncryptionKeyArgs(description=f"{name}: cache data at rest", protect=args.protect),
                opts=child,
            )
            if args.customer_managed_key
            else None
        )
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{args.engine.value}: reachable only from the application tasks",
            tags={"Name": f"{name}-cache"},
            opts=child,
        )
        admit(
            f"{name}-sg", sg.id, PORT, dict(args.client_security_group_ids), args.engine.value, self
        )
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=list(args.subnet_ids),
            description=f"{name}: private subnets",
            opts=child,
        )
        # ElastiCache AUTH tokens: 16-128 printable characters, none of @ " /.
        token = random.RandomPassword(f"{name}-auth-token", length=64, special=False, opts=keep)
        self.auth_secret_arn = store_secret(
            f"{name}-auth",
            token.result,
            f"{name}: {args.engine.value} AUTH token",
            kms_key_arn=args.secrets_kms_key_arn,
            recovery_window_days=args.secret_recovery_window_days,
            parent=self,
            protect=args.protect,
        )
        slow_log = aws.cloudwatch.LogGroup(
            f"{name}-slow-log",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=pulumi.ResourceOptions(
                parent=self, protect=args.protect, retain_on_delete=args.protect
            ),
        )
        group = aws.elasticache.ReplicationGroup(
            f"{name}-group",
            replication_group_id=group_id,
            description=f"{name}: application cache",
            engine=args.engine.value,
            engine_version=ENGINE_VERSIONS[args.engine],
            parameter_group_name=PARAMETER_FAMILIES[args.engine],
            node_type=args.node_type,
            num_cache_clusters=args.nodes,
            port=PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[sg.id],
            automatic_failover_enabled=args.automatic_failover,
            multi_az_enabled=args.automatic_failover,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            kms_key_id=key.key_arn if key else None,
            auth_token=token.result,
            auto_minor_version_upgrade=True,
            maintenance_window=args.maintenance_window,
            snapshot_retention_limit=args.snapshot_retention_days,
            snapshot_window=args.snapshot_window if args.snapshot_retention_days else None,
            apply_immediately=False,
            log_delivery_configurations=[
                {
                    "destination": slow_log.name,
                    "destination_type": "cloudwatch-logs",
                    "log_format": "json",
                    "log_type": "slow-log",
                }
            ],
            opts=pulumi.ResourceOptions.merge(
                keep, pulumi.ResourceOptions(additional_secret_outputs=["authToken"])
            ),
        )
        self.replication_group_id = group.id
        self.member_cluster_ids = [f"{group_id}-{i:03d}" for i in range(1, args.nodes + 1)]
        self.primary_endpoint = group.primary_endpoint_address
        self.port = PORT
        self.security_group_id = sg.id
        self.register_outputs(
            {
                "replication_group_id": self.replication_group_id,
                "primary_endpoint": self.primary_endpoint,
                "auth_secret_arn": self.auth_secret_arn,
            }
        )
