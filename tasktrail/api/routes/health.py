"""Liveness and readiness, for load balancers and orchestrators; no token needed."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request
from sqlalchemy import Engine, exc
from starlette.responses import Response

from tasktrail.api.blocking import in_thread
from tasktrail.api.contract.openapi import problems
from tasktrail.api.contract.problems import RETRY_AFTER_SECONDS, Problem
from tasktrail.api.contract.representation import json_response
from tasktrail.api.routes.compiled import CompiledRoute
from tasktrail.api.routes.deps import EngineDep
from tasktrail.api.services import services
from tasktrail.database import DatabaseUnavailable, read_connection
from tasktrail.migrations.runner import current_revision, head_revision
from tasktrail.queries.audit import feed_horizon_held_seconds

router = APIRouter(tags=["operations"], route_class=CompiledRoute)
_log = structlog.get_logger("tasktrail.health")
# The service's own transactions last milliseconds (and are cut at 60 s idle); longer is news.
HORIZON_WARNING_SECONDS = 30.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database answers and its schema is at the newest migration",
    description="On PostgreSQL the answer also says for how long the oldest open writing "
    "transaction has held back the commit-safe audit feed (`feed_horizon_held_seconds`); over "
    "30 s it is logged as a warning.",
    responses=problems(503),
)
async def readyz(request: Request, engine: EngineDep) -> Response:
    expected = head_revision()
    pool = services(request).pool
    try:
        found, held = await in_thread(request, _schema_and_horizon, engine, expected)
        if pool is not None:  # PostgreSQL's hot path has its own pool: it must answer too
            await pool.ping()
    except (DatabaseUnavailable, exc.DBAPIError) as error:
        raise _not_ready(f"the database does not answer ({error.__class__.__name__})") from None
    if found != expected:
        raise _not_ready(
            f"the schema is at revision {found}, not {expected}: run `tasktrail db upgrade`"
        )
    body: dict[str, object] = {"status": "ready", "schema_revision": found}
    if held is not None:
        body["feed_horizon_held_seconds"] = round(held, 3)
        if held > HORIZON_WARNING_SECONDS:
            _log.warning(
                "the audit feed is held back by a long transaction",
                held_seconds=round(held, 1),
            )
    return json_response(body)


def _schema_and_horizon(engine: Engine, expected: str | None) -> tuple[str | None, float | None]:
    with read_connection(engine) as conn:
        found = current_revision(conn)
        return found, feed_horizon_held_seconds(conn) if found == expected else None


def _not_ready(reason: str) -> Problem:
    return Problem(503, f"Not ready: {reason}.", headers={"Retry-After": RETRY_AFTER_SECONDS})
