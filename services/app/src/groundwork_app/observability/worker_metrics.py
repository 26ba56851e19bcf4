"""Prometheus metrics of the worker and the outbox relay.

Registered on the default registry (so the process collectors come along) under
``worker_`` / ``relay_`` / ``llm_`` / ``answer_cache_`` names that cannot collide with
the API's HTTP metrics when both are imported in one process (tests, ``groundwork dev``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_PROCESSED = Counter(
    "worker_jobs_processed_total",
    "Messages handled to completion, by outcome (succeeded, degraded, duplicate).",
    ["outcome"],
)
JOBS_FAILED = Counter(
    "worker_jobs_failed_total", "Handling attempts that failed, by reason class.", ["reason"]
)
JOBS_RETRIED = Counter("worker_jobs_retried_total", "Messages sent back for a delayed retry.")
JOBS_DEAD_LETTERED = Counter(
    "worker_jobs_dead_lettered_total", "Messages parked in the dead-letter queue.", ["reason"]
)
PROCESSING_SECONDS = Histogram(
    "worker_job_processing_seconds",
    "Time from delivery to the outcome (ack, retry or dead-letter).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
IN_FLIGHT = Gauge("worker_messages_in_flight", "Messages being handled right now.")
BROKER_CONNECTED = Gauge("worker_broker_connected", "1 while the consumer holds a broker channel.")

LLM_LATENCY_SECONDS = Histogram(
    "llm_request_duration_seconds",
    "Latency of one LLM provider call, by outcome.",
    ["provider", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
)
LLM_CIRCUIT_STATE = Gauge(
    "llm_circuit_state", "LLM circuit breaker: 0 closed, 1 half-open, 2 open.", ["provider"]
)
CIRCUIT_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}

CACHE_LOOKUPS = Counter(
    "answer_cache_lookups_total",
    "AI answer cache lookups by the worker, by result (hit, miss). Hit ratio = hit / total.",
    ["result"],
)

JOBS_TERMINATED_BY_SWEEP = Counter(
    "jobs_reconciled_total",
    "Jobs ended by the safety nets rather than by a worker: dead_letter (the broker gave up on "
    "the message: delivery limit, rejected, expired) or deadline (no progress for "
    "JOB_DEADLINE_SECONDS, no live lease). Any increase means a job got stuck: alert on it.",
    ["reason"],
)
JOBS_UNFINISHED_OLDEST_AGE_SECONDS = Gauge(
    "jobs_unfinished_oldest_age_seconds",
    "Seconds since the least recently progressed queued/processing job last changed (0 if none); "
    "measured by the relay's reconciler.",
)
JOBS_UNFINISHED = Gauge(
    "jobs_unfinished", "Jobs queued or processing, measured by the relay's reconciler."
)

RELAY_BACKLOG = Gauge("relay_outbox_backlog", "Outbox rows not yet published.")
RELAY_OLDEST_AGE_SECONDS = Gauge(
    "relay_outbox_oldest_unsent_age_seconds",
    "Age of the oldest unpublished outbox row (0 if none).",
)
RELAY_PUBLISHED = Counter("relay_messages_published_total", "Outbox rows published and confirmed.")
RELAY_PUBLISH_FAILURES = Counter(
    "relay_publish_failures_total", "Outbox rows whose publish was not confirmed."
)
