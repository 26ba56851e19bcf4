"""Which CA the AWS services must find at the end of the database server's chain.

Two different servers answer on AWS, with two different PKIs:

* The RDS instance (staging, and migrate everywhere) presents a certificate issued under
  the instance's CA (``ca_cert_identifier``, pinned to ``rds-ca-rsa2048-g1``), whose root
  is per region: "Amazon RDS <region> Root CA RSA2048 G1". The certificate names the
  instance endpoint as a DNS SAN (seen on real instances: voltone/aws_rds_castore#4,
  mysql-net/MySqlConnector#498; AWS documents ``verify-full`` against these endpoints in
  UsingWithRDS.SSL.html), so ``verify-full`` works when the client connects by endpoint.
* RDS Proxy (production) presents an ACM certificate for ``*.proxy-<id>.<region>.rds.
  amazonaws.com``: "RDS Proxy ... use[s] certificates from the AWS Certificate Manager
  (ACM)" and its applications need no update when the RDS CA rotates
  (UsingWithRDS.SSL-certificate-rotation.html; rds-proxy.howitworks.html#rds-proxy-
  security.tls); AWS's own example verifies it with Amazon Root CA 1 from Amazon Trust
  Services (repost.aws knowledge-center/rds-aurora-mysql-connect-proxy).

Both are pinned from files committed under ``stacks/certs`` (see its README: source,
version) rather than the image's trust store, so a slim image without ca-certificates
still verifies, and a certificate from any other public CA is refused.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from components.aws.database import CA_CERT
from stacks.config import CONFIG_NAMESPACE, ConfigError

CERTS = Path(__file__).parent / "certs"
RDS_BUNDLE = CERTS / f"{CA_CERT}.pem"
PROXY_BUNDLE = CERTS / "amazon-trust-services.pem"

_LABELLED = re.compile(
    r"^# (?P<cn>[^\n]+?) \(not after [0-9-]+\)\n"
    r"(?P<pem>-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n)",
    re.MULTILINE,
)


@cache
def labelled_certificates(path: Path) -> dict[str, str]:
    """PEM of every certificate in a committed bundle, by the CN on its comment line."""
    return {m["cn"]: m["pem"] for m in _LABELLED.finditer(path.read_text())}


def rds_root_ca(region: str) -> str:
    """The root of ``rds-ca-rsa2048-g1`` in ``region``: what the instance chains to."""
    cn = f"Amazon RDS {region} Root CA RSA2048 G1"
    pem = labelled_certificates(RDS_BUNDLE).get(cn)
    if pem is None:
        raise ConfigError(
            f"no RDS CA certificate for region {region!r} ({cn!r}) in "
            f"{RDS_BUNDLE.relative_to(CERTS.parent.parent)}: append it from "
            f"https://truststore.pki.rds.amazonaws.com/{region}/{region}-bundle.pem as "
            f"stacks/certs/README.md describes, or deploy to another region "
            f"(aws:region / {CONFIG_NAMESPACE}:region)"
        )
    return pem


def proxy_root_cas() -> str:
    """Amazon Trust Services roots: what RDS Proxy's ACM certificate chains to."""
    return "".join(labelled_certificates(PROXY_BUNDLE).values())
