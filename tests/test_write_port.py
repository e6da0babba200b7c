"""The write port's contract, held on both of its adapters: SQLite's and PostgreSQL's.

Every test runs once per adapter, through the port alone (`write`), as the service's role on
PostgreSQL: appends of every kind, writes that race, keys taken or still in use, decisions whose
snapshot moved (a clock that went back), refusals and answers that fail, which must leave nothing
behind. What is PostgreSQL's own (the hash its function computes, a snapshot refused by it) is
tests/test_postgres_append.py; what a client sees of it, tests/test_idempotency.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import anyio
import psycopg
import pytest
from sqlalchemy import Engine

from tasktrail.database import create_database_engine
from tasktrail.domain.chain import recompute_hash, verify_chain
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
from tasktrail.domain.document import task_document
from tasktrail.domain.errors import TaskNotFound, VersionConflict
from tasktrail.domain.events import Event, EventType
from tasktrail.pg_pool import AsyncPool, conninfo_of
from tasktrail.storage.keys import purge_expired
from tasktrail.storage.port import (
    KEY_LIFETIME,
    KeptAnswer,
    KeyClaim,
    KeyInUse,
    Outcome,
    StoredAnswer,
    Write,
    WritePort,
    Written,
    key_wait_ms,
)
from tasktrail.storage.postgres.adapter import PostgresWrites
from tasktrail.storage.sqlite.adapter import SqliteWrites
from tests.conftest import new_user_id, service_role_settings
from tests.test_write_snapshot import row_is_the_replay
from tests.write_port_helpers import (
    answer_of,
    kept,
    keys_of,
    no_key,
    stored_events,
    the_outcome,
    without_position,
)

START = datetime(2026, 12, 7, 9, 0, 0, 250000, tzinfo=UTC)


class SteppingClock:
    """A clock that moves one millisecond per reading, and can be set back."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@asynccontextmanager
async def adapter_of(database_url: str, clock: SteppingClock) -> AsyncIterator[WritePort]:
    """The engine's adapter, built as `create_app` builds it, with the test's clock."""
    settings = service_role_settings(database_url)
    if settings.is_postgres:
        pool = AsyncPool(settings)
        try:
            yield PostgresWrites(pool, clock, key_wait_ms(settings.database_deadline))
        finally:
            await pool.close()
        return
    engine = create_database_engine(settings)
    try:
        yield SqliteWrites(engine, settings.database_deadline, clock)
    finally:
        engine.dispose()


Work = Callable[[WritePort], Coroutine[Any, Any, Any]]


def run(database_url: str, work: Work, clock: SteppingClock | None = None) -> Any:
    async def main() -> Any:
        async with adapter_of(database_url, clock or SteppingClock()) as port:
            return await work(port)

    return anyio.run(main)


def context(user_id: str) -> CommandContext:
    return CommandContext(user_id=user_id, actor=user_id, request_id="port-contract")


def create(user_id: str, task_id: str, title: str = "t") -> CreateTask:
    return CreateTask(context=context(user_id), task_id=task_id, fields=TaskFields(title=title))


def rename(user_id: str, task_id: str, title: str, versions: set[int] | None = None) -> UpdateTask:
    return UpdateTask(
        context=context(user_id),
        task_id=task_id,
        changes={"title": title},
        completed=None,
        expected_versions=None if versions is None else frozenset(versions),
    )


async def outcome_of(port: WritePort, command: Command) -> Outcome:
    written = await port.write(Write(command, None, the_outcome, no_key))
    assert isinstance(written, Written)
    assert written.appended == len(written.answer.events)
    return written.answer


