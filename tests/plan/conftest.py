"""Fixtures for the plan tests: hand-built resource graphs and cached real plans."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from groundwork.mockrun import ProgramRun, RecordedResource
from groundwork.plan.pricing import CostReport, estimate, load_price_table

STACK_URN = "urn:pulumi:staging::groundwork::pulumi:pulumi:Stack::groundwork-staging"


class Graph:
    """Builds a ProgramRun by hand, the shape mockrun records, for the pricing tests."""

    def __init__(self) -> None:
        self.resources: list[RecordedResource] = []

    def add(
        self,
        type_token: str,
        name: str,
        inputs: dict[str, Any] | None = None,
        *,
        state: dict[str, Any] | None = None,
        parent: str = STACK_URN,
        custom: bool = True,
    ) -> RecordedResource:
        urn = f"urn:pulumi:staging::groundwork::{type_token}::{name}"
        resource = RecordedResource(
            urn=urn,
            type=type_token,
            name=name,
            inputs=inputs or {},
            state=state or {},
            custom=custom,
            parent=parent,
        )
        self.resources.append(resource)
        return resource

    def run(self) -> ProgramRun:
        return ProgramRun(
            project="groundwork", stack="staging", resources=self.resources, outputs={}
        )

    def price(
        self, *, cloud: str = "aws", tier: str = "staging", region: str | None = None
    ) -> CostReport:
        region = region or {"aws": "us-east-1", "gcp": "europe-west1"}[cloud]
        return estimate(self.run(), cloud=cloud, region=region, tier=tier)


@pytest.fixture
def graph() -> Graph:
    return Graph()


@pytest.fixture(scope="session")
def table() -> Any:
    return load_price_table()


@pytest.fixture(scope="session")
def aws_prices(table: Any) -> dict[str, Any]:
    return table.region("aws", "us-east-1")


@pytest.fixture(scope="session")
def gcp_prices(table: Any) -> dict[str, Any]:
    return table.region("gcp", "europe-west1")


@pytest.fixture(scope="session")
def usage(table: Any) -> Callable[[str], dict[str, float]]:
    return table.assumptions
