"""The service's role no longer chooses an event's commit order, nor reads other roles' sessions.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Two privileges of 0012 reached further than the service needs (PostgreSQL only).

INSERT on every column of `events`. Two of them place an event in the audit feed's commit-safe
order: `xact_id`, the writing transaction (0001's default `pg_current_xact_id()`), and
`position`, an identity column that `OVERRIDING SYSTEM VALUE` lets a statement write. An event
appended with a forged `xact_id` is chained like any other (`audit verify` passes it) and shows
in the user's history, yet it never reaches the audit search or the export (a huge id stays
above the horizon for good) or it sorts before what a tailing auditor has already read (a small
one): the log changed after all, by omission. The role now holds INSERT on every other column
only, so a statement naming either is refused, and the database fills both.

Column grants, not a BEFORE INSERT trigger that overwrites both: a grant costs nothing per
write, where a trigger runs for every event of every append; and a trigger binds the owner too,
so a restore of the log as the owner would renumber positions and transaction ids. Every writer
of the service already leaves both columns out: SQLAlchemy's insert of `events`
(events/store.py; commands/on_postgres.py compiles it without them) and `tasktrail_append`
(0010, 0013), which runs with its caller's rights (SECURITY INVOKER) and names neither. The
rebuild swaps `tasks` only (and copies its column grants); nothing re-grants INSERT on the whole
of `events`. A migration that adds a column to `events` grants INSERT on it too.

Membership in `pg_read_all_stats`, granted by 0012 so that /readyz could see how long another
role's transaction has held the audit feed back (pg_stat_activity hides the transaction start of
other roles' sessions). It also showed the service the text of every statement of every role, in
every database of the cluster. It is revoked here (0012 no longer grants it, and this downgrade
does not grant it back). /readyz asks instead `tasktrail_feed_horizon_held_seconds()`: a function
that runs with its owner's rights (the owner that migrates sees every session when it is a
superuser or in pg_read_all_stats, which it may be: it is no network-facing process, and owns
the data anyway; else it sees its own, which are the operator's commands and migrations)
and returns one number, how long the oldest transaction holding an id has been open. EXECUTE is
the service's role's only, not PUBLIC's; its search_path is fixed, so no object of another
schema stands in for the catalog's. The service takes the larger of it and what its own role
sees (queries/audit.py), which covers its own sessions when the owner cannot.

Why not a measure that needs no privilege, such as the age of the oldest committed event not yet
below the horizon: it stays at 0 while a transaction holds the horizon and no one writes, and it
would time events by the service's clock (`occurred_at`) rather than the database's.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Spelled out, not imported: a migration keeps meaning what it meant.
_ROLE = "tasktrail_service"
# Every column of `events` but `position` and `xact_id`, as this revision finds the table.
_APPENDED = (
    "user_id, seq, task_id, version, type, schema_version, data, data_hash, occurred_at, actor, "
    "request_id, prev_hash, hash"
)
_MEASURE = "tasktrail_feed_horizon_held_seconds()"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has neither roles nor privileges
    # Revoking the table's INSERT revokes any column's too: the column grants come after.
    op.execute(f"REVOKE INSERT ON events FROM {_ROLE}")
    op.execute(f"GRANT INSERT ({_APPENDED}) ON events TO {_ROLE}")
    op.execute(_sql("0015_tasktrail_feed_horizon_held_seconds.sql"))
    op.execute(f"REVOKE ALL ON FUNCTION {_MEASURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {_MEASURE} TO {_ROLE}")
    # An owner that may not revoke it (it did not grant it, and is no superuser) leaves the
    # membership, and says so: the rest of this revision stands without it. (Built from this
    # module's constants only.)
    op.execute(
        f"""
        DO $$
        BEGIN
            BEGIN
                IF EXISTS (
                    SELECT FROM pg_auth_members
                    WHERE roleid = 'pg_read_all_stats'::regrole AND member = '{_ROLE}'::regrole
                ) THEN
                    REVOKE pg_read_all_stats FROM {_ROLE};
                END IF;
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;
            END;
            -- Directly, or through another role (pg_monitor is in pg_read_all_stats).
            IF pg_has_role('{_ROLE}', 'pg_read_all_stats', 'MEMBER') THEN
                RAISE WARNING '{_ROLE} is still in pg_read_all_stats, and so reads the '
                    'statements of every role: as a superuser, take it out';
            END IF;
        END
        $$
        """  # noqa: S608
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION {_MEASURE}")
    op.execute(f"REVOKE INSERT ({_APPENDED}) ON events FROM {_ROLE}")
    op.execute(f"GRANT INSERT ON events TO {_ROLE}")


def _sql(name: str) -> str:
    # The versioned SQL files live with the PostgreSQL adapter (tasktrail/storage/postgres/sql/).
    return (Path(__file__).parents[2] / "storage" / "postgres" / "sql" / name).read_text(
        encoding="utf-8"
    )
