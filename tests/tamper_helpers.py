"""Helpers of the tamper tests: the attacker's rewrites of a log, and the verify route's report.

The attacker runs with the append-only triggers off for one transaction (`attack`); see
test_tamper_detection.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, delete, insert, select, text, update

from tasktrail.domain.chain import GENESIS_HASH, data_hash, recompute_hash
from tasktrail.domain.events import Event
from tasktrail.events.store import event_columns, event_from_row
from tasktrail.schema import events, tasks, user_streams
from tests.conftest import Api, auth

LOG_LENGTH = 5
SQLITE_TRIGGER = (
    "CREATE TRIGGER events_refuse_{op} BEFORE {OP} ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only: {OP} refused'); END"
)


# --- the attacker -------------------------------------------------------------------------------


@contextmanager
def attack(engine: Engine) -> Iterator[Connection]:
    """One transaction in which the append-only triggers do not fire; they hold again after it."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            yield conn
            return
        for operation in ("UPDATE", "DELETE"):
            conn.execute(text(f"DROP TRIGGER events_refuse_{operation.lower()}"))
        try:
            yield conn
        finally:
            for operation in ("UPDATE", "DELETE"):
                conn.execute(text(SQLITE_TRIGGER.format(op=operation.lower(), OP=operation)))


def stored_events(conn: Connection, user_id: str) -> list[Event]:
    rows = conn.execute(
        select(*event_columns()).where(events.c.user_id == user_id).order_by(events.c.seq)
    )
    return [event_from_row(row._mapping) for row in rows]


def at_seq(user_id: str, seq: int) -> Any:
    return (events.c.user_id == user_id) & (events.c.seq == seq)


def edit_data(conn: Connection, user_id: str) -> None:
    conn.execute(update(events).where(at_seq(user_id, 3)).values(data={"forged": True}))


def edit_actor(conn: Connection, user_id: str) -> None:
    conn.execute(update(events).where(at_seq(user_id, 2)).values(actor="mallory"))


def delete_seq_2(conn: Connection, user_id: str) -> None:
    conn.execute(delete(events).where(at_seq(user_id, 2)))


def swap_seq_2_and_3(conn: Connection, user_id: str) -> None:
    """Exchange the seq of events 2 and 3, through -1 because (user_id, seq) is unique."""
    conn.execute(update(events).where(at_seq(user_id, 2)).values(seq=-1))
    conn.execute(update(events).where(at_seq(user_id, 3)).values(seq=2))
    conn.execute(update(events).where(at_seq(user_id, -1)).values(seq=3))


def cut_tail(conn: Connection, user_id: str) -> None:
    conn.execute(delete(events).where((events.c.user_id == user_id) & (events.c.seq > 3)))


def append_unrecorded(conn: Connection, user_id: str) -> None:
    """A sixth event, correctly linked and hashed, that user_streams never heard of."""
    last = stored_events(conn, user_id)[-1]
    forged = dataclasses.replace(
        last, seq=last.seq + 1, version=last.version + 1, prev_hash=last.hash, hash=""
    )
    forged = dataclasses.replace(forged, hash=recompute_hash(forged))
    row = {column.name: getattr(forged, column.name) for column in event_columns()}
    del row["position"]
    row["task_id"] = uuid.UUID(forged.task_id)
    conn.execute(insert(events).values(**row))


def forge_stream_head(conn: Connection, user_id: str) -> None:
    """Every event still recomputes, but user_streams now names another head."""
    where = user_streams.c.user_id == user_id
    conn.execute(update(user_streams).where(where).values(head_hash="b" * 64))


def rewrite_chain(conn: Connection, user_id: str) -> None:
    """Forge event 1's data and rehash the whole chain, and the head in user_streams after it."""
    prev_hash = GENESIS_HASH
    for event in stored_events(conn, user_id):
        data = {**event.data, "title": "forged"} if event.seq == 1 else dict(event.data)
        forged = dataclasses.replace(
            event, data=data, data_hash=data_hash(data), prev_hash=prev_hash, hash=""
        )
        forged = dataclasses.replace(forged, hash=recompute_hash(forged))
        conn.execute(
            update(events)
            .where(events.c.position == event.position)
            .values(
                data=data, data_hash=forged.data_hash, prev_hash=forged.prev_hash, hash=forged.hash
            )
        )
        prev_hash = forged.hash
    conn.execute(
        update(user_streams).where(user_streams.c.user_id == user_id).values(head_hash=prev_hash)
    )


def erase_user(engine: Engine, user_id: str) -> None:
    with attack(engine) as conn:
        conn.execute(delete(events).where(events.c.user_id == user_id))
        conn.execute(delete(user_streams).where(user_streams.c.user_id == user_id))
        conn.execute(delete(tasks).where(tasks.c.user_id == user_id))


# --- the log under attack -----------------------------------------------------------------------


def build_log(api: Api) -> None:
    """Five events: created, updated, completed, created, updated."""
    first = api.create(title="first")
    assert api.request("PATCH", f"/{first['id']}", json={"title": "renamed"}).status_code == 200
    assert api.request("PATCH", f"/{first['id']}/complete").status_code == 200
    second = api.create(title="second")
    assert api.request("PATCH", f"/{second['id']}", json={"priority": 2}).status_code == 200


def hashes(engine: Engine, user_id: str) -> dict[int, str]:
    """The stored hash of each seq of the user."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.seq, events.c.hash).where(events.c.user_id == user_id)
        ).all()
    return {row.seq: row.hash for row in rows}


def stream_head(engine: Engine, user_id: str) -> tuple[int, str] | None:
    columns = (user_streams.c.last_seq, user_streams.c.head_hash)
    with engine.connect() as conn:
        row = conn.execute(select(*columns).where(user_streams.c.user_id == user_id)).one_or_none()
    return None if row is None else (row.last_seq, row.head_hash)


def verify(
    client: TestClient, user_id: str, params: Any = None, headers: dict[str, str] | None = None
) -> Any:
    headers = auth("auditor-on-duty", role="auditor") if headers is None else headers
    return client.get(f"/api/audit/users/{user_id}/verify", params=params, headers=headers)


def report(client: TestClient, user_id: str, expected_head: str | None = None) -> dict[str, Any]:
    response = verify(
        client, user_id, None if expected_head is None else {"expected_head": expected_head}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"user_id", "events", "ok", "head", "first_bad_seq", "reason"}
    assert body["user_id"] == user_id
    return body


def intact(user_id: str, events: int, head: str) -> dict[str, Any]:
    """The whole body of a report on a chain that verifies."""
    return {
        "user_id": user_id,
        "events": events,
        "ok": True,
        "head": head,
        "first_bad_seq": None,
        "reason": None,
    }