def test_every_kind_of_write_appends_links_and_projects(database_url: str, engine: Engine) -> None:
    """Each event type through the port: numbered and linked without a gap, each hash the one
    the contract defines, the task's row the fold of the log, the answer made from the state
    the write left (its document the row's)."""
    user_id, task_id = new_user_id(), str(uuid.uuid4())
    commands: list[Command] = [
        create(user_id, task_id, "naïve café — 東京 🚀"),
        rename(user_id, task_id, 'quote " backslash \\'),
        CompleteTask(
            context=context(user_id), task_id=task_id, completed=None, expected_versions=None
        ),
        CompleteTask(
            context=context(user_id), task_id=task_id, completed=None, expected_versions=None
        ),
        # Two events in one write.
        UpdateTask(
            context=context(user_id),
            task_id=task_id,
            changes={"title": "both", "tags": ("a", "b")},
            completed=True,
            expected_versions=frozenset({4}),
        ),
        DeleteTask(context=context(user_id), task_id=task_id, expected_versions=None),
        RestoreTask(context=context(user_id), task_id=task_id),
    ]

    async def work(port: WritePort) -> list[Outcome]:
        return [await outcome_of(port, command) for command in commands]

    outcomes = run(database_url, work)
    stored = stored_events(engine, user_id)
    assert {event.type for event in stored} == {kind.value for kind in EventType}
    assert [event.seq for event in stored] == list(range(1, 9))
    assert [event.version for event in stored] == list(range(1, 9))
    assert all(recompute_hash(event) == event.hash for event in stored)
    assert verify_chain(stored).ok
    assert [len(outcome.events) for outcome in outcomes] == [1, 1, 1, 1, 2, 1, 1]
    last = outcomes[-1].state
    assert last is not None
    assert (last.version, last.deleted, last.title) == (8, False, "both")
    assert outcomes[-1].document == task_document(last)
    assert row_is_the_replay(engine, user_id, task_id)


def test_both_adapters_store_the_same_log_for_the_same_writes(
    sqlite_url: str, postgres_url: str, sqlite_engine: Engine, postgres_engine: Engine
) -> None:
    """One script of writes, one clock, one user and task ids: the two engines store the same
    events, byte for byte, hashes included (the hash is the contract's, not an engine's)."""
    user_id, first, second = new_user_id(), str(uuid.uuid4()), str(uuid.uuid4())
    commands: list[Command] = [
        create(user_id, first, "one"),
        create(user_id, second, "two"),
        rename(user_id, first, "one, renamed", {1}),
        CompleteTask(
            context=context(user_id), task_id=second, completed=True, expected_versions=None
        ),
        DeleteTask(context=context(user_id), task_id=first, expected_versions=None),
    ]

    async def work(port: WritePort) -> None:
        for command in commands:
            await outcome_of(port, command)

    run(sqlite_url, work)
    run(postgres_url, work)

    on_sqlite = [without_position(event) for event in stored_events(sqlite_engine, user_id)]
    on_postgres = [without_position(event) for event in stored_events(postgres_engine, user_id)]
    assert len(on_sqlite) == 5
    assert on_sqlite == on_postgres


RACERS = 12


def test_racing_writes_of_one_task_all_land_in_order(database_url: str, engine: Engine) -> None:
    """Writes of one task at once: each decided again when another came first, none lost, the
    versions without a gap, `occurred_at` never decreasing along seq, the row the fold."""
    user_id, task_id = new_user_id(), str(uuid.uuid4())

    async def work(port: WritePort) -> list[int]:
        await outcome_of(port, create(user_id, task_id))
        appended: list[int] = []

        async def one(n: int) -> None:
            written = await port.write(
                Write(rename(user_id, task_id, f"n{n}"), None, the_outcome, no_key)
            )
            assert isinstance(written, Written)
            appended.append(written.appended)

        async with anyio.create_task_group() as racing:
            for n in range(RACERS):
                racing.start_soon(one, n)
        return appended

    assert run(database_url, work, SteppingClock()) == [1] * RACERS
    stored = stored_events(engine, user_id)
    assert [event.version for event in stored] == list(range(1, RACERS + 2))
    assert all(later.occurred_at >= earlier.occurred_at for earlier, later in pairwise(stored))
    assert verify_chain(stored).ok
    assert row_is_the_replay(engine, user_id, task_id)


def test_a_write_whose_clock_went_back_is_stamped_after_the_stream(
    database_url: str, engine: Engine
) -> None:
    """The snapshot a write was decided on includes the stream's last time: a clock that went
    back an hour does not make `occurred_at` decrease (PostgreSQL refuses the snapshot and
    decides again under the lock; SQLite decides under it anyway)."""
    user_id, task_id = new_user_id(), str(uuid.uuid4())
    clock = SteppingClock()

    async def work(port: WritePort) -> None:
        await outcome_of(port, create(user_id, task_id))
        clock.now -= timedelta(hours=1)
        await outcome_of(port, rename(user_id, task_id, "later, by an earlier clock"))

    run(database_url, work, clock)
    first, second = stored_events(engine, user_id)
    assert second.version == 2
    assert second.occurred_at == first.occurred_at


