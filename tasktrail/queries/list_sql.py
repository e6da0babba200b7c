"""The list's rules in SQL, declared once: which rows a list query selects, their order, and
where a later page resumes.

Both runs of the walk build their statements from here: `queries.tasks.list_tasks` on a
SQLAlchemy connection (SQLite and PostgreSQL) and `queries.hot_list.list_documents` on
PostgreSQL's async pool. Every value is a bind parameter: the text of a condition depends only on
the query's shape (`ListShape`: which filters are given, how many tags, the sort, where the page
resumes, first page or not) and on the engine, so a statement can be built and compiled once per
shape, and `values` supplies the parameters of each request.

The engines differ in one condition, the tags, which both take as one parameter, the JSON array
of the wanted tags: PostgreSQL asks whether `tags_folded` contains it (jsonb's `@>`); SQLite
asks, tag by tag, whether it is among `tags_folded`'s elements (`json_each`).

A search (`q`) is a LIKE on the folded title and description with `%`, `_` and the escape
character `/` escaped in the needle, so that they match themselves on both engines.

The same rules in Python are `list_query.matches` and `list_query.compare_positions`; tests hold
the two to the same answers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import KeyedColumnElement

from tasktrail.queries.list_query import ListTasks, Sort, SortField, StatusFilter
from tasktrail.schema import tasks

SORT_COLUMNS: dict[SortField, KeyedColumnElement[Any]] = {
    SortField.CREATED: tasks.c.created_at,
    SortField.UPDATED: tasks.c.updated_at,
    SortField.TITLE: tasks.c.title_folded,
    SortField.DUE: tasks.c.due_at,
    SortField.PRIORITY: tasks.c.priority,
}

# Where a page starts: at the beginning of the walk, after a task with a sort key, or (`due`
# only) after one of the tasks without a due date, which come last.
Resume = Literal["start", "after value", "after null"]

# LIKE's escape character in a search's pattern.
_ESCAPE = "/"


@dataclass(frozen=True, slots=True)
class ListShape:
    """What decides the statements' text; the values go in as parameters (`values`)."""

    status: StatusFilter
    sort: Sort
    searches: bool
    # How many tags are given: SQLite's statement has a condition for each.
    tags: int
    due_after: bool
    due_before: bool
    resume: Resume
    # No walk's snapshot given yet: the page takes the current seq as its snapshot.
    first_page: bool


def shape_of(query: ListTasks) -> ListShape:
    if query.after is None:
        resume: Resume = "start"
    else:
        resume = "after null" if query.after.value is None else "after value"
    return ListShape(
        status=query.status,
        sort=query.sort,
        searches=bool(query.q),
        tags=len(query.tags),
        due_after=query.due_after is not None,
        due_before=query.due_before is not None,
        resume=resume,
        first_page=query.snapshot_seq is None,
    )


def values(query: ListTasks) -> dict[str, Any]:
    """The parameters of the query's conditions, `user_id`, `limit` (one row more than the page
    shows, which tells whether another page follows) and, on a later page, `snapshot`."""
    parameters: dict[str, Any] = {"user_id": query.user_id, "limit": query.limit + 1}
    if query.q:
        parameters["pattern"] = f"%{_escaped(query.q.casefold())}%"
    if query.tags:
        parameters["tags"] = [tag.casefold() for tag in query.tags]
    if query.due_after is not None:
        parameters["due_after"] = query.due_after
    if query.due_before is not None:
        parameters["due_before"] = query.due_before
    if query.after is not None:
        parameters["after_id"] = uuid.UUID(query.after.task_id)
        parameters["after_value"] = query.after.value
    if query.snapshot_seq is not None:
        parameters["snapshot"] = query.snapshot_seq
    return parameters


def _escaped(needle: str) -> str:
    for special in (_ESCAPE, "%", "_"):  # the escape character first, or it would be doubled
        needle = needle.replace(special, _ESCAPE + special)
    return needle


def filters(shape: ListShape, dialect_name: str) -> list[ColumnElement[bool]]:
    """The rows of the user that the query selects, on the engine named."""
    conditions: list[ColumnElement[bool]] = [tasks.c.user_id == bindparam("user_id")]
    if shape.status is StatusFilter.DELETED:
        conditions.append(tasks.c.deleted_at.is_not(None))
    else:
        conditions.append(tasks.c.deleted_at.is_(None))
    if shape.status is StatusFilter.PENDING:
        conditions.append(tasks.c.completed.is_(False))
    elif shape.status is StatusFilter.COMPLETED:
        conditions.append(tasks.c.completed.is_(True))
    if shape.searches:
        pattern = bindparam("pattern", type_=String())
        conditions.append(
            or_(
                tasks.c.title_folded.like(pattern, escape=_ESCAPE),
                tasks.c.description_folded.like(pattern, escape=_ESCAPE),
            )
        )
    if shape.tags:
        conditions.extend(_has_tags(shape.tags, dialect_name))
    if shape.due_after:
        conditions.append(tasks.c.due_at >= bindparam("due_after", type_=tasks.c.due_at.type))
    if shape.due_before:
        conditions.append(tasks.c.due_at < bindparam("due_before", type_=tasks.c.due_at.type))
    return conditions


def _has_tags(count: int, dialect_name: str) -> list[ColumnElement[bool]]:
    """Every wanted tag (the `tags` parameter, a list of `count` folded tags) is the task's."""
    # Sent as a JSON array: jsonb on PostgreSQL, text on SQLite, as `tags_folded` is stored.
    wanted = bindparam("tags", type_=tasks.c.tags_folded.type)
    if dialect_name == "postgresql":
        # One jsonb containment for every tag, checked on the user's own rows that the user_id
        # index found.
        return [tasks.c.tags_folded.op("@>")(wanted)]
    # SQLite: one condition per tag, which looks for it among the task's. SQLite takes each tag
    # out of the parameter once per statement (its value does not depend on the row), so a row
    # costs what it would with a parameter per tag.
    conditions: list[ColumnElement[bool]] = []
    for index in range(count):
        had = func.json_each(tasks.c.tags_folded).table_valued("value")
        tag = func.json_extract(wanted, f"$[{index}]")
        conditions.append(exists(select(1).select_from(had).where(had.c.value == tag)))
    return conditions


def after(shape: ListShape) -> ColumnElement[bool]:
    """The rows that follow the task the page resumes after (ties broken by id, in the same
    direction), from the parameters `after_id` and, unless it had no due date, `after_value`."""
    column = SORT_COLUMNS[shape.sort.field]
    task_id = bindparam("after_id", type_=tasks.c.id.type)
    descending = shape.sort.descending
    id_follows = tasks.c.id < task_id if descending else tasks.c.id > task_id
    if shape.resume == "after null":  # only `due` has nulls: the last group, ordered by id
        return and_(column.is_(None), id_follows)
    # A row-value comparison, which both engines answer from the (user_id, key, id) index.
    pair = tuple_(column, tasks.c.id)
    cursor = tuple_(bindparam("after_value", type_=column.type), task_id)
    follows = pair < cursor if descending else pair > cursor
    if shape.sort.field is SortField.DUE:
        return or_(follows, column.is_(None))
    return follows


def walk_order_by(sort: Sort) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """The walk's order in SQL: the sort key, then the id in the same direction."""
    column = SORT_COLUMNS[sort.field]
    key = column.desc() if sort.descending else column.asc()
    if sort.field is SortField.DUE:
        key = key.nulls_last()  # tasks without a due date come last in both directions
    return key, tasks.c.id.desc() if sort.descending else tasks.c.id.asc()
