"""Tables shared by the API (jobs + outbox), the relay (outbox) and the worker (ledger).

Alembic migrations under ``groundwork_app/migrations`` create these; this module is
the Python view of them, used to build queries.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData()

JOB_STATUSES = ("queued", "processing", "succeeded", "failed")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("client_id", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="queued"),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("metadata", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("result", sa.Text),
    sa.Column("degraded", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("request_id", sa.Text, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    # The worker running the job and until when (migration 0002, db/worker.py).
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(f"status IN {JOB_STATUSES!r}", name="jobs_status_check"),
    # Idempotency keys are scoped per client: two clients may reuse the same key.
    sa.Index(
        "jobs_client_idempotency_key_uq",
        "client_id",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    sa.Index(
        "jobs_unfinished_idx",
        "updated_at",
        postgresql_where=sa.text("status IN ('queued', 'processing')"),
    ),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("message_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column(
        "job_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
    # request id and W3C trace context, so the worker continues the API's trace and logs.
    sa.Column("headers", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("publish_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    # The relay's hot query scans only unsent rows in id order: keep that index tiny.
    sa.Index("outbox_unsent_idx", "id", postgresql_where=sa.text("sent_at IS NULL")),
)

processed_messages = sa.Table(
    "processed_messages",
    metadata,
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column(
        "job_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("jobs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column(
        "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

OUTBOX_CHANNEL = "outbox_new"
