"""A write on PostgreSQL decided on a snapshot and applied in one round trip.

The long path (on_postgres.py) takes the user's stream first and decides under it: a
transaction of two round trips, holding the lock across both. This path reads the task's row
without a lock (one statement; none for a create, whose id is new), decides, folds and encodes
in Python, and sends the result to `tasktrail_append` (migration 0010), which in one call and one
transaction takes the stream, checks that the snapshot still holds, numbers, links and hashes
the events, appends them and writes the task's row and the key's answer. The lock is held for
that call only.

The snapshot holds when the task's last version is still the one decided on and the stream's
last event is not later than this write's clock, so `occurred_at` never decreases along `seq`.
When it does not (another write of the same task, or of the same user with a later clock, came
first) nothing is written (`SnapshotMoved`) and the caller runs the long path, which decides
under the lock: the rules, the chain and the row are the same either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

import orjson
import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Json, Jsonb

from tasktrail.commands.decide import decide
from tasktrail.commands.handlers import Clock, Outcome, system_clock
from tasktrail.commands.types import Command, CreateTask
from tasktrail.events.chain import GENESIS_HASH, fields_of, hash_template
from tasktrail.events.store import StreamHead, seal_events
from tasktrail.events.types import Event, NewEvent
from tasktrail.pg_pool import AsyncConnection, compile_statement, in_scope
from tasktrail.projections import inline
from tasktrail.projections.evolve import evolve
from tasktrail.projections.snapshot import snapshot_statement, state_from_row
from tasktrail.projections.state import TaskState
from tasktrail.row_security import DatabaseScope

SNAPSHOT_MOVED = "TT001"  # raised by tasktrail_append: nothing was written
KEY_IN_USE = "TT409"  # the key's first request is still running

_SNAPSHOT = compile_statement(snapshot_statement())
_APPEND = (
    "SELECT * FROM tasktrail_append("
    "%s, %s, %s, %s, %s, %s, %s, %s::text[], %s::jsonb[], %s::text[], "
    "%s::bytea[], %s::bytea[], %s::bytea[], %s::jsonb, %s, %s, %s, %s, %s, %s::json, %s)"
)
# A head to seal the events against before the database names the real one: their seq, links
# and hashes are placeholders, and nothing of them is sent (see `_templates`).
_PLACEHOLDER_HEAD_SEQ = 0


class SnapshotMoved(Exception):
    """The task or the user's stream moved after the snapshot: nothing was written."""


@dataclass(frozen=True, slots=True)
class Decided:
    """A command decided on a snapshot: the state before, the events to append (sealed
    against a placeholder head), and the state after (whose `last_seq` the database sets)."""

    command: Command
    before: TaskState | None
    new_events: Sequence[NewEvent]
    events: list[Event]
    after: TaskState | None

    @property
    def outcome(self) -> Outcome:
        """What the answer is made from: the document does not depend on seq or hashes."""
        return Outcome(self.after, self.events)


@dataclass(frozen=True, slots=True)
class AnswerToKeep:
    """An Idempotency-Key's claim and the answer stored with it, in the write's transaction."""

    key: str
    fingerprint: str
    lifetime: timedelta
    wait_ms: int
    status_code: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The key was taken: the answer its first request stored, and that request's fingerprint."""

    fingerprint: str
    status_code: int
    headers: dict[str, str] | None
    body: bytes


