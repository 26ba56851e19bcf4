"""PostgreSQL server authentication against a real TLS PostgreSQL shaped like Cloud SQL.

Cloud SQL's per-instance CA (server_ca_mode GOOGLE_MANAGED_INTERNAL_CA) signs a server
certificate whose CN is ``<project>:<instance>`` and that carries no IP address
(https://cloud.google.com/sql/docs/postgres/authorize-ssl); the services connect by
private IP. The server here presents such a certificate. ``require`` (the old setting)
accepts any certificate, ``verify-full`` can never match the IP, and ``verify-ca`` with
DB_TLS_CA_CERT accepts exactly the server chaining to the instance's own CA.
"""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Iterator

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from groundwork_app.db.tls import ssl_context
from groundwork_app.settings import Settings

from groundwork.devenv.servers import Postgres
from testsupport.servers import postgres_for_test

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
INSTANCE_CN = "acme-groundwork:groundwork-production-postgres"


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def cloud_sql_like() -> Iterator[tuple[Postgres, str]]:
    ca_key, ca_cert = _ca("Google Cloud SQL Server CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, INSTANCE_CN)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    postgres = postgres_for_test("gw-db-tls-")
    postgres.serve_tls(
        server_cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    yield postgres, _pem(ca_cert)
    postgres.stop()


def _settings(postgres: Postgres, mode: str, ca: str = "") -> Settings:
    return Settings(
        db_host="127.0.0.1",
        db_port=postgres.port,
        db_name=postgres.database,
        db_user=postgres.user,
        db_password=postgres.password,
        db_sslmode=mode,  # type: ignore[arg-type]
        db_tls_ca_cert=ca,
    )


async def _connect(settings: Settings) -> bool:
    conn = await asyncpg.connect(
        settings.database_dsn,
        password=settings.db_password.get_secret_value(),
        ssl=ssl_context(settings),
        timeout=10,
    )
    try:
        return bool(await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    finally:
        await conn.close()


async def test_verify_ca_with_the_instance_ca_authenticates_the_server(
    cloud_sql_like: tuple[Postgres, str],
) -> None:
    postgres, ca = cloud_sql_like
    assert await _connect(_settings(postgres, "verify-ca", ca))


async def test_a_server_of_another_ca_is_refused(cloud_sql_like: tuple[Postgres, str]) -> None:
    postgres, _ = cloud_sql_like
    _, other = _ca("someone else")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _connect(_settings(postgres, "verify-ca", _pem(other)))
    # The system store does not know Cloud SQL's private CA either.
    with pytest.raises(ssl.SSLCertVerificationError):
        await _connect(_settings(postgres, "verify-ca"))


async def test_verify_full_cannot_match_the_private_ip(
    cloud_sql_like: tuple[Postgres, str],
) -> None:
    postgres, ca = cloud_sql_like
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        await _connect(_settings(postgres, "verify-full", ca))


async def test_require_accepts_any_certificate(cloud_sql_like: tuple[Postgres, str]) -> None:
    """Why 'require' was not enough: it encrypts to whoever answers."""
    postgres, _ = cloud_sql_like
    assert await _connect(_settings(postgres, "require"))
