"""OpenAPI fragments for what the routes declare by hand (bodies read raw, problem responses)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasktrail.api.problems import PROBLEM_JSON
from tasktrail.api.schemas import ProblemOut

_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemOut"}

_MEANINGS = {
    304: "Not modified: If-None-Match holds the current ETag",
    401: "No token, a malformed header, or a token that fails a check",
    403: "The token's user is not the path's user",
    404: "No such task for this user (or deleted), or a task id that is not a UUID",
    409: "Conflict",
    412: "If-Match does not hold the task's current ETag",
    413: "The body is over 64 KiB",
    415: "The body is not sent as JSON",
    422: "The body, a parameter or a header fails validation",
    503: "The database is unavailable or timed out; retry after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status == 304:
            documented[status] = {"description": _MEANINGS[status]}
            continue
        documented[status] = {
            "description": _MEANINGS[status],
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
    return documented


def add_problem_schema(document: dict[str, Any]) -> None:
    """Problem responses refer to ProblemOut; FastAPI only lists models it validates itself."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ProblemOut"] = ProblemOut.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )


def json_request_body(
    model: type[BaseModel], *, required: bool = True, merge_patch: bool = False
) -> dict[str, Any]:
    """The requestBody of a route that reads its JSON body itself (for the 64 KiB limit and
    pydantic's strict JSON mode)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    content = {"application/json": {"schema": schema}}
    if merge_patch:
        content["application/merge-patch+json"] = {"schema": schema}
    return {"requestBody": {"required": required, "content": content}}
