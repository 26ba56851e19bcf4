"""Database credentials that rotate under a running service (RDS IAM auth), on real PostgreSQL.

The AWS stacks give api, worker and relay no database password: each new connection
presents a fresh RDS IAM token (DB_IAM_AUTH=true), so the weekly rotation of the
RDS-managed master secret never reaches them. PostgreSQL here cannot check IAM tokens,
so the tests stand in a rotating password for the token and prove what matters: the
password is asked for on every new connection, and a credential changed under a
running pool works without a restart, where a fixed password (what ECS injects once,
at task start) stops working.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
from groundwork_app.db import auth, roles
from groundwork_app.db import pool as db_pool
from groundwork_app.settings import Settings

from groundwork.devenv.servers import DevServers


class RotatingSecret:
    """The credential store: what the token signer (IAM) would hand out right now."""

    def __init__(self) -> None:
        self.value = secrets.token_urlsafe(18)
        self.role = f"gw_rotating_{secrets.token_hex(4)}"
        self.calls = 0

    def generate_db_auth_token(self, **_: Any) -> str:
        self.calls += 1
        return self.value


def _settings(servers: DevServers, **overrides: Any) -> Settings:
    env = servers.env()
    base: dict[str, Any] = {
        "db_host": env["DB_HOST"],
        "db_port": int(env["DB_PORT"]),
        "db_name": env["DB_NAME"],
        "db_user": env["DB_USER"],
        "db_password": env["DB_PASSWORD"],
        "db_sslmode": "disable",
        "_env_file": None,
    }
    return Settings(**{**base, **overrides})


@pytest.fixture
def rotating_role(servers: DevServers) -> RotatingSecret:
    secret = RotatingSecret()
    pg = servers.postgres
    pg.psql(f"CREATE ROLE {secret.role} LOGIN PASSWORD '{secret.value}'")
    return secret


def _rotate(servers: DevServers, secret: RotatingSecret) -> str:
    old = secret.value
    secret.value = secrets.token_urlsafe(18)
    servers.postgres.psql(f"ALTER ROLE {secret.role} PASSWORD '{secret.value}'")
    return old


async def _fresh_connections(pool: asyncpg.Pool, count: int, role: str) -> None:
    """Open ``count`` new server connections (and drop them again)."""
    conns = [await pool.acquire() for _ in range(count)]
    for conn in conns:
        assert await conn.fetchval("SELECT current_user") == role
    for conn in conns:
        await pool.release(conn)
    await pool.expire_connections()


async def test_iam_pool_asks_for_a_credential_per_connection_and_survives_rotation(
    servers: DevServers, rotating_role: RotatingSecret, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real wiring: Settings(DB_IAM_AUTH=true) -> db_pool.create_api_pool -> the token
    # factory; only the signer is replaced by the rotating credential store.
    auth.token_factory.cache_clear()
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # Fargate sets it in every task
    monkeypatch.setattr(auth.IamAuthToken, "_rds", lambda self: rotating_role)
    settings = _settings(
        servers,
        db_user=rotating_role.role,
        db_password="",
        db_iam_auth=True,
        db_pool_size=3,
        db_max_overflow=0,
    )
    pool = await db_pool.create_api_pool(settings)
    try:
        await _fresh_connections(pool, 3, rotating_role.role)
        assert rotating_role.calls == 3  # one credential per new connection, none cached

        _rotate(servers, rotating_role)  # the platform rotates; the process keeps running
        await _fresh_connections(pool, 2, rotating_role.role)
        assert rotating_role.calls == 5
        await db_pool.ping(settings)  # /health/ready's fresh connection works too
        assert rotating_role.calls == 6
    finally:
        await pool.close()
        auth.token_factory.cache_clear()


async def test_a_fixed_password_breaks_new_connections_after_rotation(
    servers: DevServers, rotating_role: RotatingSecret
) -> None:
    """What the stacks did before: the password ECS injected at task start goes stale."""
    settings = _settings(servers, db_user=rotating_role.role, db_password=rotating_role.value)
    pool = await db_pool.create_api_pool(settings)
    try:
        await _fresh_connections(pool, 1, rotating_role.role)
        _rotate(servers, rotating_role)
        with pytest.raises(asyncpg.InvalidPasswordError):
            await _fresh_connections(pool, 1, rotating_role.role)
    finally:
        await pool.close()


@pytest.mark.usefixtures("settings_env_cleared")
def test_token_is_an_rds_iam_presigned_connect_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token botocore signs, as RDS documents it: ``host:port/?Action=connect&DBUser=...``
    presigned with SigV4 for service ``rds-db``, valid 15 minutes
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.IAMDBAuth.Connecting.html).
    Signing is local: no network, throwaway credentials."""
    # Throwaway values made per run: signing needs a key, not a real one.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "TEST" + secrets.token_hex(8).upper())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets.token_urlsafe(30))
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    auth.token_factory.cache_clear()
    host = "gw-production-db-proxy.proxy-abc123.eu-west-1.rds.amazonaws.com"
    settings = Settings(db_host=host, db_user="groundwork_app", db_iam_auth=True, _env_file=None)
    factory = auth.db_password(settings)
    assert isinstance(factory, auth.IamAuthToken) and factory.region == "eu-west-1"
    assert auth.db_password(settings) is factory  # one botocore client per endpoint
    token = factory()
    parts = urlsplit(f"https://{token}")
    assert parts.hostname == host and parts.port == 5432
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["Action"] == "connect" and query["DBUser"] == "groundwork_app"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "900"
    assert query["X-Amz-Credential"].endswith("/eu-west-1/rds-db/aws4_request")
    assert factory.calls == 1
    auth.token_factory.cache_clear()


