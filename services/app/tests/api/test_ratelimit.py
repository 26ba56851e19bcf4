"""Per-client rate limiting in Redis: 429 + Retry-After; fail-open when Redis is down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from groundwork.devservers import DevServers

from .conftest import JOB, running_api


async def test_limit_is_per_client_with_retry_after(
    settings_factory: Callable[..., Any], clean_db: None
):
    async with running_api(settings_factory(rate_limit="3/minute")) as api:
        alice = api.auth("alice-rl")
        statuses = [
            (await api.client.post("/v1/jobs", json=JOB, headers=alice)).status_code
            for _ in range(3)
        ]
        assert statuses == [202, 202, 202]
        limited = await api.client.post("/v1/jobs", json=JOB, headers=alice)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # The same client is limited across routes; another client is not.
        assert (
            await api.client.get("/v1/jobs/0b8e5c1e-8f1d-4a61-9b3c-2d1c1f7f6a10", headers=alice)
        ).status_code == 429
        bob = await api.client.post("/v1/jobs", json=JOB, headers=api.auth("bob-rl"))
        assert bob.status_code == 202
        metrics = (await api.client.get("/metrics")).text
        assert "rate_limit_rejections_total" in metrics


async def test_limiter_fails_open_when_redis_is_down(
    settings_factory: Callable[..., Any], clean_db: None, servers: DevServers
):
    from groundwork_app.observability.metrics import RATE_LIMIT_FAIL_OPEN

    async with running_api(settings_factory(rate_limit="1/minute")) as api:
        headers = api.auth("carol-rl")
        assert (await api.client.post("/v1/jobs", json=JOB, headers=headers)).status_code == 202
        assert (await api.client.post("/v1/jobs", json=JOB, headers=headers)).status_code == 429
        before = RATE_LIMIT_FAIL_OPEN._value.get()
        servers.redis.stop()
        try:
            for _ in range(3):
                response = await api.client.post("/v1/jobs", json=JOB, headers=headers)
                assert response.status_code == 202, response.text
        finally:
            servers.redis.start()
        assert RATE_LIMIT_FAIL_OPEN._value.get() >= before + 3
        assert any(line.get("event") == "rate_limit.fail_open" for line in api.log_lines())
