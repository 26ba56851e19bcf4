"""Per-client rate limiting in Redis: 429 + Retry-After; fail-open when Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from groundwork_app.adapters.redis import create_redis
from groundwork_app.api.errors import ApiError
from groundwork_app.api.ratelimit import RateLimiter, retry_after_seconds
from redis.asyncio import Redis

from groundwork.devenv.servers import DevServers

from .conftest import JOB, running_api

WINDOW_START = 1_800_000_000.0  # a multiple of 60: a minute window starts here


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
        # 3 in this minute: the next one fits once they weigh <= 2, 20 s into the next.
        assert 20 <= int(limited.headers["retry-after"]) <= 80
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


@pytest.fixture
async def redis(settings_factory: Callable[..., Any]) -> AsyncIterator[Redis]:
    client = create_redis(settings_factory())
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


def _limiter(redis: Redis, settings: Any, at: float, namespace: str = "t") -> RateLimiter:
    return RateLimiter(redis, settings, namespace, clock=lambda: at)


async def _outcomes(limiter: RateLimiter, client: str, n: int) -> list[int]:
    """Status per check, all n checks concurrent (so they are judged in batches)."""

    async def one() -> int:
        try:
            await limiter.check(client)
        except ApiError as exc:
            return exc.status
        return 200

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_previous_window_weighs_by_the_share_still_inside_the_window(
    redis: Redis, settings_factory: Callable[..., Any]
):
    settings = settings_factory(rate_limit="10/minute")
    # Last minute this client made 8 requests; 45 s into this one they weigh 8 * 0.25 = 2.
    await redis.set(f"gw:ratelimit:t:erin:{int(WINDOW_START // 60) - 1}", 8)
    limiter = _limiter(redis, settings, WINDOW_START + 45)
    statuses = await _outcomes(limiter, "erin", 10)
    assert statuses == [200] * 8 + [429] * 2
    assert limiter._checks.batches < 10  # the concurrent checks were coalesced
    with pytest.raises(ApiError) as refused:
        await limiter.check("erin")
    # One more fits when 8 * (1 - t/60) <= 1, i.e. at t = 52.5 s: 7.5 s from now.
    assert refused.value.headers == {"Retry-After": "8"}
    # Refusals are not counted; the window key expires after two windows.
    key = f"gw:ratelimit:t:erin:{int(WINDOW_START // 60)}"
    assert int(await redis.get(key)) == 8
    assert 60_000 < await redis.pttl(key) <= 120_000


async def test_replicas_share_the_count_and_clients_and_namespaces_are_separate(
    redis: Redis, settings_factory: Callable[..., Any]
):
    settings = settings_factory(rate_limit="4/minute")
    replica_a = _limiter(redis, settings, WINDOW_START + 1)
    replica_b = _limiter(redis, settings, WINDOW_START + 2)
    assert await _outcomes(replica_a, "frank", 3) == [200] * 3
    assert await _outcomes(replica_b, "frank", 2) == [200, 429]
    assert await _outcomes(replica_b, "grace", 4) == [200] * 4
    webhook = _limiter(redis, settings, WINDOW_START + 2, namespace="webhook")
    assert await _outcomes(webhook, "frank", 1) == [200]
    # Half-way into the next window the old count weighs 4 * (1 - 30/60) = 2: 2 more fit.
    later = _limiter(redis, settings, WINDOW_START + 60 + 30)
    assert await _outcomes(later, "frank", 3) == [200, 200, 429]


@pytest.mark.parametrize(
    ("limit", "elapsed", "current", "previous", "expected"),
    [
        (10, 45.0, 8, 8, 8),  # this window has room: wait for the previous one to decay
        (3, 10.0, 3, 0, 70),  # full: to the next window (50 s) + 20 s of decay there
        (1, 59.5, 1, 5, 61),  # limit 1: a whole window after the current one ends
        (5, 0.0, 0, 0, 1),  # never less than 1 s
    ],
)
def test_retry_after(limit: int, elapsed: float, current: int, previous: int, expected: int):
    assert retry_after_seconds(limit, 60.0, elapsed, current, previous) == expected
