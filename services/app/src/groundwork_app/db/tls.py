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
        # With DB_TLS_CA_CERT only that CA is trusted (create_default_context skips the
        # system store when cadata is given): a private per-instance CA (Cloud SQL's
        # GOOGLE_MANAGED_INTERNAL_CA) then authenticates exactly one server, which is
        # what verify-ca relies on where the certificate names no IP (Cloud SQL's CN is
        # "<project>:<instance>", the client connects by private IP).
        context = ssl.create_default_context(cadata=settings.db_tls_ca_cert.strip() or None)
        context.check_hostname = mode == "verify-full"
        return context
    return mode  # asyncpg understands 'prefer' and 'require'
