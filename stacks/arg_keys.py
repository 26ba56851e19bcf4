"""The one table from a component ``Args`` field to the config key that sets it.

Components check cloud rules in their ``Args`` and raise ``ArgError`` naming their own
field; the stacks build those ``Args`` inside ``config_keys`` so the user reads the
``groundwork:*`` key they wrote, the value and what is allowed, without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from components.args import ArgError
from components.aws.container_service import ProcessSize
from components.aws.network import NetworkArgs
from components.gcp.cache import CacheArgs
from components.gcp.database import DatabaseArgs
from components.gcp.edge import EdgeArgs
from components.gcp.services import ServiceSize
from stacks.config import invalid_value

CONFIG_KEYS: dict[tuple[type, str], str] = {
    # AWS
    (NetworkArgs, "cidr_block"): "vpcCidr",
    (NetworkArgs, "availability_zones"): "availabilityZones",
    (ProcessSize, "api.cpu"): "apiCpu",
    (ProcessSize, "api.memory_mb"): "apiMemoryMb",
    (ProcessSize, "worker.cpu"): "workerCpu",
    (ProcessSize, "worker.memory_mb"): "workerMemoryMb",
    (ProcessSize, "worker.min_count"): "workerMinCount",
    # GCP (a ServiceSize per Cloud Run service: the field is scoped by the service)
    (ServiceSize, "api.cpu"): "gcpRunCpu",
    (ServiceSize, "api.memory"): "gcpRunMemory",
    (ServiceSize, "api.min_instances"): "gcpApiMinInstances",
    (ServiceSize, "worker.cpu"): "gcpRunCpu",
    (ServiceSize, "worker.memory"): "gcpRunMemory",
    # Only gcpWorkerMinInstances can exceed it: workerMinCount <= workerMaxCount is a
    # settings rule.
    (ServiceSize, "worker.min_instances"): "gcpWorkerMinInstances",
    (DatabaseArgs, "disk_autoresize_limit_gb"): "dbMaxStorageGb",
    (DatabaseArgs, "backup_retention_days"): "dbBackupRetentionDays",
    (CacheArgs, "memory_size_gb"): "gcpRedisMemoryGb",
    (EdgeArgs, "domain"): "domain",
}


@contextmanager
def config_keys(args_type: type, scope: str = "") -> Iterator[None]:
    """Turn an ``ArgError`` of ``args_type`` into the ConfigError of its config key.

    ``scope`` names which of several ``args_type`` objects is being built (the field
    is looked up as ``<scope>.<field>``). A field missing from the table is a
    programming error and stays an ``ArgError``.
    """
    try:
        yield
    except ArgError as error:
        field = f"{scope}.{error.field}" if scope else error.field
        key = CONFIG_KEYS.get((args_type, field))
        if key is None:
            raise
        raise invalid_value(key, error.value, error.allowed) from None
