"""The event routes: a task's history and the user's change feed."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Engine
from starlette.responses import Response

from tasktrail.api.auth import Principal
from tasktrail.api.openapi import problems
from tasktrail.api.problems import task_not_found
from tasktrail.api.representation import events_response
from tasktrail.api.routes.query import OwnTask, own_task_with_only, own_user_with_only
from tasktrail.api.schemas import EventOut
from tasktrail.database import read_connection
from tasktrail.events.types import Event
from tasktrail.queries.feed import FeedPage, user_feed
from tasktrail.queries.history import task_history

router = APIRouter(tags=["events"])


@router.get(
    "/api/{user_id}/tasks/{task_id}/events",
    response_model=list[EventOut],
    summary="A task's whole history, oldest first, also after deletion",
    responses=problems(401, 403, 404, 422, 503),
)
async def read_task_history(
    request: Request, own: Annotated[OwnTask, Depends(own_task_with_only())]
) -> Response:
    engine: Engine = request.app.state.engine
    history = await anyio.to_thread.run_sync(_history, engine, own.user.user_id, own.task_id)
    if not history:
        raise task_not_found(own.task_id)
    return events_response(history)


def _history(engine: Engine, user_id: str, task_id: str) -> list[Event]:
    with read_connection(engine) as conn:
        return task_history(conn, user_id, task_id)


@router.get(
    "/api/{user_id}/events",
    response_model=list[EventOut],
    summary="The user's change feed, oldest first",
    description="Every event of the user in `seq` order (1, 2, 3... without gaps). Page with "
    '`after` (the last `seq` seen) or follow the `Link: rel="next"` header.',
    responses=problems(401, 403, 422, 503),
)
async def read_user_feed(
    request: Request,
    user: Annotated[Principal, Depends(own_user_with_only("after", "limit"))],
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="a seq; events after it are returned")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
) -> Response:
    engine: Engine = request.app.state.engine
    page = await anyio.to_thread.run_sync(_feed, engine, user.user_id, after, limit)
    headers = {}
    if page.has_more:
        next_url = request.url.include_query_params(after=page.events[-1].seq, limit=limit)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return events_response(page.events, headers)


def _feed(engine: Engine, user_id: str, after: int, limit: int) -> FeedPage:
    with read_connection(engine) as conn:
        return user_feed(conn, user_id, after=after, limit=limit)
