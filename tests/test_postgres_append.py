"""PostgreSQL's write function, `tasktrail_append` (migrations 0010, 0013, 0016), and its caller.

The database numbers, links and hashes the events there; the service encodes everything else.
These tests hold the two to one hash for every event type and for awkward text, and check that a
write whose snapshot moved writes nothing (the adapter then decides again under the lock). The
port's contract, on both engines, is tests/test_write_port.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tasktrail.api.app import create_app
from tasktrail.domain.chain import (
    GENESIS_HASH,
    data_hash,
    event_hash,
    fields_of,
    hash_template,
    hashed_fields,
    recompute_hash,
    verify_chain,
)
from tasktrail.domain.commands import (
    Command,
    CommandContext,
    CompleteTask,
    CreateTask,
    DeleteTask,
    RestoreTask,
    TaskFields,
    UpdateTask,
)
from tasktrail.domain.events import EventType
from tasktrail.pg_pool import AsyncConnection, conninfo_of
from tasktrail.schema import idempotency_keys
from tasktrail.storage.port import KeptAnswer, KeyClaim, Outcome, StoredAnswer
from tasktrail.storage.postgres import append, decided
from tasktrail.storage.postgres.append import SnapshotMoved
from tasktrail.storage.postgres.decided import Decided
from tests.conftest import Api, auth, live_server, make_settings, new_user_id, service_role_settings
from tests.test_write_snapshot import row_is_the_replay
from tests.write_port_helpers import stored_events

# Text that JSON must escape or that UTF-8 writes in several bytes, and text shaped like the
# slots the template cuts out of the encoding.
AWKWARD = [
    'quote " backslash \\ slash /',
    "newline \n tab \t nul-free control \u0001 \u001f del \u007f",
    "naïve café — 東京 🚀 \u2028 \u2029",
    '"prev_hash":"",',
    ',"seq":0,',
    '{"seq":1}',
]


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("request_id", [None, "req-1", '"prev_hash":"",'])
def test_the_template_splices_back_into_the_canonical_bytes(
    text: str, request_id: str | None
) -> None:
    fields = hashed_fields(
        user_id="user-" + text[:20],
        seq=12,
        task_id=str(uuid.uuid4()),
        version=3,
        type=EventType.TASK_UPDATED.value,
        schema_version=1,
        data_hash=data_hash({"changes": {"title": text}}),
        occurred_at=datetime(2026, 12, 3, 6, 0, 0, 123456, tzinfo=UTC),
        actor=text,
        request_id=request_id,
        prev_hash="ab" * 32,
    )
    template = hash_template(fields)
    assert template.hash("ab" * 32, 12) == event_hash(fields)
    assert template.hash(GENESIS_HASH, 1) == event_hash(
        {**fields, "prev_hash": GENESIS_HASH, "seq": 1}
    )


def run_on(conninfo: str, work: Callable[[AsyncConnection], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            return await work(conn)

    return anyio.run(main)


def context(user_id: str, request_id: str | None = "req-π") -> CommandContext:
    return CommandContext(user_id=user_id, actor=user_id, request_id=request_id)


def decide_and_apply(conninfo: str, command: Command) -> Outcome:
    async def work(conn: AsyncConnection) -> Outcome:
        on_snapshot = await decided.on_snapshot(conn, command)
        assert on_snapshot is not None, "the row is current: the write must not go the long way"
        applied = await append.apply(conn, on_snapshot, None, None)
        assert isinstance(applied, Outcome)
        return applied

    result: Outcome = run_on(conninfo, work)
    return result


def test_postgres_hashes_every_event_type_as_the_service_does(
    postgres_engine: Engine, postgres_url: str
) -> None:
    """Each event type, with unicode, escapes, nulls and tags: the hash PostgreSQL stored is the
    hash the service computes from the stored fields, byte for byte, and the chain verifies."""
    conninfo = conninfo_of(make_settings(postgres_url))
    user_id = new_user_id()
    task_id = str(uuid.uuid4())
    commands: list[Command] = [
        CreateTask(
            context=context(user_id),
            task_id=task_id,
            fields=TaskFields(
                title=AWKWARD[0],
                description=AWKWARD[1],
                due_at=datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),  # no fraction
                priority=2,
                tags=("東京", 'q"uote', ',"seq":0,'),
            ),
        ),
        UpdateTask(
            context=context(user_id, None),  # request_id null
            task_id=task_id,
            changes={"title": AWKWARD[2], "description": None, "tags": ()},
            completed=None,
            expected_versions=None,
        ),
        CompleteTask(
            context=context(user_id), task_id=task_id, completed=None, expected_versions=None
        ),
        CompleteTask(
            context=context(user_id), task_id=task_id, completed=None, expected_versions=None
        ),
        # Two events in one call: the second links to the first inside the function.
        UpdateTask(
            context=context(user_id),
            task_id=task_id,
            changes={"title": AWKWARD[3], "due_at": None},
            completed=True,
            expected_versions=frozenset({4}),
        ),
        DeleteTask(context=context(user_id), task_id=task_id, expected_versions=None),
        RestoreTask(context=context(user_id), task_id=task_id),
    ]
    outcomes = [decide_and_apply(conninfo, command) for command in commands]

    stored = stored_events(postgres_engine, user_id)
    assert {event.type for event in stored} == {kind.value for kind in EventType}
    assert [event.seq for event in stored] == list(range(1, 9))
    # What the caller got back is what was stored: linked by the hashes the database returned.
    returned = [event for outcome in outcomes for event in outcome.events]
    assert [(event.seq, event.prev_hash, event.hash) for event in returned] == [
        (event.seq, event.prev_hash, event.hash) for event in stored
    ]
    # And the state the caller got back knows the seq of its last event, as its row does.
    assert [outcome.state and outcome.state.last_seq for outcome in outcomes] == [
        outcome.events[-1].seq for outcome in outcomes
    ]
    for event in stored:
        assert recompute_hash(event) == event.hash
        assert data_hash(event.data) == event.data_hash
        # And by hand, as an auditor would: SHA-256 of the canonical JSON of the fields.
        fields = fields_of(event)
        canonical = json.dumps(
            fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        assert hashlib.sha256(canonical).hexdigest() == event.hash
    assert verify_chain(stored).ok
    assert row_is_the_replay(postgres_engine, user_id, task_id)


def test_a_write_whose_task_moved_writes_nothing(
    postgres_engine: Engine, postgres_url: str
) -> None:
    """Decided on version 1, applied after another write made version 2: refused, and neither
    an event nor the key's claim is left behind."""
    conninfo = conninfo_of(make_settings(postgres_url))
    user_id = new_user_id()
    task_id = str(uuid.uuid4())
    decide_and_apply(conninfo, create(user_id, task_id))
    rename = UpdateTask(
        context=context(user_id),
        task_id=task_id,
        changes={"title": "decided on version 1"},
        completed=None,
        expected_versions=None,
    )
    claim, answer = answer_to_keep("k-moved", "f" * 64, 200, {}, b"{}")

    async def work(conn: AsyncConnection) -> None:
        late = await decided.on_snapshot(conn, rename)
        assert late is not None
        other = await decided.on_snapshot(conn, rename)  # the same rename, applied first
        assert other is not None
        await append.apply(conn, other, None, None)
        with pytest.raises(SnapshotMoved):
            await append.apply(conn, late, claim, answer)

    run_on(conninfo, work)
    assert [event.version for event in stored_events(postgres_engine, user_id)] == [1, 2]
    assert key_count(postgres_engine, user_id) == 0


