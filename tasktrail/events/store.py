"""The event store: lock a user's stream, read a task's stream, append with the hash chain."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    RowMapping,
    Update,
    bindparam,
    select,
    update,
)

from tasktrail.database import dialect_insert
from tasktrail.domain.chain import GENESIS_HASH, data_hash, recompute_hash
from tasktrail.domain.event_data import NewEvent
from tasktrail.domain.event_record import EVENT_FIELD_NAMES
from tasktrail.domain.events import CURRENT_SCHEMA_VERSION, Event
from tasktrail.schema import events, user_streams


@dataclass(frozen=True, slots=True)
class StreamHead:
    """Where a user's log ends: the next event links to `hash` and takes `seq + 1`."""

    user_id: str
    seq: int
    hash: str
    occurred_at: datetime | None


def lock_user_stream(conn: Connection, user_id: str) -> StreamHead:
    """Take the user's stream row for the rest of the transaction and return the log's head.

    An upsert, not SELECT ... FOR UPDATE: before a user's first write there is no row to lock, and
    two first writes would both see "no events" and collide on seq 1. The ON CONFLICT DO UPDATE
    locks the row whether it was just made or already there, so a user's writes queue here, one at
    a time: seq stays gapless, the chain linear and occurred_at monotonic, while writes of other
    users never wait. (On SQLite the transaction already holds the database's write lock.)
    """
    row = conn.execute(_lock_statement(conn.dialect.name), {"user_id": user_id}).one()
    return StreamHead(user_id, row.last_seq, row.head_hash, row.last_occurred_at)


@cache
def _lock_statement(dialect: str) -> Insert:
    """Built once per engine kind: statement construction costs more than its execution."""
    insert = dialect_insert(dialect, user_streams).values(
        user_id=bindparam("user_id"), last_seq=0, head_hash=GENESIS_HASH, last_occurred_at=None
    )
    return insert.on_conflict_do_update(
        index_elements=[user_streams.c.user_id],
        set_={"user_id": insert.excluded.user_id},
    ).returning(user_streams.c.last_seq, user_streams.c.head_hash, user_streams.c.last_occurred_at)


def read_task_stream(conn: Connection, user_id: str, task_id: str) -> list[Event]:
    """A task's events in version order; empty for a task of another user (no oracle)."""
    rows = conn.execute(
        select(*event_columns())
        .where(events.c.task_id == uuid.UUID(task_id), events.c.user_id == user_id)
        .order_by(events.c.version)
    )
    return [event_from_row(row._mapping) for row in rows]


def append(conn: Connection, head: StreamHead, numbered: Sequence[Event]) -> list[Event]:
    """Append events numbered after `head` (held by `lock_user_stream`), linked into its chain
    here, and move the head past them."""
    appended = linked(head.hash, numbered)
    if not appended:
        return appended
    conn.execute(events.insert(), [event_row(event) for event in appended])
    conn.execute(_move_head_statement(), moved_head(appended[-1]))
    return appended


def linked(prev_hash: str, numbered: Sequence[Event]) -> list[Event]:
    """Numbered events linked into the chain after `prev_hash`, each with its hash."""
    sealed: list[Event] = []
    for unlinked in numbered:
        event = dataclasses.replace(unlinked, prev_hash=prev_hash)
        prev_hash = recompute_hash(event)
        sealed.append(dataclasses.replace(event, hash=prev_hash))
    return sealed


def numbered_events(
    head: StreamHead,
    *,
    task_id: str,
    base_version: int,
    new_events: Sequence[NewEvent],
    now: datetime,
    actor: str,
    request_id: str | None,
) -> list[Event]:
    """The events as they will be stored after `head`, but for their links (`prev_hash` and
    `hash` empty): whoever appends them links them, the SQLite adapter here (`linked`),
    PostgreSQL's in `tasktrail_append`.

    `occurred_at` is the clock read after the lock, raised to the previous event's time if the
    clock went back, so it never decreases along seq.
    """
    occurred_at = now if head.occurred_at is None else max(now, head.occurred_at)
    return [
        Event(
            user_id=head.user_id,
            seq=head.seq + offset,
            task_id=task_id,
            version=base_version + offset,
            type=new.type.value,
            schema_version=CURRENT_SCHEMA_VERSION,
            data=new.data,
            data_hash=data_hash(new.data),
            occurred_at=occurred_at,
            actor=actor,
            request_id=request_id,
            prev_hash="",
            hash="",
        )
        for offset, new in enumerate(new_events, start=1)
    ]


@cache
def _move_head_statement() -> Update:
    return (
        update(user_streams)
        .where(user_streams.c.user_id == bindparam("head_user_id"))
        .values(
            last_seq=bindparam("last_seq"),
            head_hash=bindparam("head_hash"),
            last_occurred_at=bindparam("last_occurred_at"),
        )
    )


def move_head_statement() -> Update:
    """`UPDATE user_streams` to the last appended event (parameters: `moved_head`)."""
    return _move_head_statement()


def moved_head(last: Event) -> dict[str, object]:
    return {
        "head_user_id": last.user_id,
        "last_seq": last.seq,
        "head_hash": last.hash,
        "last_occurred_at": last.occurred_at,
    }


def lock_statement(dialect: str) -> Insert:
    """The upsert that takes a user's stream (see `lock_user_stream`), for other executors."""
    return _lock_statement(dialect)


# An event's fields, in the order the contract serves them, are the `events` columns read.
_EVENT_COLUMNS: tuple[ColumnElement[Any], ...] = tuple(events.c[name] for name in EVENT_FIELD_NAMES)
# What is written: every field but the position, which the database gives.
_WRITTEN_FIELDS = tuple(name for name in EVENT_FIELD_NAMES if name != "position")


def event_columns() -> tuple[ColumnElement[Any], ...]:
    """The columns of an event as the contract serves it (not the PostgreSQL xact_id)."""
    return _EVENT_COLUMNS


def event_from_row(mapping: RowMapping | Mapping[str, Any]) -> Event:
    fields = {name: mapping[name] for name in EVENT_FIELD_NAMES}
    fields["task_id"] = str(fields["task_id"])  # a UUID on PostgreSQL, text on SQLite
    return Event(**fields)


def event_row(event: Event) -> dict[str, object]:
    """An event as the `events` table takes it (the task id a UUID)."""
    row: dict[str, object] = {name: getattr(event, name) for name in _WRITTEN_FIELDS}
    row["task_id"] = uuid.UUID(event.task_id)
    return row
