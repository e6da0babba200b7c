"""rebuild_progress: the latest rebuild's phase and events done, for the service's /metrics.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

`projections rebuild` runs as a process of its own, possibly in another container: the service
cannot see its memory. The rebuild writes its progress into this one row (id 1) as it goes, and
/metrics reads it at scrape time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Spelled out, not imported from tasktrail.schema: a migration keeps meaning what it meant.
_moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rebuild_progress",
        sa.Column("id", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("events_done", sa.BigInteger(), nullable=False),
        sa.Column("events_total", sa.BigInteger(), nullable=False),
        sa.Column("started_at", _moment, nullable=False),
        sa.Column("updated_at", _moment, nullable=False),
        sa.Column("finished_at", _moment, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_rebuild_progress_one_row"),
    )


def downgrade() -> None:
    op.drop_table("rebuild_progress")
