"""The audit API: auditors read the log and check its chains. Nothing here writes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

import anyio.to_thread
import orjson
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy import Engine
from starlette.responses import Response, StreamingResponse

from tasktrail.api.auth.tokens import is_valid_user_id
from tasktrail.api.blocking import in_thread
from tasktrail.api.contract.openapi import problems
from tasktrail.api.contract.problems import Problem
from tasktrail.api.contract.representation import (
    event_body,
    events_response,
    json_response,
    next_page_link,
)
from tasktrail.api.contract.schemas import EventOut, VerifyOut
from tasktrail.api.routes.compiled import CompiledRoute
from tasktrail.api.routes.deps import Auditor, EngineDep
from tasktrail.api.routes.query import (
    MAX_POSITION,
    TIMESTAMP_SCHEMA,
    OnlyDeclaredParameters,
    query_problem,
    query_text,
    query_timestamp,
)
from tasktrail.database import read_connection, snapshot_connection
from tasktrail.domain.chain import ChainReport, RecordedHead
from tasktrail.domain.events import Event, EventType
from tasktrail.queries.audit import (
    AuditFilter,
    AuditPage,
    UnknownPosition,
    audit_export,
    audit_page,
    verify_user,
)
from tasktrail.queries.list_query import MAX_PAGE_SIZE, PAGE_SIZE
from tasktrail.schema import USER_ID_LENGTH

router = APIRouter(tags=["audit"], route_class=CompiledRoute)


@router.get(
    "/api/audit/users/{user_id}/verify",
    response_model=VerifyOut,
    summary="Check a user's hash chain",
    description="Recomputes every data_hash and hash of the user's events from the stored rows, "
    "checks seq has no gap and that the chain ends at the head recorded in user_streams. With "
    "`expected_head=SEQ:HASH`, a head recorded earlier, the chain must still hold that event "
    "with that hash: a chain rewritten consistently from end to end is caught there.",
    responses=problems(401, 403, 422, 503),
)
async def verify_chain_of_user(
    engine: EngineDep,
    _: Auditor,
    __: OnlyDeclaredParameters,
    user_id: str,
    expected_head: Annotated[
        str | None, Query(description="SEQ:HASH, a head recorded earlier outside the database")
    ] = None,
) -> Response:
    if not is_valid_user_id(user_id):
        # No chain can belong to it; and text with a NUL byte cannot even be sent to PostgreSQL.
        raise Problem(
            422,
            f"Fix the path: the user id is 1 to {USER_ID_LENGTH} of A-Z a-z 0-9 . _ - @ :.",
            errors=[{"loc": ["path", "user_id"], "msg": "not a user id", "type": "value_error"}],
        )
    expected = None
    if expected_head is not None:
        try:
            expected = RecordedHead.parse(expected_head)
        except ValueError as error:
            raise query_problem("expected_head", str(error)) from None
    report = await anyio.to_thread.run_sync(_verify, engine, user_id, expected)
    return json_response(
        {
            "user_id": user_id,
            "events": report.events,
            "ok": report.ok,
            "head": report.head,
            "first_bad_seq": report.first_bad_seq,
            "reason": report.reason,
        }
    )


def _verify(engine: Engine, user_id: str, expected: RecordedHead | None) -> ChainReport:
    with snapshot_connection(engine) as conn:  # the chain and its recorded head, together
        return verify_user(conn, user_id, expected)


NDJSON = "application/x-ndjson"


@router.get(
    "/api/audit/events",
    response_model=list[EventOut],
    summary="Search the events of all users, in commit-safe order",
    description="Events as written, in commit-safe order: on SQLite by position; on PostgreSQL "
    "by (the writing transaction's id, position), handing out only events whose transaction is "
    "older than the oldest one still running, so that a reader following `after` never skips an "
    "event that committed late. `after=P` continues after event P in that order. With "
    "`Accept: application/x-ndjson` the whole filtered history streams as NDJSON, without a "
    "limit, in constant memory.",
    responses={
        **problems(401, 403, 422, 503),
        200: {"content": {"application/json": {}, NDJSON: {"schema": {"type": "string"}}}},
    },
)
async def search_events(
    request: Request,
    engine: EngineDep,
    _: Auditor,
    __: OnlyDeclaredParameters,
    user_id: Annotated[str | None, Query(description="only this user's events")] = None,
    task_id: Annotated[str | None, Query(description="only this task's events")] = None,
    type: Annotated[
        list[EventType] | None, Query(description="repeatable: only events of these types")
    ] = None,
    since: Annotated[
        str | None,
        Query(
            description="occurred_at at or after this instant", json_schema_extra=TIMESTAMP_SCHEMA
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="occurred_at before this instant", json_schema_extra=TIMESTAMP_SCHEMA),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_POSITION, description="a position: continue after it")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size (JSON only)")
    ] = PAGE_SIZE,
    accept: Annotated[str | None, Header(description=f"{NDJSON} streams the whole history")] = None,
) -> Response:
    if task_id is not None:
        try:
            task_id = str(uuid.UUID(task_id))
        except ValueError:
            raise query_problem("task_id", "it must be a task id (a UUID)") from None
    search = AuditFilter(
        user_id=None
        if user_id is None
        else query_text("user_id", user_id, max_length=USER_ID_LENGTH),
        task_id=task_id,
        types=tuple(kind.value for kind in type or ()),
        since=query_timestamp("since", since),
        until=query_timestamp("until", until),
    )
    if after == 0:
        after = None  # before the first event: from the start, as the user feed reads it
    if accept is not None and NDJSON in accept:
        return await anyio.to_thread.run_sync(_export, engine, search, after)
    try:
        page = await in_thread(request, _page, engine, search, after, limit)
    except UnknownPosition as error:
        raise query_problem("after", str(error)) from None
    headers = {}
    if page.has_more:
        headers["Link"] = next_page_link(request, after=page.events[-1].position, limit=limit)
    return events_response(page.events, headers)


def _page(engine: Engine, search: AuditFilter, after: int | None, limit: int) -> AuditPage:
    with read_connection(engine) as conn:
        return audit_page(conn, search, after=after, limit=limit)


def _export(engine: Engine, search: AuditFilter, after: int | None) -> Response:
    """The first event is read here, in a worker thread, so that a bad `after` is a problem;
    the rest is read as the response streams (Starlette iterates it in worker threads)."""
    events = audit_export(engine, search, after=after)
    try:
        first = next(events, None)  # fail here, as a problem, if after names no event
    except UnknownPosition as error:
        raise query_problem("after", str(error)) from None

    def lines() -> Iterator[bytes]:
        if first is None:
            return
        chunk = [_line(first)]
        for event in events:
            chunk.append(_line(event))
            if len(chunk) == 1000:
                yield b"".join(chunk)
                chunk.clear()
        yield b"".join(chunk)

    return StreamingResponse(lines(), media_type=NDJSON)


def _line(event: Event) -> bytes:
    return orjson.dumps(event_body(event), option=orjson.OPT_SORT_KEYS) + b"\n"
