"""Job lease: which worker is running a job and until when (one LLM call per attempt).

``lease_owner`` / ``lease_expires_at`` let a claim exclude a second concurrent
processor of the same job while letting a killed worker's job be taken over once its
lease runs out (db/worker.py). The partial index serves the reconciler's sweep of
jobs not yet terminal (worker/reconciler.py) and stays as small as the backlog.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns without a default: a catalog-only change, no table rewrite.
    op.add_column("jobs", sa.Column("lease_owner", sa.Text))
    op.add_column("jobs", sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
    # CONCURRENTLY: a live jobs table keeps taking writes while the index builds.
    with op.get_context().autocommit_block():
        op.create_index(
            "jobs_unfinished_idx",
            "jobs",
            ["updated_at"],
            postgresql_where=sa.text("status IN ('queued', 'processing')"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "jobs_unfinished_idx", table_name="jobs", postgresql_concurrently=True, if_exists=True
        )
    op.drop_column("jobs", "lease_expires_at")
    op.drop_column("jobs", "lease_owner")
