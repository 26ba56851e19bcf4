"""Health and metrics endpoints (no authentication).

``/health/live``: the process answers (no dependency checks, so a database outage
never gets healthy tasks killed). ``/health/ready``: PostgreSQL, Redis and the broker
checked concurrently, each under ``HEALTH_CHECK_TIMEOUT_SECONDS``, so the answer
comes in about that time even when a dependency hangs; 503 names what failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from groundwork_app.api.deps import ServicesDep
from groundwork_app.api.services import Services
from groundwork_app.db.pool import ping
from groundwork_app.observability import metrics
from groundwork_app.observability.logging import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)


async def _timed(name: str, check: Callable[[], Awaitable[Any]], seconds: float) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any]
    try:
        async with asyncio.timeout(seconds):
            detail = await check()
        result = {"ok": True}
        if isinstance(detail, str):
            result["detail"] = detail
    except TimeoutError:
        result = {"ok": False, "error": f"no answer within {seconds:g}s"}
        log.warning("readiness.check_failed", check=name, error=result["error"])
    except Exception as exc:
        # Unauthenticated endpoint: the exception class only. Its message can carry
        # addresses, user names, versions; that goes to the log.
        result = {"ok": False, "error": type(exc).__name__}
        log.warning("readiness.check_failed", check=name, error=f"{exc!r}"[:500])
    result["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    if not result["ok"]:
        metrics.READINESS_FAILURES.labels(name).inc()
    return result


async def run_checks(services: Services) -> dict[str, dict[str, Any]]:
    timeout = services.settings.health_check_timeout_seconds
    names = ("postgres", "redis", "broker")
    results = await asyncio.gather(
        _timed("postgres", lambda: ping(services.settings), timeout),
        _timed("redis", services.redis.ping, timeout),
        _timed("broker", services.broker.check, timeout),
    )
    return dict(zip(names, results, strict=True))


@router.get("/health/live", summary="Liveness: the process answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness: PostgreSQL, Redis and the broker answer",
    responses={503: {"description": "At least one dependency failed; `checks` says which."}},
)
async def ready(services: ServicesDep) -> JSONResponse:
    checks = await run_checks(services)
    ok = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/health", summary="Summary: version, environment and dependency checks")
async def summary(services: ServicesDep) -> dict[str, Any]:
    checks = await run_checks(services)
    settings = services.settings
    return {
        "status": "ok" if all(c["ok"] for c in checks.values()) else "degraded",
        "service": settings.service_name,
        "version": settings.service_version,
        "environment": settings.app_env.value,
        "queue_backend": settings.queue_backend.value,
        "checks": checks,
    }


metrics_router = APIRouter()


@metrics_router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(services: ServicesDep) -> Response:
    try:
        async with asyncio.timeout(1.0):
            await services.backlog.refresh()
    except Exception as exc:  # the scrape must still answer with the last value
        log.warning("metrics.backlog_refresh_failed", error=type(exc).__name__)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