def test_a_taken_key_returns_the_kept_answer_and_writes_nothing(
    database_url: str, engine: Engine
) -> None:
    user_id = new_user_id()
    claim = KeyClaim("create-once", "f" * 64)

    async def work(port: WritePort) -> tuple[Any, Any]:
        first = await port.write(
            Write(create(user_id, str(uuid.uuid4()), "one"), claim, answer_of, kept)
        )
        again = await port.write(
            Write(create(user_id, str(uuid.uuid4()), "two"), claim, answer_of, kept)
        )
        return first, again

    first, again = run(database_url, work)
    assert isinstance(first, Written)
    assert first.appended == 1
    assert again == StoredAnswer(
        "f" * 64, first.answer.status_code, first.answer.headers, first.answer.body
    )
    assert len(stored_events(engine, user_id)) == 1
    assert keys_of(engine, user_id) == 1


def test_a_retry_whose_decision_the_rules_now_refuse_still_replays(
    database_url: str, engine: Engine
) -> None:
    """A keyed write that succeeded, sent again: its If-Match is stale now, but the key's
    answer wins over the 412 the rules would give."""
    user_id, task_id = new_user_id(), str(uuid.uuid4())
    claim = KeyClaim("rename-once", "a" * 64)

    async def work(port: WritePort) -> tuple[Any, Any]:
        await outcome_of(port, create(user_id, task_id))
        command = rename(user_id, task_id, "once", {1})
        return (
            await port.write(Write(command, claim, answer_of, kept)),
            await port.write(Write(command, claim, answer_of, kept)),
        )

    first, again = run(database_url, work)
    assert isinstance(first, Written)
    assert isinstance(again, StoredAnswer)
    assert again.body == first.answer.body
    assert len(stored_events(engine, user_id)) == 2


def test_a_duplicate_sent_at_once_waits_for_its_first_and_replays_it(
    database_url: str, engine: Engine
) -> None:
    user_id = new_user_id()
    claim = KeyClaim("twins", "b" * 64)

    async def work(port: WritePort) -> list[Any]:
        results: list[Any] = []

        async def send(title: str) -> None:
            command = create(user_id, str(uuid.uuid4()), title)
            results.append(await port.write(Write(command, claim, answer_of, kept)))

        async with anyio.create_task_group() as both:
            both.start_soon(send, "first")
            both.start_soon(send, "second")
        return results

    results = run(database_url, work)
    assert sorted(type(result).__name__ for result in results) == ["StoredAnswer", "Written"]
    assert len(stored_events(engine, user_id)) == 1


def test_a_refused_write_writes_nothing_and_keeps_no_key(database_url: str, engine: Engine) -> None:
    user_id, task_id = new_user_id(), str(uuid.uuid4())
    claim = KeyClaim("refused", "c" * 64)

    async def work(port: WritePort) -> None:
        await outcome_of(port, create(user_id, task_id))
        with pytest.raises(VersionConflict):
            await port.write(Write(rename(user_id, task_id, "x", {7}), claim, answer_of, kept))
        with pytest.raises(TaskNotFound):
            await port.write(
                Write(rename(user_id, str(uuid.uuid4()), "x"), None, the_outcome, no_key)
            )

    run(database_url, work)
    assert len(stored_events(engine, user_id)) == 1
    assert keys_of(engine, user_id) == 0


def test_an_answer_that_fails_leaves_nothing_written(database_url: str, engine: Engine) -> None:
    """The answer is made inside the write: if making it fails, neither the events, the row nor
    the key are kept."""
    user_id = new_user_id()

    def failing(_: Outcome) -> KeptAnswer:
        raise LookupError("the answer could not be made")

    async def work(port: WritePort) -> None:
        for claim in (None, KeyClaim("failing", "d" * 64)):
            with pytest.raises(LookupError):
                await port.write(Write(create(user_id, str(uuid.uuid4())), claim, failing, kept))

    run(database_url, work)
    assert stored_events(engine, user_id) == []
    assert keys_of(engine, user_id) == 0


def test_a_write_the_task_already_satisfies_appends_nothing(
    database_url: str, engine: Engine
) -> None:
    """Completing a completed task: the answer is the task as it is; nothing is appended, and a
    key keeps that answer."""
    user_id, task_id = new_user_id(), str(uuid.uuid4())
    done = CompleteTask(
        context=context(user_id), task_id=task_id, completed=True, expected_versions=None
    )

    async def work(port: WritePort) -> tuple[Any, Any]:
        await outcome_of(port, create(user_id, task_id))
        await outcome_of(port, done)
        return (
            await port.write(Write(done, None, answer_of, kept)),
            await port.write(Write(done, KeyClaim("no-op", "e" * 64), answer_of, kept)),
        )

    plain, keyed = run(database_url, work)
    assert isinstance(plain, Written)
    assert isinstance(keyed, Written)
    assert (plain.appended, keyed.appended) == (0, 0)
    assert plain.answer == keyed.answer
    assert len(stored_events(engine, user_id)) == 2
    assert keys_of(engine, user_id) == 1


