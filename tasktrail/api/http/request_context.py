"""Per-request plumbing as plain ASGI: the request id, the one log line, the last-resort 500.

Plain ASGI rather than `BaseHTTPMiddleware`: it wraps `send` without buffering the response and
costs a few microseconds per request.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasktrail.api.contract.limits import REQUEST_ID_MAX_LENGTH
from tasktrail.api.contract.problems import Problem, problem_response
from tasktrail.api.http.fair_share import FairShare
from tasktrail.api.http.metrics import Metrics

_SANE_REQUEST_ID = re.compile(rf"^[A-Za-z0-9._-]{{1,{REQUEST_ID_MAX_LENGTH}}}$")
_log = structlog.get_logger("tasktrail.request")


def request_id_of(scope: Scope) -> str:
    """The id RequestContextMiddleware gave this request."""
    request_id: str = scope["state"]["request_id"]
    return request_id


def choose_request_id(scope: Scope) -> str:
    """The client's `X-Request-ID` when it is sane, else a new UUID."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.match(text):
                return text
            break
    return str(uuid.uuid4())


class RequestContextMiddleware:
    """The outermost layer of the app: the request id, the log line and the metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, fair_share: FairShare) -> None:
        self.app = app
        self.metrics = metrics
        self.fair_share = fair_share

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        response: dict[str, Any] = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.fair_share.leave(state)  # the user's place, if the request took one
            seconds = time.perf_counter() - started
            route = scope.get("route")
            # The template, never the raw path or query: ids stay out of metric labels and a
            # token passed in a query string never reaches a log.
            template = getattr(route, "path_format", None)
            self.metrics.observe_request(scope["method"], template, response["status"], seconds)
            _log.info(
                "request",
                request_id=request_id,
                method=scope["method"],
                route=template,
                status=response["status"],
                duration_ms=round(seconds * 1000, 3),
            )


class UnhandledErrorMiddleware:
    """The last resort, inside CORS: any bug becomes a logged 500 problem, never a stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            _log.exception("unhandled error", request_id=scope.get("state", {}).get("request_id"))
            if started:
                raise  # the status is already sent; let the server close the connection
            problem = Problem(
                500, "The request failed on the server's side; report the request_id."
            )
            await problem_response(scope, problem)(scope, receive, send)
