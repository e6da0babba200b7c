"""An index for sort=-due on PostgreSQL, whose nulls come last as the contract wants.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

A backward scan of (user_id, due_at, id) gives DESC NULLS FIRST; the contract puts tasks
without due_at last in both directions, so -due needs its own order in an index. SQLite sorts
one user's rows in memory instead (its indexes cannot say NULLS LAST).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX ix_tasks_user_due_desc ON tasks "
            "(user_id, due_at DESC NULLS LAST, id DESC)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_tasks_user_due_desc")
