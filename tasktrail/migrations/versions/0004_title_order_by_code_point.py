"""Sort titles by code point on PostgreSQL, whatever the database's default collation.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

`sort=title` must order the same on both engines. SQLite compares text by code point; a
PostgreSQL database created with a language collation (en_US) would not, so the folded title
gets the "C" collation. Changing the type rebuilds ix_tasks_user_title with it.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute('ALTER TABLE tasks ALTER COLUMN title_folded TYPE varchar(800) COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            'ALTER TABLE tasks ALTER COLUMN title_folded TYPE varchar(800) COLLATE "default"'
        )
