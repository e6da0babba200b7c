"""OpenAPI fragments for what the routes declare by hand (bodies read raw, problem responses)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tasktrail.api.contract.problems import PROBLEM_JSON
from tasktrail.api.contract.schemas import ProblemOut

_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemOut"}

_MEANINGS = {
    304: "Not modified: If-None-Match holds the current ETag",
    401: "No token, a malformed header, or a token that fails a check",
    403: "The token's user is not the path's user",
    404: "No such task for this user (or deleted), or a task id that is not a UUID",
    408: "The body did not arrive within the body timeout (TASKTRAIL_BODY_TIMEOUT, 30 s)",
    409: "An Idempotency-Key still being processed; for restore, a task that is not deleted",
    412: "If-Match does not hold the task's current ETag",
    413: "The body is over 64 KiB",
    415: "The body is not sent as JSON",
    422: "The body, a parameter or a header fails validation",
    429: "This user has too many requests in line or live streams open, or is over the rate "
    "limit; retry after Retry-After seconds",
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


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": schema_type}}


_HEADERS = {
    "ETag": _header('the task\'s version as an entity tag: "<version>"'),
    "Location": _header("the path of the new task"),
    "Link": _header('<url>; rel="next" while more remain'),
    "X-Total-Count": _header("how many items match, over all pages", "integer"),
    "Idempotent-Replayed": _header("true when this is the stored answer of an earlier request"),
}

# The success headers of each operation, by (path, method).
_SUCCESS_HEADERS: dict[tuple[str, str], tuple[str, ...]] = {
    ("/api/{user_id}/tasks", "post"): ("ETag", "Location", "Idempotent-Replayed"),
    ("/api/{user_id}/tasks", "get"): ("Link", "X-Total-Count"),
    ("/api/{user_id}/tasks/{task_id}", "get"): ("ETag",),
    ("/api/{user_id}/tasks/{task_id}", "put"): ("ETag", "Idempotent-Replayed"),
    ("/api/{user_id}/tasks/{task_id}", "patch"): ("ETag", "Idempotent-Replayed"),
    ("/api/{user_id}/tasks/{task_id}", "delete"): ("Idempotent-Replayed",),
    ("/api/{user_id}/tasks/{task_id}/complete", "patch"): ("ETag", "Idempotent-Replayed"),
    ("/api/{user_id}/tasks/{task_id}/restore", "post"): ("ETag", "Idempotent-Replayed"),
    ("/api/{user_id}/events", "get"): ("Link",),
}

_RATE_LIMIT_FIELDS = {
    "RateLimit-Limit": "the limit that was reached (requests at once, or the burst)",
    "RateLimit-Remaining": "what is left of it now",
    "RateLimit-Reset": "seconds until there is room again",
}

_REQUEST_ID_PARAMETER = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "kept when 1 to 128 of A-Z a-z 0-9 . _ -, else replaced by a new UUID; "
    "every response carries it, and so do the logs",
    "schema": {"type": "string"},
}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema as FastAPI writes it (`anyOf: [X, null]`) becomes X: a
    query string or header holds text and cannot carry a JSON null; absent is how it is left out.
    (Left as it is, a generator takes a number spelled as text for a wrong type.)"""
    alternatives = schema.get("anyOf")
    if not alternatives:
        return schema
    kept = [alternative for alternative in alternatives if alternative != {"type": "null"}]
    if len(kept) != 1:
        return schema
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**kept[0], **merged}


def finish_document(document: dict[str, Any]) -> None:
    """What FastAPI cannot infer: problem schema, headers of every response, the 500."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ProblemOut"] = ProblemOut.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _without_null(parameter["schema"])
            operation.setdefault("parameters", []).append(_REQUEST_ID_PARAMETER)
            responses = operation["responses"]
            if path.startswith("/api/"):
                # Every route that names a user takes its fair share (api/http/fair_share.py).
                responses.setdefault(
                    "429",
                    {
                        "description": _MEANINGS[429],
                        "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
                    },
                )
                responses["500"] = {
                    "description": "A fault of the server (a bug): problem details with the "
                    "request_id, never a stack trace",
                    "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
                }
            for status, response in responses.items():
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = _header("the request's id, as in the logs")
                if status == "401":
                    headers["WWW-Authenticate"] = _header('Bearer error="invalid_token"')
                elif status in ("429", "503"):
                    headers["Retry-After"] = _header("seconds to wait before retrying", "integer")
                    if status == "429":
                        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
                            headers[name] = _header(_RATE_LIMIT_FIELDS[name], "integer")
                elif status == "304":
                    headers["ETag"] = _HEADERS["ETag"]
                elif status.startswith("2"):
                    for name in _SUCCESS_HEADERS.get((path, method), ()):
                        headers[name] = _HEADERS[name]


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
