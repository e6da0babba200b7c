"""An event of an older schema version: folded in the current shape, served as written."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from tasktrail.database import write_transaction
from tasktrail.domain.chain import data_hash, recompute_hash
from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.events import Event, JsonObject
from tasktrail.domain.evolve import fold
from tasktrail.domain.upcasting import registered
from tasktrail.events.store import lock_user_stream
from tasktrail.projections import inline
from tasktrail.projections.verify import diff_read_model
from tasktrail.schema import events, user_streams
from tests.conftest import Api, auth

# The shape a TaskCreated had at schema_version 0 in this test's story: "name" and "done".
LEGACY = {"name": "Water the plants", "done": True}


def version_0_to_1(data: JsonObject) -> JsonObject:
    return {
        "title": data["name"],
        "description": None,
        "due_at": None,
        "priority": 0,
        "tags": [],
        "completed": data["done"],
    }


@pytest.fixture
def upcaster() -> Iterator[None]:
    with registered("TaskCreated", 0, version_0_to_1):
        yield


def append_legacy_event(engine: Engine, user_id: str) -> tuple[str, datetime]:
    """Write a schema_version 0 TaskCreated as an older release would have, chain and row."""
    task_id = str(uuid.uuid4())
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    with write_transaction(engine) as conn:
        head = lock_user_stream(conn, user_id)
        event = Event(
            user_id=user_id,
            seq=head.seq + 1,
            task_id=task_id,
            version=1,
            type="TaskCreated",
            schema_version=0,
            data=LEGACY,
            data_hash=data_hash(LEGACY),
            occurred_at=at,
            actor=user_id,
            request_id=None,
            prev_hash=head.hash,
            hash="",
        )
        sealed = dataclasses.replace(event, hash=recompute_hash(event))
        conn.execute(
            events.insert().values(
                user_id=user_id,
                seq=sealed.seq,
                task_id=uuid.UUID(task_id),
                version=1,
                type=sealed.type,
                schema_version=0,
                data=LEGACY,
                data_hash=sealed.data_hash,
                occurred_at=at,
                actor=user_id,
                request_id=None,
                prev_hash=sealed.prev_hash,
                hash=sealed.hash,
            )
        )
        conn.execute(
            update(user_streams)
            .where(user_streams.c.user_id == user_id)
            .values(last_seq=sealed.seq, head_hash=sealed.hash, last_occurred_at=at)
        )
        state = fold([sealed])
        assert state is not None
        inline.apply(conn, state)
    return task_id, at


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_every_folding_reader_sees_the_current_shape_while_the_stored_event_stays(
    upcaster: None, api: Api, engine: Engine
) -> None:
    """Read model, as_of, the command handlers and projections verify see a title and a
    completion; the history and the chain still show, and hash, the event as written."""
    task_id, at = append_legacy_event(engine, api.user_id)

    task = api.get(task_id).json()
    assert (task["title"], task["completed"], task["version"]) == ("Water the plants", True, 1)
    past = api.get(task_id, params={"as_of": format_timestamp(at)}).json()
    assert (past["title"], past["completed"]) == ("Water the plants", True)

    reopened = api.request("PATCH", f"/{task_id}/complete", json={"completed": False})
    assert reopened.status_code == 200
    assert (reopened.json()["title"], reopened.json()["version"]) == ("Water the plants", 2)
    assert [drift for drift in diff_read_model(engine) if drift.task_id == task_id] == []

    stored = api.history(task_id)[0]
    assert (stored["schema_version"], stored["data"]) == (0, LEGACY)
    assert stored["data_hash"] == hashlib.sha256(canonical(LEGACY)).hexdigest()
    hashed = {k: v for k, v in stored.items() if k not in ("position", "hash", "data")}
    assert stored["hash"] == hashlib.sha256(canonical(hashed)).hexdigest()
    verify = api.client.get(
        f"/api/audit/users/{api.user_id}/verify", headers=auth("auditor", role="auditor")
    ).json()
    assert (verify["ok"], verify["events"]) == (True, 2)


def test_without_its_upcaster_an_old_event_does_not_fold_to_the_current_shape(
    api: Api, engine: Engine
) -> None:
    """The registry is what makes the difference: evolve alone does not know the old names."""
    with registered("TaskCreated", 0, version_0_to_1):
        task_id, _ = append_legacy_event(engine, api.user_id)
    history = api.history(task_id)
    raw = Event(
        **{
            **{k: history[0][k] for k in ("user_id", "seq", "task_id", "version", "type")},
            "schema_version": 0,
            "data": LEGACY,
            "data_hash": history[0]["data_hash"],
            "occurred_at": datetime.now(UTC),
            "actor": api.user_id,
            "request_id": None,
            "prev_hash": history[0]["prev_hash"],
            "hash": history[0]["hash"],
        }
    )
    state = fold([raw])
    assert state is not None
    assert state.title == ""  # no "title" in version 0 data
