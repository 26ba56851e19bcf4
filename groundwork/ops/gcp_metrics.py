"""The canary's alert metric: the 5xx ratio of one Cloud Run revision, from Cloud Monitoring.

``ops shift-traffic`` advances 10 -> 50 -> 100 % only while the candidate revision's
ratio stays under the threshold of the ``api-5xx-ratio`` alert policy
(components/gcp/alarms.py, ``Thresholds.error_ratio``): the same metric
(``run.googleapis.com/request_count`` by ``response_code_class``) and the same limit,
measured on the candidate alone, so a bad release is rolled back before the alert fires
for everyone.

The Monitoring API v3 ``projects.timeSeries.list``
(https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/list) is
called over REST with the caller's credentials; int64 values arrive as JSON strings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from groundwork.ops.errors import MissingCredentialsError, OpsError, SmokeTestError

MONITORING = "https://monitoring.googleapis.com/v3"
Getter = Callable[[str, dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class ErrorRatio:
    revision: str
    requests: int
    errors: int

    @property
    def ratio(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def _value(point: dict[str, Any]) -> int:
    value = point.get("value") or {}
    if "int64Value" in value:
        return int(value["int64Value"])
    return int(float(value.get("doubleValue", 0)))


def revision_errors(
    get: Getter,
    project: str,
    service: str,
    revision: str,
    *,
    window_seconds: int,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ErrorRatio:
    """Requests and 5xx answers of ``revision`` over the last ``window_seconds``."""
    end = now()
    start = end - timedelta(seconds=window_seconds)
    params = {
        "filter": (
            'metric.type = "run.googleapis.com/request_count" AND '
            'resource.type = "cloud_run_revision" AND '
            f'resource.labels.service_name = "{service}" AND '
            f'resource.labels.revision_name = "{revision}"'
        ),
        "interval.startTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "interval.endTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aggregation.alignmentPeriod": f"{window_seconds}s",
        "aggregation.perSeriesAligner": "ALIGN_DELTA",
        "aggregation.crossSeriesReducer": "REDUCE_SUM",
        "aggregation.groupByFields": "metric.label.response_code_class",
    }
    body = get(f"{MONITORING}/projects/{project}/timeSeries", params)
    requests = errors = 0
    for series in body.get("timeSeries", []):
        count = sum(_value(point) for point in series.get("points", []))
        requests += count
        labels = (series.get("metric") or {}).get("labels") or {}
        if labels.get("response_code_class") == "5xx":
            errors += count
    return ErrorRatio(revision=revision, requests=requests, errors=errors)


def check_error_ratio(measured: ErrorRatio, max_ratio: float) -> None:
    ratio = measured.ratio
    if ratio is not None and ratio > max_ratio:
        raise SmokeTestError(
            f"revision {measured.revision}: {measured.errors} of {measured.requests} requests "
            f"answered 5xx ({ratio:.1%} > {max_ratio:.1%}, the api-5xx-ratio alert's threshold)"
        )


def authorized_getter() -> Getter:  # pragma: no cover - needs Google credentials
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    from google.auth.transport.requests import AuthorizedSession

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/monitoring.read"]
        )
    except DefaultCredentialsError:
        raise MissingCredentialsError(
            "read Cloud Monitoring: no Google credentials found; in CI use "
            "google-github-actions/auth, locally `gcloud auth application-default login`"
        ) from None
    session = AuthorizedSession(credentials)

    def get(url: str, params: dict[str, str]) -> dict[str, Any]:
        response = session.get(url, params=params, timeout=30)
        if response.status_code != 200:
            raise OpsError(
                f"Cloud Monitoring answered {response.status_code}: {response.text[:300]}"
            )
        result: dict[str, Any] = response.json()
        return result

    return get
