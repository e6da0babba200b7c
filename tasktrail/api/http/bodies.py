"""A request's body off the wire: bounded in size and in time, and sent as JSON."""

from __future__ import annotations

import anyio
from fastapi import Request

from tasktrail.api.contract.limits import MAX_BODY_BYTES
from tasktrail.api.contract.problems import Problem

# Where the body read is kept in the request's state, for the rest of the request.
_BODY_AS_SENT = "body_as_sent"


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_body(request: Request, seconds: float) -> bytes:
    """The body, cut off past MAX_BODY_BYTES while it is read: a huge upload is never held
    whole.

    A client that takes longer than `seconds` (TASKTRAIL_BODY_TIMEOUT) to send it is cut off too
    (408), so a trickle of bytes cannot keep a request open forever.
    """
    too_large = Problem(413, f"The body is over {MAX_BODY_BYTES // 1024} KiB; send a smaller one.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(
            408,
            f"The body did not arrive within {seconds:g} seconds; send it at once.",
            headers={"Connection": "close"},
        ) from None
    body = b"".join(chunks)
    request.scope["state"][_BODY_AS_SENT] = body  # the idempotency fingerprint covers it
    return body


def body_as_sent(request: Request) -> bytes:
    """The body `read_body` read off this request; empty when it read none."""
    body: bytes = request.scope.get("state", {}).get(_BODY_AS_SENT, b"")
    return body


def require_json_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if not _is_json(content_type):
        raise Problem(
            415,
            "Send the body as JSON with Content-Type: application/json"
            + (f" (got {content_type!r})." if content_type else "."),
        )
