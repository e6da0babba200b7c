"""The list route: the query language of GET /api/{user_id}/tasks, its cursors and paging."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import Engine
from starlette.responses import Response

from tasktrail.api.blocking import in_thread
from tasktrail.api.contract.openapi import answered, problems
from tasktrail.api.contract.representation import next_page_link, task_list_response
from tasktrail.api.contract.schemas import TAG_MAX, TaskOut
from tasktrail.api.routes.compiled import CompiledRoute
from tasktrail.api.routes.query import (
    AS_OF_DESCRIPTION,
    MAX_REPEATED_VALUES,
    NO_NUL_SCHEMA,
    TIMESTAMP_SCHEMA,
    OwnUser,
    query_problem,
    query_text,
    query_timestamp,
)
from tasktrail.api.services import services
from tasktrail.database import read_connection
from tasktrail.queries.as_of import list_as_of
from tasktrail.queries.cursor import Cursor, decode_cursor, encode_cursor, fingerprint
from tasktrail.queries.hot_list import list_documents
from tasktrail.queries.list_query import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    KeysetPosition,
    ListTasks,
    Sort,
    SortField,
    StatusFilter,
)
from tasktrail.queries.tasks import DocumentPage, list_tasks

router = APIRouter(tags=["tasks"], route_class=CompiledRoute)

TASKS = "/api/{user_id}/tasks"

_SORTS = ", ".join(f"{sign}{name}" for name in SortField for sign in ("", "-"))
_Q_MAX = 200  # the longest search text


@router.get(
    TASKS,
    response_model=list[TaskOut],
    summary="List tasks",
    description='A page of the user\'s tasks. `Link: <...>; rel="next"` points to the next page '
    "while more remain; `X-Total-Count` counts every task that matches. A cursor is bound to the "
    "parameters it came with: only `limit` may change between pages. A walk keeps the order it "
    "began with: a task edited between pages keeps its place (its body is current), so a task "
    "that exists and matches throughout is seen exactly once; a task deleted meanwhile is gone, "
    "one created meanwhile appears if it sorts after the cursor.",
    responses={**answered(200, "Link", "X-Total-Count"), **problems(401, 403, 422, 503)},
)
async def list_user_tasks(
    request: Request,
    user: OwnUser,
    status: Annotated[
        StatusFilter,
        Query(description="all (default: every live task), pending, completed, or deleted"),
    ] = StatusFilter.ALL,
    sort: Annotated[
        str,
        Query(
            description=f"one of {_SORTS}; ties are broken by id in the same direction; "
            "tasks without due_at come last for due and -due",
            pattern=rf"^-?({'|'.join(SortField)})$",
        ),
    ] = "-created",
    q: Annotated[
        str | None,
        Query(
            max_length=_Q_MAX,
            description="case-insensitive text in the title or description",
            json_schema_extra=NO_NUL_SCHEMA,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        Query(
            description="repeatable; a task must carry every tag given (case-insensitive)",
            json_schema_extra={
                "maxItems": MAX_REPEATED_VALUES,
                "items": {"type": "string", "minLength": 1, "maxLength": TAG_MAX, **NO_NUL_SCHEMA},
            },
        ),
    ] = None,
    due_before: Annotated[
        str | None,
        Query(
            description="RFC 3339 timestamp; due_at < due_before",
            json_schema_extra=TIMESTAMP_SCHEMA,
        ),
    ] = None,
    due_after: Annotated[
        str | None,
        Query(
            description="RFC 3339 timestamp; due_at >= due_after",
            json_schema_extra=TIMESTAMP_SCHEMA,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")] = PAGE_SIZE,
    cursor: Annotated[str | None, Query(description="opaque; take it from the Link header")] = None,
    as_of: Annotated[
        str | None, Query(description=AS_OF_DESCRIPTION, json_schema_extra=TIMESTAMP_SCHEMA)
    ] = None,
) -> Response:
    parsed_sort = Sort.parse(sort)
    tags = tuple(query_text("tag", value, max_length=TAG_MAX) for value in tag or ())
    bound_to = fingerprint(
        request.url.path,
        {name: request.query_params.getlist(name) for name in request.query_params},
    )
    query = ListTasks(
        user_id=user.user_id,
        status=status,
        sort=parsed_sort,
        q=None if q is None else query_text("q", q, allow_empty=True),
        tags=tags,
        due_before=query_timestamp("due_before", due_before),
        due_after=query_timestamp("due_after", due_after),
        limit=limit,
        **_continuing(cursor, bound_to, parsed_sort, services(request).cursor_key),
    )
    instant = query_timestamp("as_of", as_of)
    page = await _page(request, query, instant)
    headers = {"X-Total-Count": str(page.total)}
    if page.next_position is not None:
        token = encode_cursor(
            Cursor(page.next_position.to_json(), page.snapshot_seq),
            bound_to,
            services(request).cursor_key,
        )
        headers["Link"] = next_page_link(request, cursor=token)
    return task_list_response(page.documents, headers)


async def _page(request: Request, query: ListTasks, instant: datetime | None) -> DocumentPage:
    """The page: on PostgreSQL, the live list in one round trip on the event loop
    (queries/hot_list.py); the rest (as_of, a walk with changed tasks, SQLite) in a thread."""
    pool = services(request).pool
    if pool is not None and instant is None:
        async with pool.connection() as conn:
            page = await list_documents(conn, query)
        if page is not None:
            return page
    return await in_thread(request, _read_page, services(request).engine, query, instant)


def _read_page(engine: Engine, query: ListTasks, instant: datetime | None) -> DocumentPage:
    with read_connection(engine) as conn:
        return list_tasks(conn, query) if instant is None else list_as_of(conn, query, instant)


def _continuing(cursor: str | None, bound_to: str, sort: Sort, key: bytes) -> dict[str, Any]:
    """Where the walk stands and its snapshot, from the cursor; nothing on a first page."""
    if cursor is None:
        return {}
    try:
        decoded = decode_cursor(cursor, bound_to, key)
        position = KeysetPosition.from_json(sort, decoded.key)
    except ValueError as error:  # InvalidCursor is a ValueError too
        raise query_problem("cursor", str(error)) from None
    return {"after": position, "snapshot_seq": decoded.snapshot_seq}
