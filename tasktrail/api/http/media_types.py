"""Content negotiation: which representation the client's `Accept` header asks for."""

from __future__ import annotations

from starlette.requests import Request

EVENT_STREAM = "text/event-stream"
_ZERO = frozenset({"0", "0.", "0.0", "0.00", "0.000"})


def wants_event_stream(request: Request) -> bool:
    """Whether `Accept` lists `text/event-stream` (with a q above 0)."""
    accept = request.headers.get("accept")
    if accept is None:
        return False
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        if media_type.lower() != EVENT_STREAM:
            continue
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q" and value.strip() in _ZERO:
                return False
        return True
    return False
