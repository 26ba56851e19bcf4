"""The shared async Redis client: password, TLS and short timeouts from settings.

One client (and one connection pool) per process serves the rate limiter, the answer
cache and the readiness check. Timeouts are short and retries off on purpose: every
caller treats Redis as optional (the limiter fails open, the cache misses), so a
slow Redis must cost a request milliseconds, not the seconds redis-py's default
retry-with-backoff would add.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from groundwork_app.settings import Settings

SOCKET_TIMEOUT_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 0.5
MAX_CONNECTIONS = 128


def create_redis(settings: Settings) -> Redis:
    password = settings.redis_password.get_secret_value() or None
    return Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=password,
        ssl=settings.redis_tls,
        # ElastiCache / Memorystore present certificates for their own hostnames.
        ssl_cert_reqs="required",
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        max_connections=MAX_CONNECTIONS,
        decode_responses=False,
    )


def redis_url(settings: Settings) -> str:
    """A password-free URL naming the server (for libraries that want a URI)."""
    scheme = "rediss" if settings.redis_tls else "redis"
    return f"{scheme}://{settings.redis_host}:{settings.redis_port}/{settings.redis_db}"
