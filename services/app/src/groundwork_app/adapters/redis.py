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
    private_ca = settings.redis_tls_ca_cert.strip() or None
    return Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=password,
        ssl=settings.redis_tls,
        # Always verified, host name included. ElastiCache chains to a public CA (system
        # trust store); Memorystore to a private CA unique to the instance, which the
        # system store lacks: REDIS_TLS_CA_CERT adds it.
        ssl_cert_reqs="required",
        ssl_ca_data=private_ca,
        ssl_check_hostname=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        max_connections=MAX_CONNECTIONS,
        decode_responses=False,
    )
