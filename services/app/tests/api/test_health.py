"""Liveness, readiness (real outages and a hung dependency) and the summary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from unittest.mock import ANY

import pytest
from groundwork_app.adapters import redis as redis_adapter

from groundwork.devenv.servers import DevServers

from .conftest import ApiHarness, running_api


async def test_live_and_ready_when_everything_is_up(api: ApiHarness):
    live = await api.client.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await api.client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert set(checks) == {"postgres", "redis", "broker"}
    assert all(check["ok"] for check in checks.values())
    assert checks["broker"]["detail"].startswith("amqp")
    summary = (await api.client.get("/health")).json()
    assert summary["status"] == "ok"
    assert summary["version"] == api.settings.service_version
    assert summary["environment"] == "test"
    assert set(summary["checks"]) == {"postgres", "redis", "broker"}


async def test_no_auth_needed_for_health_and_metrics(api: ApiHarness):
    for path in ("/health/live", "/health/ready", "/health", "/metrics"):
        assert (await api.client.get(path)).status_code == 200, path


async def test_ready_turns_503_when_redis_stops_and_recovers(api: ApiHarness, servers: DevServers):
    servers.redis.stop()
    try:
        response = await api.client.get("/health/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["redis"]["ok"] is False
        assert body["checks"]["redis"]["error"]
        assert body["checks"]["postgres"]["ok"] is True
        # Liveness does not depend on Redis.
        assert (await api.client.get("/health/live")).status_code == 200
    finally:
        servers.redis.start()
    response = await api.client.get("/health/ready")
    assert response.status_code == 200, response.text


async def _eventually_ready(api: ApiHarness, within_seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + within_seconds
    while True:
        if (await api.client.get("/health/ready")).status_code == 200:
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)


async def test_ready_turns_503_when_postgres_stops_and_recovers(
    api: ApiHarness, servers: DevServers
):
    servers.postgres.stop()
    try:
        response = await api.client.get("/health/ready")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["postgres"]["ok"] is False
        assert checks["redis"]["ok"] is True
        # Submissions fail cleanly (503 + Retry-After), not with a 500.
        submit = await api.client.post("/v1/jobs", json={"prompt": "hi"}, headers=api.auth())
        assert submit.status_code == 503
        assert submit.json()["error"]["code"] == "database_unavailable"
        assert submit.headers["retry-after"]
    finally:
        servers.postgres.start()
    # Direct connections recover at once; through PgBouncer (the pooled run of this
    # suite) recovery waits for its server_login_retry, so allow a few seconds.
    assert await _eventually_ready(api, within_seconds=10.0)
    # The pool replaced its dead connections.
    submit = await api.client.post("/v1/jobs", json={"prompt": "hi"}, headers=api.auth())
    assert submit.status_code == 202, submit.text


async def test_ready_answers_fast_when_every_dependency_hangs(
    settings_factory: Callable[..., Any],
    clean_db: None,
    hung_server: int,
    monkeypatch: pytest.MonkeyPatch,
):
    # A 1 s timeout per check: run one after another the three would take at least 3 s,
    # far from the bound below even on a loaded machine. The Redis client's own 0.5 s
    # socket timeouts are lifted above it, so each check ends on the health timeout.
    monkeypatch.setattr(redis_adapter, "SOCKET_TIMEOUT_SECONDS", 2.0)
    monkeypatch.setattr(redis_adapter, "CONNECT_TIMEOUT_SECONDS", 2.0)
    settings = settings_factory(
        db_port=hung_server,
        redis_port=hung_server,
        rabbitmq_port=hung_server,
        health_check_timeout_seconds=1.0,
    )
    async with running_api(settings) as api:
        started = time.perf_counter()
        response = await api.client.get("/health/ready")
        elapsed = time.perf_counter() - started
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert {name for name, check in checks.items() if not check["ok"]} == {
            "postgres",
            "redis",
            "broker",
        }
        assert all("no answer within" in check["error"] for check in checks.values()), checks
        assert 0.9 <= elapsed < 2.5, elapsed  # concurrently, each under its 1 s timeout
        summary = await api.client.get("/health")
        assert summary.status_code == 200 and summary.json()["status"] == "degraded"
        assert (await api.client.get("/health/live")).status_code == 200


async def test_ready_reports_a_stopped_broker(settings_factory: Callable[..., Any], clean_db: None):
    from groundwork.devenv.servers import free_port

    settings = settings_factory(rabbitmq_port=free_port())  # nothing listens there
    async with running_api(settings) as api:
        response = await api.client.get("/health/ready")
        assert response.status_code == 503
        broker = response.json()["checks"]["broker"]
        assert broker == {"ok": False, "error": "BrokerProbeError", "duration_ms": ANY}
        # Unauthenticated: nothing about the internals (the address it tried, the reason).
        assert str(settings.rabbitmq_port) not in response.text
        assert "127.0.0.1" not in response.text and "refused" not in response.text.lower()
