"""Database: Cloud SQL for PostgreSQL on a private IP, TLS only, PITR, optional HA."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from components.args import ArgError, require_resolved

POSTGRES_VERSION = "POSTGRES_17"
# Enterprise edition caps transaction-log retention (the PITR window) at 7 days;
# older restore points come from the retained daily backups.
MAX_LOG_RETENTION_DAYS = 7
SERVER_CA_MODE = "GOOGLE_MANAGED_INTERNAL_CA"

# Production audit logging (https://cloud.google.com/sql/docs/postgres/pg-audit):
# cloudsql.enable_pgaudit loads the library (a restart of the instance), pgaudit.log
# picks the statement classes (schema changes, roles, writes; reads stay out: volume);
# `CREATE EXTENSION pgaudit` once per database adds object names to DDL entries
# (docs/deploy-gcp.md). Hostname and per-statement duration complete the CIS 6.2 set;
# duration lines are one per statement, a Cloud Logging cost to watch.
AUDIT_FLAGS: dict[str, str] = {
    "cloudsql.enable_pgaudit": "on",
    "pgaudit.log": "ddl,role,write",
    "pgaudit.log_relation": "on",
    "log_hostname": "on",
    "log_duration": "on",
}

# CIS Google Cloud benchmark 6.2.x logging flags plus IAM database authentication.
DEFAULT_FLAGS: dict[str, str] = {
    "cloudsql.iam_authentication": "on",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_checkpoints": "on",
    "log_lock_waits": "on",
    "log_min_error_statement": "error",
    "log_temp_files": "0",
}


class Availability(StrEnum):
    """Cloud SQL availability type."""

    ZONAL = "ZONAL"
    """One zone: cheapest, restored from backup after a zone outage (staging)."""
    REGIONAL = "REGIONAL"
    """Synchronous standby in a second zone with automatic failover (production)."""


@dataclass
class DatabaseArgs:
    """A private PostgreSQL instance. Defaults are the secure, cheap staging shape."""

    network_id: pulumi.Input[str]
    """VPC peered through Private Service Access; the instance gets no public IPv4."""
    tier: str = "db-g1-small"
    availability: Availability = Availability.ZONAL
    disk_size_gb: int = 20
    disk_autoresize_limit_gb: int = 100
    backup_retention_days: int = 7
    """Daily backups kept; the PITR window is min(this, 7) days (Enterprise edition)."""
    deletion_protection: bool = False
    """Cloud SQL's deletion protection (API and provider), and Pulumi ``protect`` +
    ``retain_on_delete`` on the instance and the database."""
    database_name: str = "groundwork"
    user_name: str = "groundwork_app"
    allocated_ip_range: pulumi.Input[str] | None = None
    maintenance_day: int = 7
    """1 = Monday ... 7 = Sunday (UTC)."""
    maintenance_hour: int = 3
    maintenance_track: str = "stable"
    """``canary`` gets updates ~a week before ``stable``: use it on staging."""
    backup_start_time: str = "02:00"
    backup_location: str | None = None
    """Region or multi-region of the backups; None lets Cloud SQL pick the nearest
    multi-region (the stacks pass the instance's region)."""
    flags: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FLAGS))
    labels: dict[str, str] = field(default_factory=dict)
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Usually the service networking connection: the private IP needs the peering (and,
    with ``encryption_key_name``, the Cloud SQL agent's grant on the key)."""
    encryption_key_name: pulumi.Input[str] | None = None
    """CMEK: a Cloud KMS key in the instance's region; the instance and its backups are
    encrypted with it. Immutable: set at create only (the provider replaces the instance)."""

    def __post_init__(self) -> None:
        self.availability = Availability(self.availability)
        if not 1 <= self.backup_retention_days <= 365:
            raise ArgError("backup_retention_days", self.backup_retention_days, "use 1-365")
        if self.disk_autoresize_limit_gb and self.disk_autoresize_limit_gb < self.disk_size_gb:
            raise ArgError(
                "disk_autoresize_limit_gb",
                self.disk_autoresize_limit_gb,
                f"is below the disk size ({self.disk_size_gb} GB)",
            )
        if not 1 <= self.maintenance_day <= 7 or not 0 <= self.maintenance_hour <= 23:
            raise ValueError("maintenance_day is 1-7 (Monday-Sunday), maintenance_hour 0-23")
        if self.maintenance_track not in ("canary", "stable", "week5"):
            raise ValueError(f"maintenance_track={self.maintenance_track!r}: canary|stable|week5")
        if self.flags.get("cloudsql.iam_authentication") != "on":
            raise ValueError("flags must keep cloudsql.iam_authentication=on")


class Database(pulumi.ComponentResource):
    """Cloud SQL PostgreSQL instance, the application database and its user."""

    instance: gcp.sql.DatabaseInstance
    instance_name: pulumi.Output[str]
    connection_name: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    database_name: pulumi.Output[str]
    user_name: pulumi.Output[str]
    password: pulumi.Output[str]
    """Secret: the application user's generated password (store it in Secret Manager)."""

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        require_resolved(args)
        super().__init__("groundwork:gcp:Database", name, None, opts)
        # Here, not in DatabaseArgs: the stack builds its Args twice (config, then outputs).
        if args.tier.startswith(("db-f1", "db-g1")) and args.availability is Availability.REGIONAL:
            pulumi.log.warn(
                f"{args.tier} is a shared-core tier without an SLA; use a db-custom tier for HA",
                resource=self,
            )
        child = pulumi.ResourceOptions(parent=self)

        self.instance = gcp.sql.DatabaseInstance(
            f"{name}-postgres",
            database_version=POSTGRES_VERSION,
            deletion_protection=args.deletion_protection,
            encryption_key_name=args.encryption_key_name,
            settings=gcp.sql.DatabaseInstanceSettingsArgs(
                tier=args.tier,
                # New PostgreSQL 16+ instances default to Enterprise Plus, which has no
                # small tiers; Enterprise keeps the cheap shapes available.
                edition="ENTERPRISE",
                availability_type=args.availability.value,
                deletion_protection_enabled=args.deletion_protection,
                disk_type="PD_SSD",
                disk_size=args.disk_size_gb,
                disk_autoresize=True,
                disk_autoresize_limit=args.disk_autoresize_limit_gb,
                ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                    ipv4_enabled=False,
                    private_network=args.network_id,
                    allocated_ip_range=args.allocated_ip_range,
                    ssl_mode="ENCRYPTED_ONLY",
                    # A CA private to this instance: a chain to it (DB_SSLMODE=verify-ca
                    # with DB_TLS_CA_CERT) proves the server is this instance. The shared
                    # CAS-based modes would need a host name check the private IP lacks.
                    server_ca_mode=SERVER_CA_MODE,
                ),
                backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                    enabled=True,
                    start_time=args.backup_start_time,
                    point_in_time_recovery_enabled=True,
                    # Explicit: without it backups go to the multi-region nearest the
                    # instance, which may sit outside the region the data must stay in.
                    location=args.backup_location,
                    transaction_log_retention_days=min(
                        args.backup_retention_days, MAX_LOG_RETENTION_DAYS
                    ),
                    backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                        retained_backups=args.backup_retention_days,
                        retention_unit="COUNT",
                    ),
                ),
                insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(
                    query_insights_enabled=True,
                    query_string_length=1024,
                    record_application_tags=True,
                    # Client IPs are Cloud Run egress addresses: noise, and personal data
                    # if the instance is ever reached from elsewhere.
                    record_client_address=False,
                ),
                maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
                    day=args.maintenance_day,
                    hour=args.maintenance_hour,
                    update_track=args.maintenance_track,
                ),
                database_flags=[
                    gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(name=k, value=v)
                    for k, v in sorted(args.flags.items())
                ],
                user_labels=args.labels,
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=args.depends_on,
                protect=args.deletion_protection,
                retain_on_delete=args.deletion_protection,
            ),
        )
        database = gcp.sql.Database(
            f"{name}-db",
            name=args.database_name,
            instance=self.instance.name,
            # Dropping the database on `destroy` is what deletion protection guards;
            # the instance itself holds the data and its backups.
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.deletion_protection,
                retain_on_delete=args.deletion_protection,
            ),
        )
        password = random.RandomPassword(
            f"{name}-app-password",
            length=40,
            special=True,
            # URL- and shell-safe punctuation only: the password ends up in DSNs and CLIs.
            override_special="-_.~",
            min_upper=2,
            min_lower=2,
            min_numeric=2,
            opts=child,
        )
        user = gcp.sql.User(
            f"{name}-app-user",
            name=args.user_name,
            instance=self.instance.name,
            type="BUILT_IN",
            password=password.result,
            # PostgreSQL refuses to drop a role that still owns objects; abandoning it
            # keeps `destroy` from failing half-way (the instance goes away anyway).
            deletion_policy="ABANDON",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[database]),
        )

        self.instance_name = self.instance.name
        self.connection_name = self.instance.connection_name
        self.private_ip = self.instance.private_ip_address
        self.database_name = database.name
        self.user_name = user.name
        self.password = pulumi.Output.secret(password.result)
        self.server_ca_pem = self.instance.server_ca_certs.apply(
            lambda certs: (
                "\n".join(c.cert.strip() for c in certs or [] if c.cert) + "\n"
                if any(c.cert for c in certs or [])
                else ""
            )
        )
        """The instance's server CA(s) as one PEM bundle (DB_TLS_CA_CERT)."""
        self.register_outputs(
            {
                "instance_name": self.instance_name,
                "connection_name": self.connection_name,
                "private_ip": self.private_ip,
                "database_name": self.database_name,
                "user_name": self.user_name,
            }
        )
