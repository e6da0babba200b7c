"""What the write port's tests hand it as `respond` and `keep` (the outcome itself, or an answer
as a route makes one), and how they read what it stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from tasktrail.domain.events import Event
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.schema import events, idempotency_keys
from tasktrail.storage.port import KeptAnswer, Outcome


def the_outcome(outcome: Outcome) -> Outcome:
    """Answers with the outcome: the state the write left and the events it appended."""
    return outcome


def no_key(_: Outcome) -> KeptAnswer:
    """For a write without a key, which keeps no answer: never called."""
    raise AssertionError("a write without a key keeps no answer")


def answer_of(outcome: Outcome) -> KeptAnswer:
    """An answer as a route makes one: the task's document (or 204 for a task gone)."""
    if outcome.state is None or outcome.state.deleted:
        return KeptAnswer(204, {}, b"")
    return KeptAnswer(200, {"etag": outcome.document.etag}, outcome.document.body.encode())


def kept(answer: KeptAnswer) -> KeptAnswer:
    return answer


def stored_events(engine: Engine, user_id: str) -> list[Event]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(*event_columns()).where(events.c.user_id == user_id).order_by(events.c.seq)
        )
        return [event_from_row(row._mapping) for row in rows]


def keys_of(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        count = conn.scalar(
            select(func.count())
            .select_from(idempotency_keys)
            .where(idempotency_keys.c.user_id == user_id)
        )
    return count or 0


def without_position(event: Event) -> tuple[Any, ...]:
    """An event's fields but its position, which counts every user's events in its database."""
    return (
        event.user_id,
        event.seq,
        event.task_id,
        event.version,
        event.type,
        event.schema_version,
        event.data,
        event.data_hash,
        event.occurred_at,
        event.actor,
        event.request_id,
        event.prev_hash,
        event.hash,
    )
