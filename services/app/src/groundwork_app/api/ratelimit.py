"""Per-client rate limiting: a sliding window counter in Redis, shared by all replicas.

The count a request is judged by is ``previous window * (share of it still inside
the sliding window) + current window``, the approximation `limits` calls "sliding
window counter" (the limit itself uses its notation, e.g. ``60/minute``). Concurrent
checks are coalesced (``groundwork_app.batching``): one Lua script call judges a
whole batch, in order, so a busy API pays one Redis round trip per batch instead of
per request; profiling showed the per-request Redis call was the largest cost of
``POST /v1/jobs`` after the database (docs/performance.md). Needs a non-cluster
Redis (one script touches many clients' keys), which is what the stacks provision.

Fail-open by design: when Redis errors or does not answer within
``CHECK_TIMEOUT_SECONDS`` the batch is let through, a warning is logged and
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from groundwork_app.api.errors import ApiError
from groundwork_app.batching import Coalescer
from groundwork_app.observability.logging import get_logger
from groundwork_app.observability.metrics import RATE_LIMIT_FAIL_OPEN, RATE_LIMITED
from groundwork_app.settings import Settings

log = get_logger(__name__)

CHECK_TIMEOUT_SECONDS = 0.2
COOLDOWN_SECONDS = 5.0
KEY_PREFIX = "gw:ratelimit"
_STORE_ERRORS = (RedisError, OSError, TimeoutError)

# KEYS: (current window, previous window) per check, in arrival order.
# ARGV: limit, current window's expiry in ms, the previous window's weight (0..1).
# Returns (allowed, current, previous) per check; a refused check is not counted.
_HIT_SCRIPT = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local weight = tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS, 2 do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  local allowed = 0
  if previous * weight + current + 1 <= limit then
    allowed = 1
    current = redis.call('INCR', KEYS[i])
    if current == 1 then redis.call('PEXPIRE', KEYS[i], expiry) end
  end
  out[#out + 1] = allowed
  out[#out + 1] = current
  out[#out + 1] = previous
end
return out
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds, when refused


def retry_after_seconds(
    limit: int, window: float, elapsed: float, current: int, previous: int
) -> int:
    """Whole seconds until one more request fits under the sliding window count.

    ``elapsed`` is how far into the current window we are. While this window still has
    room, the wait is for the previous window's share to decay; otherwise it is to the
    next window plus the decay of this window's count there.
    """
    room = limit - 1 - current
    if room >= 0:
        wait = window * (1 - room / previous) - elapsed if previous else 0.0
    else:
        wait = window - elapsed
        if current:
            wait += window * (1 - (limit - 1) / current)
    return max(1, math.ceil(wait))


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        namespace: str = "api",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock  # wall clock: every replica must agree on window boundaries
        self.item: RateLimitItem = parse(settings.rate_limit)
        self._limit = self.item.amount
        self._window = float(self.item.get_expiry())
        self._script = redis.register_script(_HIT_SCRIPT)
        self._prefix = f"{KEY_PREFIX}:{namespace}:"
        self._bypass_until = 0.0
        self._checks: Coalescer[str, Verdict] = Coalescer(
            self._check_batch,
            name="ratelimit.check",
            max_batch=256,
            max_concurrent=2,
        )

    async def check(self, client_id: str) -> None:
        """Raise a 429 ApiError when ``client_id`` is over its limit."""
        if time.monotonic() < self._bypass_until:
            RATE_LIMIT_FAIL_OPEN.inc()
            return
        verdict = await self._checks.submit(client_id)
        if not verdict.allowed:
            RATE_LIMITED.inc()
            raise ApiError(
                429,
                "rate_limited",
                f"Rate limit of {self.item} exceeded; retry in {verdict.retry_after} s.",
                headers={"Retry-After": str(verdict.retry_after)},
            )

    async def _check_batch(self, client_ids: Sequence[str]) -> list[Verdict | BaseException]:
        allow_all: list[Verdict | BaseException] = [Verdict(True)] * len(client_ids)
        if time.monotonic() < self._bypass_until:
            RATE_LIMIT_FAIL_OPEN.inc(len(client_ids))
            return allow_all
        now = self._clock()
        window_index, elapsed = divmod(now, self._window)
        keys: list[str] = []
        for client_id in client_ids:
            base = f"{self._prefix}{client_id}:"
            keys += (f"{base}{int(window_index)}", f"{base}{int(window_index) - 1}")
        args = (self._limit, int(self._window * 2000), 1 - elapsed / self._window)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                flat = await self._script(keys=keys, args=args)
        except _STORE_ERRORS as exc:
            self._bypass_until = time.monotonic() + COOLDOWN_SECONDS
            RATE_LIMIT_FAIL_OPEN.inc(len(client_ids))
            log.warning(
                "rate_limit.fail_open",
                error=type(exc).__name__,
                requests=len(client_ids),
                cooldown_seconds=COOLDOWN_SECONDS,
            )
            return allow_all
        verdicts: list[Verdict | BaseException] = []
        for i in range(0, len(flat), 3):
            allowed, current, previous = int(flat[i]), int(flat[i + 1]), int(flat[i + 2])
            if allowed:
                verdicts.append(Verdict(True))
            else:
                wait = retry_after_seconds(self._limit, self._window, elapsed, current, previous)
                verdicts.append(Verdict(False, wait))
        return verdicts