async def decide_on_snapshot(
    conn: AsyncConnection, command: Command, clock: Clock = system_clock
) -> Decided | None:
    """Read the task (no lock), decide and fold. None when the row is not the fold of the log
    (a drifted read model, or a task with no row): the long path folds the stream instead.
    Domain errors are raised as `decide` raises them."""
    context = command.context
    before: TaskState | None = None
    if not isinstance(command, CreateTask):
        cursor = conn.cursor(row_factory=namedtuple_row)
        async with in_scope(conn, DatabaseScope(user_id=context.user_id)):
            await cursor.execute(
                _SNAPSHOT.sql,
                _SNAPSHOT.params(
                    {"task_id": uuid.UUID(command.task_id), "user_id": context.user_id}
                ),
            )
        row: Any = await cursor.fetchone()  # a named tuple of the snapshot's columns
        # No row (no task of this user's, or a task whose row is missing) or a row that is not
        # the fold of the log: the long path tells them apart by the log.
        if row is None or row.version != row.stream_version:
            return None
        before = state_from_row(row)
    new_events = decide(before, command)
    if not new_events:
        return Decided(command, before, [], [], before)
    placeholder = StreamHead(context.user_id, _PLACEHOLDER_HEAD_SEQ, GENESIS_HASH, None)
    sealed = seal_events(
        placeholder,
        task_id=command.task_id,
        base_version=0 if before is None else before.version,
        new_events=new_events,
        now=clock(),
        actor=context.actor,
        request_id=context.request_id,
    )
    after = reduce(evolve, sealed, before)
    if after is None:
        raise RuntimeError(f"events {sealed} fold to no task")  # decide never asks for that
    return Decided(command, before, new_events, sealed, after)


async def apply_decided(
    conn: AsyncConnection, decided: Decided, keep: AnswerToKeep | None
) -> Outcome | StoredAnswer:
    """Append, project and keep the answer in one call; the stored answer when the key was
    taken. Raises `SnapshotMoved` (nothing written) when the snapshot no longer holds."""
    events = decided.events
    first = events[0] if events else None
    task = decided.after
    context = decided.command.context
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
        *_templates(events),
        None if task is None or not events else _row_json(task),
        None if keep is None else keep.key,
        None if keep is None else keep.fingerprint,
        None if keep is None else keep.lifetime,
        None if keep is None else keep.wait_ms,
        None if keep is None else keep.status_code,
        None if keep is None else Json(keep.headers),
        None if keep is None else keep.body,
    )
    try:
        # One call in autocommit: the function sets the user's scope first (migration 0013).
        cursor = await conn.execute(_APPEND, arguments)
    except psycopg.Error as error:
        if error.sqlstate == SNAPSHOT_MOVED:
            raise SnapshotMoved(str(error)) from None
        raise
    result = await cursor.fetchone()
    if result is None:
        raise RuntimeError("tasktrail_append returned no row")
    outcome, seq_before, hash_before, head_hash, *stored = result
    if outcome == "replay":
        fingerprint, status_code, headers, body = stored
        return StoredAnswer(fingerprint, status_code, headers, bytes(body))
    if not events:
        return Outcome(decided.after, [])
    return _as_appended(decided, seq_before, hash_before, head_hash)


def _templates(events: Sequence[Event]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Each event's canonical bytes around its `prev_hash` and `seq`, which the database fills."""
    templates = [hash_template(fields_of(event)) for event in events]
    return (
        [template.before_prev_hash for template in templates],
        [template.before_seq for template in templates],
        [template.after_seq for template in templates],
    )


def _row_json(task: TaskState) -> str:
    """The task's row as `jsonb_populate_record` reads it (the database sets `last_seq`)."""
    return orjson.dumps(inline.task_row(task), default=_instant).decode()


def _instant(value: object) -> str:
    # orjson writes `datetime` itself, not its subclasses (freezegun's, in tests).
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"a task row holds no {type(value).__name__}")


def _as_appended(decided: Decided, seq_before: int, hash_before: str, head_hash: str) -> Outcome:
    """The events as the database stored them (sealed again against the real head), held to
    the hash it computed: the two encodings are one, and a difference is a bug to shout about."""
    first = decided.events[0]
    sealed = seal_events(
        StreamHead(first.user_id, seq_before, hash_before, None),
        task_id=first.task_id,
        base_version=first.version - 1,
        new_events=decided.new_events,
        now=first.occurred_at,
        actor=first.actor,
        request_id=first.request_id,
    )
    if sealed[-1].hash != head_hash:
        raise RuntimeError(
            f"tasktrail_append hashed seq {sealed[-1].seq} of {first.user_id} as {head_hash}, "
            f"the service as {sealed[-1].hash}"
        )
    after = reduce(evolve, sealed, decided.before)
    return Outcome(after, sealed)
