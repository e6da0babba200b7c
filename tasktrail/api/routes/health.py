"""Liveness and readiness, for load balancers and orchestrators; no token needed."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import exc
from starlette.responses import Response

from tasktrail.api.deps import EngineDep
from tasktrail.api.openapi import problems
from tasktrail.api.problems import RETRY_AFTER_SECONDS, Problem
from tasktrail.api.representation import json_response
from tasktrail.database import DatabaseUnavailable, read_connection
from tasktrail.migrations.runner import current_revision, head_revision

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database answers and its schema is at the newest migration",
    responses=problems(503),
)
def readyz(engine: EngineDep) -> Response:
    expected = head_revision()
    try:
        with read_connection(engine) as conn:
            found = current_revision(conn)
    except (DatabaseUnavailable, exc.DBAPIError) as error:
        raise _not_ready(f"the database does not answer ({error.__class__.__name__})") from None
    if found != expected:
        raise _not_ready(
            f"the schema is at revision {found}, not {expected}: run `tasktrail db upgrade`"
        )
    return json_response({"status": "ready", "schema_revision": found})


def _not_ready(reason: str) -> Problem:
    return Problem(503, f"Not ready: {reason}.", headers={"Retry-After": RETRY_AFTER_SECONDS})
