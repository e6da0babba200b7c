"""tasks.last_seq: the user's seq of the last event folded into each task.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

A paging client's cursor remembers the user's seq when its walk began; a task whose last_seq is
higher changed since, and its place in the walk is taken from the log as of that seq.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.execute(
        "UPDATE tasks SET last_seq = (SELECT max(events.seq) FROM events "
        "WHERE events.task_id = tasks.id AND events.user_id = tasks.user_id)"
    )
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("last_seq", server_default=None)
    op.create_index("ix_tasks_user_last_seq", "tasks", ["user_id", "last_seq"])


def downgrade() -> None:
    op.drop_index("ix_tasks_user_last_seq", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("last_seq")
