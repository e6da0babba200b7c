"""Idempotency-Key on the write routes: a retried write replays its first answer.

The key is claimed in the write's own transaction and its answer kept in that same transaction
(the write port, storage/port.py): a key exists exactly when its write committed, and only 2xx
answers are kept, since an error rolls both back. Here is the HTTP side of it: the header, the
request's fingerprint, the answer as a key keeps it, and the replay.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header, Request
from starlette.responses import Response

from tasktrail.api.contract.problems import Problem
from tasktrail.api.http.bodies import body_as_sent
from tasktrail.schema import idempotency_keys
from tasktrail.storage.port import KEY_LIFETIME, KeptAnswer, StoredAnswer

_REPLAYED_HEADERS = ("content-type", "etag", "location")
# As long as the table's key column holds.
KEY_MAX_LENGTH: int = idempotency_keys.c.key.type.length  # type: ignore[attr-defined]
_KEPT_HOURS = int(KEY_LIFETIME.total_seconds() // 3600)


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    value: str


def _invalid_key(message: str) -> Problem:
    return Problem(
        422,
        f"Fix the Idempotency-Key header: {message}.",
        errors=[{"loc": ["header", "Idempotency-Key"], "msg": message, "type": "value_error"}],
    )


KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=f"1 to {KEY_MAX_LENGTH} printable ASCII characters; a retry with the same "
        f"key, method, path and body within {_KEPT_HOURS} h replays the first answer",
    ),
]


def parse_key(key: str | None) -> IdempotencyKey | None:
    if key is None:
        return None
    if not 1 <= len(key) <= KEY_MAX_LENGTH:
        raise _invalid_key(f"it must be 1 to {KEY_MAX_LENGTH} characters long")
    if not all(" " <= char <= "~" for char in key):
        raise _invalid_key("it must hold printable ASCII characters only")
    return IdempotencyKey(key)


def fingerprint(request: Request) -> str:
    body = body_as_sent(request)
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def still_running() -> Problem:
    return Problem(
        409, "A request with this Idempotency-Key is still being processed; retry shortly."
    )


def kept_answer(response: Response) -> KeptAnswer:
    """The answer as its key keeps it: the status, the headers a replay repeats (the content
    type, the ETag and the Location), the body."""
    return KeptAnswer(
        status_code=response.status_code,
        headers={
            name.decode(): value.decode()
            for name, value in response.raw_headers
            if name.decode() in _REPLAYED_HEADERS
        },
        body=bytes(response.body),
    )


def stored_replay(stored: StoredAnswer, fingerprint: str) -> Response:
    """The answer the key's first request kept, or 422 if this request is not that one."""
    if stored.fingerprint != fingerprint:
        raise _invalid_key(
            "this key was used with another method, path or body; use a new key for a new request"
        )
    replayed = dict(stored.headers or {})
    replayed["Idempotent-Replayed"] = "true"
    return Response(content=stored.body, status_code=stored.status_code, headers=replayed)
