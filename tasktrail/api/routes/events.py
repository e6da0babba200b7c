"""The event routes: a task's history and the user's change feed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from sqlalchemy import Engine
from starlette.responses import Response

from tasktrail.api.auth.tokens import Principal
from tasktrail.api.blocking import in_thread
from tasktrail.api.contract.openapi import answered, problems
from tasktrail.api.contract.problems import Problem, task_not_found
from tasktrail.api.contract.representation import events_response, next_page_link
from tasktrail.api.contract.schemas import EventOut
from tasktrail.api.http.media_types import EVENT_STREAM, wants_event_stream
from tasktrail.api.routes.compiled import CompiledRoute
from tasktrail.api.routes.deps import StreamAuthenticated, require_own
from tasktrail.api.routes.event_stream import event_stream_response
from tasktrail.api.routes.query import (
    MAX_POSITION,
    OwnTaskDep,
    declared_query_parameters,
    refuse_unknown_parameters,
)
from tasktrail.api.services import services
from tasktrail.database import read_connection
from tasktrail.domain.events import Event
from tasktrail.queries.feed import FeedPage, user_feed
from tasktrail.queries.history import task_history
from tasktrail.queries.list_query import MAX_PAGE_SIZE, PAGE_SIZE
from tasktrail.settings import Settings

router = APIRouter(tags=["events"], route_class=CompiledRoute)


@router.get(
    "/api/{user_id}/tasks/{task_id}/events",
    response_model=list[EventOut],
    summary="A task's whole history, oldest first, also after deletion",
    responses=problems(401, 403, 404, 422, 503),
)
async def read_task_history(request: Request, own: OwnTaskDep) -> Response:
    engine = services(request).engine
    history = await in_thread(request, _history, engine, own.user.user_id, own.task_id)
    if not history:
        raise task_not_found(own.task_id)
    return events_response(history)


def _history(engine: Engine, user_id: str, task_id: str) -> list[Event]:
    with read_connection(engine) as conn:
        return task_history(conn, user_id, task_id)


_HEARTBEAT = Settings.model_fields["sse_heartbeat_seconds"].default
_STREAMS = Settings.model_fields["sse_streams_per_user"].default
FEED_DESCRIPTION = f"""\
Every event of the user in `seq` order (1, 2, 3... without gaps). Page with `after` (the last `seq`
seen) or follow the `Link: rel="next"` header.

With `Accept: text/event-stream` it is a live Server-Sent Events stream: the events after `after`
(or after the `Last-Event-ID` header, which wins), then each new event as it commits. Each message
has `id:` the event's `seq`, `event:` its type and `data:` the event as this feed serves it. A
comment (`: heartbeat`) comes every {_HEARTBEAT:g} seconds of silence. A browser's `EventSource`, which cannot
send headers, may give the token as `access_token` (this route only, and for the stream only).
The stream lives no longer than its token: it ends when the token expires (at its `exp` plus the
leeway, `TASKTRAIL_JWT_LEEWAY`), sending nothing written after that, or as soon as its key is
withdrawn from the JWK set; the old token then gets 401. Open a new stream with a fresh token and
`after` (or `Last-Event-ID`) set to the last `id` received: nothing is missed.
Each user may hold a few streams at once per server process (`TASKTRAIL_SSE_STREAMS_PER_USER`,
{_STREAMS}): past that, 429 with `Retry-After`.
"""


async def feed_reader(request: Request, principal: StreamAuthenticated, user_id: str) -> Principal:
    """The token's own user (from the query too, for a stream), on a request with the route's
    parameters of its form: no `limit` on a stream, no `access_token` on a page."""
    require_own(principal, user_id)
    if request.scope.get("query_string"):
        not_of_this_form = "limit" if wants_event_stream(request) else "access_token"
        declared = declared_query_parameters(request)
        refuse_unknown_parameters(request, tuple(n for n in declared if n != not_of_this_form))
    return principal


@router.get(
    "/api/{user_id}/events",
    response_model=list[EventOut],
    summary="The user's change feed, oldest first; live with Accept: text/event-stream",
    description=FEED_DESCRIPTION,
    responses={
        **answered(
            200,
            "Link",
            content={"application/json": {}, EVENT_STREAM: {"schema": {"type": "string"}}},
        ),
        **problems(401, 403, 422, 429, 503),
    },
)
async def read_user_feed(
    request: Request,
    user: Annotated[Principal, Depends(feed_reader)],
    after: Annotated[
        int, Query(ge=0, le=MAX_POSITION, description="a seq; events after it are returned")
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size (not with text/event-stream)")
    ] = PAGE_SIZE,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="text/event-stream only: the last `seq` received; the stream resumes "
            "after it (a browser sends it when it reconnects)",
        ),
    ] = None,
    access_token: Annotated[
        str | None,
        Query(
            description="text/event-stream only: the bearer token, for clients that cannot "
            "send an Authorization header (never logged)"
        ),
    ] = None,
) -> Response:
    if wants_event_stream(request):
        start = after if not last_event_id else _seq_of_last_event_id(last_event_id)
        return await event_stream_response(request, user, start)
    engine = services(request).engine
    page = await in_thread(request, _feed, engine, user.user_id, after, limit)
    headers = {}
    if page.has_more:
        headers["Link"] = next_page_link(request, after=page.events[-1].seq, limit=limit)
    return events_response(page.events, headers)


def _seq_of_last_event_id(value: str) -> int:
    text = value.strip()
    if text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_POSITION:
        return int(text)
    raise Problem(
        422,
        "Fix the Last-Event-ID header: it must be the seq of an event this feed sent.",
        errors=[
            {
                "loc": ["header", "Last-Event-ID"],
                "msg": f"must be an integer from 0 to {MAX_POSITION}",
                "type": "value_error",
            }
        ],
    )


def _feed(engine: Engine, user_id: str, after: int, limit: int) -> FeedPage:
    with read_connection(engine) as conn:
        return user_feed(conn, user_id, after=after, limit=limit)
