"""The list on PostgreSQL's async pool: `queries.tasks.list_tasks`, in one round trip.

The walk is the one `queries.tasks` describes; this module runs its usual case natively, so a
list costs no thread hop and one statement instead of four:

- the statements take their values as parameters and are compiled once per shape of query
  (which filters are given, the sort, first page or not), never per request: compiling a
  list's statements cost about 600 µs, more than running them;
- the page, the count and the user's seq (the walk's snapshot) come from one statement, so
  they see one snapshot. On a first page no task can then be newer than the walk's snapshot,
  so the page needs no `last_seq` condition and no changed task can need merging;
- on a later page, a task changed since the walk's snapshot must take its place as of the
  snapshot, folded from the log. That is rare (the user edited while walking) and is
  `list_tasks`'s job: `list_documents` answers None, and the caller runs `list_tasks`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by

from tasktrail.pg_pool import (
    DIALECT,
    AsyncConnection,
    CompiledStatement,
    compile_statement,
    in_scope,
)
from tasktrail.queries.list_query import ListTasks, Sort, SortField, StatusFilter
from tasktrail.queries.tasks import SORT_COLUMNS, DocumentPage, as_read, placer, walk_order_by
from tasktrail.row_security import DatabaseScope
from tasktrail.schema import tasks, user_streams

# Where a later page resumes: after a task with a sort key, or (`due` only) after one of the
# tasks without a due date, which come last.
_Resume = Literal["start", "after value", "after null"]

# LIKE's escape character, as SQLAlchemy's `contains(autoescape=True)` uses it in list_tasks.
_ESCAPE = "/"


@dataclass(frozen=True, slots=True)
class _Shape:
    """What decides the statements' text; the values go in as parameters."""

    status: StatusFilter
    sort: Sort
    searches: bool
    tagged: bool
    due_after: bool
    due_before: bool
    resume: _Resume
    first_page: bool


async def list_documents(conn: AsyncConnection, query: ListTasks) -> DocumentPage | None:
    """A page of the user's tasks, as `list_tasks` answers it; None when a task changed since
    the walk's snapshot, which only `list_tasks` places."""
    statement = _statement(_shape_of(query))
    async with in_scope(conn, DatabaseScope(user_id=query.user_id)):
        cursor = await conn.execute(statement.sql, statement.params(_values(query)))
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


def _shape_of(query: ListTasks) -> _Shape:
    if query.after is None:
        resume: _Resume = "start"
    else:
        resume = "after null" if query.after.value is None else "after value"
    return _Shape(
        status=query.status,
        sort=query.sort,
        searches=bool(query.q),
        tagged=bool(query.tags),
        due_after=query.due_after is not None,
        due_before=query.due_before is not None,
        resume=resume,
        first_page=query.snapshot_seq is None,
    )


def _values(query: ListTasks) -> dict[str, Any]:
    values: dict[str, Any] = {
        "user_id": query.user_id,
        "limit": query.limit + 1,
        "shown": query.limit,
    }
    if query.q:
        values["pattern"] = f"%{_escaped(query.q.casefold())}%"
    if query.tags:
        # One containment for every tag: `@> ["a", "b"]` holds when each is there.
        values["tags"] = Jsonb([tag.casefold() for tag in query.tags])
    if query.due_after is not None:
        values["due_after"] = query.due_after
    if query.due_before is not None:
        values["due_before"] = query.due_before
    if query.after is not None:
        values["after_id"] = uuid.UUID(query.after.task_id)
        values["after_value"] = query.after.value
    if query.snapshot_seq is not None:
        values["snapshot"] = query.snapshot_seq
    return values


def _escaped(needle: str) -> str:
    for special in (_ESCAPE, "%", "_"):
        needle = needle.replace(special, _ESCAPE + special)
    return needle


@lru_cache(maxsize=256)
def _statement(shape: _Shape) -> CompiledStatement:
    """The statement of one shape of query, compiled on its first request.

    One row: the page's documents joined by the database (no task becomes a Python object), how
    many rows the page read, the last shown task's key and id (where the next page starts), and
    the facts. The facts are uncorrelated subqueries, which PostgreSQL runs once (InitPlans), and
    one statement sees one snapshot: the count, the user's seq and the page agree.
    """
    filters = _filters(shape)
    column = SORT_COLUMNS[shape.sort.field]
    order = walk_order_by(shape.sort)
    rows = select(
        as_read(column).label("key"),
        as_read(tasks.c.id).label("id"),
        tasks.c.body,
        func.row_number().over(order_by=order).label("n"),
    ).where(*filters)
    if shape.resume != "start":
        rows = rows.where(_after(shape))
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
    total = select(func.count()).select_from(tasks).where(*filters).scalar_subquery()
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
        changed = exists().where(*filters, tasks.c.last_seq > snapshot)
    return compile_statement(select(documents, rows_read, last_key, last_id, total, head, changed))


def _filters(shape: _Shape) -> list[ColumnElement[bool]]:
    """`queries.tasks._filters` with parameters for values (PostgreSQL only)."""
    filters: list[ColumnElement[bool]] = [tasks.c.user_id == bindparam("user_id")]
    if shape.status is StatusFilter.DELETED:
        filters.append(tasks.c.deleted_at.is_not(None))
    else:
        filters.append(tasks.c.deleted_at.is_(None))
    if shape.status is StatusFilter.PENDING:
        filters.append(tasks.c.completed.is_(False))
    elif shape.status is StatusFilter.COMPLETED:
        filters.append(tasks.c.completed.is_(True))
    if shape.searches:
        pattern = bindparam("pattern", type_=String())
        filters.append(
            or_(
                tasks.c.title_folded.like(pattern, escape=_ESCAPE),
                tasks.c.description_folded.like(pattern, escape=_ESCAPE),
            )
        )
    if shape.tagged:
        filters.append(tasks.c.tags_folded.op("@>")(bindparam("tags", type_=JSONB)))
    if shape.due_after:
        filters.append(tasks.c.due_at >= bindparam("due_after", type_=tasks.c.due_at.type))
    if shape.due_before:
        filters.append(tasks.c.due_at < bindparam("due_before", type_=tasks.c.due_at.type))
    return filters


def _after(shape: _Shape) -> ColumnElement[bool]:
    """`queries.tasks._after` with parameters: the rows that follow the cursor's task."""
    column = SORT_COLUMNS[shape.sort.field]
    task_id = bindparam("after_id", type_=tasks.c.id.type)
    descending = shape.sort.descending
    id_follows = tasks.c.id < task_id if descending else tasks.c.id > task_id
    if shape.resume == "after null":
        return and_(column.is_(None), id_follows)
    pair = tuple_(column, tasks.c.id)
    cursor = tuple_(bindparam("after_value", type_=column.type), task_id)
    follows = pair < cursor if descending else pair > cursor
    if shape.sort.field is SortField.DUE:
        return or_(follows, column.is_(None))
    return follows
