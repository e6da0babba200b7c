"""Query-string rules shared by the routes: an unknown or bad parameter is a 422 naming it.

A route accepts the query parameters its endpoint declares, and no others: the names are read
from the route's own `Dependant`, once per route, never restated.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from tasktrail.api.auth.tokens import Principal
from tasktrail.api.contract.problems import Problem
from tasktrail.api.routes.compiled import CompiledRoute, query_parameters_of
from tasktrail.api.routes.deps import Auditor, Authenticated, parse_task_id, require_own
from tasktrail.domain.encoding import RFC3339_PATTERN, parse_timestamp


@dataclass(frozen=True, slots=True)
class OwnTask:
    """A task named in the path of the token's own user: its id is a UUID (else 404)."""

    user: Principal
    task_id: str


async def own_user(request: Request, principal: Authenticated, user_id: str) -> Principal:
    """The token's user, who must be the path's (403), on a request with no query parameter
    but the route's own (422): one dependency, so that a request calls two, not five."""
    require_own(principal, user_id)
    refuse_unknown_parameters(request)
    return principal


async def own_task(
    request: Request, principal: Authenticated, user_id: str, task_id: str
) -> OwnTask:
    """`own_user`, then the task id of the path (404 if it is no UUID)."""
    require_own(principal, user_id)
    refuse_unknown_parameters(request)
    return OwnTask(principal, parse_task_id(task_id))


OwnUser = Annotated[Principal, Depends(own_user)]
OwnTaskDep = Annotated[OwnTask, Depends(own_task)]


# The largest seq or position a query may name: PostgreSQL's bigint.
MAX_POSITION = 2**63 - 1

# The only parameters that may be given more than once (api.md, "Repeated parameters"), and
# how many values one request may carry: a filter of thousands of tags is a query plan of
# thousands of terms, paid for by everyone else the database serves.
REPEATABLE_PARAMETERS = frozenset({"tag", "type"})
MAX_REPEATED_VALUES = 50


def refuse_unknown_parameters(request: Request, allowed: tuple[str, ...] | None = None) -> None:
    """422 for a query parameter that is not `allowed` (by default, the route's declared ones),
    or that is repeated without being repeatable."""
    if not request.scope.get("query_string"):
        return  # most requests have none: no parsing at all
    if allowed is None:
        allowed = declared_query_parameters(request)
    names = [name for name, _ in request.query_params.multi_items()]
    given = set(names)
    unknown = sorted(given - set(allowed))
    if unknown:
        raise _unknown(unknown, allowed)
    if len(given) == len(names):
        return  # nothing repeated
    for name, count in sorted(Counter(names).items()):
        if count > 1 and name not in REPEATABLE_PARAMETERS:
            raise query_problem(
                name, f"it is given {count} times; only tag and type may be repeated"
            )
        if count > MAX_REPEATED_VALUES:
            raise query_problem(
                name, f"it is given {count} times; at most {MAX_REPEATED_VALUES} values"
            )


async def only_declared_parameters(request: Request, _: Auditor) -> None:
    """Refuse unknown parameters on the audit routes, after the auditor check."""
    refuse_unknown_parameters(request)


OnlyDeclaredParameters = Annotated[None, Depends(only_declared_parameters)]


def declared_query_parameters(request: Request) -> tuple[str, ...]:
    """The query parameters the serving route's endpoint declares, in their order there."""
    route = request.scope["route"]
    if isinstance(route, CompiledRoute):
        return route.query_parameters
    return query_parameters_of(route.dependant)


def _unknown(unknown: list[str], allowed: tuple[str, ...]) -> Problem:
    accepted = ", ".join(allowed) if allowed else "none"
    return Problem(
        422,
        f"Unknown query parameter {', '.join(unknown)}; this route accepts: {accepted}.",
        errors=[
            {"loc": ["query", name], "msg": "unknown query parameter", "type": "extra_forbidden"}
            for name in unknown
        ],
    )


# What the document says of a timestamp parameter, the same rule parse_timestamp applies: the
# parameter is read as text (a bad one is a 422 naming it), so the schema alone carries this.
TIMESTAMP_SCHEMA: dict[str, object] = {"format": "date-time", "pattern": RFC3339_PATTERN}
# Text that query_text refuses for holding U+0000 (PostgreSQL cannot store or compare it).
NO_NUL_SCHEMA: dict[str, object] = {"pattern": "^[^\\u0000]*$"}

AS_OF_DESCRIPTION = (
    "RFC 3339 timestamp: the answer as it was at that instant, rebuilt from the task events "
    "whose occurred_at is at or before it"
)


def query_problem(name: str, message: str) -> Problem:
    return Problem(
        422,
        f"Fix the query parameter {name}: {message}.",
        errors=[{"loc": ["query", name], "msg": message, "type": "value_error"}],
    )


def query_text(
    name: str, value: str, *, max_length: int | None = None, allow_empty: bool = False
) -> str:
    """Text a query may carry: not empty (unless allowed), at most `max_length` characters
    (when its declaration does not bound it already), no U+0000."""
    if not value and not allow_empty:
        raise query_problem(name, "it must not be empty")
    if max_length is not None and len(value) > max_length:
        raise query_problem(name, f"it must be at most {max_length} characters")
    if "\x00" in value:
        raise query_problem(name, "it must not contain U+0000 (NUL)")
    return value


def query_timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as error:
        raise query_problem(name, str(error)) from None
