"""Indexes for every sort of the task list, each starting with user_id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (user_id, sort key, id): a page of any sort is an index range scan over the user's own rows,
# in order, with the id as the tie-breaker the contract asks for.
_INDEXES = {
    "ix_tasks_user_updated": ["user_id", "updated_at", "id"],
    "ix_tasks_user_title": ["user_id", "title_folded", "id"],
    "ix_tasks_user_due": ["user_id", "due_at", "id"],
    "ix_tasks_user_priority": ["user_id", "priority", "id"],
}


def upgrade() -> None:
    for name, columns in _INDEXES.items():
        op.create_index(name, "tasks", columns)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="tasks")
