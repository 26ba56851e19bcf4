"""Per-client rate limiting with `limits` (sliding window counter in Redis, async).

Fail-open by design: when Redis errors or does not answer within
``CHECK_TIMEOUT_SECONDS`` the request is let through, a warning is logged and
``rate_limit_fail_open_total`` counts it. The limiter protects capacity, while
refusing every submission because a cache node is down would turn a Redis outage
into a full API outage. After a failure the limiter is bypassed for
``COOLDOWN_SECONDS`` so a hung Redis costs one timeout, not one per request.
Alert on the fail-open counter.
"""

from __future__ import annotations

import asyncio
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from groundwork_app.adapters.redis import redis_url
from groundwork_app.api.errors import ApiError
from groundwork_app.observability.logging import get_logger
from groundwork_app.observability.metrics import RATE_LIMIT_FAIL_OPEN, RATE_LIMITED
from groundwork_app.settings import Settings

log = get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 0.2
COOLDOWN_SECONDS = 5.0
_STORE_ERRORS = (StorageError, RedisError, OSError, TimeoutError)


class RateLimiter:
    def __init__(self, redis: Redis, settings: Settings, namespace: str = "api") -> None:
        self.item: RateLimitItem = parse(settings.rate_limit)
        storage = RedisStorage(
            "async+" + redis_url(settings),
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix="gw:ratelimit",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._namespace = namespace
        self._bypass_until = 0.0

    async def check(self, client_id: str) -> None:
        """Raise a 429 ApiError when ``client_id`` is over its limit."""
        now = time.monotonic()
        if now < self._bypass_until:
            RATE_LIMIT_FAIL_OPEN.inc()
            return
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                allowed = await self._limiter.hit(self.item, self._namespace, client_id)
                retry_after = 0
                if not allowed:
                    stats = await self._limiter.get_window_stats(
                        self.item, self._namespace, client_id
                    )
                    retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        except _STORE_ERRORS as exc:
            self._bypass_until = time.monotonic() + COOLDOWN_SECONDS
            RATE_LIMIT_FAIL_OPEN.inc()
            log.warning(
                "rate_limit.fail_open", error=type(exc).__name__, cooldown_seconds=COOLDOWN_SECONDS
            )
            return
        if not allowed:
            RATE_LIMITED.inc()
            raise ApiError(
                429,
                "rate_limited",
                f"Rate limit of {self.item} exceeded; retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
