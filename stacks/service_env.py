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


def application_env(settings: Settings) -> dict[str, str]:
    return {
        "APP_ENV": settings.environment.value,
        "SERVICE_NAME": settings.service,
        "LOG_LEVEL": "INFO",
        # RDS and Cloud SQL enforce TLS; the endpoints are not in the certificates' SANs.
        "DB_SSLMODE": "require",
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
    }
