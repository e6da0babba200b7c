"""The event log, the per-user streams and the tasks read model.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Migrations spell out their types instead of importing tasktrail.schema: the schema module
# moves on, a migration must keep meaning what it meant when it ran.
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "events",
        _position_column(postgres),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.SmallInteger(), nullable=False),
        sa.Column("data", _json, nullable=False),
        sa.Column("data_hash", sa.String(64), nullable=False),
        sa.Column("occurred_at", _moment, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("user_id", "seq", name="uq_events_user_seq"),
        sa.UniqueConstraint("task_id", "version", name="uq_events_task_version"),
        sqlite_autoincrement=True,
    )
    if not postgres:
        # SQLite serialises writers, so position order is commit order and this stays NULL.
        op.add_column("events", sa.Column("xact_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "user_streams",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("last_occurred_at", _moment, nullable=True),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("title_folded", sa.String(800), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("description_folded", sa.String(4000), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("due_at", _moment, nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("tags", _json, nullable=False),
        sa.Column("tags_folded", _json, nullable=False),
        sa.Column("created_at", _moment, nullable=False),
        sa.Column("updated_at", _moment, nullable=False),
        sa.Column("completed_at", _moment, nullable=True),
        sa.Column("deleted_at", _moment, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("priority BETWEEN 0 AND 3", name="ck_tasks_priority"),
    )
    op.create_index("ix_tasks_user_created", "tasks", ["user_id", "created_at", "id"])
    if postgres:
        _postgres_append_only()
    else:
        _sqlite_append_only()


def _position_column(postgres: bool) -> sa.Column[int]:
    if postgres:
        return sa.Column("position", sa.BigInteger(), sa.Identity(always=True), primary_key=True)
    # INTEGER PRIMARY KEY is SQLite's rowid; AUTOINCREMENT never hands out a number twice.
    return sa.Column("position", sa.Integer(), primary_key=True, autoincrement=True)


def _postgres_append_only() -> None:
    # The writing transaction's id orders the audit feed by commit safety (see queries/feed).
    op.execute("ALTER TABLE events ADD COLUMN xact_id xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.execute(
        """
        CREATE FUNCTION tasktrail_refuse_event_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION tasktrail_refuse_event_change()"
    )
    op.execute(
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION tasktrail_refuse_event_change()"
    )


def _sqlite_append_only() -> None:
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER events_refuse_{operation.lower()} BEFORE {operation} ON events "
            f"BEGIN SELECT RAISE(ABORT, 'events are append-only: {operation} refused'); END"
        )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_table("tasks")
    op.drop_table("user_streams")
    if postgres:
        op.execute("DROP TRIGGER events_no_truncate ON events")
        op.execute("DROP TRIGGER events_append_only ON events")
        op.execute("DROP FUNCTION tasktrail_refuse_event_change()")
    op.drop_table("events")
