"""tasks.body and tasks.etag: each task's served JSON document and ETag, kept with its row.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

Reads send the stored document instead of building each task's JSON again. The columns are
added nullable, filled for the rows that exist, then made NOT NULL (on SQLite by batch mode,
which copies the table). The documents are computed in Python from the row's columns: the
text must be the bytes the API serves (SQL's JSON functions space and escape differently).

This revision writes them with its own copy of the document as the projector wrote it at this
revision (`_document`), not by importing the projector: the package moves on (a field added to
the task changes its document and its row), and a migration must go on meaning what it meant,
for a database upgraded from any revision before it. tests/test_document_migration.py holds this
copy to the projector's `task_document` for every task shape it makes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 2_000


class _Moment(sa.TypeDecorator[datetime]):
    """The timestamps as this revision finds them: `timestamptz` on PostgreSQL, the UTC wall time
    as text on SQLite; read as aware UTC datetimes."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# The tasks table as this revision finds it: the columns a document is made of.
_tasks = sa.table(
    "tasks",
    sa.column("id", sa.Uuid()),
    sa.column("user_id", sa.String()),
    sa.column("title", sa.String()),
    sa.column("description", sa.String()),
    sa.column("completed", sa.Boolean()),
    sa.column("due_at", _Moment()),
    sa.column("priority", sa.SmallInteger()),
    sa.column("tags", _json),
    sa.column("created_at", _Moment()),
    sa.column("updated_at", _Moment()),
    sa.column("completed_at", _Moment()),
    sa.column("deleted_at", _Moment()),
    sa.column("version", sa.Integer()),
    sa.column("last_seq", sa.BigInteger()),
    sa.column("body", sa.Text()),
    sa.column("etag", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch.add_column(sa.Column("etag", sa.Text(), nullable=True))
    _fill_documents(op.get_bind())
    with op.batch_alter_table("tasks") as batch:
        batch.alter_column("body", existing_type=sa.Text(), nullable=False)
        batch.alter_column("etag", existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("etag")
        batch.drop_column("body")


def _fill_documents(conn: sa.Connection) -> None:
    """Every row's document, in batches by id (memory stays flat however many tasks)."""
    read = (
        sa.select(*(column for column in _tasks.c if column.name not in ("body", "etag")))
        .order_by(_tasks.c.id)
        .limit(_BATCH)
    )
    write = (
        sa.update(_tasks)
        .where(_tasks.c.id == sa.bindparam("task_id"))
        .values(body=sa.bindparam("new_body"), etag=sa.bindparam("new_etag"))
    )
    last: Any = None
    while True:
        batch = read if last is None else read.where(_tasks.c.id > last)
        rows = conn.execute(batch).all()
        if not rows:
            return
        documents = []
        for row in rows:
            body, etag = _document(row)
            documents.append({"task_id": row.id, "new_body": body, "new_etag": etag})
        conn.execute(write, documents)
        last = rows[-1].id


def _document(row: Any) -> tuple[str, str]:
    """A task's JSON document and ETag as the API served them at this revision: its fields in
    the contract's order, compact, non-ASCII raw, every instant RFC 3339 in UTC with six
    fractional digits and `Z`."""
    document = {
        "id": str(row.id),
        "user_id": row.user_id,
        "title": row.title,
        "description": row.description,
        "completed": row.completed,
        "status": "completed" if row.completed else "pending",
        "due_at": _instant(row.due_at),
        "priority": row.priority,
        "tags": list(row.tags),
        "created_at": _instant(row.created_at),
        "updated_at": _instant(row.updated_at),
        "completed_at": _instant(row.completed_at),
        "version": row.version,
    }
    return orjson.dumps(document).decode(), f'"{row.version}"'


def _instant(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z"
