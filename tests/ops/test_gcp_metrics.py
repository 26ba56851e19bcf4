"""The canary advances only while the candidate's 5xx ratio stays under the alert's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from components.gcp.alarms import Thresholds
from groundwork.ops import gcp
from groundwork.ops.errors import RolledBackError, SmokeTestError
from groundwork.ops.gcp_metrics import check_error_ratio, revision_errors

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def series(code_class: str, *counts: int) -> dict[str, Any]:
    """One series as projects.timeSeries.list returns it (int64 as a JSON string)."""
    return {
        "metric": {
            "type": "run.googleapis.com/request_count",
            "labels": {"response_code_class": code_class},
        },
        "resource": {"type": "cloud_run_revision", "labels": {"revision_name": "api-3"}},
        "points": [{"value": {"int64Value": str(c)}} for c in counts],
    }


class Monitoring:
    def __init__(self, *answer: dict[str, Any]) -> None:
        self.answer = {"timeSeries": list(answer)}
        self.calls: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        self.calls.append((url, params))
        return self.answer


def test_the_query_is_the_alert_metric_of_the_candidate_revision_only() -> None:
    monitoring = Monitoring(series("2xx", 90, 5), series("5xx", 3), series("4xx", 2))
    measured = revision_errors(
        monitoring,
        "acme",
        "groundwork-production-api",
        "api-3",
        window_seconds=180,
        now=lambda: NOW,
    )
    assert (measured.requests, measured.errors) == (100, 3)
    url, params = monitoring.calls[0]
    assert url == "https://monitoring.googleapis.com/v3/projects/acme/timeSeries"
    assert 'metric.type = "run.googleapis.com/request_count"' in params["filter"]
    assert 'resource.labels.revision_name = "api-3"' in params["filter"]
    assert params["aggregation.groupByFields"] == "metric.label.response_code_class"
    assert (params["interval.startTime"], params["interval.endTime"]) == (
        "2026-01-02T03:01:05Z",
        "2026-01-02T03:04:05Z",
    )
    with pytest.raises(SmokeTestError, match=r"3 of 100 requests answered 5xx \(3.0% > 1.0%"):
        check_error_ratio(measured, Thresholds().error_ratio)
    check_error_ratio(measured, 0.05)  # under a looser limit: passes
    quiet = revision_errors(Monitoring(), "acme", "svc", "api-3", window_seconds=60)
    check_error_ratio(quiet, 0.0)  # no traffic yet: no evidence either way


def test_a_failing_candidate_is_rolled_back_at_the_first_step(run_api: Any) -> None:
    service = run_api.fake.add_service(
        "groundwork-production-api",
        [("api-1", True), ("api-2", True), ("api-3", True)],
        serving="api-2",
    )
    monitoring = Monitoring(series("2xx", 80), series("5xx", 20))

    def health() -> None:
        measured = revision_errors(
            monitoring, "demo", "groundwork-production-api", "api-3", window_seconds=60
        )
        check_error_ratio(measured, Thresholds().error_ratio)

    with pytest.raises(RolledBackError, match="failed at 10%"):
        gcp.shift_traffic(
            run_api.clients["services"],
            run_api.clients["revisions"],
            service,
            [10, 50, 100],
            health,
            bake_seconds=0,
            sleep=lambda _: None,
        )
    assert run_api.fake.updates == [[("api-3", 10), ("api-2", 90)], [("api-2", 100)]]
