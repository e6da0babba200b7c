"""Query-string rules shared by the routes: an unknown parameter is a 422, not silence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from tasktrail.api.deps import Auditor, CurrentUser
from tasktrail.api.problems import Problem


def only_parameters(*allowed: str) -> Callable[..., Awaitable[None]]:
    """Refuse unknown parameters, after the token and the user have been checked."""

    async def check(request: Request, _: CurrentUser) -> None:
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            raise _unknown(unknown, allowed)

    return check


def only_parameters_of(*allowed: str) -> Callable[..., Awaitable[None]]:
    """Refuse unknown parameters on the audit routes, after the auditor check."""

    async def check(request: Request, _: Auditor) -> None:
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            raise _unknown(unknown, allowed)

    return check


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
