"""Prometheus text exposition; no token needed, like /healthz. On a port of its own when one
is set (api/http/metrics_listener.py)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from tasktrail.api.routes.compiled import CompiledRoute
from tasktrail.api.services import services

router = APIRouter(tags=["operations"], route_class=CompiledRoute)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Requests by route template and status, a latency histogram, events appended, "
    "open server-sent event streams, database pool use, and the progress of the latest "
    "`projections rebuild` (read from the database, left out when it does not answer within a "
    "second), in the Prometheus text format. With several workers the counters, histograms and "
    "stream gauge add up every worker's, whichever worker answers; the pool gauges are the "
    "answering worker's own, labelled with its `pid`. When TASKTRAIL_METRICS_PORT is set it "
    "is answered on that port only (404 on the API's).",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    metrics = services(request).metrics
    # Off the event loop: the rebuild's progress is a database read, multiprocess mode reads files.
    body = await anyio.to_thread.run_sync(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
