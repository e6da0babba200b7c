"""What the API sends: tasks and events as JSON, timestamps with six fractional digits.

A task is sent as the document the projector made for it (`projections.document.task_document`):
stored with its row for reads, made from the folded state for writes and time travel. Nothing
here builds a task's JSON again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tasktrail.domain.document import TaskDocument
from tasktrail.domain.event_record import event_record
from tasktrail.domain.events import Event


def task_response(
    document: TaskDocument, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """One task: its document as the body, its ETag."""
    return Response(
        document.body.encode(),
        status_code=status_code,
        headers={"ETag": document.etag, **(headers or {})},
        media_type="application/json",
    )


def task_list_response(documents: str, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON array of task documents already joined by commas: no task is parsed or serialised
    again."""
    return Response(f"[{documents}]".encode(), headers=headers, media_type="application/json")


def event_body(event: Event) -> dict[str, Any]:
    """An event exactly as written: the served text is the text that was hashed."""
    return event_record(event)


def json_response(
    body: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    sort_keys: bool = False,
) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS if sort_keys else 0),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def events_response(events: list[Event], headers: Mapping[str, str] | None = None) -> Response:
    """Events with their keys sorted at every depth, as hashed: the same bytes on both engines
    (PostgreSQL's jsonb keeps its own key order)."""
    return json_response([event_body(event) for event in events], 200, headers, sort_keys=True)


def next_page_link(request: Request, **params: Any) -> str:
    """`Link` to the next page: a relative reference (RFC 8288 resolves it against the request),
    never built from the client's `Host` header."""
    url = request.url.include_query_params(**params)
    return f'<{url.path}?{url.query}>; rel="next"'