def test_region_comes_from_the_endpoint_or_the_task_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert auth.region_of("db.abc.us-east-2.rds.amazonaws.com") == "us-east-2"
    assert auth.region_of("p.proxy-x.cn-north-1.rds.amazonaws.com.cn") == "cn-north-1"
    assert auth.region_of("127.0.0.1") is None
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ValueError, match="no AWS region"):
        auth.IamAuthToken("127.0.0.1", 5432, "u")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert auth.IamAuthToken("127.0.0.1", 5432, "u").region == "ap-south-1"


@pytest.mark.usefixtures("settings_env_cleared")
def test_iam_auth_needs_no_database_password_when_deployed() -> None:
    common: dict[str, Any] = {
        "app_env": "production",
        "jwt_secret": "j" * 40,
        "webhook_secret": "w" * 40,
        "redis_password": "r" * 40,
        "rabbitmq_password": "q" * 40,
        "_env_file": None,
    }
    Settings(db_iam_auth=True, **common)
    with pytest.raises(ValueError, match="DB_PASSWORD"):
        Settings(db_iam_auth=False, **common)


async def test_migrate_creates_a_data_only_app_role(servers: DevServers, service_env: Any) -> None:
    role = f"gw_app_{secrets.token_hex(4)}"
    pg = servers.postgres
    # The RDS master user has CREATEROLE (rds_superuser); so does the migrating user here.
    pg.psql(f"ALTER ROLE {pg.user} CREATEROLE")
    settings = _settings(servers, db_app_user=role)
    assert await roles.grant_app_role(settings) is True
    assert await roles.grant_app_role(settings) is True  # idempotent: every deploy runs it
    assert await roles.grant_app_role(_settings(servers)) is False  # no app user: nothing

    # Only for this test: log in with a password (on RDS the role gets rds_iam instead).
    password = secrets.token_urlsafe(18)
    pg.psql(f"ALTER ROLE {role} PASSWORD '{password}'")
    conn = await asyncpg.connect(
        host="127.0.0.1", port=pg.port, user=role, password=password, database=pg.database
    )
    transaction = conn.transaction()
    await transaction.start()
    await conn.fetchval("SELECT count(*) FROM jobs")
    await conn.fetchval("SELECT count(*) FROM outbox")
    await conn.execute("DELETE FROM processed_messages WHERE false")
    await conn.execute("UPDATE jobs SET status = status WHERE false")
    await transaction.rollback()
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP TABLE jobs")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.sneaky (id int)")
    finally:
        await conn.close()
