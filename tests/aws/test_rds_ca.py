"""The AWS services authenticate the database server (issue 15, defect 9, AWS half).

What the platform does, and what each test reproduces:

* An RDS instance presents a server certificate issued under its CA
  (``ca_cert_identifier`` = ``rds-ca-rsa2048-g1``), chaining to the per-region root
  "Amazon RDS <region> Root CA RSA2048 G1", with the instance endpoint as a DNS SAN
  (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html,
  "Certificate authorities"; SAN as seen on real instances in voltone/aws_rds_castore#4).
  The server sends its certificate with the intermediate; clients trust the root only.
* RDS Proxy presents an ACM certificate chaining to Amazon Trust Services' roots
  (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL-certificate-rotation.html,
  "RDS Proxy ... use[s] certificates from the AWS Certificate Manager (ACM)";
  https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy.howitworks.html#rds-proxy-security.tls).
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from groundwork_app.db.tls import ssl_context
from groundwork_app.settings import Settings

from components.aws.database import CA_CERT
from groundwork.devenv.servers import Postgres
from groundwork.mockrun import ProgramRun
from stacks.config import ConfigError
from stacks.rds_ca import PROXY_BUNDLE, RDS_BUNDLE, labelled_certificates, rds_root_ca
from testsupport.servers import postgres_for_test

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ENDPOINT = "groundwork-staging.abcdefghijkl.us-east-1.rds.amazonaws.com"
OTHER_ENDPOINT = "someone-else.abcdefghijkl.us-east-1.rds.amazonaws.com"
# Regions the committed bundle must cover: every one the stack documents or pairs.
REGIONS = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1", "eu-central-1")


def _subjects(bundle: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.encode())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _env(run: ProgramRun, process: str, helpers: Any) -> dict[str, str]:
    task = next(
        r
        for r in run.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if r.name.endswith(f"-{process}")
    )
    (container,) = helpers.container_definitions(task)
    return {e["name"]: e["value"] for e in container["environment"]}


# --- the committed bundles ----------------------------------------------------------------


@pytest.mark.parametrize("path", [RDS_BUNDLE, PROXY_BUNDLE], ids=lambda p: p.name)
def test_committed_bundles_are_valid_ca_certificates(path: Path) -> None:
    labelled = labelled_certificates(path)
    certs = _subjects(path.read_text())
    assert len(labelled) == len(certs) > 0  # no certificate without its label
    now = datetime.datetime.now(datetime.UTC)
    for (label, pem), cert in zip(labelled.items(), certs, strict=True):
        assert x509.load_pem_x509_certificate(pem.encode()) == cert
        assert _cn(cert) == label  # the label the stack selects by is the real subject
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.subject == cert.issuer  # roots: a client trusts these alone
        # Years of margin, so an expiry shows up here long before it breaks a deploy.
        assert cert.not_valid_after_utc > now + datetime.timedelta(days=365 * 5), label


def test_rds_bundle_holds_the_pinned_ca_for_every_documented_region() -> None:
    assert RDS_BUNDLE.name == f"{CA_CERT}.pem"
    labels = set(labelled_certificates(RDS_BUNDLE))
    for region in REGIONS:
        assert f"Amazon RDS {region} Root CA RSA2048 G1" in labels
        (cert,) = _subjects(rds_root_ca(region))
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    # Only the pinned CA's roots, no beta/preview endpoints, no other CA family.
    assert all(label.endswith("Root CA RSA2048 G1") for label in labels)
    assert not any("Beta" in label or "Preview" in label for label in labels)


def test_proxy_bundle_is_amazon_trust_services() -> None:
    assert {_cn(c) for c in _subjects(PROXY_BUNDLE.read_text())} == {
        "Amazon Root CA 1",
        "Amazon Root CA 2",
        "Amazon Root CA 3",
        "Amazon Root CA 4",
        "Starfield Services Root Certificate Authority - G2",
    }


# --- what the stacks inject ---------------------------------------------------------------


@pytest.mark.parametrize("process", ["api", "worker", "relay", "migrate"])
def test_staging_verifies_the_instance_against_the_regions_rds_root(
    staging: ProgramRun, process: str, helpers: Any
) -> None:
    env = _env(staging, process, helpers)
    assert env["DB_SSLMODE"] == "verify-full"
    assert ".proxy-" not in env["DB_HOST"]
    (root,) = _subjects(env["DB_TLS_CA_CERT"])
    assert _cn(root) == "Amazon RDS us-east-1 Root CA RSA2048 G1"


@pytest.mark.parametrize("process", ["api", "worker", "relay"])
def test_production_services_verify_the_proxy_against_amazon_roots(
    production: ProgramRun, process: str, helpers: Any
) -> None:
    env = _env(production, process, helpers)
    assert env["DB_SSLMODE"] == "verify-full"
    assert ".proxy-" in env["DB_HOST"]
    cns = {_cn(c) for c in _subjects(env["DB_TLS_CA_CERT"])}
    assert "Amazon Root CA 1" in cns
    assert not any(cn.startswith("Amazon RDS") for cn in cns)  # not the instance's PKI
    # The roots travel inside the task definition, whose documented maximum is 64 KiB
    # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html,
    # "Task definition size"): keep a wide margin.
    task = next(
        r
        for r in production.of_type("aws:ecs/taskDefinition:TaskDefinition")
        if r.name.endswith(f"-{process}")
    )
    assert len(task.inputs["containerDefinitions"]) < 32 * 1024


def test_production_migrate_verifies_the_instance_not_the_proxy(
    production: ProgramRun, helpers: Any
) -> None:
    env = _env(production, "migrate", helpers)
    assert env["DB_SSLMODE"] == "verify-full"
    assert ".proxy-" not in env["DB_HOST"]  # migrate goes straight to the instance
    (root,) = _subjects(env["DB_TLS_CA_CERT"])
    assert _cn(root) == "Amazon RDS us-east-1 Root CA RSA2048 G1"


def test_a_region_without_a_committed_root_is_refused_before_any_resource(
    helpers: Any,
) -> None:
    mocks = helpers.CountingMocks()
    config = {
        "aws:region": "xx-nowhere-1",
        "groundwork:environment": "staging",
        "groundwork:insecureHttp": "true",
    }
    error = helpers.run_failing("staging", config, mocks)
    assert isinstance(error, ConfigError)
    assert "'xx-nowhere-1'" in str(error) and "stacks/certs/README.md" in str(error)
    assert mocks.created == []


# --- a real TLS PostgreSQL shaped like an RDS instance ------------------------------------


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
    *,
    ca: bool,
    san: str | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_key, issuer_name = (key, name) if issuer is None else (issuer[0], issuer[1].subject)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
        )
    return builder.sign(signer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def rds_like() -> Iterator[tuple[Postgres, str]]:
    """Root -> regional intermediate -> server certificate for ENDPOINT (CN and SAN),
    the server sending its chain without the root, as RDS does."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("Amazon RDS us-east-1 Root CA RSA2048 G1 (test)", root_key, None, ca=True)
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub = _cert("Amazon RDS us-east-1 Subordinate CA (test)", sub_key, (root_key, root), ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(ENDPOINT, key, (sub_key, sub), ca=False, san=ENDPOINT)
    postgres = postgres_for_test("gw-rds-tls-")
    postgres.serve_tls(
        (_pem(server) + _pem(sub)).encode(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    yield postgres, _pem(root)
    postgres.stop()


@pytest.fixture
def vpc_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both RDS-style names resolve to the loopback server, as the VPC resolver maps an
    endpoint to its instance; the name the client asked for is what TLS checks."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host in (ENDPOINT, OTHER_ENDPOINT) else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


async def _connect(postgres: Postgres, host: str, mode: str, ca: str) -> bool:
    settings = Settings(
        db_host=host,
        db_port=postgres.port,
        db_name=postgres.database,
        db_user=postgres.user,
        db_password=postgres.password,
        db_sslmode=mode,  # type: ignore[arg-type]
        db_tls_ca_cert=ca,
    )
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


@pytest.mark.usefixtures("vpc_dns")
async def test_verify_full_accepts_the_instance_by_its_endpoint(
    rds_like: tuple[Postgres, str],
) -> None:
    postgres, root = rds_like
    assert await _connect(postgres, ENDPOINT, "verify-full", root)


@pytest.mark.usefixtures("vpc_dns")
async def test_verify_full_refuses_a_certificate_for_another_name(
    rds_like: tuple[Postgres, str],
) -> None:
    """A server of the same CA answering for a name it was not issued for (DNS spoofed,
    or another instance of the region) is refused: verify-ca would accept it."""
    postgres, root = rds_like
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await _connect(postgres, OTHER_ENDPOINT, "verify-full", root)
    assert await _connect(postgres, OTHER_ENDPOINT, "verify-ca", root)


@pytest.mark.usefixtures("vpc_dns")
async def test_verify_full_refuses_a_server_of_another_ca(
    rds_like: tuple[Postgres, str],
) -> None:
    postgres, _ = rds_like
    # The committed (real) RDS root did not sign the test server, nor did Amazon's roots.
    for ca in (rds_root_ca("us-east-1"), PROXY_BUNDLE.read_text()):
        with pytest.raises(ssl.SSLCertVerificationError):
            await _connect(postgres, ENDPOINT, "verify-full", ca)
