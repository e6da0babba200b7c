"""OpenAPI fragments the routes declare with (their success headers, bodies read raw, problem
responses), and what every operation shares (finish_document)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from tasktrail.api.contract.limits import MAX_BODY_BYTES, REQUEST_ID_MAX_LENGTH
from tasktrail.api.contract.problems import PROBLEM_JSON
from tasktrail.api.contract.schemas import ProblemOut
from tasktrail.settings import Settings

_PROBLEM_SCHEMA = {"$ref": "#/components/schemas/ProblemOut"}

_MEANINGS = {
    304: "Not modified: If-None-Match holds the current ETag",
    401: "No token, a malformed header, or a token that fails a check",
    403: "The token's user is not the path's user",
    404: "No such task for this user (or deleted), or a task id that is not a UUID",
    408: "The body did not arrive within the body timeout (TASKTRAIL_BODY_TIMEOUT, "
    f"{Settings.model_fields['body_timeout'].default:g} s)",
    409: "An Idempotency-Key still being processed; for restore, a task that is not deleted",
    412: "If-Match does not hold the task's current ETag",
    413: f"The body is over {MAX_BODY_BYTES // 1024} KiB",
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


def answered(
    status: int, *headers: str, content: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's success answer, for its `responses`: the headers it carries (names of
    `_HEADERS`) and, when it has more than the JSON of its model, its media types."""
    documented: dict[str, Any] = {"headers": {name: _HEADERS[name] for name in headers}}
    if content is not None:
        documented["content"] = content
    return {status: documented}


def _header(description: str, schema_type: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": schema_type}}


_HEADERS = {
    "ETag": _header('the task\'s version as an entity tag: "<version>"'),
    "Location": _header("the path of the new task"),
    "Link": _header('<url>; rel="next" while more remain'),
    "X-Total-Count": _header("how many items match, over all pages", "integer"),
    "Idempotent-Replayed": _header("true when this is the stored answer of an earlier request"),
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
    "description": f"kept when 1 to {REQUEST_ID_MAX_LENGTH} of A-Z a-z 0-9 . _ -, else replaced "
    "by a new UUID; "
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
        for operation in operations.values():
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
                # The request id first, then what the route declares (`answered`).
                headers = {"X-Request-ID": _header("the request's id, as in the logs")}
                headers.update(response.get("headers", {}))
                response["headers"] = headers
                if status == "401":
                    headers["WWW-Authenticate"] = _header('Bearer error="invalid_token"')
                elif status in ("429", "503"):
                    headers["Retry-After"] = _header("seconds to wait before retrying", "integer")
                    if status == "429":
                        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
                            headers[name] = _header(_RATE_LIMIT_FIELDS[name], "integer")
                elif status == "304":
                    headers["ETag"] = _HEADERS["ETag"]


# The requestBody of each dependency that reads a body itself, by the dependency: a route that
# depends on one documents its body from here (CompiledRoute), so the model is named once.
_BODY_READERS: dict[Callable[..., Any], dict[str, Any]] = {}

Reader = TypeVar("Reader", bound=Callable[..., Any])


def reads_body(document: dict[str, Any]) -> Callable[[Reader], Reader]:
    """Mark a dependency as the reader of its route's body, documented as `document` (from
    `json_request_body`)."""

    def mark(reader: Reader) -> Reader:
        _BODY_READERS[reader] = document
        return reader

    return mark


def documented_body(reader: Callable[..., Any]) -> dict[str, Any] | None:
    """The requestBody `reader` was marked with; None for a dependency that reads no body."""
    return _BODY_READERS.get(reader)


def json_request_body(
    model: type[BaseModel], *, required: bool = True, merge_patch: bool = False
) -> dict[str, Any]:
    """The requestBody of a route that reads its JSON body itself (for the body's size limit and
    pydantic's strict JSON mode)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    content = {"application/json": {"schema": schema}}
    if merge_patch:
        content["application/merge-patch+json"] = {"schema": schema}
    return {"requestBody": {"required": required, "content": content}}
