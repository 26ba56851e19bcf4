"""Database: RDS PostgreSQL in isolated subnets, encrypted, monitored, optionally proxied."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws.firewall import admit
from components.aws.kms import EncryptionKey, EncryptionKeyArgs

POSTGRES_MAJOR = "17"
PORT = 5432
SECRETS_VIA = "secretsmanager.*.amazonaws.com"


def _assume(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


@dataclass
class DatabaseArgs:
    """Defaults are a small single-AZ staging database; production turns on HA."""

    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    """Isolated subnets: the database has no route to or from the internet."""
    client_security_group_ids: Mapping[str, pulumi.Input[str]]
    """Named task security groups allowed to connect (to the proxy when there is one)."""
    instance_class: str = "db.t4g.micro"
    allocated_storage_gb: int = 20
    max_allocated_storage_gb: int = 100
    engine_version: str = POSTGRES_MAJOR
    """Major only: RDS picks the newest minor and auto minor upgrades keep it current."""
    database_name: str = "groundwork"
    username: str = "groundwork"
    multi_az: bool = False
    backup_retention_days: int = 7
    deletion_protection: bool = False
    final_snapshot: bool = True
    """Take a final snapshot on delete. Turning it off is only sane for throwaway tiers."""
    read_replica: bool = False
    proxy: bool = False
    """RDS Proxy in front: connection pooling and faster failover; TLS is required."""
    slow_statement_ms: int = 500
    monitoring_interval_seconds: int = 60
    performance_insights_retention_days: int = 7
    """7 days is the free tier; longer retention is billed per vCPU."""
    backup_window: str = "03:00-04:00"
    maintenance_window: str = "sun:04:30-sun:05:30"
    log_exports: tuple[str, ...] = ("postgresql", "upgrade", "iam-db-auth-error")
    extra_parameters: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.client_security_group_ids:
            raise ValueError("client_security_group_ids is empty: nothing could reach the database")
        if len(self.subnet_ids) < 2:
            raise ValueError("RDS subnet groups need subnets in at least two AZs")
        if self.max_allocated_storage_gb < self.allocated_storage_gb:
            raise ValueError(
                f"max_allocated_storage_gb ({self.max_allocated_storage_gb}) is below "
                f"allocated_storage_gb ({self.allocated_storage_gb})"
            )
        if not 1 <= self.backup_retention_days <= 35:
            raise ValueError(
                f"backup_retention_days={self.backup_retention_days}: 1 to 35 (0 disables "
                "backups and is not offered)"
            )
        if self.monitoring_interval_seconds not in (1, 5, 10, 15, 30, 60):
            raise ValueError("monitoring_interval_seconds must be one of 1, 5, 10, 15, 30, 60")
        if self.deletion_protection and not self.final_snapshot:
            raise ValueError(
                "deletion_protection without final_snapshot: a protected database must also "
                "keep a final snapshot"
            )


class Database(pulumi.ComponentResource):
    """RDS PostgreSQL with an RDS-managed master secret and an optional RDS Proxy."""

    instance_identifier: pulumi.Output[str]
    address: pulumi.Output[str]
    """What the application connects to: the proxy endpoint when there is a proxy."""
    instance_address: pulumi.Output[str]
    port: int
    database_name: str
    username: str
    master_secret_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    replica_identifier: pulumi.Output[str] | None
    proxy_endpoint: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = EncryptionKey(
            f"{name}-kms",
            EncryptionKeyArgs(description=f"{name}: storage, master secret, Performance Insights"),
            opts=child,
        )
        self.kms_key_arn = key.key_arn

        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="PostgreSQL: reachable only from the application (or its proxy)",
            tags={"Name": f"{name}-db"},
            opts=child,
        )
        self.security_group_id = sg.id
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets",
            subnet_ids=list(args.subnet_ids),
            description=f"{name}: isolated subnets",
            opts=child,
        )
        parameters = {
            "rds.force_ssl": "1",
            "log_min_duration_statement": str(args.slow_statement_ms),
            "log_connections": "1",
            "log_lock_waits": "1",
            **args.extra_parameters,
        }
        params = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{args.engine_version.split('.')[0]}",
            description=f"{name}: TLS only, slow statement logging",
            parameters=[{"name": k, "value": v} for k, v in sorted(parameters.items())],
            opts=child,
        )
        monitoring = aws.iam.Role(
            f"{name}-monitoring",
            description="RDS enhanced monitoring",
            assume_role_policy=_assume("monitoring.rds.amazonaws.com"),
            opts=child,
        )
        monitoring_policy = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring-policy",
            role=monitoring.name,
            policy_arn="arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
            opts=child,
        )
        common: dict[str, Any] = {
            "instance_class": args.instance_class,
            "storage_encrypted": True,
            "kms_key_id": key.key_arn,
            "vpc_security_group_ids": [sg.id],
            "parameter_group_name": params.name,
            "publicly_accessible": False,
            "auto_minor_version_upgrade": True,
            "maintenance_window": args.maintenance_window,
            "performance_insights_enabled": True,
            "performance_insights_kms_key_id": key.key_arn,
            "performance_insights_retention_period": args.performance_insights_retention_days,
            "monitoring_interval": args.monitoring_interval_seconds,
            "monitoring_role_arn": monitoring.arn,
            "enabled_cloudwatch_logs_exports": list(args.log_exports),
            "iam_database_authentication_enabled": True,
            "copy_tags_to_snapshot": True,
            "deletion_protection": args.deletion_protection,
        }
        instance = aws.rds.Instance(
            f"{name}-postgres",
            # A fixed identifier: alarms, dashboards and runbooks refer to it by name.
            identifier=name,
            engine="postgres",
            engine_version=args.engine_version,
            db_name=args.database_name,
            username=args.username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=key.key_arn,
            db_subnet_group_name=subnets.name,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            backup_window=args.backup_window,
            skip_final_snapshot=not args.final_snapshot,
            final_snapshot_identifier=f"{name}-final" if args.final_snapshot else None,
            apply_immediately=False,
            **common,
            # RDS checks the monitoring role's permissions at create time: the policy must
            # be attached first, not merely the role exist.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[monitoring_policy]),
        )
        self.instance_identifier = instance.identifier
        self.instance_address = instance.address
        self.port = PORT
        self.database_name = args.database_name
        self.username = args.username
        self.master_secret_arn = instance.master_user_secrets.apply(
            lambda secrets: (
                secrets[0]["secret_arn"] if isinstance(secrets[0], dict) else secrets[0].secret_arn
            )
        )

        self.replica_identifier = None
        if args.read_replica:
            replica = aws.rds.Instance(
                f"{name}-replica",
                identifier=f"{name}-replica",
                replicate_source_db=instance.identifier,
                skip_final_snapshot=True,
                backup_retention_period=0,
                **common,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[monitoring_policy]),
            )
            self.replica_identifier = replica.identifier

        self.proxy_endpoint = None
        if args.proxy:
            self.proxy_endpoint = self._proxy(name, args, instance, key, sg)
            self.address = self.proxy_endpoint
        else:
            admit(
                f"{name}-sg", sg.id, PORT, dict(args.client_security_group_ids), "PostgreSQL", self
            )
            self.address = instance.address

        self.register_outputs(
            {
                "instance_identifier": self.instance_identifier,
                "address": self.address,
                "master_secret_arn": self.master_secret_arn,
                "security_group_id": self.security_group_id,
            }
        )

    def _proxy(
        self,
        name: str,
        args: DatabaseArgs,
        instance: aws.rds.Instance,
        key: EncryptionKey,
        db_sg: aws.ec2.SecurityGroup,
    ) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        proxy_sg = aws.ec2.SecurityGroup(
            f"{name}-proxy-sg",
            vpc_id=args.vpc_id,
            description="RDS Proxy: from the application, to the database",
            tags={"Name": f"{name}-proxy"},
            opts=child,
        )
        admit(
            f"{name}-proxy-sg",
            proxy_sg.id,
            PORT,
            dict(args.client_security_group_ids),
            "PostgreSQL via RDS Proxy",
            self,
        )
        admit(f"{name}-sg", db_sg.id, PORT, {"proxy": proxy_sg.id}, "PostgreSQL", self)
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-proxy-to-db",
            security_group_id=proxy_sg.id,
            description="PostgreSQL (TCP 5432) to the database instance",
            ip_protocol="tcp",
            from_port=PORT,
            to_port=PORT,
            referenced_security_group_id=db_sg.id,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-proxy-role",
            description="RDS Proxy: read the master secret",
            assume_role_policy=_assume("rds.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-proxy-secret",
            role=role.id,
            policy=pulumi.Output.all(self.master_secret_arn, key.key_arn).apply(
                lambda a: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "secretsmanager:GetSecretValue",
                                "Resource": a[0],
                            },
                            {
                                "Effect": "Allow",
                                "Action": "kms:Decrypt",
                                "Resource": a[1],
                                "Condition": {"StringLike": {"kms:ViaService": SECRETS_VIA}},
                            },
                        ],
                    }
                )
            ),
            opts=child,
        )
        proxy = aws.rds.Proxy(
            f"{name}-proxy",
            engine_family="POSTGRESQL",
            require_tls=True,
            role_arn=role.arn,
            vpc_subnet_ids=list(args.subnet_ids),
            vpc_security_group_ids=[proxy_sg.id],
            idle_client_timeout=1800,
            debug_logging=False,
            auths=[
                {
                    "auth_scheme": "SECRETS",
                    "secret_arn": self.master_secret_arn,
                    "iam_auth": "DISABLED",
                    "description": "RDS-managed master secret",
                }
            ],
            opts=child,
        )
        aws.rds.ProxyDefaultTargetGroup(
            f"{name}-proxy-targets",
            db_proxy_name=proxy.name,
            connection_pool_config={
                "max_connections_percent": 90,
                "max_idle_connections_percent": 50,
                "connection_borrow_timeout": 120,
            },
            opts=child,
        )
        aws.rds.ProxyTarget(
            f"{name}-proxy-target",
            db_proxy_name=proxy.name,
            target_group_name="default",
            db_instance_identifier=instance.identifier,
            opts=child,
        )
        return proxy.endpoint
