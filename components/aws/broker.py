"""Broker: Amazon MQ for RabbitMQ, private, TLS-only (5671), generated credentials."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws.firewall import admit
from components.aws.secrets import store_secret

PORT = 5671
# 3.13 is the first Amazon MQ RabbitMQ line with quorum queues (the app's jobs queue
# and its dead-letter queue are quorum queues: replicated, poison-message safe).
ENGINE_VERSION = "3.13"


class DeploymentMode(StrEnum):
    SINGLE_INSTANCE = "SINGLE_INSTANCE"
    """One broker node: cheap, no redundancy (staging)."""
    CLUSTER_MULTI_AZ = "CLUSTER_MULTI_AZ"
    """Three nodes across AZs behind one endpoint (production)."""


@dataclass
class BrokerArgs:
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_ids: Mapping[str, pulumi.Input[str]]
    secrets_kms_key_arn: pulumi.Input[str]
    broker_name: str
    """Amazon MQ broker names are unique per account and region and cannot be changed."""
    instance_type: str = "mq.t3.micro"
    deployment_mode: DeploymentMode = DeploymentMode.SINGLE_INSTANCE
    engine_version: str = ENGINE_VERSION
    username: str = "groundwork"
    secret_recovery_window_days: int = 30
    maintenance_day: str = "SUNDAY"
    maintenance_time: str = "06:00"

    def __post_init__(self) -> None:
        self.deployment_mode = DeploymentMode(self.deployment_mode)
        if not 1 <= len(self.broker_name) <= 50:
            raise ValueError(f"broker_name={self.broker_name!r}: 1 to 50 characters")
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


class Broker(pulumi.ComponentResource):
    broker_id: pulumi.Output[str]
    broker_name: str
    host: pulumi.Output[str]
    port: int
    username: str
    credentials_secret_arn: pulumi.Output[str]
    """JSON ``{"username", "password"}``; ECS injects ``:password::`` from it."""
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: BrokerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("groundwork:aws:Broker", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Amazon MQ RabbitMQ: AMQPS from the application tasks only",
            tags={"Name": f"{name}-broker"},
            opts=child,
        )
        admit(f"{name}-sg", sg.id, PORT, dict(args.client_security_group_ids), "AMQPS", self)
        # Amazon MQ rejects commas, colons and equals signs in passwords: letters/digits only.
        password = random.RandomPassword(f"{name}-password", length=40, special=False, opts=child)
        self.credentials_secret_arn = store_secret(
            f"{name}-credentials",
            password.result.apply(lambda p: json.dumps({"username": args.username, "password": p})),
            f"{name}: RabbitMQ application user",
            kms_key_arn=args.secrets_kms_key_arn,
            recovery_window_days=args.secret_recovery_window_days,
            parent=self,
        )
        single = args.deployment_mode is DeploymentMode.SINGLE_INSTANCE
        broker = aws.mq.Broker(
            f"{name}-broker",
            broker_name=args.broker_name,
            engine_type="RabbitMQ",
            engine_version=args.engine_version,
            host_instance_type=args.instance_type,
            deployment_mode=args.deployment_mode.value,
            publicly_accessible=False,
            subnet_ids=[args.subnet_ids[0]] if single else list(args.subnet_ids),
            security_groups=[sg.id],
            users=[{"username": args.username, "password": password.result}],
            logs={"general": True},
            # RabbitMQ brokers support only AWS-owned keys for encryption at rest.
            encryption_options={"use_aws_owned_key": True},
            auto_minor_version_upgrade=True,
            maintenance_window_start_time={
                "day_of_week": args.maintenance_day,
                "time_of_day": args.maintenance_time,
                "time_zone": "UTC",
            },
            apply_immediately=False,
            opts=child,
        )
        self.broker_id = broker.id
        self.broker_name = args.broker_name
        self.host = broker.instances.apply(_amqps_host)
        self.port = PORT
        self.username = args.username
        self.security_group_id = sg.id
        self.register_outputs(
            {
                "broker_id": self.broker_id,
                "host": self.host,
                "credentials_secret_arn": self.credentials_secret_arn,
            }
        )


def _amqps_host(instances: Sequence[object]) -> str:
    """``amqps://b-123.mq.us-east-1.amazonaws.com:5671`` -> the host name."""
    first = instances[0]
    endpoints = first["endpoints"] if isinstance(first, dict) else first.endpoints  # type: ignore[attr-defined]
    url = endpoints[0]
    return url.split("://", 1)[-1].rsplit(":", 1)[0]
