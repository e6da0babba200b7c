"""Query-string rules shared by the routes: an unknown parameter is a 422, not silence."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from tasktrail.api.deps import CurrentUser
from tasktrail.api.problems import Problem


def only_parameters(*allowed: str) -> Callable[..., Awaitable[None]]:
    """Refuse unknown parameters, after the token and the user have been checked."""

    async def check(request: Request, _: CurrentUser) -> None:
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            accepted = ", ".join(allowed) if allowed else "none"
            raise Problem(
                422,
                f"Unknown query parameter {', '.join(unknown)}; this route accepts: {accepted}.",
                errors=[
                    {
                        "loc": ["query", name],
                        "msg": "unknown query parameter",
                        "type": "extra_forbidden",
                    }
                    for name in unknown
                ],
            )

    return check
