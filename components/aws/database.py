"""Database: RDS PostgreSQL in isolated subnets, encrypted, monitored, optionally proxied."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws.firewall import admit
from components.aws.kms import EncryptionKey, EncryptionKeyArgs

POSTGRES_MAJOR = "17"
PORT = 5432
CA_CERT = "rds-ca-rsa2048-g1"
"""Pinned server CA: RDS otherwise picks the region's default, which AWS changes over time
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL-certificate-rotation.html);
a change here is a deliberate, reviewed rotation."""


def _assume(service: str, account: str, source_arn: str | None = None) -> str:
    """Trust ``service`` only on behalf of this account (and ``source_arn``): a service
    principal alone can be steered by another account (confused deputy,
    https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html)."""
    condition: dict[str, dict[str, str]] = {"StringEquals": {"aws:SourceAccount": account}}
    if source_arn is not None:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                    "Condition": condition,
                }
            ],
        }
    )


def connect_arn(rds_arn: str, resource_id: str, user: str) -> str:
    """The ``rds-db:connect`` resource for ``user`` on an instance or proxy.

    ``arn:<partition>:rds-db:<region>:<account>:dbuser:<resource-id>/<user>``, where the
    resource id is the instance's DbiResourceId (``db-...``) or the proxy's id
    (``prx-...``, the last part of its ARN), never its name
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html,
    https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy-iam-setup.html).
    """
    _, partition, _, region, account, *_ = rds_arn.split(":")
    return f"arn:{partition}:rds-db:{region}:{account}:dbuser:{resource_id}/{user}"


def proxy_resource_id(proxy_arn: str) -> str:
    """``arn:aws:rds:us-east-1:123456789012:db-proxy:prx-0123abcd`` -> ``prx-0123abcd``."""
    resource = proxy_arn.rsplit(":", 1)[-1]
    if not resource.startswith("prx-"):
        raise ValueError(f"not an RDS Proxy ARN: {proxy_arn}")
    return resource


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
    """The master user: migrations only. Its password is RDS-managed and rotates weekly."""
    app_username: str = "groundwork_app"
    """The role api, worker and relay use, with IAM authentication (no password to rotate).
    The migrate task creates it and grants it ``rds_iam`` (DB_APP_USER)."""
    multi_az: bool = False
    backup_retention_days: int = 7
    deletion_protection: bool = False
    final_snapshot: bool = True
    """Take a final snapshot on delete, named with a random suffix so a second delete (of a
    re-created database) never collides with the first one's snapshot."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the instance and its key: `pulumi destroy`
    and replacements refuse to touch them, and removing them from the state leaves them."""
    read_replica: bool = False
    """Refused: RDS cannot create a read replica of an instance whose master password is
    RDS-managed (ManageMasterUserPassword), which this component always uses."""
    proxy: bool = False
    """RDS Proxy in front with end-to-end IAM authentication: pooling, faster failover."""
    ca_cert_identifier: str = CA_CERT
    log_retention_days: int = 30
    log_kms_key_arn: pulumi.Input[str] | None = None
    """Key of the pre-created ``/aws/rds/instance/<id>/<log>`` groups (RDS would otherwise
    create them itself, unencrypted and never expiring)."""
    backup_replica_provider: pulumi.ProviderResource | None = None
    """An AWS provider for another region: replicate automated backups (and their
    transaction logs, for point-in-time restore) there."""
    slow_statement_ms: int = 500
    monitoring_interval_seconds: int = 60
    performance_insights_retention_days: int = 7
    """7 days is the free tier; longer retention is billed per vCPU."""
    backup_window: str = "03:00-04:00"
    maintenance_window: str = "sun:04:30-sun:05:30"
    log_exports: tuple[str, ...] = ("postgresql", "upgrade", "iam-db-auth-error")
    customer_managed_key: bool = True
    """Storage, the RDS-managed master secret and Performance Insights under a KMS key this
    component owns. False: the AWS-managed ``aws/rds`` (storage, Performance Insights) and
    ``aws/secretsmanager`` (master secret) keys: no monthly key fee, but snapshots under
    ``aws/rds`` cannot be shared with another account (RDS User Guide, "Sharing encrypted
    snapshots": not with the default AWS-managed key) and the key cannot be disabled or
    its policy edited. ``kms_key_id`` forces a new instance
    (groundwork/plan/replacement.yaml): fixed at creation. Replicated backups
    (``backup_replica_provider``) keep their own key in the other region either way."""
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
        if self.read_replica:
            raise ValueError(
                "read_replica: RDS refuses to create a read replica of an instance with an "
                "RDS-managed master password ('Creating read replicas for source instance ... "
                "where ManageMasterUserPassword is enabled is not supported'), and the "
                "application does not read from one"
            )
        if self.app_username == self.username:
            raise ValueError("app_username must differ from the master username")
        if self.deletion_protection and not self.final_snapshot:
            raise ValueError(
                "deletion_protection without final_snapshot: a protected database must also "
                "keep a final snapshot"
            )


class Database(pulumi.ComponentResource):
    """RDS PostgreSQL with an RDS-managed master secret and an optional RDS Proxy.

    Credentials: the master user (RDS-managed secret, rotated every 7 days) is for the
    migrate task alone, which reads the secret fresh at each start. The application
    role authenticates with IAM tokens, directly or through the proxy (end-to-end IAM:
    the proxy needs no secret either), so a rotation never reaches a running task.
    """

    instance_identifier: pulumi.Output[str]
    address: pulumi.Output[str]
    """What the application connects to: the proxy endpoint when there is a proxy."""
    instance_address: pulumi.Output[str]
    """The instance itself: where migrate connects as the master user."""
    port: int
    database_name: str
    username: str
    app_username: str
    app_connect_arn: pulumi.Output[str]
    """``rds-db:connect`` resource of the application role at ``address``."""
    master_secret_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str] | None
    """None when the database uses the AWS-managed keys (customer_managed_key=False)."""
    security_group_id: pulumi.Output[str]
    replica_identifier: pulumi.Output[str] | None
    proxy_endpoint: pulumi.Output[str] | None
    log_group_names: dict[str, pulumi.Output[str]]
    final_snapshot_identifier: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        region = aws.get_region_output(opts=invoke).region
        partition = aws.get_partition_output(opts=invoke).partition
        key = (
            EncryptionKey(
                f"{name}-kms",
                EncryptionKeyArgs(
                    description=f"{name}: storage, master secret, Performance Insights",
                    protect=args.protect,
                ),
                opts=child,
            )
            if args.customer_managed_key
            else None
        )
        key_arn = key.key_arn if key else None
        self.kms_key_arn = key_arn

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
            # The AWS-documented trust policy of the monitoring role, with the instance as
            # SourceArn (USER_Monitoring.OS.Enabling.html#USER_Monitoring.OS.confused-deputy).
            assume_role_policy=pulumi.Output.all(account, region, partition).apply(
                lambda a: _assume(
                    "monitoring.rds.amazonaws.com", a[0], f"arn:{a[2]}:rds:{a[1]}:{a[0]}:db:{name}"
                )
            ),
            opts=child,
        )
        monitoring_policy = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring-policy",
            role=monitoring.name,
            policy_arn=partition.apply(
                lambda p: f"arn:{p}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
            ),
            opts=child,
        )
        # RDS writes each export to /aws/rds/instance/<id>/<log> and creates the group
        # itself, without retention or a key, unless it exists
        # (USER_LogAccess.Procedural.UploadtoCloudWatch.html): create them first.
        log_groups = {
            export: aws.cloudwatch.LogGroup(
                f"{name}-log-{export}",
                name=f"/aws/rds/instance/{name}/{export}",
                retention_in_days=args.log_retention_days,
                kms_key_id=args.log_kms_key_arn,
                opts=pulumi.ResourceOptions(
                    parent=self, protect=args.protect, retain_on_delete=args.protect
                ),
            )
            for export in args.log_exports
        }
        self.log_group_names = {e: g.name for e, g in log_groups.items()}
        self.final_snapshot_identifier = None
        if args.final_snapshot:
            suffix = random.RandomId(f"{name}-final-snapshot", byte_length=4, opts=child)
            self.final_snapshot_identifier = suffix.hex.apply(lambda h: f"{name}-final-{h}")
        instance = aws.rds.Instance(
            f"{name}-postgres",
            # A fixed identifier: alarms, dashboards and runbooks refer to it by name.
            identifier=name,
            engine="postgres",
            engine_version=args.engine_version,
            db_name=args.database_name,
            username=args.username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=key_arn,
            db_subnet_group_name=subnets.name,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            multi_az=args.multi_az,
            backup_retention_period=args.backup_retention_days,
            backup_window=args.backup_window,
            skip_final_snapshot=not args.final_snapshot,
            final_snapshot_identifier=self.final_snapshot_identifier,
            apply_immediately=False,
            instance_class=args.instance_class,
            storage_encrypted=True,
            kms_key_id=key_arn,
            vpc_security_group_ids=[sg.id],
            parameter_group_name=params.name,
            publicly_accessible=False,
            auto_minor_version_upgrade=True,
            maintenance_window=args.maintenance_window,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=key_arn,
            performance_insights_retention_period=args.performance_insights_retention_days,
            monitoring_interval=args.monitoring_interval_seconds,
            monitoring_role_arn=monitoring.arn,
            enabled_cloudwatch_logs_exports=list(args.log_exports),
            iam_database_authentication_enabled=True,
            ca_cert_identifier=args.ca_cert_identifier,
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            # RDS checks the monitoring role's permissions at create time: the policy must
            # be attached first, not merely the role exist.
            opts=pulumi.ResourceOptions.merge(
                keep,
                pulumi.ResourceOptions(depends_on=[monitoring_policy, *log_groups.values()]),
            ),
        )
        self.instance_identifier = instance.identifier
        self.instance_address = instance.address
        self.port = PORT
        self.database_name = args.database_name
        self.username = args.username
        self.app_username = args.app_username
        self.master_secret_arn = instance.master_user_secrets.apply(
            lambda secrets: (
                secrets[0]["secret_arn"] if isinstance(secrets[0], dict) else secrets[0].secret_arn
            )
        )
        self.replica_identifier = None
        if args.backup_replica_provider is not None:
            self._replicate_backups(name, args, args.backup_replica_provider, instance)

        self.proxy_endpoint = None
        self.proxy_name: pulumi.Output[str] | None = None
        if args.proxy:
            proxy = self._proxy(name, args, instance, sg, account)
            self.proxy_endpoint = proxy.endpoint
            self.proxy_name = proxy.name
            self.address = proxy.endpoint
            self.app_connect_arn = proxy.arn.apply(
                lambda arn: connect_arn(arn, proxy_resource_id(arn), args.app_username)
            )
        else:
            admit(
                f"{name}-sg", sg.id, PORT, dict(args.client_security_group_ids), "PostgreSQL", self
            )
            self.address = instance.address
            self.app_connect_arn = pulumi.Output.all(instance.arn, instance.resource_id).apply(
                lambda a: connect_arn(a[0], a[1], args.app_username)
            )

        self.register_outputs(
            {
                "instance_identifier": self.instance_identifier,
                "address": self.address,
                "master_secret_arn": self.master_secret_arn,
                "security_group_id": self.security_group_id,
                "app_connect_arn": self.app_connect_arn,
            }
        )

    def _replicate_backups(
        self,
        name: str,
        args: DatabaseArgs,
        provider: pulumi.ProviderResource,
        instance: aws.rds.Instance,
    ) -> None:
        """Automated backups and transaction logs copied to the provider's region
        (point-in-time restore there), under a key of that region: a KMS key never
        leaves its region. The replication resource lives in the destination region
        (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ReplicateBackups.html)."""
        there = pulumi.ResourceOptions(parent=self, provider=provider)
        key = EncryptionKey(
            f"{name}-dr-kms",
            EncryptionKeyArgs(description=f"{name}: replicated backups", protect=args.protect),
            opts=there,
        )
        aws.rds.InstanceAutomatedBackupsReplication(
            f"{name}-backup-replication",
            source_db_instance_arn=instance.arn,
            kms_key_id=key.key_arn,
            retention_period=args.backup_retention_days,
            opts=there,
        )

    def _proxy(
        self,
        name: str,
        args: DatabaseArgs,
        instance: aws.rds.Instance,
        db_sg: aws.ec2.SecurityGroup,
        account: pulumi.Output[str],
    ) -> aws.rds.Proxy:
        child = pulumi.ResourceOptions(parent=self)
        proxy_sg = aws.ec2.SecurityGroup(
            f"{name}-proxy-sg",
            vpc_id=args.vpc_id,
            description="RDS Proxy: from the application, to the database",
            tags={"Name": f"{name}-proxy"},
            opts=child,
        )
        clients = dict(args.client_security_group_ids)
        # Migrations connect to the instance as the master user: the proxy's end-to-end
        # IAM authentication admits IAM-enabled roles only.
        direct = {k: v for k, v in clients.items() if k == "migrate"}
        admit(
            f"{name}-proxy-sg",
            proxy_sg.id,
            PORT,
            {k: v for k, v in clients.items() if k not in direct},
            "PostgreSQL via RDS Proxy",
            self,
        )
        admit(f"{name}-sg", db_sg.id, PORT, {"proxy": proxy_sg.id, **direct}, "PostgreSQL", self)
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
            description="RDS Proxy: connect to the database with IAM authentication",
            assume_role_policy=account.apply(lambda a: _assume("rds.amazonaws.com", a)),
            opts=child,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-proxy-connect",
            role=role.id,
            policy=pulumi.Output.all(instance.arn, instance.resource_id).apply(
                lambda a: proxy_policy(connect_arn(a[0], a[1], args.app_username))
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
            # End-to-end IAM: clients present IAM tokens and the proxy logs in to the
            # database with IAM too; no secret to read, so nothing a rotation can break
            # (rds-proxy-iam-setup.html, "end-to-end IAM authentication").
            default_auth_scheme="IAM_AUTH",
            # The proxy checks its role when it starts its targets: without the policy
            # first they register as AUTH_FAILURE.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
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
        return proxy


def proxy_policy(db_connect_arn: str) -> str:
    """The proxy role: log in to the instance as the application role, nothing else."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ConnectToTheInstance",
                    "Effect": "Allow",
                    "Action": "rds-db:connect",
                    "Resource": db_connect_arn,
                }
            ],
        }
    )


def app_connect_statement(connect_arns: Sequence[str]) -> dict[str, Any]:
    """The task role's statement: connect as the application role, at that endpoint only."""
    return {
        "Sid": "DatabaseIamAuth",
        "Effect": "Allow",
        "Action": "rds-db:connect",
        "Resource": sorted(connect_arns),
    }
