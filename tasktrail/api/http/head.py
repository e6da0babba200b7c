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

        # The inner app gets a copy that says GET: the server keeps its own scope, which still
        # says HEAD, and so sends no body and expects none (uvicorn checks Content-Length
        # against the body it is sent unless the method is HEAD: told GET, it reset the
        # connection after every HEAD). The route the GET matched goes back to the outer
        # layers, which log and count the request as a HEAD of that route.
        as_get = {**scope, "method": "GET"}
        # A route that would stream without end (the live feed) answers a HEAD at once.
        as_get.setdefault("state", {})["is_head"] = True
        try:
            await self.app(as_get, receive, without_body)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]