def test_a_key_on_sqlite_ages_on_the_adapters_clock(sqlite_url: str, sqlite_engine: Engine) -> None:
    """SQLite stamps a key, expires it at the next claim and sweeps it on the clock its events
    are stamped with: the same key past its lifetime by that clock writes again; the sweep on
    that clock takes it."""
    user_id = new_user_id()
    claim = KeyClaim("aged", "7" * 64)
    clock = SteppingClock()

    async def work(port: WritePort) -> list[Any]:
        written = []
        for _ in range(2):
            command = create(user_id, str(uuid.uuid4()))
            written.append(await port.write(Write(command, claim, answer_of, kept)))
            clock.now += KEY_LIFETIME  # the key's whole lifetime, by the adapter's clock
        return written

    assert [type(result).__name__ for result in run(sqlite_url, work, clock)] == ["Written"] * 2
    assert len(stored_events(sqlite_engine, user_id)) == 2
    assert keys_of(sqlite_engine, user_id) == 1
    assert purge_expired(sqlite_engine, clock) >= 1
    assert keys_of(sqlite_engine, user_id) == 0


def test_a_key_still_in_use_past_the_wait_is_refused(
    postgres_url: str, postgres_engine: Engine
) -> None:
    """PostgreSQL: the key's first request holds its claim in a transaction that does not end;
    the duplicate waits half the database's deadline (`key_wait_ms`), then is refused
    (`KeyInUse`: a 409, before the deadline's 503), having written nothing. (SQLite holds the whole database for a write: a duplicate waits on the database.)"""
    user_id = new_user_id()
    claim = KeyClaim("held", "9" * 64)

    async def work(port: WritePort) -> None:
        conninfo = conninfo_of(service_role_settings(postgres_url))
        async with await psycopg.AsyncConnection.connect(conninfo) as first:
            await first.execute(
                "SELECT * FROM tasktrail_claim_key(%s, %s, %s, %s, %s)",
                (user_id, claim.key, claim.fingerprint, timedelta(hours=24), 1000),
            )
            with pytest.raises(KeyInUse):
                await port.write(Write(create(user_id, str(uuid.uuid4())), claim, answer_of, kept))
            await first.rollback()

    run(postgres_url, work)
    assert stored_events(postgres_engine, user_id) == []
    assert keys_of(postgres_engine, user_id) == 0


def test_the_written_events_are_the_ones_the_log_holds(database_url: str, engine: Engine) -> None:
    """What the port hands back as appended is the log's own: numbered, linked and hashed as
    stored (on PostgreSQL the database numbers and links them; the service does not hash them
    again)."""
    user_id, task_id = new_user_id(), str(uuid.uuid4())
    two_events = UpdateTask(
        context=context(user_id),
        task_id=task_id,
        changes={"title": "two events"},
        completed=True,
        expected_versions=None,
    )

    async def work(port: WritePort) -> list[Event]:
        appended: list[Event] = []
        for command in (create(user_id, task_id), two_events):
            written = await port.write(Write(command, None, the_outcome, no_key))
            assert isinstance(written, Written)
            appended += written.events
        return appended

    appended = run(database_url, work)
    stored = stored_events(engine, user_id)
    assert [without_position(event) for event in appended] == [
        without_position(event) for event in stored
    ]
    assert [event.seq for event in stored] == [1, 2, 3]


def test_a_keyed_answer_that_is_no_success_is_not_kept(database_url: str, engine: Engine) -> None:
    """Only a 2xx answer is kept under its key: the write commits, the key is released, and the
    same key is free for the next write (on both engines alike)."""
    user_id = new_user_id()
    claim = KeyClaim("not-kept", "8" * 64)

    def see_other(_: Outcome) -> KeptAnswer:
        return KeptAnswer(303, {"location": "/elsewhere"}, b"")

    async def work(port: WritePort) -> list[Any]:
        return [
            await port.write(Write(create(user_id, str(uuid.uuid4())), claim, see_other, kept))
            for _ in range(2)
        ]

    results = run(database_url, work)
    assert [type(result).__name__ for result in results] == ["Written", "Written"]
    assert len(stored_events(engine, user_id)) == 2
    assert keys_of(engine, user_id) == 0
