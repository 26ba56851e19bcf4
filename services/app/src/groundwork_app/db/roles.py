"""The application role ``groundwork-app migrate`` creates and grants data access to."""

from __future__ import annotations

import asyncpg

from groundwork_app.db.tls import ssl_context
from groundwork_app.settings import Settings

# Data access only: the processes never change the schema (migrate owns DDL).
_APP_ROLE_GRANTS = (
    'GRANT CONNECT ON DATABASE "{db}" TO "{role}"',
    'GRANT USAGE ON SCHEMA public TO "{role}"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"',
    'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    # Tables a later migration creates (as this same migrating user) are covered too.
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
    'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"',
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
    'GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "{role}"',
)


async def grant_app_role(settings: Settings) -> bool:
    """Create ``DB_APP_USER`` if missing and grant it data access; True when it did.

    On RDS the role is also granted ``rds_iam``, which makes PostgreSQL accept an IAM
    token instead of a password for it (and only that: an rds_iam role cannot log in
    with a password; https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/
    UsingWithRDS.IAMDBAuth.DBAccounts.html). Idempotent: every deploy runs it.
    """
    role = settings.db_app_user
    if not role or role == settings.db_user:
        return False
    conn = await asyncpg.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value() or None,
        database=settings.db_name,
        ssl=ssl_context(settings),
        statement_cache_size=0,
    )
    try:
        async with conn.transaction():
            # Two migrate tasks may race (a retried deploy): serialise on a lock.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('groundwork-app-role'))")
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await conn.execute(f'CREATE ROLE "{role}" LOGIN')
            for statement in _APP_ROLE_GRANTS:
                await conn.execute(statement.format(role=role, db=settings.db_name))
            if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'"):
                await conn.execute(f'GRANT rds_iam TO "{role}"')
    finally:
        await conn.close()
    return True
