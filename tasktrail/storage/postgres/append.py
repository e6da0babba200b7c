"""The calls of the write functions (migration 0016): `tasktrail_append` and `tasktrail_claim_key`.

`tasktrail_append` takes a decided write (events numbered, not linked; the task's row; the key's
answer) and, in one call, takes the user's stream, checks that the decision still holds, links
and hashes the events, appends them and writes the task's row and the key's answer. It is the
only implementation of those steps on PostgreSQL: a write decided on a snapshot calls it alone,
in autocommit; a write decided under the lock calls it last in its transaction.

The service sends each event's canonical bytes around its `prev_hash` and `seq`
(`HashTemplate`, domain/chain.py) and the database splices the two in and takes the SHA-256, so
it never encodes JSON, and returns the hashes: the service links its events from them and hashes
nothing twice. tests/test_write_port.py holds the two encodings to one hash for every event type.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Json, Jsonb

from tasktrail.domain.chain import fields_of, hash_template
from tasktrail.domain.events import Event
from tasktrail.pg_pool import AsyncConnection
from tasktrail.projections import inline
from tasktrail.storage.port import (
    KEY_LIFETIME,
    WAIT_FOR_FIRST_MS,
    KeptAnswer,
    KeyClaim,
    KeyInUse,
    Outcome,
    StoredAnswer,
)
from tasktrail.storage.postgres.decided import Decided

SNAPSHOT_MOVED = "TT001"  # raised by tasktrail_append: nothing was written
KEY_IN_USE = "TT409"  # the key's first request is still running

_APPEND = (
    "SELECT * FROM tasktrail_append("
    "%s, %s, %s, %s, %s, %s, %s, %s::text[], %s::jsonb[], %s::text[], "
    "%s::bytea[], %s::bytea[], %s::bytea[], %s::jsonb, %s, %s, %s, %s, %s, %s::json, %s)"
)
_CLAIM = "SELECT * FROM tasktrail_claim_key(%s, %s, %s, %s, %s)"


class SnapshotMoved(Exception):
    """The task or the user's stream moved after the snapshot: nothing was written."""


@contextmanager
def refusals() -> Iterator[None]:
    """The functions' own SQLSTATEs as the port's exceptions. Wrap the call and the reading of
    its result: in a pipeline, an error is raised where the results are read."""
    try:
        yield
    except psycopg.Error as error:
        if error.sqlstate == SNAPSHOT_MOVED:
            raise SnapshotMoved(str(error)) from None
        if error.sqlstate == KEY_IN_USE:
            raise KeyInUse(str(error)) from None
        raise


async def claim_key(
    conn: AsyncConnection, user_id: str, claim: KeyClaim, wait_ms: int
) -> StoredAnswer | None:
    """Claim the key for the transaction under way (None), or the answer it keeps; waits at
    most `wait_ms` for a first request still running."""
    with refusals():
        cursor = await conn.execute(
            _CLAIM, (user_id, claim.key, claim.fingerprint, KEY_LIFETIME, wait_ms)
        )
        stored = await cursor.fetchone()
    if stored is None:
        return None
    fingerprint, status_code, headers, body = stored
    return StoredAnswer(fingerprint, status_code, headers, bytes(body))


async def send(
    conn: AsyncConnection,
    decided: Decided,
    claim: KeyClaim | None,
    answer: KeptAnswer | None,
    wait_ms: int = WAIT_FOR_FIRST_MS,
) -> psycopg.AsyncCursor[Any]:
    """Send the call (in a pipeline, queued); read its result with `result`."""
    events = decided.outcome.events
    first = events[0] if events else None
    task = decided.outcome.state
    context = decided.command.context
    templates = [hash_template(fields_of(event)) for event in events]
    arguments = (
        context.user_id,
        uuid.UUID(decided.command.task_id),
        0 if decided.before is None else decided.before.version,
        None if first is None else first.occurred_at,
        context.actor,
        context.request_id,
        None if first is None else first.schema_version,
        [event.type for event in events],
        [Jsonb(event.data) for event in events],
        [event.data_hash for event in events],
        [template.before_prev_hash for template in templates],
        [template.before_seq for template in templates],
        [template.after_seq for template in templates],
        None if task is None or not events else _row_json(decided.outcome),
        None if claim is None else claim.key,
        None if claim is None else claim.fingerprint,
        None if claim is None else KEY_LIFETIME,
        None if claim is None else wait_ms,
        None if answer is None else answer.status_code,
        None if answer is None else Json(answer.headers),
        None if answer is None else answer.body,
    )
    return await conn.execute(_APPEND, arguments)


async def result(cursor: psycopg.AsyncCursor[Any], decided: Decided) -> Outcome | StoredAnswer:
    """What the call did: the write's outcome, its events linked as the database stored them;
    or the answer the key kept. Raises `SnapshotMoved` (nothing written) when the decision no
    longer holds, `KeyInUse` when the key's first request is still running."""
    with refusals():
        row = await cursor.fetchone()
    if row is None:
        raise RuntimeError("tasktrail_append returned no row")
    kind, seq_before, hash_before, hashes, *stored = row
    if kind == "replay":
        fingerprint, status_code, headers, body = stored
        return StoredAnswer(fingerprint, status_code, headers, bytes(body))
    outcome = decided.outcome
    if not outcome.events:
        return outcome
    return _linked(outcome, seq_before, hash_before, hashes)


async def apply(
    conn: AsyncConnection,
    decided: Decided,
    claim: KeyClaim | None,
    answer: KeptAnswer | None,
    wait_ms: int = WAIT_FOR_FIRST_MS,
) -> Outcome | StoredAnswer:
    """One call, in autocommit: a write decided on a snapshot."""
    with refusals():
        cursor = await send(conn, decided, claim, answer, wait_ms)
    return await result(cursor, decided)


def _linked(outcome: Outcome, seq_before: int, hash_before: str, hashes: Sequence[str]) -> Outcome:
    """The events as the database stored them: numbered after its head, linked by its hashes.
    The state's `last_seq` is the database's (the row it wrote says the same)."""
    if len(hashes) != len(outcome.events):
        raise RuntimeError(f"tasktrail_append hashed {len(hashes)} of {len(outcome.events)} events")
    linked: list[Event] = []
    prev_hash = hash_before
    for offset, (event, event_hash) in enumerate(zip(outcome.events, hashes, strict=True), 1):
        linked.append(
            dataclasses.replace(
                event, seq=seq_before + offset, prev_hash=prev_hash, hash=event_hash
            )
        )
        prev_hash = event_hash
    state = outcome.state
    if state is None:
        return Outcome(None, linked)
    return Outcome(dataclasses.replace(state, last_seq=linked[-1].seq), linked, outcome.document)


def _row_json(outcome: Outcome) -> str:
    """The task's row as `jsonb_populate_record` reads it (the database sets `last_seq`)."""
    if outcome.state is None:
        raise RuntimeError("a write that leaves no task has no row")
    return orjson.dumps(inline.task_row(outcome.state, outcome.document), default=_instant).decode()


def _instant(value: object) -> str:
    # orjson writes `datetime` itself, not its subclasses (freezegun's, in tests).
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"a task row holds no {type(value).__name__}")
