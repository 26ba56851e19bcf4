"""Cost per million jobs at list price: worker compute + LLM tokens.

Worker compute: one worker task of the stack's size, billed for the time it takes to
run a million jobs at that task's capacity (``Settings.worker_jobs_per_second``,
stacks/config.py: its in-flight slots turned over at the design LLM latency, bounded by
the CPU per job bench/pipeline.py measured, docs/performance.md). The stacks'
concurrency, prefetch and autoscaling targets come from the same figures, so the unit
cost cannot drift from what is deployed.
LLM tokens: ``llm_input_tokens_per_job`` / ``llm_output_tokens_per_job`` at the
table's per-million-token prices of the stack's model: usage assumptions in
prices.yaml, shown by ``groundwork plan`` under the monthly table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from groundwork.plan.pricing import PriceTable

MODEL = "gpt-4o-mini"  # what stacks/service_env.py sets as LLM_MODEL


@dataclass(frozen=True)
class UnitCost:
    worker_task: str
    jobs_per_second: float
    slots: int
    worker_usd: float
    llm_usd: float | None
    model: str
    input_tokens: float
    output_tokens: float

    @property
    def total_usd(self) -> float | None:
        return None if self.llm_usd is None else self.worker_usd + self.llm_usd


def cost_per_million_jobs(
    table: PriceTable, cloud: str, region: str, tier: str, settings: Any
) -> UnitCost | None:
    """``settings``: the stack's ``stacks.config.Settings``. None when a price is missing."""
    usage = table.assumptions(tier)
    slots = settings.worker_slots
    rate = settings.worker_jobs_per_second
    try:
        prices = table.region(cloud, region)
    except Exception:
        return None
    if cloud == "aws":
        # The worker's own architecture and capacity (Graviton and Spot combine).
        arch = settings.cpu_architecture
        fargate = prices["fargate"][f"spot_{arch}" if settings.worker_spot else arch]
        vcpu, gib = settings.worker_cpu / 1024, settings.worker_memory_mb / 1024
        hourly = vcpu * fargate["vcpu_hourly"] + gib * fargate["gb_hourly"]
        per_second = hourly / 3600
        spot = " Spot" if settings.worker_spot else ""
        task = f"Fargate{spot} {arch} {vcpu:g} vCPU / {gib:g} GB"
    else:
        # The worker is request-billed (cpu_idle): busy at this rate, every second is active.
        run = prices["cloud_run"]["request_based"]
        vcpu, gib = float(settings.gcp_run_cpu), settings.worker_task_memory_mb / 1024
        per_second = vcpu * run["vcpu_second"] + gib * run["gib_second"]
        task = f"Cloud Run {vcpu:g} vCPU / {gib:g} GiB"
    models = (table.data.get("llm") or {}).get("models") or {}
    tokens_in = usage.get("llm_input_tokens_per_job", 0.0)
    tokens_out = usage.get("llm_output_tokens_per_job", 0.0)
    llm = None
    if MODEL in models:
        price = models[MODEL]
        llm = (
            tokens_in * price["input_per_million_tokens"]
            + tokens_out * price["output_per_million_tokens"]
        )
    return UnitCost(
        worker_task=task,
        jobs_per_second=rate,
        slots=slots,
        worker_usd=per_second / rate * 1e6,
        llm_usd=llm,
        model=MODEL,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
    )


def describe(cost: UnitCost, currency: str = "USD") -> str:
    llm = (
        f"LLM tokens {currency} {cost.llm_usd:,.2f} ({cost.model}, {cost.input_tokens:g} in + "
        f"{cost.output_tokens:g} out per job)"
        if cost.llm_usd is not None
        else f"LLM tokens not priced (no {cost.model} price in the table)"
    )
    total = f" = {currency} {cost.total_usd:,.2f}" if cost.total_usd is not None else ""
    return (
        f"Cost per million jobs: worker compute {currency} {cost.worker_usd:,.3f} "
        f"({cost.worker_task} at {cost.jobs_per_second:,.0f} jobs/s: {cost.slots} slots at "
        f"2 s of LLM latency, stacks/config.py, from docs/performance.md) + {llm}{total}"
    )
