"""The list on PostgreSQL's async pool: `queries.tasks.list_tasks`, in one round trip.

The walk is the one `queries.tasks` describes; this module runs its usual case natively, so a
list costs no thread hop and one statement instead of four:

- the statement is built from `queries.list_sql`'s conditions and order, those `list_tasks`
  runs, with every value a parameter, and compiled once per shape of query (which filters are
  given, the sort, first page or not), never per request: compiling a list's statements cost
  about 600 µs, more than running them;
- the page, the count and the user's seq (the walk's snapshot) come from one statement, so
  they see one snapshot. On a first page no task can then be newer than the walk's snapshot,
  so the page needs no `last_seq` condition and no changed task can need merging;
- on a later page, a task changed since the walk's snapshot must take its place as of the
  snapshot, folded from the log. That is rare (the user edited while walking) and is
  `list_tasks`'s job: `list_documents` answers None, and the caller runs `list_tasks`.
"""

from __future__ import annotations

from functools import lru_cache

from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    exists,
    false,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from tasktrail.pg_pool import (
    DIALECT,
    AsyncConnection,
    CompiledStatement,
    compile_statement,
    in_scope,
)
from tasktrail.queries.list_query import ListTasks
from tasktrail.queries.list_sql import (
    SORT_COLUMNS,
    ListShape,
    after,
    filters,
    shape_of,
    values,
    walk_order_by,
)
from tasktrail.queries.tasks import DocumentPage, as_read, placer
from tasktrail.row_security import DatabaseScope
from tasktrail.schema import tasks, user_streams


async def list_documents(conn: AsyncConnection, query: ListTasks) -> DocumentPage | None:
    """A page of the user's tasks, as `list_tasks` answers it; None when a task changed since
    the walk's snapshot, which only `list_tasks` places."""
    statement = _statement(shape_of(query))
    parameters = values(query)
    parameters["shown"] = query.limit
    if query.tags:
        # What SQLAlchemy's JSONB type does to the parameter, which a compiled statement skips:
        # psycopg would send a list as an array.
        parameters["tags"] = Jsonb(parameters["tags"])
    async with in_scope(conn, DatabaseScope(user_id=query.user_id)):
        cursor = await conn.execute(statement.sql, statement.params(parameters))
    (documents, rows_read, last_key, last_id, total, head, changed), *_ = await cursor.fetchall()
    if changed:
        return None
    more = rows_read > query.limit  # one row more than asked tells that another page follows
    ends_page = placer(DIALECT, SORT_COLUMNS[query.sort.field])((last_key, last_id))
    return DocumentPage(
        documents or "",
        int(total),
        next_position=ends_page if more else None,
        snapshot_seq=query.snapshot_seq if query.snapshot_seq is not None else int(head),
    )


@lru_cache(maxsize=256)
def _statement(shape: ListShape) -> CompiledStatement:
    """The statement of one shape of query, compiled on its first request.

    One row: the page's documents joined by the database (no task becomes a Python object), how
    many rows the page read, the last shown task's key and id (where the next page starts), and
    the facts. The facts are uncorrelated subqueries, which PostgreSQL runs once (InitPlans), and
    one statement sees one snapshot: the count, the user's seq and the page agree.
    """
    conditions = filters(shape, DIALECT.name)
    column = SORT_COLUMNS[shape.sort.field]
    order = walk_order_by(shape.sort)
    rows = select(
        as_read(column).label("key"),
        as_read(tasks.c.id).label("id"),
        tasks.c.body,
        func.row_number().over(order_by=order).label("n"),
    ).where(*conditions)
    if shape.resume != "start":
        rows = rows.where(after(shape))
    page = rows.order_by(*order).limit(bindparam("limit")).cte("page")
    shown = bindparam("shown", type_=Integer())
    documents = (
        select(func.string_agg(page.c.body, aggregate_order_by(literal_column("','"), page.c.n)))
        .where(page.c.n <= shown)
        .scalar_subquery()
    )
    rows_read = select(func.count()).select_from(page).scalar_subquery()
    last_key = select(page.c.key).where(page.c.n == shown).scalar_subquery()
    last_id = select(page.c.id).where(page.c.n == shown).scalar_subquery()
    total = select(func.count()).select_from(tasks).where(*conditions).scalar_subquery()
    head = func.coalesce(
        select(user_streams.c.last_seq)
        .where(user_streams.c.user_id == bindparam("user_id"))
        .scalar_subquery(),
        0,
    )
    if shape.first_page:
        # Nothing can be newer than the walk's snapshot: it is this statement's own seq.
        changed: ColumnElement[bool] = false()
    else:
        # When no task is newer than the walk's snapshot, every task's current key is its key
        # in the walk, so the page itself needs no `last_seq` condition.
        snapshot = bindparam("snapshot", type_=tasks.c.last_seq.type)
        changed = exists().where(*conditions, tasks.c.last_seq > snapshot)
    return compile_statement(select(documents, rows_read, last_key, last_id, total, head, changed))
