"""Redis TLS trusts a private server CA when REDIS_TLS_CA_CERT carries one (Memorystore)."""

from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from groundwork_app.adapters.redis import create_redis
from groundwork_app.settings import Settings
from pydantic import ValidationError

CA_NAME = "Google Cloud Memorystore Redis Server CA (test)"


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _context(settings: Settings) -> ssl.SSLContext:
    client = create_redis(settings)
    connection = client.connection_pool.make_connection()
    return connection.ssl_context.get()


def _trusted_names(context: ssl.SSLContext) -> set[str]:
    names: set[str] = set()
    for cert in context.get_ca_certs():
        for rdn in cert["subject"]:
            names.update(str(pair[1]) for pair in rdn if pair[0] == "commonName")
    return names


def test_private_ca_is_trusted_and_verification_stays_strict() -> None:
    context = _context(Settings(redis_tls=True, redis_tls_ca_cert=_ca_pem()))
    assert CA_NAME in _trusted_names(context)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_without_a_ca_only_the_system_store_is_used() -> None:
    context = _context(Settings(redis_tls=True))
    assert CA_NAME not in _trusted_names(context)
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_a_ca_that_is_not_pem_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be PEM"):
        Settings(redis_tls_ca_cert="not a certificate")
