"""Cost per million jobs (groundwork/plan/unit_cost.py): worker compute + LLM tokens."""

from __future__ import annotations

from typing import Any

import pytest

from groundwork.plan.unit_cost import cost_per_million_jobs, describe
from stacks.config import build_settings


def test_aws_worker_compute_and_tokens_from_the_table(table: Any) -> None:
    settings = build_settings("production", {})  # 1 vCPU / 2 GB on-demand Graviton workers
    cost = cost_per_million_jobs(table, "aws", "us-east-1", "production", settings)
    assert cost is not None
    # The worker's own architecture's rate (production runs arm64), not x86's.
    fargate = table.region("aws", "us-east-1")["fargate"]["arm64"]
    usage = table.assumptions("production")
    hourly = 1 * fargate["vcpu_hourly"] + 2 * fargate["gb_hourly"]
    # One task's capacity is what the stack sizes it for (1,000 slots / 2 s), not a
    # second figure in the price table that could drift from the deployed concurrency.
    assert cost.jobs_per_second == settings.worker_jobs_per_second == 500
    assert cost.worker_usd == pytest.approx(hourly / 3600 / 500 * 1e6)
    price = table.data["llm"]["models"]["gpt-4o-mini"]
    assert cost.llm_usd == pytest.approx(
        usage["llm_input_tokens_per_job"] * price["input_per_million_tokens"]
        + usage["llm_output_tokens_per_job"] * price["output_per_million_tokens"]
    )
    assert cost.total_usd == pytest.approx(cost.worker_usd + cost.llm_usd)
    text = describe(cost)
    assert "Fargate arm64 1 vCPU / 2 GB" in text and "gpt-4o-mini" in text
    assert "1000 slots" in text


def test_spot_and_cloud_run_workers_are_priced_as_deployed(table: Any) -> None:
    spot = cost_per_million_jobs(
        table, "aws", "us-east-1", "staging", build_settings("staging", {})
    )
    on_demand = cost_per_million_jobs(
        table, "aws", "us-east-1", "staging", build_settings("staging", {"workerSpot": "false"})
    )
    assert spot is not None and on_demand is not None
    assert spot.worker_usd < on_demand.worker_usd and "Spot" in spot.worker_task
    gcp = cost_per_million_jobs(
        table, "gcp", "europe-west1", "production", build_settings("production", {"cloud": "gcp"})
    )
    assert gcp is not None and gcp.worker_task == "Cloud Run 1 vCPU / 1 GiB"
    run = table.region("gcp", "europe-west1")["cloud_run"]["request_based"]
    rate = build_settings("production", {"cloud": "gcp"}).worker_jobs_per_second
    assert gcp.worker_usd == pytest.approx((run["vcpu_second"] + run["gib_second"]) / rate * 1e6)


def test_unpriced_region_gives_no_line(table: Any) -> None:
    settings = build_settings("staging", {})
    assert cost_per_million_jobs(table, "aws", "mars-north-1", "staging", settings) is None
