"""Alembic environment: connection settings come from groundwork_app.settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from groundwork_app.db.engine import connect_args, engine_url
from groundwork_app.db.schema import metadata
from groundwork_app.settings import get_settings

target_metadata = metadata


def run_migrations_offline() -> None:
    context.configure(
        url=engine_url(get_settings()).render_as_string(hide_password=True),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    settings = get_settings()
    engine = create_async_engine(engine_url(settings), connect_args=connect_args(settings))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
