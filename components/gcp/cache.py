"""Cache: Memorystore for Redis on Private Service Access, AUTH and TLS required."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi
import pulumi_gcp as gcp

from components.args import ArgError, require_resolved

REDIS_VERSION = "REDIS_7_2"


class CacheTier(StrEnum):
    """Memorystore service tier."""

    BASIC = "BASIC"
    """Single node, no replica, no SLA: a restart empties the cache (staging)."""
    STANDARD_HA = "STANDARD_HA"
    """Primary + replica in another zone with automatic failover (production)."""


@dataclass
class CacheArgs:
    """A private Redis instance. Defaults are the secure, cheap staging shape."""

    network_id: pulumi.Input[str]
    tier: CacheTier = CacheTier.BASIC
    memory_size_gb: int = 1
    reserved_ip_range: pulumi.Input[str] | None = None
    """Name of the Private Service Access range to allocate from."""
    persistence: bool = False
    """RDB snapshots every 12 h, so a failover/restart does not start cold."""
    deletion_protection: bool = False
    """Memorystore's deletion protection, and Pulumi ``protect`` + ``retain_on_delete``."""
    maintenance_day: str = "SUNDAY"
    maintenance_hour: int = 4
    labels: dict[str, str] = field(default_factory=dict)
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    customer_managed_key: pulumi.Input[str] | None = None
    """CMEK: a Cloud KMS key in the instance's region (Memorystore's agent must hold
    encrypter/decrypter on it before the create: pass its grant in ``depends_on``).
    Immutable: CMEK can only be set on a new instance."""

    def __post_init__(self) -> None:
        self.tier = CacheTier(self.tier)
        if not 1 <= self.memory_size_gb <= 300:
            # Memorystore for Redis instances hold 1 to 300 GB.
            raise ArgError("memory_size_gb", self.memory_size_gb, "use 1-300")
        if not 0 <= self.maintenance_hour <= 23:
            raise ValueError(f"maintenance_hour={self.maintenance_hour}: use 0-23")


def ca_bundle(certs: Sequence[gcp.redis.outputs.InstanceServerCaCert] | None) -> str:
    pems = [c.cert.strip() for c in certs or [] if c.cert and c.cert.strip()]
    return "\n".join(pems) + "\n" if pems else ""


class Cache(pulumi.ComponentResource):
    """Memorystore for Redis: AUTH on, server-authenticated TLS, private service access."""

    instance: gcp.redis.Instance
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    auth_string: pulumi.Output[str]
    """Secret: the AUTH string (store it in Secret Manager)."""
    server_ca_certs: pulumi.Output[Sequence[gcp.redis.outputs.InstanceServerCaCert]]
    server_ca_pem: pulumi.Output[str]
    """Every current server CA (two during a rotation) as one PEM bundle: the instance's
    certificate chains to a private CA, so clients must trust it (REDIS_TLS_CA_CERT)."""

    def __init__(
        self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_resolved(args)
        super().__init__("groundwork:gcp:Cache", name, None, opts)

        self.instance = gcp.redis.Instance(
            f"{name}-redis",
            # Memorystore names are capped at 40 characters.
            name=f"{name}-redis"[:40].rstrip("-"),
            display_name=f"{name} job cache",
            tier=args.tier.value,
            memory_size_gb=args.memory_size_gb,
            redis_version=REDIS_VERSION,
            authorized_network=args.network_id,
            connect_mode="PRIVATE_SERVICE_ACCESS",
            reserved_ip_range=args.reserved_ip_range,
            auth_enabled=True,
            customer_managed_key=args.customer_managed_key,
            transit_encryption_mode="SERVER_AUTHENTICATION",
            persistence_config=gcp.redis.InstancePersistenceConfigArgs(
                persistence_mode="RDB", rdb_snapshot_period="TWELVE_HOURS"
            )
            if args.persistence
            else gcp.redis.InstancePersistenceConfigArgs(persistence_mode="DISABLED"),
            maintenance_policy=gcp.redis.InstanceMaintenancePolicyArgs(
                weekly_maintenance_windows=[
                    gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                        day=args.maintenance_day,
                        start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                            hours=args.maintenance_hour, minutes=0
                        ),
                    )
                ]
            ),
            deletion_protection=args.deletion_protection,
            labels=args.labels,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=args.depends_on,
                additional_secret_outputs=["authString"],
                # tier, transit_encryption_mode, connect_mode and reserved_ip_range cannot
                # change in place (the provider replaces the instance). The name is fixed,
                # so Pulumi's default create-first replacement fails on "already exists";
                # delete first instead: the cache is disposable and the service runs
                # without Redis (limiter fails open, cache misses) until the new instance
                # is up, with a new IP and server CA the services then pick up. With
                # deletion_protection on, the provider refuses the delete and nothing
                # changes (docs/deploy-gcp.md, "Changes that replace a resource").
                delete_before_replace=True,
                protect=args.deletion_protection,
                retain_on_delete=args.deletion_protection,
            ),
        )
        self.host = self.instance.host
        self.port = self.instance.port
        self.auth_string = pulumi.Output.secret(self.instance.auth_string)
        self.server_ca_certs = self.instance.server_ca_certs
        self.server_ca_pem = self.instance.server_ca_certs.apply(ca_bundle)
        self.register_outputs({"host": self.host, "port": self.port})