def test_a_write_with_a_clock_behind_the_stream_writes_nothing(
    postgres_engine: Engine, postgres_url: str
) -> None:
    """occurred_at never decreases along seq: a write whose clock was read before the last
    event's is refused by the database (the long path then reads the clock under the lock)."""
    conninfo = conninfo_of(make_settings(postgres_url))
    user_id = new_user_id()
    decide_and_apply(conninfo, create(user_id, str(uuid.uuid4())))

    async def work(conn: AsyncConnection) -> Decided | None:
        late = create(user_id, str(uuid.uuid4()))
        on_snapshot = await decided.on_snapshot(
            conn, late, clock=lambda: datetime(2000, 1, 1, tzinfo=UTC)
        )
        assert on_snapshot is not None
        with pytest.raises(SnapshotMoved):
            await append.apply(conn, on_snapshot, None, None)
        return on_snapshot

    run_on(conninfo, work)
    assert len(stored_events(postgres_engine, user_id)) == 1


def test_a_keyed_write_whose_key_is_taken_gets_the_stored_answer(
    postgres_engine: Engine, postgres_url: str
) -> None:
    conninfo = conninfo_of(make_settings(postgres_url))
    user_id = new_user_id()
    claim, answer = answer_to_keep("k-taken", "a" * 64, 201, {"etag": '"1"'}, b'{"first": true}')

    async def work(conn: AsyncConnection) -> Any:
        first = await decided.on_snapshot(conn, create(user_id, str(uuid.uuid4())))
        second = await decided.on_snapshot(conn, create(user_id, str(uuid.uuid4())))
        assert first is not None
        assert second is not None
        await append.apply(conn, first, claim, answer)
        return await append.apply(conn, second, claim, answer)

    stored = run_on(conninfo, work)
    assert isinstance(stored, StoredAnswer)
    assert (stored.fingerprint, stored.status_code, stored.headers, stored.body) == (
        "a" * 64,
        201,
        {"etag": '"1"'},
        b'{"first": true}',
    )
    assert len(stored_events(postgres_engine, user_id)) == 1  # the second appended nothing


