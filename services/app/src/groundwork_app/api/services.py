"""The process-wide resources the routes use, opened and closed by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from groundwork_app.adapters.broker_probe import BrokerProbe
from groundwork_app.adapters.cache import AnswerCache
from groundwork_app.adapters.redis import create_redis
from groundwork_app.api.auth import TokenVerifier
from groundwork_app.api.ratelimit import RateLimiter
from groundwork_app.db.jobs import JobsRepo
from groundwork_app.db.pool import create_api_pool
from groundwork_app.observability.metrics import OUTBOX_BACKLOG, OUTBOX_BACKLOG_CAP, CachedGauge
from groundwork_app.settings import Settings


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    repo: JobsRepo
    redis: Redis
    cache: AnswerCache
    limiter: RateLimiter
    verifier: TokenVerifier
    webhook_limiter: RateLimiter
    broker: BrokerProbe
    backlog: CachedGauge

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        # The pool connects lazily: a database that is down at start-up must not keep
        # the API (and /health/live) from starting; /health/ready reports it instead.
        pool = await create_api_pool(settings)
        # Concurrent submissions share a statement. Two batches in flight measured best
        # (bench/api.py): each waits for fewer others, yet batches stay large enough to
        # amortize the statement's preparation; the rest of the pool serves reads.
        repo = JobsRepo(
            pool,
            settings.db_pool_timeout_seconds,
            max_concurrent_inserts=max(1, min(2, settings.db_pool_size)),
        )
        redis = create_redis(settings)
        return cls(
            settings=settings,
            pool=pool,
            repo=repo,
            redis=redis,
            cache=AnswerCache(redis, settings),
            limiter=RateLimiter(redis, settings, namespace="api"),
            webhook_limiter=RateLimiter(redis, settings, namespace="webhook"),
            verifier=TokenVerifier(settings),
            broker=BrokerProbe.from_settings(settings),
            backlog=CachedGauge(OUTBOX_BACKLOG, lambda: repo.outbox_backlog(OUTBOX_BACKLOG_CAP)),
        )

    async def close(self, grace_seconds: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self.repo.close(), grace_seconds)
            await asyncio.wait_for(self.pool.close(), grace_seconds)
        except Exception:
            self.pool.terminate()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
