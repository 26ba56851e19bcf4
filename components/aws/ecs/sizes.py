"""Fargate task sizes: the one owner of the CPU/memory table and of a process's counts."""

from __future__ import annotations

from dataclasses import dataclass

from components.args import ArgError

# Fargate (Linux, platform 1.4.0) CPU units -> (lowest, highest, step) task memory in MiB.
# A value inside the range but off the step is refused by RegisterTaskDefinition.
FARGATE_MEMORY_STEPS = {
    256: (512, 2048, 0),  # 512, 1024 or 2048 only
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}

MIN_RUNNING = {"worker": 1}
"""Processes that never scale to zero on ECS: queue-depth scaling divides the backlog by
the running worker tasks, and with none the metric has no data to scale out from."""


@dataclass
class ProcessSize:
    cpu: int = 256
    """Fargate CPU units (256 = 0.25 vCPU): a key of ``FARGATE_MEMORY_STEPS``."""
    memory_mb: int = 512
    """Task memory in MiB, one Fargate allows with ``cpu``."""
    min_count: int = 1
    max_count: int = 3

    def validate(self, process: str) -> None:
        """The one check of a Fargate task size and count (``ArgError`` field
        ``<process>.cpu``, ``.memory_mb``, ``.min_count``)."""
        allowed = fargate_memory_options(self.cpu)
        if not allowed:
            raise ArgError(
                f"{process}.cpu", self.cpu, f"Fargate allows one of {sorted(FARGATE_MEMORY_STEPS)}"
            )
        if self.memory_mb not in allowed:
            raise ArgError(
                f"{process}.memory_mb",
                self.memory_mb,
                f"Fargate allows {describe_memory_options(self.cpu)} with cpu={self.cpu}",
            )
        if self.min_count > self.max_count:
            raise ValueError(f"{process}: min_count {self.min_count} > max_count {self.max_count}")
        if self.min_count < (floor := MIN_RUNNING.get(process, 0)):
            raise ArgError(
                f"{process}.min_count",
                self.min_count,
                f"at least {floor} on AWS ({process}s scale on backlog per running task)",
            )


def fargate_memory_options(cpu: int) -> tuple[int, ...]:
    """Every task memory size (MiB) Fargate accepts with ``cpu`` units; empty if none."""
    if cpu not in FARGATE_MEMORY_STEPS:
        return ()
    low, high, step = FARGATE_MEMORY_STEPS[cpu]
    if step == 0:
        return (512, 1024, 2048)
    return tuple(range(low, high + 1, step))


def describe_memory_options(cpu: int) -> str:
    low, high, step = FARGATE_MEMORY_STEPS[cpu]
    if step == 0:
        return "512, 1024 or 2048"
    return f"{low} to {high} in steps of {step}"
