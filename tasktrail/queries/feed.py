"""A user's change feed: their events in `seq` order, after a given `seq`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from tasktrail.domain.events import Event
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.schema import events


@dataclass(frozen=True, slots=True)
class FeedPage:
    events: list[Event]
    has_more: bool


def user_feed(conn: Connection, user_id: str, *, after: int, limit: int) -> FeedPage:
    """Served from the unique (user_id, seq) index; seq is gapless, so `after` never skips."""
    rows = conn.execute(
        select(*event_columns())
        .where(events.c.user_id == user_id, events.c.seq > after)
        .order_by(events.c.seq)
        .limit(limit + 1)
    ).all()
    return FeedPage([event_from_row(row._mapping) for row in rows[:limit]], len(rows) > limit)
