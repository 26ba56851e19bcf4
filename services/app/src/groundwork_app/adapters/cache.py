"""AnswerCache: cache-aside of AI answers in Redis.

The key is the SHA-256 of the tenant (the client, i.e. the token subject that submitted
the job), the normalized prompt, the model and ``CACHE_VERSION`` (bumping the version
orphans every cached answer at once; the TTL reclaims them). Scoping by tenant means no
client can learn what another asked by sending the same prompt, nor evict its answer;
``CACHE_SHARED_ACROSS_TENANTS=true`` drops the tenant from the key (off by default).
Redis is an optimisation here, never a dependency: ``get``/``set``/``invalidate``
never raise when Redis is down or slow, they log and behave as a miss.

A worker runs many jobs at once, so concurrent lookups are coalesced into one ``MGET``
and concurrent writes into one pipelined round trip (``groundwork_app.batching``); the
worker's cache also waits ``linger`` seconds for company, as its statements do
(lookups arrive one delivery at a time, a millisecond or two apart).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from enum import StrEnum

from redis.asyncio import Redis
from redis.exceptions import RedisError

from groundwork_app.batching import Coalescer
from groundwork_app.observability.logging import get_logger
from groundwork_app.settings import Settings

log = get_logger(__name__)
_WHITESPACE = re.compile(r"\s+")
KEY_PREFIX = "gw:answer"


class InvalidateOutcome(StrEnum):
    DELETED = "deleted"
    ABSENT = "absent"
    UNAVAILABLE = "unavailable"  # Redis failed: the caller cannot know whether it is gone


def normalize_prompt(prompt: str) -> str:
    """NFC, trimmed, internal whitespace runs collapsed: trivially different spellings of
    the same prompt share one answer. Case is kept: it can change what a model answers."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", prompt)).strip()


class AnswerCache:
    def __init__(self, redis: Redis, settings: Settings, *, linger: float = 0.0) -> None:
        self._redis = redis
        self._ttl = settings.cache_ttl_seconds
        self._version = settings.cache_version
        self._shared = settings.cache_shared_across_tenants
        self._gets: Coalescer[str, bytes | str | None] = Coalescer(
            self._get_batch, name="cache.get", max_batch=256, max_concurrent=2, linger=linger
        )
        self._sets: Coalescer[tuple[str, bytes], bool] = Coalescer(
            self._set_batch, name="cache.set", max_batch=256, max_concurrent=2, linger=linger
        )

    def key(self, tenant: str, prompt: str, model: str) -> str:
        # "\x1e" cannot collide with a tenant: a token subject is never empty.
        scope = "\x1e" if self._shared else tenant
        digest = hashlib.sha256(
            "\x1f".join((self._version, scope, model, normalize_prompt(prompt))).encode()
        ).hexdigest()
        return f"{KEY_PREFIX}:{self._version}:{digest}"

    async def get(self, tenant: str, prompt: str, model: str) -> str | None:
        try:
            value = await self._gets.submit(self.key(tenant, prompt, model))
        except (RedisError, OSError) as exc:
            log.warning("answer_cache.unavailable", op="get", error=type(exc).__name__)
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set(self, tenant: str, prompt: str, model: str, answer: str) -> bool:
        try:
            await self._sets.submit((self.key(tenant, prompt, model), answer.encode()))
        except (RedisError, OSError) as exc:
            log.warning("answer_cache.unavailable", op="set", error=type(exc).__name__)
            return False
        return True

    async def _get_batch(self, keys: Sequence[str]) -> list[bytes | str | BaseException | None]:
        values: list[bytes | str | BaseException | None] = []
        values.extend(await self._redis.mget(list(keys)))
        return values

    async def _set_batch(self, items: Sequence[tuple[str, bytes]]) -> list[bool | BaseException]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, value in items:
                pipe.set(key, value, ex=self._ttl)
            await pipe.execute()
        return [True] * len(items)

    async def invalidate(self, tenant: str, prompt: str, model: str) -> InvalidateOutcome:
        try:
            deleted = await self._redis.delete(self.key(tenant, prompt, model))
        except (RedisError, OSError) as exc:
            log.warning("answer_cache.unavailable", op="invalidate", error=type(exc).__name__)
            return InvalidateOutcome.UNAVAILABLE
        return InvalidateOutcome.DELETED if deleted else InvalidateOutcome.ABSENT
