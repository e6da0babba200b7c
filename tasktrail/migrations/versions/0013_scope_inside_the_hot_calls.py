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
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TASK_DOCUMENT = """
CREATE FUNCTION tasktrail_task_document(p_user_id text, p_task_id uuid)
RETURNS TABLE (body text, etag text)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM set_config('tasktrail.user_id', p_user_id, true);
    RETURN QUERY
        SELECT t.body, t.etag FROM tasks AS t
        WHERE t.id = p_task_id AND t.user_id = p_user_id AND t.deleted_at IS NULL;
END;
$$
"""

# tasktrail_append's first statement in 0010, and what now goes before it.
_FIRST_STATEMENT = "BEGIN\n    IF p_key IS NOT NULL THEN"
_SCOPE_FIRST = (
    "BEGIN\n"
    "    -- The user's scope (row security, 0012) for everything this call reads and writes.\n"
    "    PERFORM set_config('tasktrail.user_id', p_user_id, true);\n"
    "    IF p_key IS NOT NULL THEN"
)


def _revision_0010() -> ModuleType:
    """0010's text of tasktrail_append: the function as it was, to start from and go back to
    (a migration's text never changes once released)."""
    path = Path(__file__).with_name("0010_append_in_one_round_trip.py")
    spec = importlib.util.spec_from_file_location("tasktrail_revision_0010", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _append_of_0010() -> str:
    create: str = _revision_0010()._CREATE
    return create.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_TASK_DOCUMENT)
    append = _append_of_0010()
    if append.count(_FIRST_STATEMENT) != 1:
        raise RuntimeError("tasktrail_append of 0010 does not start as expected")
    op.execute(append.replace(_FIRST_STATEMENT, _SCOPE_FIRST, 1))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_append_of_0010())
    op.execute("DROP FUNCTION tasktrail_task_document(text, uuid)")
