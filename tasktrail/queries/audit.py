"""What auditors read: chain verification, the search of the whole log, its export."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    cast,
    func,
    literal,
    select,
    text,
    true,
    tuple_,
)

from tasktrail.database import read_connection
from tasktrail.domain.chain import GENESIS_HASH, ChainReport, RecordedHead, verify_chain
from tasktrail.domain.events import Event
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.schema import Xid8, events, user_streams

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
    # No stream row means the service never recorded an event for this user: any event found
    # lies beyond a head of seq 0.
    recorded = (
        RecordedHead(0, GENESIS_HASH)
        if stream is None
        else RecordedHead(stream.last_seq, stream.head_hash)
    )
    # closing(): the check may stop at the first break; the server-side cursor must not wait
    # for the garbage collector.
    with closing(_user_events(conn, user_id)) as stored:
        return verify_chain(stored, stream_head=recorded, expected_head=expected_head)


def users_with_events(conn: Connection) -> Iterator[str]:
    """Every user the log or the streams know of, in order (either may have been tampered)."""
    known = select(user_streams.c.user_id).union(select(events.c.user_id).distinct())
    for row in conn.execute(known.order_by("user_id")).yield_per(_BATCH):
        yield row[0]


def _user_events(conn: Connection, user_id: str) -> Generator[Event]:
    """The user's events by seq, streamed in batches: memory stays flat for a long log."""
    with conn.execution_options(yield_per=_BATCH).execute(
        select(*event_columns()).where(events.c.user_id == user_id).order_by(events.c.seq)
    ) as rows:
        for row in rows:
            yield event_from_row(row._mapping)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """The audit search: every field narrows it; none at all is the whole log."""

    user_id: str | None = None
    task_id: str | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[Event]
    has_more: bool


class UnknownPosition(ValueError):
    """`after` names no event."""


def audit_page(
    conn: Connection, search: AuditFilter, *, after: int | None, limit: int
) -> AuditPage:
    """A page of the log in commit-safe order, after the event at position `after`.

    SQLite serialises writers, so position order is commit order. On PostgreSQL a transaction
    can take a lower position and commit after one with a higher position: the order is
    (xact_id, position), and only events whose transaction is older than the oldest one still
    running are handed out. A reader following `after` therefore never skips an event that
    commits late: it is not handed out before everything it could be ordered behind is final.
    """
    statement = _search(conn, search).where(_below_horizon(conn))
    if after is not None:
        statement = statement.where(_after(conn, after))
    rows = conn.execute(statement.order_by(*_commit_order(conn)).limit(limit + 1)).all()
    return AuditPage([event_from_row(row._mapping) for row in rows[:limit]], len(rows) > limit)


def audit_export(
    engine: Engine, search: AuditFilter, *, after: int | None = None, batch: int = _BATCH
) -> Iterator[Event]:
    """The whole filtered log in commit-safe order, read in short batches.

    Each batch takes a pooled connection for one query and gives it back, so a slow reader of a
    long export never holds a connection (nor a transaction) while it waits. The horizon is
    fixed when the export starts: it ends with what was final then.
    """
    with read_connection(engine) as conn:
        horizon = _horizon_value(conn)
        key = None if after is None else _key_of(conn, after)
    while True:
        with read_connection(engine) as conn:
            statement = _search(conn, search, with_xact_id=True)
            if horizon is not None:
                statement = statement.where(events.c.xact_id < cast(literal(horizon), Xid8()))
            if key is not None:
                statement = statement.where(_after_key(conn, key))
            rows = conn.execute(statement.order_by(*_commit_order(conn)).limit(batch)).all()
        for row in rows:
            yield event_from_row(row._mapping)
        if len(rows) < batch:
            return
        last = rows[-1]
        key = (None if last.xact_id is None else int(last.xact_id), last.position)


def feed_horizon_held_seconds(conn: Connection) -> float | None:
    """How long the oldest running writer has been open: the audit feed waits for it.

    The commit-safe feed hands out nothing written after the oldest running transaction began;
    a transaction left open holds every reader back. None on SQLite, which has no such wait.

    pg_stat_activity shows a role when another role's transaction began only if it may read
    every session's statistics, which the service's role may not (migration 0015): the sessions
    the owner sees come from `tasktrail_feed_horizon_held_seconds()`, which runs with the
    owner's rights and returns only this number; the service's own come from its own view.
    """
    if not _postgres(conn):
        return None
    held = conn.execute(
        text(
            "SELECT greatest(tasktrail_feed_horizon_held_seconds(),"
            " coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0)) "
            # Every database of the cluster: transaction ids, and so the horizon, are shared.
            "FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
        )
    ).scalar_one()
    return float(held)


def count_events(conn: Connection, search: AuditFilter) -> int:
    """How many events the search matches (for a progress bar's total)."""
    matching = _search(conn, search).subquery()
    return int(conn.execute(select(func.count()).select_from(matching)).scalar_one())


def _search(conn: Connection, search: AuditFilter, *, with_xact_id: bool = False) -> Select[Any]:
    columns = [*event_columns()]
    if with_xact_id:
        columns.append(cast(events.c.xact_id, String).label("xact_id"))
    statement = select(*columns)
    if search.user_id is not None:
        statement = statement.where(events.c.user_id == search.user_id)
    if search.task_id is not None:
        statement = statement.where(events.c.task_id == uuid.UUID(search.task_id))
    if search.types:
        statement = statement.where(events.c.type.in_(search.types))
    if search.since is not None:
        statement = statement.where(events.c.occurred_at >= search.since)
    if search.until is not None:
        statement = statement.where(events.c.occurred_at < search.until)
    return statement


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _commit_order(conn: Connection) -> tuple[ColumnElement[Any], ...]:
    if _postgres(conn):
        return (events.c.xact_id, events.c.position)
    return (events.c.position,)


def _below_horizon(conn: Connection) -> ColumnElement[bool]:
    if _postgres(conn):
        return events.c.xact_id < func.pg_snapshot_xmin(func.pg_current_snapshot())
    return true()


def _horizon_value(conn: Connection) -> str | None:
    if not _postgres(conn):
        return None
    horizon: str = conn.execute(
        select(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), String))
    ).scalar_one()
    return horizon


def _after(conn: Connection, position: int) -> ColumnElement[bool]:
    """Rows after the event at `position` in commit-safe order."""
    return _after_key(conn, _key_of(conn, position))


def _key_of(conn: Connection, position: int) -> tuple[int | None, int]:
    """The commit-safe sort key of the event at `position`."""
    found = conn.execute(
        select(cast(events.c.xact_id, String)).where(events.c.position == position)
    ).one_or_none()
    if found is None:
        raise UnknownPosition(f"no event has position {position}")
    return (None if found[0] is None else int(found[0]), position)


def _after_key(conn: Connection, key: tuple[int | None, int]) -> ColumnElement[bool]:
    xact_id, position = key
    if xact_id is None or not _postgres(conn):
        return events.c.position > position
    return tuple_(events.c.xact_id, events.c.position) > tuple_(
        cast(literal(str(xact_id)), Xid8()), literal(position)
    )
