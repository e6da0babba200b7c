"""What auditors read: chain verification (and, next, the audit search and export)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, select

from tasktrail.events.chain import ChainReport, RecordedHead, verify_chain
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.events.types import Event
from tasktrail.schema import events, user_streams

_BATCH = 1_000


def verify_user(
    conn: Connection, user_id: str, expected_head: RecordedHead | None = None
) -> ChainReport:
    """Recompute a user's chain from the stored rows and hold it to user_streams' head."""
    stream = conn.execute(
        select(user_streams.c.last_seq, user_streams.c.head_hash).where(
            user_streams.c.user_id == user_id
        )
    ).one_or_none()
    recorded = None if stream is None else RecordedHead(stream.last_seq, stream.head_hash)
    return verify_chain(
        _user_events(conn, user_id), stream_head=recorded, expected_head=expected_head
    )


def users_with_events(conn: Connection) -> Iterator[str]:
    """Every user the log or the streams know of, in order (either may have been tampered)."""
    known = select(user_streams.c.user_id).union(select(events.c.user_id).distinct())
    for row in conn.execute(known.order_by("user_id")).yield_per(_BATCH):
        yield row[0]


def _user_events(conn: Connection, user_id: str) -> Iterator[Event]:
    """The user's events by seq, streamed in batches: memory stays flat for a long log."""
    rows = conn.execution_options(yield_per=_BATCH).execute(
        select(*event_columns()).where(events.c.user_id == user_id).order_by(events.c.seq)
    )
    for row in rows:
        yield event_from_row(row._mapping)
