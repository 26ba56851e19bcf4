"""The asyncpg pools of the API, the worker and the relay, and the readiness ping.

Pooler-safe: no session state, so the reset on release is a no-op (asyncpg still rolls
back a connection released mid-transaction); the prepared-statement cache follows
DB_STATEMENT_CACHE_SIZE, 0 by default, which is what works through PgBouncer / RDS
Proxy in transaction mode (asyncpg then uses the unnamed statement). No liveness ping
per checkout: a dead connection fails the statement and the pool replaces it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from groundwork_app.db.auth import db_password
from groundwork_app.db.tls import ssl_context
from groundwork_app.settings import Settings


async def _no_reset(_: asyncpg.Connection) -> None:
    """No process keeps session state (and a transaction pooler would not either)."""


def _asyncpg_args(settings: Settings, role: str) -> dict[str, Any]:
    # db.engine.connect_args also carries SQLAlchemy dialect options; raw asyncpg takes
    # only these. With asyncpg's cache off (the default) it uses the unnamed statement,
    # which PgBouncer keeps on one server connection because asyncpg sends
    # Parse/Describe with Flush (not Sync) before Bind/Execute/Sync: two round trips
    # per query. DB_STATEMENT_CACHE_SIZE > 0 saves one, only safe without a
    # transaction-mode pooler (or PgBouncer >= 1.21 with max_prepared_statements).
    return {
        "host": settings.db_host,
        "port": settings.db_port,
        "user": settings.db_user,
        "password": db_password(settings),
        "database": settings.db_name,
        "ssl": ssl_context(settings),
        "statement_cache_size": settings.db_statement_cache_size,
        "timeout": settings.db_pool_timeout_seconds,
        "server_settings": {"application_name": f"{settings.service_name}-{role}"},
    }


async def create_pool(settings: Settings, role: str, *, command_timeout: float) -> asyncpg.Pool:
    """A pooler-safe pool; ``role`` names it in pg_stat_activity (``<service>-<role>``).

    Opens no connection yet: a database that is down at start-up must not keep the
    process from starting."""
    return await asyncpg.create_pool(
        min_size=0,
        max_size=settings.db_pool_size + settings.db_max_overflow,
        max_inactive_connection_lifetime=300.0,
        reset=_no_reset,
        command_timeout=command_timeout,
        **_asyncpg_args(settings, role),
    )


async def create_api_pool(settings: Settings) -> asyncpg.Pool:
    # A request waits on every statement: it gets no longer than a pool checkout.
    return await create_pool(settings, "api", command_timeout=settings.db_pool_timeout_seconds)


class LazyPool:
    """The worker's or the relay's pool, opened on first use so its owner can be built
    synchronously; ``close()`` when done (it reopens if used again)."""

    def __init__(self, settings: Settings, role: str):
        self._settings = settings
        self._role = role
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                # Batch statements (a group of claims, a sweep) may take longer than
                # one API request's, and no client is waiting on them.
                self._pool = await create_pool(
                    self._settings,
                    self._role,
                    command_timeout=max(self._settings.db_pool_timeout_seconds, 30.0),
                )
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def ping(settings: Settings) -> None:
    """``SELECT 1`` on a fresh connection (readiness).

    Not from the pool on purpose: under load an exhausted pool would fail readiness
    and take a busy-but-healthy task out of the load balancer, and a fresh connection
    proves what a restart needs: that the server accepts connections.
    """
    conn = await asyncpg.connect(**_asyncpg_args(settings, "api"))
    try:
        await conn.fetchval("SELECT 1")
        await conn.close(timeout=1.0)
    finally:
        if not conn.is_closed():
            conn.terminate()
