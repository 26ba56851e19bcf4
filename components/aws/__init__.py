"""Reusable AWS components: each a ComponentResource with a typed, secure-by-default Args."""

from components.aws.alarms import Alarms, AlarmsArgs
from components.aws.alb import Edge, EdgeArgs
from components.aws.cache import Cache, CacheArgs, CacheEngine
from components.aws.container_service import (
    ContainerService,
    ContainerServiceArgs,
    ImageSource,
    ProcessSize,
)
from components.aws.database import Database, DatabaseArgs
from components.aws.firewall import ServiceFirewall, ServiceFirewallArgs
from components.aws.job_queue_rabbitmq import DeploymentMode, RabbitMqJobQueue, RabbitMqJobQueueArgs
from components.aws.kms import EncryptionKey, EncryptionKeyArgs
from components.aws.network import NatStrategy, Network, NetworkArgs
from components.aws.secrets import SecretStore, SecretStoreArgs

__all__ = [
    "Alarms",
    "AlarmsArgs",
    "Cache",
    "CacheArgs",
    "CacheEngine",
    "ContainerService",
    "ContainerServiceArgs",
    "Database",
    "DatabaseArgs",
    "DeploymentMode",
    "Edge",
    "EdgeArgs",
    "EncryptionKey",
    "EncryptionKeyArgs",
    "ImageSource",
    "NatStrategy",
    "Network",
    "NetworkArgs",
    "ProcessSize",
    "RabbitMqJobQueue",
    "RabbitMqJobQueueArgs",
    "SecretStore",
    "SecretStoreArgs",
    "ServiceFirewall",
    "ServiceFirewallArgs",
]
