"""RabbitMqJobQueue: Amazon MQ for RabbitMQ, private, TLS-only (5671), generated credentials.

Two users: the administrator Amazon MQ creates (the only user its API manages; for
operations and for migrate, which creates the other) and the application's user,
created through the RabbitMQ management API with permissions on one vhost's
application names only (groundwork_app.adapters.rabbitmq_admin).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.args import renamed_from
from components.aws.firewall import admit
from components.aws.secrets import store_secret

PORT = 5671
MANAGEMENT_PORT = 443
"""The management API / web console of an Amazon MQ RabbitMQ broker: HTTPS on 443."""
# 3.13 is the first Amazon MQ RabbitMQ line with quorum queues (the app's jobs queue
# and its dead-letter queue are quorum queues: replicated, poison-message safe).
ENGINE_VERSION = "3.13"


class DeploymentMode(StrEnum):
    SINGLE_INSTANCE = "SINGLE_INSTANCE"
    """One broker node: cheap, no redundancy (staging)."""
    CLUSTER_MULTI_AZ = "CLUSTER_MULTI_AZ"
    """Three nodes across AZs behind one endpoint (production)."""


@dataclass
class RabbitMqJobQueueArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_ids: Mapping[str, pulumi.Input[str]]
    secrets_kms_key_arn: pulumi.Input[str] | None
    """Key of the credential secrets (None: Secrets Manager's aws/secretsmanager)."""
    broker_name: str
    """Prefix of the broker's name. Amazon MQ names are unique per account and region and
    cannot change, so a random suffix is appended; it is renewed whenever an input that
    forces a replacement changes, so Pulumi's create-before-delete never collides."""
    instance_type: str = "mq.t3.micro"
    deployment_mode: DeploymentMode = DeploymentMode.SINGLE_INSTANCE
    engine_version: str = ENGINE_VERSION
    username: str = "groundwork"
    """The application's user (created by migrate, not by Amazon MQ)."""
    admin_username: str = "gwadmin"
    """The administrator Amazon MQ creates. Changing it replaces the broker."""
    management_client_security_group_ids: Mapping[str, pulumi.Input[str]] = field(
        default_factory=dict
    )
    """Who may reach the management API (HTTPS 443): the migrate task."""
    general_logs: bool = True
    """Connection and authentication events, for audits. Amazon MQ writes them to
    ``/aws/amazonmq/broker/<broker-id>/general``, a group it creates itself without
    retention or a customer key (the name holds the broker ID assigned at creation, so it
    cannot be created first); `groundwork ops broker-logs`, run by the deploy workflow
    after `pulumi up`, sets both (groundwork/ops/broker_logs.py)."""
    protect: bool = False
    """Pulumi ``protect`` + ``retain_on_delete`` on the broker and its credentials."""
    secret_recovery_window_days: int = 30
    maintenance_day: str = "SUNDAY"
    maintenance_time: str = "06:00"

    def __post_init__(self) -> None:
        self.deployment_mode = DeploymentMode(self.deployment_mode)
        if not 1 <= len(self.broker_name) <= 50 - SUFFIX_LENGTH:
            raise ValueError(
                f"broker_name={self.broker_name!r}: 1 to {50 - SUFFIX_LENGTH} characters "
                f"(Amazon MQ allows 50, and a {SUFFIX_LENGTH}-character suffix is added)"
            )
        if self.username == self.admin_username:
            raise ValueError("username and admin_username must differ")
        if self.admin_username == "guest" or self.username == "guest":
            raise ValueError("Amazon MQ deletes any user named 'guest'")
        cluster = self.deployment_mode is DeploymentMode.CLUSTER_MULTI_AZ
        if cluster and self.instance_type.startswith("mq.t3"):
            raise ValueError(
                f"instance_type={self.instance_type}: Amazon MQ runs RabbitMQ clusters only "
                "on mq.m5/mq.m7g instances"
            )
        if not self.client_security_group_ids:
            raise ValueError("client_security_group_ids is empty: nothing could reach the broker")
        major_minor = tuple(int(p) for p in self.engine_version.split(".")[:2])
        if major_minor < (3, 13):
            raise ValueError(
                f"engine_version={self.engine_version}: quorum queues need RabbitMQ 3.13 or later"
            )


SUFFIX_LENGTH = 9  # "-" and 8 hex characters


class RabbitMqJobQueue(pulumi.ComponentResource):
    broker_id: pulumi.Output[str]
    broker_name: pulumi.Output[str]
    host: pulumi.Output[str]
    port: int
    management_url: pulumi.Output[str]
    username: str
    admin_username: str
    credentials_secret_arn: pulumi.Output[str]
    """The application user: JSON ``{"username", "password"}``; ECS injects ``:password::``."""
    admin_secret_arn: pulumi.Output[str]
    """The administrator: JSON ``{"username", "password"}``, for migrate and operators."""
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: RabbitMqJobQueueArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "groundwork:aws:RabbitMqJobQueue",
            name,
            None,
            renamed_from("groundwork:aws:Broker", opts),
        )
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(
            parent=self, protect=args.protect, retain_on_delete=args.protect
        )
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Amazon MQ RabbitMQ: AMQPS from the application tasks only",
            tags={"Name": f"{name}-broker"},
            opts=child,
        )
        admit(f"{name}-sg", sg.id, PORT, dict(args.client_security_group_ids), "AMQPS", self)
        if args.management_client_security_group_ids:
            admit(
                f"{name}-sg-management",
                sg.id,
                MANAGEMENT_PORT,
                dict(args.management_client_security_group_ids),
                "RabbitMQ management API (HTTPS)",
                self,
            )
        # Amazon MQ rejects commas, colons and equals signs in passwords: letters/digits only.
        password = random.RandomPassword(f"{name}-password", length=40, special=False, opts=keep)
        self.credentials_secret_arn = store_secret(
            f"{name}-credentials",
            password.result.apply(lambda p: json.dumps({"username": args.username, "password": p})),
            f"{name}: RabbitMQ application user",
            kms_key_arn=args.secrets_kms_key_arn,
            recovery_window_days=args.secret_recovery_window_days,
            parent=self,
            protect=args.protect,
        )
        admin_password = random.RandomPassword(
            f"{name}-admin-password", length=40, special=False, opts=keep
        )
        self.admin_secret_arn = store_secret(
            f"{name}-admin",
            admin_password.result.apply(
                lambda p: json.dumps({"username": args.admin_username, "password": p})
            ),
            f"{name}: RabbitMQ administrator (operations, migrate)",
            kms_key_arn=args.secrets_kms_key_arn,
            recovery_window_days=args.secret_recovery_window_days,
            parent=self,
            protect=args.protect,
        )
        single = args.deployment_mode is DeploymentMode.SINGLE_INSTANCE
        subnet_ids = [args.subnet_ids[0]] if single else list(args.subnet_ids)
        # Renewed with every input that forces a new broker (aws provider: ForceNew on
        # these), so the replacement gets a free name while the old broker still runs.
        suffix = random.RandomId(
            f"{name}-name-suffix",
            byte_length=4,
            keepers={
                "engine": f"RabbitMQ {args.engine_version.split('.')[0]}",
                "deployment_mode": args.deployment_mode.value,
                "admin": args.admin_username,
                "subnets": pulumi.Output.all(*subnet_ids).apply(",".join),
                "public": "false",
                "encryption": "aws-owned",
            },
            opts=child,
        )
        broker_name = suffix.hex.apply(lambda h: f"{args.broker_name}-{h}")
        broker = aws.mq.Broker(
            f"{name}-broker",
            broker_name=broker_name,
            engine_type="RabbitMQ",
            engine_version=args.engine_version,
            host_instance_type=args.instance_type,
            deployment_mode=args.deployment_mode.value,
            publicly_accessible=False,
            subnet_ids=subnet_ids,
            security_groups=[sg.id],
            # The one user Amazon MQ's API creates: the administrator.
            users=[{"username": args.admin_username, "password": admin_password.result}],
            logs={"general": args.general_logs},
            # RabbitMQ brokers support only AWS-owned keys for encryption at rest.
            encryption_options={"use_aws_owned_key": True},
            auto_minor_version_upgrade=True,
            maintenance_window_start_time={
                "day_of_week": args.maintenance_day,
                "time_of_day": args.maintenance_time,
                "time_zone": "UTC",
            },
            apply_immediately=False,
            opts=pulumi.ResourceOptions.merge(
                keep, pulumi.ResourceOptions(additional_secret_outputs=["users"])
            ),
        )
        self.broker_id = broker.id
        self.broker_name = broker.broker_name
        self.host = broker.instances.apply(_amqps_host)
        self.management_url = self.host.apply(lambda host: f"https://{host}")
        self.port = PORT
        self.username = args.username
        self.admin_username = args.admin_username
        self.security_group_id = sg.id
        self.register_outputs(
            {
                "broker_id": self.broker_id,
                "host": self.host,
                "credentials_secret_arn": self.credentials_secret_arn,
                "admin_secret_arn": self.admin_secret_arn,
            }
        )


def _amqps_host(instances: Sequence[object]) -> str:
    """``amqps://b-123.mq.us-east-1.amazonaws.com:5671`` -> the host name."""
    first = instances[0]
    endpoints = first["endpoints"] if isinstance(first, dict) else first.endpoints  # type: ignore[attr-defined]
    url = endpoints[0]
    return url.split("://", 1)[-1].rsplit(":", 1)[0]
