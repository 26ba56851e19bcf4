"""The async SQLAlchemy engine, configured to work through transaction-mode poolers.

PgBouncer in transaction mode and RDS Proxy hand each transaction to any server
connection, so nothing may rely on session state: asyncpg's prepared-statement cache
is disabled and statement names are unique per connection.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from groundwork_app.db.tls import ssl_context
from groundwork_app.settings import Settings

__all__ = ["connect_args", "create_engine", "engine_url", "ssl_context"]


def engine_url(settings: Settings) -> URL:
    return URL.create(
        "postgresql+asyncpg",
        username=settings.db_user,
        password=settings.db_password.get_secret_value() or None,
        host=settings.db_host,
        port=settings.db_port,
        database=settings.db_name,
    )


def connect_args(settings: Settings) -> dict[str, Any]:
    return {
        "ssl": ssl_context(settings),
        "statement_cache_size": 0,
        # SQLAlchemy's own per-connection LRU of prepared statements (separate from asyncpg's).
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__gw_{uuid.uuid4()}__",
        "timeout": settings.db_pool_timeout_seconds,
        "server_settings": {"application_name": settings.service_name},
    }


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        engine_url(settings),
        connect_args=connect_args(settings),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=True,
        pool_recycle=1800,
    )
