"""The cloud-agnostic half of what both stacks inject into every service container.

Each cloud adds its own endpoints (database, cache, queue); everything that must be
the same on AWS and GCP lives here once.
"""

from __future__ import annotations

from stacks.config import Settings

DELIVERY_ATTEMPTS = 5
"""Deliveries before a message is dead-lettered: the RabbitMQ quorum queue's
x-delivery-limit on AWS, the push subscription's max_delivery_attempts on GCP. The
worker is told the same number (QUEUE_DELIVERY_LIMIT)."""


METRICS_PORT = 9464
"""Where every process serves /metrics (the OpenTelemetry Prometheus exporter's port):
never a port a load balancer target group or Cloud Run's ingress forwards, so only a
collector inside the network reaches it. Without it the API would serve /metrics on
the API port, which the load balancers forward on every path."""


def application_env(settings: Settings) -> dict[str, str]:
    return {
        "APP_ENV": settings.tier.value,
        "SERVICE_NAME": settings.service,
        "LOG_LEVEL": "INFO",
        # Encrypted only; each stack overrides both with a check of the server (AWS:
        # verify-full, RDS and RDS Proxy name their endpoints in the certificate's SAN;
        # GCP: verify-ca, Cloud SQL's certificate names no IP the client dials).
        "DB_SSLMODE": "require",
        # The system trust store unless a stack pins the server's CA.
        "DB_TLS_CA_CERT": "",
        # Password authentication unless a cloud stack overrides it per process.
        "DB_IAM_AUTH": "false",
        "DB_APP_USER": "",
        "REDIS_TLS": "true",
        "QUEUE_DELIVERY_LIMIT": str(DELIVERY_ATTEMPTS),
        "JWT_ALGORITHM": "HS256",
        "JWT_ISSUER": settings.service,
        "JWT_AUDIENCE": f"{settings.service}-api",
        "CORS_ORIGINS": f"https://{settings.domain}" if settings.domain else "",
        "RATE_LIMIT": "60/minute",
        "LLM_BASE_URL": "https://api.openai.com/v1",
        "LLM_MODEL": "gpt-4o-mini",
        "LLM_FALLBACK": "requeue",
        "CACHE_TTL_SECONDS": "3600",
        "WORKER_CONCURRENCY": str(settings.worker_slots),
        "LLM_REQUESTS_PER_MINUTE": str(settings.llm_requests_per_minute_per_task),
        "METRICS_PORT": str(METRICS_PORT),
    }


def token_claims(settings: Settings) -> dict[str, str]:
    """Issuer and audience the API checks, exported so the smoke test mints tokens the
    API accepts whatever ``groundwork:service`` is called."""
    env = application_env(settings)
    return {"jwt_issuer": env["JWT_ISSUER"], "jwt_audience": env["JWT_AUDIENCE"]}
