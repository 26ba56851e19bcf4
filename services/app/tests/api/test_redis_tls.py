"""Redis TLS against a real ``redis-server --tls-port`` with Memorystore-shaped certificates.

Memorystore (transit encryption SERVER_AUTHENTICATION) is reached by IP and signs its
server certificate with a CA private to the instance (``server_ca_certs``); the
certificate is reported to carry the IP only in its subject CN, without an IP SAN
(https://github.com/envoyproxy/ratelimit/issues/409), which Python's host name check
rejects with "IP address mismatch" (https://github.com/redis/redis-py/issues/3629).
The server here presents exactly such a certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from groundwork_app.adapters.redis import certificate_matches_host, create_redis
from groundwork_app.settings import Settings
from pydantic import ValidationError

from groundwork.devenv.servers import free_port, wait_for_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HOST = "127.0.0.1"


class CA:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def server(self, cn: str, ip_san: str | None = None) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if ip_san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip_san))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


class TLSRedis:
    """redis-server with TLS only (port 0 disables plain TCP), AUTH on, like Memorystore."""

    def __init__(self, workdir: Path, ca: CA, cert: bytes, key: bytes) -> None:
        self.password = "memorystore-auth-string"
        self.port = free_port()
        (workdir / "server.crt").write_bytes(cert)
        (workdir / "server.key").write_bytes(key)
        (workdir / "ca.crt").write_text(ca.pem)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--bind",
                HOST,
                "--tls-cert-file",
                str(workdir / "server.crt"),
                "--tls-key-file",
                str(workdir / "server.key"),
                "--tls-ca-cert-file",
                str(workdir / "ca.crt"),
                "--tls-auth-clients",
                "no",
                "--requirepass",
                self.password,
                "--save",
                "",
                "--dir",
                str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 15, self.process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def memorystore_ca() -> CA:
    return CA("Google Cloud Memorystore Redis Server CA (test)")


def _start(ca: CA, cn: str, ip_san: str | None = None) -> TLSRedis:
    if not shutil.which("redis-server") and not Path("/usr/bin/redis-server").exists():
        if IN_CI:
            pytest.fail("redis-server required under CI=true", pytrace=False)
        pytest.skip("redis-server not installed")
    cert, key = ca.server(cn, ip_san)
    return TLSRedis(Path(tempfile.mkdtemp(prefix="gw-redis-tls-")), ca, cert, key)


@pytest.fixture(scope="module")
def ip_in_cn_only(memorystore_ca: CA) -> Iterator[TLSRedis]:
    server = _start(memorystore_ca, cn=HOST)
    yield server
    server.stop()


def _settings(server: TLSRedis, ca_pem: str) -> Settings:
    return Settings(
        redis_host=HOST,
        redis_port=server.port,
        redis_password=server.password,
        redis_tls=True,
        redis_tls_ca_cert=ca_pem,
    )


async def _ping(settings: Settings) -> bool:
    client = create_redis(settings)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def test_memorystore_certificate_with_the_ip_only_in_cn_is_accepted(
    ip_in_cn_only: TLSRedis, memorystore_ca: CA
) -> None:
    assert await _ping(_settings(ip_in_cn_only, memorystore_ca.pem))


async def test_the_same_certificate_fails_pythons_host_name_check(
    ip_in_cn_only: TLSRedis, memorystore_ca: CA
) -> None:
    """What the adapter did before: verify the chain and the host name by IP."""
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = Redis(
        host=HOST,
        port=ip_in_cn_only.port,
        password=ip_in_cn_only.password,
        ssl=True,
        ssl_ca_data=memorystore_ca.pem,
        ssl_check_hostname=True,
        socket_connect_timeout=2,
    )
    try:
        with pytest.raises(RedisConnectionError, match="IP address mismatch"):
            await client.ping()
    finally:
        await client.aclose()


async def test_a_certificate_from_another_ca_is_refused(ip_in_cn_only: TLSRedis) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await _ping(_settings(ip_in_cn_only, CA("someone else").pem))


async def test_a_certificate_of_the_right_ca_for_another_ip_is_refused(
    memorystore_ca: CA,
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    server = _start(memorystore_ca, cn="10.20.30.40")
    try:
        with pytest.raises(RedisConnectionError, match=r"names neither 127\.0\.0\.1"):
            await _ping(_settings(server, memorystore_ca.pem))
    finally:
        server.stop()


async def test_an_ip_san_is_matched_when_present(memorystore_ca: CA) -> None:
    server = _start(memorystore_ca, cn="redis.internal", ip_san=HOST)
    try:
        assert await _ping(_settings(server, memorystore_ca.pem))
    finally:
        server.stop()


def test_host_matching_rules() -> None:
    cn_only = {"subject": ((("commonName", "10.0.0.3"),),)}
    assert certificate_matches_host(cn_only, "10.0.0.3")
    assert not certificate_matches_host(cn_only, "10.0.0.4")
    # An IP SAN, when present, is authoritative (RFC 6125): the CN is not consulted.
    with_san = {
        "subject": ((("commonName", "10.0.0.3"),),),
        "subjectAltName": (("IP Address", "10.0.0.9"),),
    }
    assert certificate_matches_host(with_san, "10.0.0.9")
    assert not certificate_matches_host(with_san, "10.0.0.3")
    assert certificate_matches_host(
        {"subjectAltName": (("DNS", "Cache.Example"),)}, "cache.example"
    )
    assert not certificate_matches_host({}, "10.0.0.3")


def test_without_a_ca_the_system_store_and_the_host_name_check_apply() -> None:
    client = create_redis(Settings(redis_tls=True))
    connection = client.connection_pool.make_connection()
    context = connection.ssl_context.get()  # type: ignore[attr-defined]
    assert context.check_hostname is True
    assert type(connection).__name__ == "SSLConnection"


def test_a_ca_that_is_not_pem_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be PEM"):
        Settings(redis_tls_ca_cert="not a certificate")
