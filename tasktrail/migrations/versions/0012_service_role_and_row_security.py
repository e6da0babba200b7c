"""The service's role and row-level security on tasks and events (PostgreSQL only).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Defence in depth. The service connects as a role that holds only what it needs: on `events`,
INSERT and SELECT (the log is appended to, never changed: no UPDATE, DELETE or TRUNCATE, on
top of the trigger of 0001); on the read model and the other tables, what its writes do. The
migrations, the rebuild and the verifiers run as the owner.

Row-level security on `tasks` and `events`: the service's role sees and writes a row only when
its `user_id` is the transaction's `tasktrail.user_id` setting; an auditor's transaction, with
`tasktrail.audit` set to `on`, reads every user's events and writes none
(tasktrail/row_security.py).

`tasktrail_service` is a NOLOGIN role, made here when it does not exist yet (roles belong to the
whole cluster; a second database reuses it). The operator makes the login role the service uses
a member of it.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# Spelled out, not imported: a migration keeps meaning what it meant.
_ROLE = "tasktrail_service"
_OWN_ROW = "user_id = current_setting('tasktrail.user_id', true)"
_AUDITING = "current_setting('tasktrail.audit', true) = 'on'"

_GRANTS = (
    f"GRANT SELECT, INSERT ON events TO {_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE ON tasks TO {_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE ON user_streams TO {_ROLE}",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO {_ROLE}",
    f"GRANT SELECT ON rebuild_progress TO {_ROLE}",
    f"GRANT SELECT ON alembic_version TO {_ROLE}",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has neither roles nor row security
    # Two databases migrated at once may both find the role missing: the second one's CREATE
    # fails, and finds it made.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{_ROLE}') THEN
                CREATE ROLE {_ROLE} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END
        $$
        """
    )
    for grant in _GRANTS:
        op.execute(grant)
    # This revision once also put the role in pg_read_all_stats, for /readyz: that showed it
    # every role's statements. 0015 takes it out where it was granted, and gives /readyz a
    # narrower way to see other roles' transactions.
    for table in ("tasks", "events"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_of_the_user ON {table} TO {_ROLE} "
            f"USING ({_OWN_ROW}) WITH CHECK ({_OWN_ROW})"
        )
    # The audit API reads the log of every user, and nothing else of theirs.
    op.execute(
        f"CREATE POLICY events_for_audit ON events FOR SELECT TO {_ROLE} USING ({_AUDITING})"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY events_for_audit ON events")
    for table in ("tasks", "events"):
        op.execute(f"DROP POLICY {table}_of_the_user ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    for grant in _GRANTS:
        op.execute(grant.replace("GRANT", "REVOKE", 1).replace(" TO ", " FROM ", 1))
