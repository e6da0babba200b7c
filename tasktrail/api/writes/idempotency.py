"""Idempotency-Key on the write routes: a retried write replays its first answer.

The key is claimed at the start of the write's own transaction (an INSERT that a concurrent
duplicate must wait behind), and the response is stored in that same transaction: a key exists
exactly when its write committed, and only 2xx answers are kept, since an error rolls both back.
The transaction itself is the unit of work's (unit_of_work.py); here are the key's header,
the request's fingerprint and the three steps (claim, replay, record), on a SQLAlchemy
connection and on PostgreSQL's async pool.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import psycopg
from fastapi import Header, Request
from psycopg.types.json import Json
from sqlalchemy import Connection, Engine, bindparam, delete, exc, select, text, update
from sqlalchemy.dialects import postgresql
from starlette.responses import Response

from tasktrail.api.contract.problems import Problem
from tasktrail.commands.in_one_round_trip import AnswerToKeep, StoredAnswer
from tasktrail.database import dialect_insert, write_transaction
from tasktrail.pg_pool import AsyncConnection, compile_statement
from tasktrail.row_security import SET_SWEEP_SQL
from tasktrail.schema import idempotency_keys

# Row security lets the sweep reach keys of this age and older (migration 0014): change both.
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


KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="1 to 255 printable ASCII characters; a retry with the same key, "
        "method, path and body within 24 h replays the first answer",
    ),
]


def parse_key(key: str | None) -> IdempotencyKey | None:
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise _invalid_key("it must be 1 to 255 characters long")
    if not all(" " <= char <= "~" for char in key):
        raise _invalid_key("it must hold printable ASCII characters only")
    return IdempotencyKey(key)


def purge_expired(engine: Engine, now: datetime | None = None) -> int:
    """Delete every user's keys older than 24 h; returns how many went.

    A user's own expired keys also go at their next keyed write; this sweep catches the keys of
    users who do not come back. It runs in the background, never on the request path.
    On PostgreSQL the service's role reaches other users' keys only in a transaction that says
    it sweeps, and then only keys older than 24 h by the database's clock (migration 0014).
    """
    cutoff = (now or datetime.now(UTC)) - KEY_LIFETIME
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(SET_SWEEP_SQL))
        result = conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff)
        )
    return result.rowcount


def fingerprint(request: Request) -> str:
    body: bytes = getattr(request.state, "raw_body", b"")
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def claim(conn: Connection, user_id: str, key: str, fingerprint: str) -> bool:
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
            raise still_running() from None
        raise
    return claimed is not None


def still_running() -> Problem:
    return Problem(
        409, "A request with this Idempotency-Key is still being processed; retry shortly."
    )


def replay(conn: Connection, user_id: str, key: str, fingerprint: str) -> Response:
    stored = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key
        )
    ).one()
    return _replayed(
        stored.fingerprint, fingerprint, stored.status_code, stored.headers, stored.body
    )


def stored_replay(stored: StoredAnswer, fingerprint: str) -> Response:
    """The answer the key's first request stored, or 422 if this request is not that one."""
    return _replayed(
        stored.fingerprint, fingerprint, stored.status_code, stored.headers, stored.body
    )


def answer_to_keep(key: str, fingerprint: str, response: Response) -> AnswerToKeep:
    """The key's claim and its answer, for the write that applies in one call."""
    return AnswerToKeep(
        key=key,
        fingerprint=fingerprint,
        lifetime=KEY_LIFETIME,
        wait_ms=WAIT_FOR_FIRST_MS,
        status_code=response.status_code,
        headers=_replayed_headers(response),
        body=bytes(response.body),
    )


def _replayed(
    stored_fingerprint: str,
    fingerprint: str,
    status_code: int,
    headers: dict[str, str] | None,
    body: bytes,
) -> Response:
    if stored_fingerprint != fingerprint:
        raise _invalid_key(
            "this key was used with another method, path or body; use a new key for a new request"
        )
    replayed = dict(headers or {})
    replayed["Idempotent-Replayed"] = "true"
    return Response(content=bytes(body), status_code=status_code, headers=replayed)


