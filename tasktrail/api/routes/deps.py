"""Typed dependencies of the routes: engine, current user, task id, preconditions, bodies.

Every dependency here is `async def` and does only a little CPU work or reads the request body,
so it runs on the event loop: a plain `def` dependency would cost each request one more hop
through the threadpool. (The bearer scheme may also wait for a JWK set fetch, in its own thread.)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from tasktrail.api.auth.tokens import AuthenticationError, Principal, UnknownKeyId
from tasktrail.api.contract.openapi import json_request_body, reads_body
from tasktrail.api.contract.problems import MAX_ERRORS, Problem, task_not_found
from tasktrail.api.http.bodies import read_body, require_json_content_type
from tasktrail.api.http.media_types import wants_event_stream
from tasktrail.api.services import services
from tasktrail.domain.commands import ExpectedVersions
from tasktrail.row_security import scope_to_audit, scope_to_user

M = TypeVar("M", bound=BaseModel)

_WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*')
_VERSION_TAG = re.compile(r"[1-9][0-9]{0,17}")  # a version: 1 to 10^18 - 1, as str(int) spells it


async def get_engine(request: Request) -> Engine:
    engine = services(request).engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers=_WWW_AUTHENTICATE)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise unauthorized(
            "Send an Authorization: Bearer <token> header; this route needs a token."
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise unauthorized(
            "The Authorization header is malformed: it must be 'Bearer ' followed by one token."
        )
    return token.strip()


def query_or_bearer_token(request: Request) -> str:
    """A live feed's token: a browser's `EventSource` cannot send headers, so it may come as
    `?access_token=` (RFC 6750 §2.3) instead, but not both ways at once (§2)."""
    query = request.query_params.get("access_token")
    if query is None:
        return bearer_token(request)
    if "authorization" in request.headers:
        raise Problem(
            422,
            "Send the token once: in the Authorization header or as access_token, not both.",
            errors=[
                {
                    "loc": ["query", "access_token"],
                    "msg": "the token is also in the Authorization header",
                    "type": "value_error",
                }
            ],
        )
    if not query.strip() or " " in query.strip():
        raise unauthorized("The access_token parameter is empty or malformed: send one token.")
    return query.strip()


class BearerAuthentication(HTTPBearer):
    """The token check, as the bearer scheme itself: one dependency, not two.

    Being an `HTTPBearer` declares the scheme in the OpenAPI document; its call parses the header
    itself, so that each failure gets its own precise detail, and verifies the token. With
    `query_token`, a request for an event stream may carry the token in the query instead.
    """

    def __init__(self, *, query_token: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.query_token = query_token

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        principal = await self._verified(request)
        scope_to_user(principal.user_id)  # what this request's transactions may reach
        # The user's fair share of this process (api/http/fair_share.py): given back by
        # RequestContextMiddleware once the response is sent.
        fair_share = services(request).fair_share
        state = request.scope.setdefault("state", {})
        if not fair_share.enter_now(principal.user_id, state):
            await fair_share.wait_in_line(principal.user_id, state)
        return principal

    async def _verified(self, request: Request) -> Principal:
        verifier = services(request).verifier
        if self.query_token and wants_event_stream(request):
            token = query_or_bearer_token(request)
        else:
            token = bearer_token(request)
        try:
            return verifier.verify(token)
        except UnknownKeyId as error:
            # A kid the JWK set lacks may be a key rotated in since the last fetch: fetch the set
            # again (at most once per 30 s, shared by concurrent requests) and look once more.
            remote = services(request).remote_jwks
            if remote is None or not await remote.refresh_for_unknown_kid():
                raise unauthorized(f"The token was refused: {error}.") from None
        except AuthenticationError as error:
            raise unauthorized(f"The token was refused: {error}.") from None
        try:
            return verifier.verify(token)
        except AuthenticationError as error:
            raise unauthorized(f"The token was refused: {error}.") from None


authenticated = BearerAuthentication(auto_error=False, bearerFormat="JWT", scheme_name="bearer")

Authenticated = Annotated[Principal, Depends(authenticated)]

# The live feed's: the same scheme (one entry in the OpenAPI document), and the query token.
stream_authenticated = BearerAuthentication(
    query_token=True, auto_error=False, bearerFormat="JWT", scheme_name="bearer"
)

StreamAuthenticated = Annotated[Principal, Depends(stream_authenticated)]


def require_own(principal: Principal, user_id: str) -> Principal:
    """The token's user, who must be the user named in the path."""
    if principal.user_id != user_id:
        raise Problem(
            403, "This token belongs to another user: you may only use your own /api/{user_id}/."
        )
    return principal


async def auditor(principal: Authenticated) -> Principal:
    """A token with the auditor role; the audit API is theirs alone."""
    if not principal.is_auditor:
        raise Problem(403, "The audit API needs a token with the auditor role.")
    scope_to_audit()  # the audit API reads every user's log
    return principal


Auditor = Annotated[Principal, Depends(auditor)]


def parse_task_id(task_id: str) -> str:
    """A task id is a UUID; anything else names no task, so it is 404 (after the auth checks)."""
    try:
        return str(uuid.UUID(task_id))
    except ValueError:
        raise task_not_found(task_id) from None


def parse_entity_tags(header: str) -> list[tuple[bool, str]] | None:
    """`(weak, value)` for each tag of an If-Match/If-None-Match list; None for `*`."""
    if header.strip() == "*":
        return None
    tags = []
    for part in header.split(","):
        match = _ENTITY_TAG.fullmatch(part)
        if match is not None:
            tags.append((match.group(1) is not None, match.group(2)))
    return tags


IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='the ETag you read ("3"); a stale one is 412 and changes nothing',
    ),
]


def expected_versions_of(header: str | None) -> ExpectedVersions:
    """The versions `If-Match` accepts; strong comparison, so a weak tag matches nothing."""
    if header is None:
        return None
    tags = parse_entity_tags(header)
    if tags is None:
        return None  # `*`: any current version of an existing task
    # Compared as text, strongly (RFC 9110 §8.8.3.2): only the exact spelling of a version an
    # ETag could carry ("7", never "07", "²" or five thousand digits) names one.
    return frozenset(
        int(value) for weak, value in tags if not weak and _VERSION_TAG.fullmatch(value)
    )


def json_body(model: type[M], *, merge_patch: bool = False) -> Callable[[Request], Awaitable[M]]:
    """A dependency that reads and validates a JSON body of this model; the route's document
    takes its requestBody from it."""

    @reads_body(json_request_body(model, merge_patch=merge_patch))
    async def dependency(request: Request) -> M:
        require_json_content_type(request)
        return validate_json(
            model, await read_body(request, services(request).settings.body_timeout)
        )

    return dependency


def validate_json(model: type[M], raw: bytes) -> M:
    if not raw.strip():
        raise Problem(
            422,
            "The request needs a JSON body.",
            errors=[{"loc": ["body"], "msg": "a JSON body is required", "type": "missing"}],
        )
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as error:
        raise body_problem(error) from None


def body_problem(error: ValidationError) -> Problem:
    errors: list[dict[str, Any]] = [
        {
            "loc": ["body", *item["loc"]],
            "msg": _message(item["msg"]),
            "type": item["type"],
        }
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    detail = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'][1:]) or 'body'}: {item['msg']}"
        for item in errors[:MAX_ERRORS]
    )
    return Problem(422, f"Fix the body: {detail}.", errors=errors)


def _message(msg: str) -> str:
    # pydantic prefixes the messages of our own validators with "Value error, ".
    return msg.removeprefix("Value error, ")
