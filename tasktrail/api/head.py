"""HEAD wherever GET is served (RFC 9110 §9.3.2): the GET's status and headers, no body.

FastAPI routes a HEAD to no GET route (it is a 405 there), while load balancers and caches use
HEAD for health checks and ETag probes. This layer runs the request as a GET and drops the body
on the way out, so the headers (Content-Length, ETag, Link...) are exactly the GET's. It does
not show in the OpenAPI document, as with Starlette's own routes.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # In place, and put back after: the outer layers log and count the request as a HEAD
        # but see the route the GET matched.
        scope["method"] = "GET"
        # A route that would stream without end (the live feed) answers a HEAD at once.
        scope.setdefault("state", {})["is_head"] = True
        try:
            await self.app(scope, receive, without_body)
        finally:
            scope["method"] = "HEAD"
