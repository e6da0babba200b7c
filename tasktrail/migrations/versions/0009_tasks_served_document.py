"""tasks.body and tasks.etag: each task's served JSON document and ETag, kept with its row.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

Reads send the stored document instead of building each task's JSON again. The columns are
added nullable, filled for the rows that exist, then made NOT NULL (on SQLite by batch mode,
which copies the table). The documents are computed in Python, by the projector's own
`task_document`, from the row's columns: the text must be the bytes the API serves, and only
that function writes them (SQL's JSON functions space and escape differently). This script is
loaded by Alembic, not imported by the package: it is the one place below the projections
layer that calls into it, and it does so because the data it writes must be the projector's.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from tasktrail.projections.document import task_document
from tasktrail.projections.snapshot import state_from_row
from tasktrail.schema import JsonDocument, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 2_000

# The tasks table as this revision finds it: the columns a document is made of.
_tasks = sa.table(
    "tasks",
    sa.column("id", sa.Uuid()),
    sa.column("user_id", sa.String()),
    sa.column("title", sa.String()),
    sa.column("description", sa.String()),
    sa.column("completed", sa.Boolean()),
    sa.column("due_at", UTCDateTime()),
    sa.column("priority", sa.SmallInteger()),
    sa.column("tags", JsonDocument),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
    sa.column("completed_at", UTCDateTime()),
    sa.column("deleted_at", UTCDateTime()),
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
            body, etag = task_document(state_from_row(row))
            documents.append({"task_id": row.id, "new_body": body, "new_etag": etag})
        conn.execute(write, documents)
        last = rows[-1].id
