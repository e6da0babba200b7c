"""Idempotency-Key on the write routes: a retried write replays its first answer.

The key is claimed at the start of the write's own transaction (an INSERT that a concurrent
duplicate must wait behind), and the response is stored in that same transaction: a key exists
exactly when its write committed, and only 2xx answers are kept, since an error rolls both back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Connection, Engine, delete, exc, select, text, update
from starlette.responses import Response

from tasktrail.api.metrics import Metrics
from tasktrail.api.problems import Problem
from tasktrail.database import dialect_insert, write_transaction
from tasktrail.schema import idempotency_keys

KEY_LIFETIME = timedelta(hours=24)
# How long a duplicate waits for the first request of its key before it is answered 409.
WAIT_FOR_FIRST_MS = 5_000
_REPLAYED_HEADERS = ("content-type", "etag", "location")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    value: str


def _invalid_key(message: str) -> Problem:
    return Problem(
        422,
        f"Fix the Idempotency-Key header: {message}.",
        errors=[{"loc": ["header", "Idempotency-Key"], "msg": message, "type": "value_error"}],
    )


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="1 to 255 printable ASCII characters; a retry with the same key, "
            "method, path and body within 24 h replays the first answer",
        ),
    ] = None,
) -> IdempotencyKey | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise _invalid_key("it must be 1 to 255 characters long")
    if not all(" " <= char <= "~" for char in key):
        raise _invalid_key("it must hold printable ASCII characters only")
    return IdempotencyKey(key)


IdempotencyKeyDep = Annotated[IdempotencyKey | None, Depends(idempotency_key)]


@dataclass(frozen=True, slots=True)
class Written:
    """What a write answers, and how many events it appended (for the metrics)."""

    response: Response
    events_appended: int


def run_write(
    request: Request,
    engine: Engine,
    user_id: str,
    key: IdempotencyKey | None,
    write: Callable[[Connection], Written],
) -> Response:
    """Run `write` in one transaction; with a key, replay or record its answer in it too."""
    metrics: Metrics = request.app.state.metrics
    with write_transaction(engine) as conn:
        if key is not None:
            fingerprint = _fingerprint(request)
            if not _claim(conn, user_id, key.value, fingerprint):
                return _replay(conn, user_id, key.value, fingerprint)
        written = write(conn)
        if key is not None:
            _record(conn, user_id, key.value, written.response)
    metrics.events_appended.inc(written.events_appended)  # counted once committed
    return written.response


def purge_expired(engine: Engine, now: datetime | None = None) -> int:
    """Delete every user's keys older than 24 h; returns how many went.

    A user's own expired keys also go at their next keyed write; this sweep catches the keys of
    users who do not come back. It runs in the background, never on the request path.
    """
    cutoff = (now or datetime.now(UTC)) - KEY_LIFETIME
    with write_transaction(engine) as conn:
        result = conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff)
        )
    return result.rowcount


def _fingerprint(request: Request) -> str:
    body: bytes = getattr(request.state, "raw_body", b"")
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _claim(conn: Connection, user_id: str, key: str, fingerprint: str) -> bool:
    """Insert the key, or find it taken. A duplicate whose first is still running waits here."""
    now = datetime.now(UTC)
    # Expired keys of this user go first, so an old key can be used afresh.
    conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id,
            idempotency_keys.c.created_at < now - KEY_LIFETIME,
        )
    )
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SET LOCAL lock_timeout = {WAIT_FOR_FIRST_MS}"))
    insert = dialect_insert(conn.dialect.name, idempotency_keys).values(
        user_id=user_id, key=key, fingerprint=fingerprint, created_at=now
    )
    try:
        claimed = conn.execute(
            insert.on_conflict_do_nothing(
                index_elements=[idempotency_keys.c.user_id, idempotency_keys.c.key]
            ).returning(idempotency_keys.c.key)
        ).first()
    except exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise Problem(
                409,
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            ) from None
        raise
    return claimed is not None


def _replay(conn: Connection, user_id: str, key: str, fingerprint: str) -> Response:
    stored = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key
        )
    ).one()
    if stored.fingerprint != fingerprint:
        raise _invalid_key(
            "this key was used with another method, path or body; use a new key for a new request"
        )
    headers = dict(stored.headers or {})
    headers["Idempotent-Replayed"] = "true"
    return Response(content=stored.body, status_code=stored.status_code, headers=headers)


def _record(conn: Connection, user_id: str, key: str, response: Response) -> None:
    mine = (idempotency_keys.c.user_id == user_id) & (idempotency_keys.c.key == key)
    if not 200 <= response.status_code < 300:
        conn.execute(delete(idempotency_keys).where(mine))  # only 2xx answers are kept
        return
    headers = {
        name.decode(): value.decode()
        for name, value in response.raw_headers
        if name.decode() in _REPLAYED_HEADERS
    }
    conn.execute(
        update(idempotency_keys)
        .where(mine)
        .values(status_code=response.status_code, headers=headers, body=bytes(response.body))
    )
