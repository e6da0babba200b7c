"""The hot calls set their own row-security scope: one statement each, no pipeline.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

Row security (0012) needs each transaction to name its user first. The service did that by
sending `set_config` and the statement together in a psycopg pipeline: one round trip, but the
pipeline's own work in Python cost more than the read it carried (a single-task read took 314 to
330 us of client CPU that way, 175 to 211 us as one call of a function that sets the scope
itself: `bench`-style measurement in docs/decisions.md).

So the two calls made on every request set the scope inside, as their first statement:
- `tasktrail_task_document(user_id, task_id)`: the single-task read, the most frequent request.
- `tasktrail_append(...)` (0010), unchanged but for that first statement.

`set_config(..., true)` lasts to the end of the transaction, which for a call in autocommit is
the call itself. Both run with the caller's rights (SECURITY INVOKER), so row security still
applies to everything they read and write: a function can only name the scope its caller could
name with `set_config` directly.

The functions' texts are in `storage/postgres/sql/0013_*.sql`, which never change once released.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_sql("0013_tasktrail_task_document.sql"))
    op.execute(_sql("0013_tasktrail_append.sql"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_sql("0010_tasktrail_append.sql"))  # the function as it was before
    op.execute("DROP FUNCTION tasktrail_task_document(text, uuid)")


def _sql(name: str) -> str:
    # The versioned SQL files live with the PostgreSQL adapter (tasktrail/storage/postgres/sql/).
    return (Path(__file__).parents[2] / "storage" / "postgres" / "sql" / name).read_text(
        encoding="utf-8"
    )
