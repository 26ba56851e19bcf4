"""PostgreSQL TLS settings for asyncpg, shared by the API's raw pool and db.engine.

Kept apart from db.engine on purpose: the API's hot path is raw asyncpg and must not
import SQLAlchemy (over a second of start-up) just to build an SSL context.
"""

from __future__ import annotations

import ssl

from groundwork_app.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | bool | str:
    mode = settings.db_sslmode
    if mode == "disable":
        return False
    if mode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context()
        context.check_hostname = mode == "verify-full"
        return context
    return mode  # asyncpg understands 'prefer' and 'require'
