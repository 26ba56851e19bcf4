"""The shared async Redis client: password, TLS and short timeouts from settings.

One client (and one connection pool) per process serves the rate limiter, the answer
cache and the readiness check. Timeouts are short and retries off on purpose: every
caller treats Redis as optional (the limiter fails open, the cache misses), so a
slow Redis must cost a request milliseconds, not the seconds redis-py's default
retry-with-backoff would add.

TLS is always verified, two ways:

- No REDIS_TLS_CA_CERT (ElastiCache): the system trust store and a host name check.
- REDIS_TLS_CA_CERT (Memorystore): the instance's own server CA, and only it. Clients
  reach Memorystore by IP, and its server certificate is reported to carry that IP only
  in the subject CN, with no IP SAN (envoyproxy/ratelimit#409); Python matches an IP
  host only against IP SANs, so ``check_hostname`` fails every handshake with "IP
  address mismatch" (redis/redis-py#3629). ``PrivateCATLSConnection`` therefore
  verifies the chain against that CA and then matches the host against what the
  certificate carries: its IP SANs when it has any, else its CN.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from groundwork_app.settings import Settings

SOCKET_TIMEOUT_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 0.5
MAX_CONNECTIONS = 128


def certificate_matches_host(cert: dict[str, Any], host: str) -> bool:
    """``host`` is what the verified certificate names: an IP SAN, a DNS SAN, or the CN
    when the certificate has no SAN of that kind (Memorystore's IP-in-CN certificate)."""
    sans = cert.get("subjectAltName", ())
    try:
        wanted_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        wanted_ip = None
    if wanted_ip is not None:
        ip_sans = [value for kind, value in sans if kind == "IP Address"]
        if ip_sans:
            return any(_same_ip(value, wanted_ip) for value in ip_sans)
    else:
        dns_sans = [value for kind, value in sans if kind == "DNS"]
        if dns_sans:
            return host.lower() in (value.lower() for value in dns_sans)
    common_names = [
        value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"
    ]
    if wanted_ip is not None:
        return any(_same_ip(value, wanted_ip) for value in common_names)
    return host.lower() in (value.lower() for value in common_names)


def _same_ip(value: str, wanted: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(value.strip()) == wanted
    except ValueError:
        return False


class PrivateCATLSConnection(SSLConnection):
    """TLS to a server whose certificate chains to a private, per-instance CA."""

    def _connection_arguments(self) -> Any:
        kwargs = dict(super()._connection_arguments())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # Trust this instance's CA only (not the system store): a certificate from any
        # public CA must not pass. The host is matched after the handshake, below.
        context.load_verify_locations(cadata=self.ssl_context.ca_data)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        kwargs["ssl"] = context
        return kwargs

    async def _connect(self) -> None:
        await super()._connect()
        assert self._writer is not None
        cert = self._writer.get_extra_info("peercert") or {}
        if not certificate_matches_host(cert, self.host):
            self._writer.close()
            raise RedisConnectionError(
                f"Redis server certificate chains to REDIS_TLS_CA_CERT but names neither "
                f"{self.host} in an IP/DNS SAN nor in its CN: {cert.get('subject')}"
            )


def create_redis(settings: Settings) -> Redis:
    password = settings.redis_password.get_secret_value() or None
    private_ca = settings.redis_tls_ca_cert.strip() or None
    client = Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=password,
        ssl=settings.redis_tls,
        ssl_cert_reqs="required",
        ssl_ca_data=private_ca,
        ssl_check_hostname=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        max_connections=MAX_CONNECTIONS,
        decode_responses=False,
    )
    if settings.redis_tls and private_ca:
        # Same pool arguments, our connection class (set before any connection exists).
        client.connection_pool.connection_class = PrivateCATLSConnection
    return client
