"""Prometheus metrics of the HTTP API.

Routes are labelled by their template (``/v1/jobs/{job_id}``), never the raw path,
so a scan of random ids cannot explode the series count; requests that match no
route share the ``<unmatched>`` label.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being served right now.")
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog", "Outbox rows not yet published (capped at OUTBOX_BACKLOG_CAP)."
)
JOBS_SUBMITTED = Counter(
    "jobs_submitted_total",
    "Job submissions by source (api, webhook) and outcome (created, replayed, conflict).",
    ["source", "outcome"],
)
RATE_LIMITED = Counter("rate_limit_rejections_total", "Requests refused with 429.")
RATE_LIMIT_FAIL_OPEN = Counter(
    "rate_limit_fail_open_total",
    "Requests let through unchecked because the rate-limit store (Redis) failed.",
)
READINESS_FAILURES = Counter(
    "readiness_check_failures_total", "Failed readiness checks by dependency.", ["check"]
)

# Label children per (route, method, status), bound once: ``labels()`` validates and
# looks up its labels under a lock on every call. Bounded like the series themselves
# (route templates x methods x statuses).
_http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_http_request(route: str, method: str, status: int, seconds: float) -> None:
    key = (route, method, status)
    children = _http_children.get(key)
    if children is None:
        children = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_LATENCY.labels(route, method),
        )
        _http_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


CONTENT_TYPE = CONTENT_TYPE_LATEST
# Counting a huge backlog exactly would scan the whole partial index on every scrape.
OUTBOX_BACKLOG_CAP = 100_000


def render() -> bytes:
    return _generate_latest(REGISTRY)


class CachedGauge:
    """Refresh a gauge from an async source at most every ``max_age`` seconds.

    Scrapes call :meth:`refresh`; concurrent or frequent scrapes reuse the last value
    instead of querying the database each time. A failing source keeps the last value.
    """

    def __init__(
        self, gauge: Gauge, source: Callable[[], Awaitable[int]], max_age: float = 5.0
    ) -> None:
        self._gauge = gauge
        self._source = source
        self._max_age = max_age
        self._refreshed_at = float("-inf")

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed_at < self._max_age:
            return
        self._refreshed_at = now
        self._gauge.set(await self._source())
