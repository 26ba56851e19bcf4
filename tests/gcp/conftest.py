"""Session fixtures: the two GCP stacks, built once under the mock runtime."""

from __future__ import annotations

import pytest

from groundwork.mockrun import ProgramRun
from tests.gcp.helpers import run_stack


@pytest.fixture(scope="session")
def staging() -> ProgramRun:
    return run_stack("staging")


@pytest.fixture(scope="session")
def production() -> ProgramRun:
    return run_stack(
        "production", {"domain": "api.example.com", "alarmEmail": "oncall@example.com"}
    )


@pytest.fixture(scope="session")
def staging_metrics() -> ProgramRun:
    """Staging with the service metrics export on (off by default there: cost); the relay
    always-on, since a scheduled relay below 1 vCPU cannot carry the sidecar."""
    return run_stack("staging", {"serviceMetrics": "true", "gcpRelayBilling": "instance"})
