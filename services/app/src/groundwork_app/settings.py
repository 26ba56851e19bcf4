"""The service's configuration: every environment variable and secret it reads.

This model is one half of the deployment contract. Each field says how a cloud
stack must provide it (``deploy="env"`` for plain configuration, ``deploy="secret"``
for values injected from AWS Secrets Manager / GCP Secret Manager) and for which
queue backend it matters. ``groundwork_app.contract`` turns that metadata into the
exact set of names the AWS and GCP stacks must inject, and a test holds both sides
to it.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# What the stacks store in the LLM key secret until an operator sets a real key
# (Secrets Manager and Secret Manager refuse empty values): treated as "no key".
LLM_KEY_PLACEHOLDERS = frozenset({"", "operator-must-set-this"})
# Values that appear in .env.example files and docs: refusing them outside development
# stops a copy-pasted example from reaching production.
KNOWN_INSECURE_VALUES = frozenset(
    {"", "changethis", "change-me", "changeme", "secret", "password", "guest"}
)
# Every development-only value in the repository's .env.example files starts with this.
DEV_ONLY_PREFIX = "dev-only-"
MIN_SECRET_LENGTH = 32
MAX_ROTATION_KEYS = 2


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


class QueueBackend(StrEnum):
    RABBITMQ = "rabbitmq"
    PUBSUB = "pubsub"
    SQS = "sqs"


class LLMFallback(StrEnum):
    DEFAULT_ANSWER = "default_answer"
    REQUEUE = "requeue"


def _deploy(kind: Literal["env", "secret"], *backends: QueueBackend) -> dict[str, Any]:
    """Field metadata read by ``groundwork_app.contract``.

    ``backends`` empty means the variable is injected whatever the queue backend.
    """
    return {"deploy": kind, "backends": [b.value for b in backends]}


_RMQ = QueueBackend.RABBITMQ
_PUBSUB = QueueBackend.PUBSUB
_SQS = QueueBackend.SQS
# SQS's hard limits (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/
# API_ReceiveMessage.html): long polls wait at most 20 s, a message stays invisible at most
# 12 h (43,200 s) per receive.
SQS_MAX_WAIT_SECONDS = 20
SQS_MAX_VISIBILITY_SECONDS = 43_200

# Measured (docs/performance.md, bench/pipeline.py's sweep at 2,000 ms of LLM latency):
# one asyncio worker process keeps ~1,000 calls in flight within ~12 MiB above idle;
# the stacks size it per task from the task's vCPUs and memory (stacks/config.py).
DEFAULT_WORKER_CONCURRENCY = 1000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- runtime -------------------------------------------------------------
    app_env: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="development | test | staging | production. Staging and production refuse "
        "default or empty secrets.",
        json_schema_extra=_deploy("env"),
    )
    service_name: str = Field(default="groundwork", json_schema_extra=_deploy("env"))
    service_version: str = Field(default="0.1.0", description="Reported in /health and traces.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", json_schema_extra=_deploy("env")
    )
    log_json: bool = Field(default=True, description="JSON logs; set false for console output.")

    # --- PostgreSQL ----------------------------------------------------------
    db_host: str = Field(default="127.0.0.1", json_schema_extra=_deploy("env"))
    db_port: int = Field(default=5432, ge=1, le=65535, json_schema_extra=_deploy("env"))
    db_name: str = Field(default="groundwork", json_schema_extra=_deploy("env"))
    db_user: str = Field(default="groundwork", json_schema_extra=_deploy("env"))
    db_password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of DB_USER. Unused (and not injected) when DB_IAM_AUTH=true.",
        json_schema_extra=_deploy("secret"),
    )
    db_iam_auth: bool = Field(
        default=False,
        description="Authenticate with a fresh RDS IAM token per new connection (signed with "
        "the task role) instead of DB_PASSWORD: nothing to rotate, nothing to restart. The AWS "
        "stacks set it for api, worker and relay; migrate keeps the master password.",
        json_schema_extra=_deploy("env"),
    )
    db_app_user: str = Field(
        default="",
        pattern=r"^([a-z_][a-z0-9_]{0,62})?$",
        description="migrate only: the role api, worker and relay connect as. After upgrading "
        "the schema, migrate creates it (LOGIN, rds_iam where that role exists) and grants it "
        "data access (no DDL). Empty: the processes share DB_USER.",
        json_schema_extra=_deploy("env"),
    )
    db_sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="prefer",
        description="TLS to PostgreSQL. The stacks set 'require' (RDS / Cloud SQL enforce TLS).",
        json_schema_extra=_deploy("env"),
    )
    db_tls_ca_cert: str = Field(
        default="",
        description="PEM CA certificate(s) the PostgreSQL server must chain to with "
        "DB_SSLMODE=verify-ca/verify-full; when set, only these are trusted (Cloud SQL: the "
        "instance's server_ca_certs; RDS: the region's RDS CA bundle). Empty: the system "
        "trust store.",
        json_schema_extra=_deploy("env"),
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_statement_cache_size: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="asyncpg prepared-statement cache of the API's and worker's queries. 0 "
        "(default) works through PgBouncer/RDS Proxy in transaction mode; > 0 saves a round "
        "trip per query but only when connecting to PostgreSQL directly (or PgBouncer >= 1.21 "
        "with max_prepared_statements). The stacks set it from whether a pooler is in between.",
        json_schema_extra=_deploy("env"),
    )

    # --- Redis ---------------------------------------------------------------
    redis_host: str = Field(default="127.0.0.1", json_schema_extra=_deploy("env"))
    redis_port: int = Field(default=6379, ge=1, le=65535, json_schema_extra=_deploy("env"))
    redis_password: SecretStr = Field(
        default=SecretStr(""),
        description="AUTH token (ElastiCache) / AUTH string (Memorystore).",
        json_schema_extra=_deploy("secret"),
    )
    redis_tls: bool = Field(default=False, json_schema_extra=_deploy("env"))
    redis_tls_ca_cert: str = Field(
        default="",
        description="PEM CA certificate(s) the Redis server must chain to, for a server with a "
        "private CA (Memorystore: the instance's server_ca_certs), trusted in addition to the "
        "system store. Empty: the system trust store only (ElastiCache).",
        json_schema_extra=_deploy("env", _PUBSUB),
    )
    redis_db: int = Field(default=0, ge=0, le=15)

    # --- queue ---------------------------------------------------------------
    queue_backend: QueueBackend = Field(
        default=QueueBackend.RABBITMQ, json_schema_extra=_deploy("env")
    )
    queue_name: str = Field(
        default="jobs",
        pattern=r"^[A-Za-z0-9_.-]{1,200}$",
        description="Work queue (RabbitMQ, SQS) or topic (Pub/Sub) name.",
        json_schema_extra=_deploy("env"),
    )
    rabbitmq_host: str = Field(default="127.0.0.1", json_schema_extra=_deploy("env", _RMQ))
    rabbitmq_port: int = Field(default=5672, ge=1, le=65535, json_schema_extra=_deploy("env", _RMQ))
    rabbitmq_user: str = Field(default="guest", json_schema_extra=_deploy("env", _RMQ))
    rabbitmq_password: SecretStr = Field(
        default=SecretStr("guest"), json_schema_extra=_deploy("secret", _RMQ)
    )
    rabbitmq_vhost: str = Field(default="/")
    rabbitmq_management_url: str = Field(
        default="",
        description="migrate only: the broker's management API (Amazon MQ: the console URL, "
        "https://b-....mq.<region>.amazonaws.com). Set, migrate creates RABBITMQ_USER there "
        "with permissions on RABBITMQ_VHOST's queue names only, as RABBITMQ_ADMIN_USER. "
        "Empty: the user is managed elsewhere.",
        json_schema_extra=_deploy("env", _RMQ),
    )
    rabbitmq_admin_user: str = Field(default="", json_schema_extra=_deploy("env", _RMQ))
    rabbitmq_admin_password: SecretStr = Field(
        default=SecretStr(""),
        description="migrate only (injected into the migrate task alone).",
        json_schema_extra=_deploy("secret", _RMQ),
    )
    rabbitmq_tls: bool = Field(
        default=False,
        description="amqps (Amazon MQ listens on 5671 with TLS only).",
        json_schema_extra=_deploy("env", _RMQ),
    )
    queue_prefetch: int = Field(
        default=DEFAULT_WORKER_CONCURRENCY,
        ge=1,
        le=10_000,
        description="Unacknowledged messages the broker hands one worker: the backpressure. "
        "Unset, it follows WORKER_CONCURRENCY (a larger prefetch only parks messages in this "
        "worker's memory, where other workers cannot take them; a smaller one idles slots).",
        json_schema_extra=_deploy("env", _RMQ),
    )
    queue_delivery_limit: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts before a message is dead-lettered. On Pub/Sub it must equal the "
        "subscription's max_delivery_attempts, so the stacks inject both from one value.",
        json_schema_extra=_deploy("env"),
    )
    queue_retry_delays_ms: Annotated[list[int], NoDecode] = Field(
        default=[1000, 5000, 30000],
        description="Comma-separated backoff steps; one TTL queue per step.",
    )
    sqs_queue_url: str = Field(
        default="",
        description="URL of the SQS work queue (QUEUE_BACKEND=sqs).",
        json_schema_extra=_deploy("env", _SQS),
    )
    sqs_dlq_url: str = Field(
        default="",
        description="URL of the SQS dead-letter queue: the worker parks messages there with "
        "their reason; `groundwork-app dlq` lists and redrives it.",
        json_schema_extra=_deploy("env", _SQS),
    )
    sqs_visibility_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=SQS_MAX_VISIBILITY_SECONDS,
        description="How long a received message stays invisible to other workers. Must exceed "
        "the job's deadline (LLM timeout x attempts + backoff); the worker also extends it "
        "while a job runs. The stack sets the queue's own default from the same value.",
        json_schema_extra=_deploy("env", _SQS),
    )
    sqs_wait_time_seconds: int = Field(
        default=SQS_MAX_WAIT_SECONDS,
        ge=1,
        le=SQS_MAX_WAIT_SECONDS,
        description="Long-poll wait of ReceiveMessage (1-20 s). Also bounds how long a "
        "stopping worker waits for its last poll.",
    )
    sqs_endpoint_url: str = Field(
        default="",
        description="Another SQS endpoint (a local server such as moto); empty uses AWS's.",
    )
    aws_region: str = Field(
        default="",
        description="Region of the SQS queues when their URL does not name one (a local "
        "endpoint); AWS URLs (sqs.<region>.amazonaws.com) carry their region.",
    )
    pubsub_project_id: str = Field(default="", json_schema_extra=_deploy("env", _PUBSUB))
    pubsub_push_audience: str = Field(
        default="",
        description="Expected 'aud' of the Pub/Sub push OIDC token; empty disables the check "
        "(refused in staging/production).",
        json_schema_extra=_deploy("env", _PUBSUB),
    )
    pubsub_push_service_account: str = Field(
        default="",
        description="Expected 'email' claim of the push token (the push identity).",
        json_schema_extra=_deploy("env", _PUBSUB),
    )
    pubsub_push_auth: Literal["verify-signature", "cloud-run-iam"] = Field(
        default="verify-signature",
        description="Who checks the push token's signature: the app ('verify-signature'), or "
        "Cloud Run's IAM invoker check ('cloud-run-iam': Cloud Run validates the token and "
        "delivers it with the signature replaced by SIGNATURE_REMOVED_BY_GOOGLE; the app "
        "checks its claims). The GCP stack sets 'cloud-run-iam'.",
        json_schema_extra=_deploy("env", _PUBSUB),
    )

    # --- authentication ------------------------------------------------------
    jwt_algorithm: Literal["HS256", "RS256"] = Field(
        default="HS256", json_schema_extra=_deploy("env")
    )
    jwt_secret: SecretStr = Field(
        default=SecretStr("changethis"),
        description="HS256 signing secret (>= 32 chars outside development). During a "
        "rotation: 'NEW OLD' (space-separated): tokens are signed with NEW and verified "
        "with either, so tokens issued before the rotation keep working until they expire.",
        json_schema_extra=_deploy("secret"),
    )
    jwt_jwks_url: str = Field(default="", description="JWKS URL for RS256 tokens.")
    jwt_issuer: str = Field(default="groundwork", json_schema_extra=_deploy("env"))
    jwt_audience: str = Field(default="groundwork-api", json_schema_extra=_deploy("env"))
    webhook_secret: SecretStr = Field(
        default=SecretStr("changethis"),
        description="HMAC-SHA256 key of the signed webhook endpoint. During a rotation: "
        "'NEW OLD' (space-separated): signatures made with either are accepted.",
        json_schema_extra=_deploy("secret"),
    )
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)

    # --- HTTP edge -----------------------------------------------------------
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Comma-separated allowed origins; empty allows none.",
        json_schema_extra=_deploy("env"),
    )
    rate_limit: str = Field(
        default="60/minute",
        description="Per-client limit in the `limits` notation.",
        json_schema_extra=_deploy("env"),
    )
    max_prompt_chars: int = Field(default=8000, ge=1, le=100_000)
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve the API's /metrics on this port instead of the API port. The stacks "
        "set it so the load balancer (which forwards every path of the API port) never exposes "
        "metrics; only the collector reaches this port.",
        json_schema_extra=_deploy("env"),
    )
    api_bind_host: str = Field(
        default="",
        description="Address the API binds; empty means 0.0.0.0 when deployed or inside a "
        "container, 127.0.0.1 on a workstation.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Comma-separated proxy addresses/CIDRs whose X-Forwarded-* headers are "
        "trusted (the load balancer's subnets); '*' trusts everyone and is insecure.",
    )
    max_request_bytes: int = Field(
        default=65_536, ge=1024, le=10_485_760, description="Largest accepted request body."
    )
    health_check_timeout_seconds: float = Field(
        default=0.3, gt=0, le=5, description="Per-dependency timeout of /health/ready."
    )

    # --- LLM -----------------------------------------------------------------
    llm_api_key: SecretStr = Field(
        default=SecretStr(""),
        description="Set to use the OpenAI-compatible provider; empty uses the simulated one.",
        json_schema_extra=_deploy("secret"),
    )
    llm_base_url: str = Field(default="https://api.openai.com/v1", json_schema_extra=_deploy("env"))
    llm_model: str = Field(default="gpt-4o-mini", json_schema_extra=_deploy("env"))
    llm_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    llm_max_retries: int = Field(default=3, ge=0, le=10)
    llm_simulated_latency_ms: int = Field(default=0, ge=0, le=60_000)
    llm_simulated_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    llm_fallback: LLMFallback = Field(default=LLMFallback.REQUEUE, json_schema_extra=_deploy("env"))
    llm_default_answer: str = Field(
        default="The assistant is temporarily unavailable; please retry later."
    )
    circuit_failure_threshold: int = Field(default=5, ge=1, le=1000)
    circuit_recovery_seconds: float = Field(default=30.0, gt=0)
    llm_retry_initial_seconds: float = Field(
        default=0.2, gt=0, le=60, description="First backoff of LLM retries (exponential + jitter)."
    )
    llm_retry_max_seconds: float = Field(default=5.0, gt=0, le=300)
    llm_requests_per_minute: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Client-side pace of LLM calls in *this process* (0: no pacing; a 429's "
        "Retry-After still pauses every call). The stacks set the organisation's limit "
        "divided by the most worker tasks that can run.",
        json_schema_extra=_deploy("env"),
    )

    # --- cache ---------------------------------------------------------------
    cache_ttl_seconds: int = Field(default=3600, ge=1, json_schema_extra=_deploy("env"))
    cache_version: str = Field(
        default="v1", description="Bump to invalidate every cached answer at once."
    )
    cache_shared_across_tenants: bool = Field(
        default=False,
        description="Share cached answers between clients (token subjects). Off: the cache key "
        "includes the client, so no client can learn (or evict) what another asked. Turn on only "
        "when every client may see every other client's prompts.",
    )

    # --- worker / relay ------------------------------------------------------
    worker_concurrency: int = Field(
        default=DEFAULT_WORKER_CONCURRENCY,
        ge=1,
        le=10_000,
        description="Jobs one worker process handles at once. A job waiting on the LLM costs "
        "an asyncio task and a connection, not a thread: size it from the task's memory and "
        "the provider's rate limit (docs/performance.md), not from the vCPUs.",
        json_schema_extra=_deploy("env"),
    )
    worker_health_port: int = Field(default=8081, ge=1, le=65535)
    worker_bind_host: str = Field(
        default="",
        description="Address the worker's and relay's health/metrics server binds; empty means "
        "0.0.0.0 when deployed or inside a container (the collector scrapes from outside the "
        "task), 127.0.0.1 on a workstation.",
    )
    job_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="How long a worker's claim on a job excludes other workers; renewed every "
        "third of it while the job runs, so a killed worker's job is taken over after at most "
        "this long.",
    )
    job_deadline_seconds: float = Field(
        default=3600.0,
        ge=1,
        le=7 * 86400,
        description="A job not finished this long after its last progress (and not leased) is "
        "failed by the reconciler (the relay runs it) and counted in jobs_reconciled_total. "
        "Keep it above the sum of QUEUE_RETRY_DELAYS_MS plus a few JOB_LEASE_SECONDS.",
    )
    reconcile_interval_seconds: float = Field(default=30.0, gt=0, le=3600)
    heartbeat_file: str = Field(default="/tmp/groundwork-worker.heartbeat")  # noqa: S108
    relay_batch_size: int = Field(default=100, ge=1, le=10_000)
    relay_poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    relay_listen: bool = Field(
        default=True,
        description="LISTEN on outbox_new for instant wake-ups. Needs a session connection: "
        "through a transaction-mode pooler (PgBouncer) notifications are lost, so point the "
        "relay at the database directly or set false and rely on polling.",
    )
    relay_max_backoff_seconds: float = Field(default=10.0, gt=0, le=300)
    shutdown_timeout_seconds: float = Field(
        default=25.0,
        gt=0,
        le=600,
        description="On SIGTERM, how long in-flight jobs may finish before the rest are handed "
        "back to the broker. Must end before the platform's SIGKILL: the stacks set it below "
        "ECS stopTimeout (max 120 s) and Cloud Run's fixed 10 s.",
        json_schema_extra=_deploy("env"),
    )

    # --- observability -------------------------------------------------------
    otel_exporter_otlp_endpoint: str = Field(
        default="", description="OTLP/HTTP endpoint; empty disables trace export."
    )

    @field_validator("redis_tls_ca_cert", "db_tls_ca_cert")
    @classmethod
    def _redis_ca(cls, value: str) -> str:
        if value.strip() and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM: one or more -----BEGIN CERTIFICATE----- blocks")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("queue_retry_delays_ms", mode="before")
    @classmethod
    def _split_delays(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [int(item) for item in value.split(",") if item.strip()]
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        from limits import parse_many  # only here: its import pulls every storage backend

        try:
            limits = parse_many(value)
        except ValueError:
            limits = []
        if len(limits) != 1:
            raise ValueError(
                f"{value!r} is not one rate limit; use the limits notation, e.g. 60/minute "
                "or 1000 per hour"
            )
        return value

    @field_validator("queue_retry_delays_ms")
    @classmethod
    def _positive_delays(cls, value: list[int]) -> list[int]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("must be a non-empty comma-separated list of positive milliseconds")
        return value

    @property
    def llm_api_key_value(self) -> str:
        """The LLM key, or "" when unset or still the stacks' placeholder."""
        key = self.llm_api_key.get_secret_value().strip()
        return "" if key in LLM_KEY_PLACEHOLDERS else key

    @property
    def delivery_deadline_seconds(self) -> float:
        """Longest one delivery can take in the LLM call: every try times out, with the
        longest backoff between them."""
        tries = self.llm_max_retries + 1
        return self.llm_timeout_seconds * tries + self.llm_retry_max_seconds * (tries - 1)

    @property
    def jwt_keys(self) -> list[str]:
        """HS256 keys: the first signs, every one verifies (rotation overlap)."""
        return rotation_keys(self.jwt_secret)

    @property
    def webhook_keys(self) -> list[str]:
        """Webhook HMAC keys: a signature by any of them is accepted (rotation overlap)."""
        return rotation_keys(self.webhook_secret)

    @property
    def is_deployed(self) -> bool:
        return self.app_env in (Environment.STAGING, Environment.PRODUCTION)

    @property
    def database_dsn(self) -> str:
        """asyncpg DSN (no driver prefix); the password is passed separately."""
        return f"postgresql://{self.db_user}@{self.db_host}:{self.db_port}/{self.db_name}"

    @model_validator(mode="after")
    def _prefetch_follows_concurrency(self) -> Settings:
        if "queue_prefetch" not in self.model_fields_set:
            self.queue_prefetch = self.worker_concurrency
        return self

    @model_validator(mode="after")
    def _sqs_settings(self) -> Settings:
        if self.queue_backend is not QueueBackend.SQS:
            return self
        if not self.sqs_queue_url or not self.sqs_dlq_url:
            raise ValueError("SQS_QUEUE_URL and SQS_DLQ_URL must be set when QUEUE_BACKEND=sqs")
        if self.sqs_visibility_timeout_seconds <= self.delivery_deadline_seconds:
            # Otherwise a slow job's message reappears while the job still runs and a second
            # worker takes it (the ledger keeps the result single, but the LLM is paid twice).
            raise ValueError(
                f"SQS_VISIBILITY_TIMEOUT_SECONDS ({self.sqs_visibility_timeout_seconds}) must "
                f"exceed one delivery's deadline ({self.delivery_deadline_seconds:g} s = "
                "LLM_TIMEOUT_SECONDS x (LLM_MAX_RETRIES + 1) + LLM_RETRY_MAX_SECONDS x "
                "LLM_MAX_RETRIES); raise it or lower those"
            )
        return self

    @model_validator(mode="after")
    def _refuse_insecure_defaults(self) -> Settings:
        if not self.is_deployed:
            return self
        problems: list[str] = []
        secrets = {
            "JWT_SECRET": self.jwt_secret,
            "WEBHOOK_SECRET": self.webhook_secret,
            "DB_PASSWORD": self.db_password,
            "REDIS_PASSWORD": self.redis_password,
        }
        if self.db_iam_auth:
            secrets.pop("DB_PASSWORD")
        if self.jwt_algorithm == "RS256":
            secrets.pop("JWT_SECRET")
            if not self.jwt_jwks_url:
                problems.append("JWT_JWKS_URL must be set when JWT_ALGORITHM=RS256")
        if self.queue_backend is QueueBackend.RABBITMQ:
            secrets["RABBITMQ_PASSWORD"] = self.rabbitmq_password
        elif self.queue_backend is QueueBackend.PUBSUB and not self.pubsub_push_audience:
            problems.append("PUBSUB_PUSH_AUDIENCE must be set so push tokens are verified")
        for name, secret in secrets.items():
            rotating = name in ("JWT_SECRET", "WEBHOOK_SECRET")
            values = rotation_keys(secret) if rotating else [secret.get_secret_value()]
            if rotating and len(values) > MAX_ROTATION_KEYS:
                problems.append(f"{name} holds {len(values)} keys; at most 'NEW OLD'")
            for value in values or [""]:
                if value.lower() in KNOWN_INSECURE_VALUES or value.startswith(DEV_ONLY_PREFIX):
                    problems.append(
                        f"{name} is empty or a documented example value; set a real secret"
                    )
                elif rotating and len(value) < MIN_SECRET_LENGTH:
                    problems.append(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
        if problems:
            raise ValueError(
                f"refusing to start with APP_ENV={self.app_env.value}: " + "; ".join(problems)
            )
        return self


def rotation_keys(secret: SecretStr) -> list[str]:
    """The whitespace-separated keys of a rotating secret, newest first."""
    return secret.get_secret_value().split()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
