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
from stacks.config import invalid_value

CONFIG_KEYS: dict[tuple[type, str], str] = {
    (NetworkArgs, "cidr_block"): "vpcCidr",
    (NetworkArgs, "availability_zones"): "availabilityZones",
    (ProcessSize, "api.cpu"): "apiCpu",
    (ProcessSize, "api.memory_mb"): "apiMemoryMb",
    (ProcessSize, "worker.cpu"): "workerCpu",
    (ProcessSize, "worker.memory_mb"): "workerMemoryMb",
    (ProcessSize, "worker.min_count"): "workerMinCount",
}


@contextmanager
def config_keys(args_type: type) -> Iterator[None]:
    """Turn an ``ArgError`` of ``args_type`` into the ConfigError of its config key.

    A field missing from the table is a programming error and stays an ``ArgError``.
    """
    try:
        yield
    except ArgError as error:
        key = CONFIG_KEYS.get((args_type, error.field))
        if key is None:
            raise
        raise invalid_value(key, error.value, error.allowed) from None
