"""AnswerCache and the broker probe against real servers (and with them gone)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from groundwork.devenv.servers import DevServers


async def test_cache_round_trip_and_version_isolation(settings_factory: Callable[..., Any]):
    from groundwork_app.adapters.cache import AnswerCache, InvalidateOutcome, normalize_prompt
    from groundwork_app.adapters.redis import create_redis

    settings = settings_factory(cache_ttl_seconds=60)
    redis = create_redis(settings)
    try:
        cache = AnswerCache(redis, settings)
        v2 = AnswerCache(redis, settings.model_copy(update={"cache_version": "v2"}))
        assert normalize_prompt("  a\n\tb  ") == "a b"
        assert cache.key("t", "a b", "m") == cache.key("t", " a  b ", "m")
        assert cache.key("t", "a b", "m") != cache.key("t", "a b", "other")
        assert cache.key("t", "a b", "m") != v2.key("t", "a b", "m")
        assert await cache.set("t", "q", "m", "answer")
        assert await cache.get("t", "q", "m") == "answer"
        assert await v2.get("t", "q", "m") is None
        ttl = await redis.ttl(cache.key("t", "q", "m"))
        assert 0 < ttl <= 60
        assert await cache.invalidate("t", "q", "m") is InvalidateOutcome.DELETED
        assert await cache.invalidate("t", "q", "m") is InvalidateOutcome.ABSENT
    finally:
        await redis.aclose()


async def test_cache_never_raises_when_redis_is_down(
    settings_factory: Callable[..., Any], servers: DevServers
):
    from groundwork_app.adapters.cache import AnswerCache, InvalidateOutcome
    from groundwork_app.adapters.redis import create_redis

    from groundwork.devenv.servers import free_port

    settings = settings_factory(redis_port=free_port())
    redis = create_redis(settings)
    try:
        cache = AnswerCache(redis, settings)
        assert await cache.get("t", "q", "m") is None
        assert await cache.set("t", "q", "m", "a") is False
        assert await cache.invalidate("t", "q", "m") is InvalidateOutcome.UNAVAILABLE
    finally:
        await redis.aclose()


async def test_broker_probe(settings_factory: Callable[..., Any], hung_server: int):
    import asyncio

    import pytest
    from groundwork_app.adapters.broker_probe import BrokerProbe, BrokerProbeError
    from groundwork_app.settings import QueueBackend

    ok = BrokerProbe.from_settings(settings_factory())
    assert (await ok.check()).startswith("amqp")
    hung = BrokerProbe(QueueBackend.RABBITMQ, "127.0.0.1", hung_server, tls=False)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await hung.check()
    from groundwork.devenv.servers import free_port

    closed = BrokerProbe(QueueBackend.RABBITMQ, "127.0.0.1", free_port(), tls=False)
    with pytest.raises(BrokerProbeError):
        await closed.check()
    pubsub = BrokerProbe(QueueBackend.PUBSUB, "", 0, tls=False)
    assert "pubsub" in await pubsub.check()
    # SQS: a regional service the API never calls; RABBITMQ_HOST is not even set.
    sqs = BrokerProbe(QueueBackend.SQS, "127.0.0.1", free_port(), tls=False)
    assert (await sqs.check()).startswith("sqs: managed service")


async def test_concurrent_cache_calls_share_round_trips(settings_factory: Callable[..., Any]):
    """A busy worker's lookups and writes coalesce (one MGET, one pipeline) and each
    caller still gets its own answer."""
    import asyncio

    from groundwork_app.adapters.cache import AnswerCache
    from groundwork_app.adapters.redis import create_redis

    settings = settings_factory(cache_ttl_seconds=60)
    redis = create_redis(settings)
    try:
        cache = AnswerCache(redis, settings)
        await redis.delete(*(cache.key("t", f"q{i}", "m") for i in range(20)))
        stored = await asyncio.gather(
            *(cache.set("t", f"q{i}", "m", f"a{i}") for i in range(0, 20, 2))
        )
        assert stored == [True] * 10
        answers = await asyncio.gather(*(cache.get("t", f"q{i}", "m") for i in range(20)))
        assert answers == [f"a{i}" if i % 2 == 0 else None for i in range(20)]
        assert cache._gets.batches < 20 and cache._sets.batches < 10
        assert 0 < await redis.ttl(cache.key("t", "q4", "m")) <= 60
    finally:
        await redis.aclose()
