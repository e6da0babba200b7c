"""/metrics on a port of its own (TASKTRAIL_METRICS_PORT): answered there, and only there.

`serve` hands every worker two listening sockets, the API's and the metrics'; the app tells
them apart by the port a request reached (the ASGI scope's `server`). The /metrics route stays
the one route it is, with the live gauges it reads at scrape time; this layer only decides
where it may be reached: /metrics off the API's port, which may be published, and nothing but
/metrics on the metrics port. Without a metrics port the layer is not installed.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tasktrail.api.contract.problems import Problem, problem_response

METRICS_PATH = "/metrics"


class MetricsListenerMiddleware:
    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")  # None on a Unix socket: never the metrics port
            on_metrics_port = server is not None and server[1] == self.port
            if on_metrics_port != (scope["path"] == METRICS_PATH):
                detail = (
                    f"This port serves {METRICS_PATH} only."
                    if on_metrics_port
                    else f"No route matches {scope['path']} on this port."
                )
                await problem_response(scope, Problem(404, detail))(scope, receive, send)
                return
        await self.app(scope, receive, send)
