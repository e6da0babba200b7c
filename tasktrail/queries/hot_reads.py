"""The hot reads on PostgreSQL's async pool: the same queries as `queries.tasks`, run natively.

`queries.tasks` holds the read model's queries for both engines, on a SQLAlchemy connection.
The single-task read is the most frequent request a frontend makes, so on PostgreSQL it runs on
the event loop through psycopg (tasktrail/pg_pool.py) with the statement compiled once; the
answer is the stored document, so nothing is built per request.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select

from tasktrail.pg_pool import AsyncConnection, compile_statement, in_scope
from tasktrail.projections.document import TaskDocument
from tasktrail.row_security import DatabaseScope
from tasktrail.schema import tasks

_TASK_DOCUMENT = compile_statement(
    select(tasks.c.body, tasks.c.etag).where(
        tasks.c.id == bindparam("task_id"),
        tasks.c.user_id == bindparam("user_id"),
        tasks.c.deleted_at.is_(None),
    )
)


async def get_task_document(
    conn: AsyncConnection, user_id: str, task_id: str
) -> TaskDocument | None:
    """`queries.tasks.get_task` on the async pool: one live task's document and ETag, or None
    when it is missing, deleted, or someone else's."""
    async with in_scope(conn, DatabaseScope(user_id=user_id)):
        cursor = await conn.execute(
            _TASK_DOCUMENT.sql,
            _TASK_DOCUMENT.params({"task_id": uuid.UUID(task_id), "user_id": user_id}),
        )
    row = await cursor.fetchone()
    return None if row is None else TaskDocument(row[0], row[1])
