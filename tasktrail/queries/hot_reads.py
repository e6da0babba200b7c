"""The hot reads on PostgreSQL's async pool: the same queries as `queries.tasks`, run natively.

`queries.tasks` holds the read model's queries for both engines, on a SQLAlchemy connection.
The single-task read is the most frequent request a frontend makes, so on PostgreSQL it runs on
the event loop through psycopg (tasktrail/pg_pool.py) with the statement compiled once; the
answer is the stored document, so nothing is built per request.
"""

from __future__ import annotations

import uuid

from tasktrail.domain.document import TaskDocument
from tasktrail.pg_pool import AsyncConnection

# The function (migration 0013) sets the user's row-security scope itself and reads the row:
# one statement, where the scope and a SELECT in a pipeline cost the client more than the read.
# It reads what `queries.tasks.get_task` reads: the live row of this id and user.
_TASK_DOCUMENT = "SELECT body, etag FROM tasktrail_task_document(%s, %s)"


async def get_task_document(
    conn: AsyncConnection, user_id: str, task_id: str
) -> TaskDocument | None:
    """`queries.tasks.get_task` on the async pool: one live task's document and ETag, or None
    when it is missing, deleted, or someone else's."""
    cursor = await conn.execute(_TASK_DOCUMENT, (user_id, uuid.UUID(task_id)))
    row = await cursor.fetchone()
    return None if row is None else TaskDocument(row[0], row[1])
