"""Wake live feeds on PostgreSQL: NOTIFY tasktrail_feed with the user id when a user's head moves.

Every write moves its user's `user_streams` row once, in the write's own transaction, on both
write paths (the locked one and `tasktrail_append`), so a trigger there is the one place that
sees every append. NOTIFY is transactional: it is delivered at commit, never for a write that
rolled back, and a listener that is woken finds the events already visible. Taking the row's
lock (the upsert that changes nothing) does not notify: the head has not moved.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

CHANNEL = "tasktrail_feed"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no NOTIFY: its live feeds poll user_streams instead
    op.execute(
        f"""
        CREATE FUNCTION tasktrail_notify_feed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', NEW.user_id);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER user_streams_moved AFTER UPDATE ON user_streams
        FOR EACH ROW WHEN (NEW.last_seq IS DISTINCT FROM OLD.last_seq)
        EXECUTE FUNCTION tasktrail_notify_feed()
        """
    )
    op.execute(
        """
        CREATE TRIGGER user_streams_started AFTER INSERT ON user_streams
        FOR EACH ROW WHEN (NEW.last_seq > 0)
        EXECUTE FUNCTION tasktrail_notify_feed()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER user_streams_started ON user_streams")
    op.execute("DROP TRIGGER user_streams_moved ON user_streams")
    op.execute("DROP FUNCTION tasktrail_notify_feed()")