def record(conn: Connection, user_id: str, key: str, response: Response) -> None:
    mine = (idempotency_keys.c.user_id == user_id) & (idempotency_keys.c.key == key)
    if not 200 <= response.status_code < 300:
        conn.execute(delete(idempotency_keys).where(mine))  # only 2xx answers are kept
        return
    conn.execute(
        update(idempotency_keys)
        .where(mine)
        .values(
            status_code=response.status_code,
            headers=_replayed_headers(response),
            body=bytes(response.body),
        )
    )


def _replayed_headers(response: Response) -> dict[str, str]:
    """The headers a replay repeats: the content type, the ETag and the Location."""
    return {
        name.decode(): value.decode()
        for name, value in response.raw_headers
        if name.decode() in _REPLAYED_HEADERS
    }


# The same three steps on PostgreSQL's async pool (the write path of unit_of_work.py), with
# the statements compiled once. In a pipeline, the purge and the SET LOCAL travel with the claim.
_PURGE_OWN = compile_statement(
    delete(idempotency_keys).where(
        idempotency_keys.c.user_id == bindparam("user_id"),
        idempotency_keys.c.created_at < bindparam("cutoff"),
    )
)
_CLAIM = compile_statement(
    postgresql.insert(idempotency_keys)
    .values(
        user_id=bindparam("user_id"),
        key=bindparam("key"),
        fingerprint=bindparam("fingerprint"),
        created_at=bindparam("created_at"),
    )
    .on_conflict_do_nothing(index_elements=[idempotency_keys.c.user_id, idempotency_keys.c.key])
    .returning(idempotency_keys.c.key)
)
_STORED = compile_statement(
    select(
        idempotency_keys.c.fingerprint,
        idempotency_keys.c.status_code,
        idempotency_keys.c.headers,
        idempotency_keys.c.body,
    ).where(
        idempotency_keys.c.user_id == bindparam("user_id"),
        idempotency_keys.c.key == bindparam("key"),
    )
)
_MINE = (idempotency_keys.c.user_id == bindparam("user_id")) & (
    idempotency_keys.c.key == bindparam("key")
)
_RECORD = compile_statement(
    update(idempotency_keys)
    .where(_MINE)
    .values(
        status_code=bindparam("status_code"), headers=bindparam("headers"), body=bindparam("body")
    )
)
_FORGET = compile_statement(delete(idempotency_keys).where(_MINE))


async def claim_on_postgres(
    conn: AsyncConnection, user_id: str, key: str, fingerprint: str
) -> bool:
    """`_claim` on the async pool: True when the key is this request's, False when it is taken."""
    now = datetime.now(UTC)
    await conn.execute(_PURGE_OWN.sql, {"user_id": user_id, "cutoff": now - KEY_LIFETIME})
    await conn.execute(f"SET LOCAL lock_timeout = {WAIT_FOR_FIRST_MS}")
    try:
        cursor = await conn.execute(
            _CLAIM.sql,
            {"user_id": user_id, "key": key, "fingerprint": fingerprint, "created_at": now},
        )
        claimed = await cursor.fetchone()
    except psycopg.errors.LockNotAvailable:
        raise still_running() from None
    return claimed is not None


async def replay_on_postgres(
    conn: AsyncConnection, user_id: str, key: str, fingerprint: str
) -> Response:
    cursor = await conn.execute(_STORED.sql, {"user_id": user_id, "key": key})
    stored = await cursor.fetchone()
    if stored is None:
        raise RuntimeError("a claimed idempotency key has no row")
    stored_fingerprint, status_code, headers, body = stored
    return _replayed(stored_fingerprint, fingerprint, status_code, headers, body)


async def record_on_postgres(
    conn: AsyncConnection, user_id: str, key: str, response: Response
) -> None:
    """Queue the answer's record (or the key's release, for a non-2xx answer)."""
    if not 200 <= response.status_code < 300:
        await conn.execute(_FORGET.sql, {"user_id": user_id, "key": key})
        return
    await conn.execute(
        _RECORD.sql,
        {
            "user_id": user_id,
            "key": key,
            "status_code": response.status_code,
            "headers": Json(_replayed_headers(response)),
            "body": bytes(response.body),
        },
    )