def test_a_retried_keyed_patch_replays_even_once_its_if_match_is_stale(api: Api) -> None:
    """The retry is decided on a row that has moved past its If-Match; the stored answer wins
    over the 412 the rules would give (on PostgreSQL: the long way claims the key first)."""
    task = api.create(title="guarded")
    headers = {"Idempotency-Key": "retry-after-412", "If-Match": '"1"'}
    first = api.request("PATCH", f"/{task['id']}", json={"title": "once"}, headers=headers)
    assert first.status_code == 200, first.text
    again = api.request("PATCH", f"/{task['id']}", json={"title": "once"}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert len(api.history(task["id"])) == 2


CONCURRENT_PATCHES = 20


def test_concurrent_patches_of_one_task_all_land_in_order(
    postgres_engine: Engine, postgres_url: str
) -> None:
    """Through uvicorn, twenty writes race on one task: those whose snapshot moved go the long
    way, so every one succeeds, versions run 1..21 without a gap, and the chain and the read
    model hold."""
    app: FastAPI = create_app(service_role_settings(postgres_url))
    user_id = new_user_id()
    with TestClient(app) as client:
        task = Api(client, user_id).create(title="raced")

    async def patch_many(base_url: str) -> list[int]:
        async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.patch(
                        f"/api/{user_id}/tasks/{task['id']}",
                        json={"title": f"title {n}"},
                        headers=auth(user_id),
                    )
                    for n in range(CONCURRENT_PATCHES)
                )
            )
        return [response.status_code for response in responses]

    with live_server(app) as base_url:
        statuses = asyncio.run(patch_many(base_url))
    assert statuses == [200] * CONCURRENT_PATCHES
    stored = stored_events(postgres_engine, user_id)
    assert [event.version for event in stored] == list(range(1, CONCURRENT_PATCHES + 2))
    assert all(later.occurred_at >= earlier.occurred_at for earlier, later in pairwise(stored))
    assert verify_chain(stored).ok
    assert row_is_the_replay(postgres_engine, user_id, task["id"])


def create(user_id: str, task_id: str) -> CreateTask:
    return CreateTask(
        context=context(user_id),
        task_id=task_id,
        fields=TaskFields(title="t", description=None, due_at=None, priority=0, tags=()),
    )


def answer_to_keep(
    key: str, fingerprint: str, status_code: int, headers: dict[str, str], body: bytes
) -> tuple[KeyClaim, KeptAnswer]:
    return KeyClaim(key, fingerprint), KeptAnswer(status_code, headers, body)


def key_count(engine: Engine, user_id: str) -> int:
    with engine.connect() as conn:
        return (
            conn.scalar(
                select(func.count())
                .select_from(idempotency_keys)
                .where(idempotency_keys.c.user_id == user_id)
            )
            or 0
        )


def test_claiming_a_key_bounds_its_own_wait_only(postgres_url: str) -> None:
    """`tasktrail_claim_key` waits at most its `wait_ms` for the key, then puts the caller's own
    lock_timeout back: the rest of the write is bounded by the caller's settings, not the key's."""
    settings = service_role_settings(postgres_url)
    with psycopg.connect(conninfo_of(settings)) as conn:
        conn.execute("SET LOCAL lock_timeout = '7s'")
        stored = conn.execute(
            "SELECT * FROM tasktrail_claim_key(%s, 'bounded', %s, interval '24 hours', 250)",
            (new_user_id(), "1" * 64),
        ).fetchall()
        assert stored == []  # claimed: no kept answer
        assert conn.execute("SHOW lock_timeout").fetchone() == ("7s",)
        conn.rollback()
