"""Routes that read their own request: documented from their signature, served without
FastAPI's per-request dependency resolution.

FastAPI resolves an endpoint's parameters anew for every request: it walks the dependency tree,
reads each path, query and header parameter and validates it. On the single-task read that walk
was a quarter of the request's CPU (py-spy, docs/performance.md) for four strings. A route of
this class keeps everything else of FastAPI (matching, the OpenAPI entry built from the
endpoint's signature, the exception handlers) but, when its endpoint is marked `handled_by(f)`,
serves each request with `f(request)`, which reads the same parameters itself and runs the same
checks in the same order.

A handler is also given FastAPI's own handler of its route (`resolved`): one that reads only the
usual requests itself hands it the others, whose answers (FastAPI's validation errors) are then
FastAPI's by construction. Two descriptions of one route must agree, so `resolved_handler`
keeps FastAPI's own handler at hand, and tests/test_handled_routes.py sends a corpus of requests
(good, bad, hostile) through both and requires the same answers, byte for byte.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tasktrail.api.routes.compiled import Reader, compile_reader

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
# A route's own handler: the request, and FastAPI's handler of the route to hand it to.
OwnHandler = Callable[[Request, Handler], Coroutine[Any, Any, Response]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

_HANDLERS: dict[Callable[..., Any], OwnHandler] = {}


def handled_by(handler: OwnHandler) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint as served by `handler`. It goes below the route's decorator (decorators
    apply from the function up), so that the mark is there when the route is made."""

    def mark(endpoint: Endpoint) -> Endpoint:
        _HANDLERS[endpoint] = handler
        return endpoint

    return mark


class HandledRoute(APIRoute):
    """An APIRoute whose marked endpoint's requests go to its handler; an unmarked one whose
    declaration compiles (compiled.py) reads its parameters with the compiled reader; others
    as usual."""

    def get_route_handler(self) -> Handler:
        resolved = super().get_route_handler()
        handler = _HANDLERS.get(self.endpoint)
        if handler is not None:

            async def handle(request: Request) -> Response:
                return await handler(request, resolved)

            return handle
        reader = self._reader()
        if reader is None:
            return resolved
        endpoint = self.endpoint

        async def read_and_call(request: Request) -> Response:
            arguments = await reader(request)
            if arguments is None:
                return await resolved(request)
            response: Response = await endpoint(**arguments)
            return response

        return read_and_call

    def _reader(self) -> Reader | None:
        """The compiled reader of an async endpoint that answers a Response, if it compiles."""
        if not inspect.iscoroutinefunction(self.endpoint):
            return None
        answers = typing.get_type_hints(self.endpoint).get("return")
        if not (isinstance(answers, type) and issubclass(answers, Response)):
            return None
        return compile_reader(self.dependant)

    def resolved_handler(self) -> Handler:
        """FastAPI's own handler of this route, resolving the declared parameters."""
        return super().get_route_handler()

    @property
    def is_handled(self) -> bool:
        """Served by a handler of its own or by its compiled reader, not by FastAPI's walk."""
        return self.endpoint in _HANDLERS or self._reader() is not None
