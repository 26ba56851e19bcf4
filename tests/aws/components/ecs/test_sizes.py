"""Fargate task sizes (components/aws/ecs/sizes.py)."""

from __future__ import annotations

import pytest

from components.aws import ProcessSize
from components.aws.ecs.sizes import fargate_memory_options


@pytest.mark.parametrize(
    ("cpu", "memory", "ok"),
    [
        (256, 512, True),
        (256, 2048, True),
        (256, 1536, False),  # between 1024 and 2048: refused
        (1024, 3072, True),
        (1024, 3000, False),  # not a whole GiB
        (4096, 30720, True),
        (8192, 20480, True),
        (8192, 18432, False),  # 4 GiB steps above 4 vCPU
        (16384, 122880, True),
        (768, 2048, False),
    ],
)
def test_fargate_sizes(cpu: int, memory: int, ok: bool) -> None:
    assert (memory in fargate_memory_options(cpu)) is ok
    if ok:
        ProcessSize(cpu, memory).validate("api")
    else:
        with pytest.raises(ValueError, match="Fargate allows"):
            ProcessSize(cpu, memory).validate("api")
