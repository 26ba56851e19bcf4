"""The worker's answer cache shares Redis round trips between jobs arriving a little
apart (a real Redis; round trips counted by the server's INFO commandstats)."""

from __future__ import annotations

import asyncio

from groundwork_app.adapters.cache import AnswerCache
from groundwork_app.adapters.redis import create_redis
from groundwork_app.settings import Settings
from groundwork_app.worker.runner import build_cache
from redis.asyncio import Redis


async def _calls(redis: Redis, command: str) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def _lookups_a_millisecond_apart(cache: AnswerCache, count: int) -> list[str | None]:
    async def one(i: int) -> str | None:
        await asyncio.sleep(0.001 * i)  # deliveries arrive one at a time
        return await cache.get("t", f"linger {i}", "m")

    return await asyncio.gather(*(one(i) for i in range(count)))


async def test_the_workers_cache_lookups_a_millisecond_apart_share_one_mget(
    settings: Settings,
) -> None:
    redis = create_redis(settings)
    try:
        worker_cache = build_cache(redis, settings)
        await redis.set(worker_cache.key("t", "linger 3", "m"), b"three")
        before = await _calls(redis, "mget")
        answers = await _lookups_a_millisecond_apart(worker_cache, 8)
        worker_mgets = await _calls(redis, "mget") - before
        # Each caller still gets its own answer...
        assert answers == [None, None, None, "three", None, None, None, None]
        # ...from a couple of round trips instead of one per job (8 ms of arrivals
        # against the worker's 5 ms linger and two flushers)
        # (with no linger, the API's setting, each lookup 1 ms apart is its own MGET
        # on an idle machine: a loopback MGET takes a fraction of a millisecond).
        assert worker_mgets <= 3
    finally:
        await redis.aclose()
