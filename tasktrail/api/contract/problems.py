"""RFC 9457 problem details: every error leaves the service through here.

Domain errors, database outages, FastAPI's validation errors and Starlette's own 404/405 are all
turned into `application/problem+json` in this one module, so no route speaks HTTP errors itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from tasktrail.database import DatabaseUnavailable
from tasktrail.domain.errors import NothingToRestore, TaskNotFound, VersionConflict

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "2"

_TITLES = {
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Request validation failed",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal server error",
    503: "Service unavailable",
}
_SLUGS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation",
    429: "too-many-requests",
    431: "header-fields-too-large",
    500: "internal",
    503: "unavailable",
}


class Problem(Exception):
    """An HTTP error raised by the API layer, rendered as problem details."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        listed = None if errors is None else [_bounded(error) for error in errors[:MAX_ERRORS]]
        if errors is not None and len(errors) > MAX_ERRORS:
            detail = (
                f"{detail[:MAX_DETAIL_CHARACTERS]} ({len(errors)} errors; "
                f"the first {MAX_ERRORS} are listed)"
            )
        elif len(detail) > MAX_DETAIL_CHARACTERS:
            detail = detail[:MAX_DETAIL_CHARACTERS] + "…"
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.errors = listed


# A bad body of 64 KiB can fail in thousands of places (a 4.3 MB answer was seen): the answer
# names the first few, which is what a person fixing a request reads anyway.
MAX_ERRORS = 20
MAX_DETAIL_CHARACTERS = 2000
_MAX_LOC_PART_CHARACTERS = 100


def _bounded(error: Mapping[str, Any]) -> Mapping[str, Any]:
    """An error whose `loc` names no 60 KB key in full."""
    loc = error.get("loc")
    if not isinstance(loc, list) or all(
        not isinstance(part, str) or len(part) <= _MAX_LOC_PART_CHARACTERS for part in loc
    ):
        return error
    cut = [
        part[:_MAX_LOC_PART_CHARACTERS] + "…"
        if isinstance(part, str) and len(part) > _MAX_LOC_PART_CHARACTERS
        else part
        for part in loc
    ]
    return {**error, "loc": cut}


def validation_problem(loc: Sequence[str | int], msg: str, type_: str) -> Problem:
    where = ".".join(str(part) for part in loc)
    return Problem(422, f"{where}: {msg}", errors=[{"loc": list(loc), "msg": msg, "type": type_}])


def problem_fields(status: int, detail: str) -> dict[str, Any]:
    """The members every problem document has (RFC 9457): type, title, status, detail."""
    return {
        "type": f"urn:tasktrail:problem:{_SLUGS.get(status, 'error')}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }


def problem_response(scope: Scope, problem: Problem) -> Response:
    body: dict[str, Any] = {
        **problem_fields(problem.status, problem.detail),
        "instance": scope.get("path", ""),
        "request_id": scope.get("state", {}).get("request_id", ""),
    }
    if problem.status == 422:
        body["errors"] = problem.errors or []
    return Response(
        orjson.dumps(body),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_JSON,
    )


def install_problem_handlers(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """`routes`: the API's, for the Allow header of a 405 (Starlette's names one route's)."""

    async def on_problem(request: Request, error: Exception) -> Response:
        assert isinstance(error, Problem)  # noqa: S101 - registered for this type only
        return problem_response(request.scope, error)

    async def on_domain_error(request: Request, error: Exception) -> Response:
        return problem_response(request.scope, domain_problem(error))

    async def on_unavailable(request: Request, error: Exception) -> Response:
        return problem_response(
            request.scope,
            Problem(
                503,
                f"The database is unavailable ({error}); retry in a few seconds.",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ),
        )

    async def on_validation(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)  # noqa: S101
        errors = [
            {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors()
        ]
        detail = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in errors[:MAX_ERRORS]
        )
        return problem_response(request.scope, Problem(422, detail, errors=errors))

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)  # noqa: S101
        return problem_response(request.scope, http_problem(request, error, routes))

    app.add_exception_handler(Problem, on_problem)
    for domain_error in (TaskNotFound, VersionConflict, NothingToRestore):
        app.add_exception_handler(domain_error, on_domain_error)
    app.add_exception_handler(DatabaseUnavailable, on_unavailable)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


def task_not_found(task_id: str) -> Problem:
    # The same bytes whether the task never existed or belongs to someone else: no oracle.
    return Problem(
        404,
        f"There is no task {task_id} here: check the id, or list your tasks to find it.",
    )


def domain_problem(error: Exception) -> Problem:
    match error:
        case TaskNotFound():
            return task_not_found(error.task_id)
        case VersionConflict():
            return Problem(
                412,
                f"The task changed since you read it (it is now at version "
                f'{error.current_version}, ETag "{error.current_version}"): read it again '
                "and retry with the new ETag in If-Match.",
            )
        case NothingToRestore():
            return Problem(
                409, f"Task {error.task_id} is not deleted, so there is nothing to restore."
            )
        case _:
            return Problem(500, "The request failed on the server's side.")


def allowed_methods(path: str, routes: Sequence[BaseRoute]) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names one route's only)."""
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods.update(route.methods)
    if "GET" in methods:
        methods.add("HEAD")  # api/http/head.py serves it
    return sorted(methods)


def http_problem(
    request: Request, error: StarletteHTTPException, routes: Sequence[BaseRoute]
) -> Problem:
    headers = dict(error.headers or {})
    if error.status_code == 404:
        return Problem(
            404, f"No route matches {request.url.path}: see /docs for the API.", headers=headers
        )
    if error.status_code == 405:
        allowed = ", ".join(allowed_methods(request.url.path, routes))
        headers["Allow"] = allowed
        return Problem(
            405,
            f"{request.method} is not allowed on {request.url.path}; use one of: {allowed}.",
            headers=headers,
        )
    return Problem(error.status_code, str(error.detail), headers=headers)
