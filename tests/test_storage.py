"""The storage invariants of architecture.md, each pinned on both engines with SQL of its own."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import Engine, exc, inspect, select, text

from tasktrail.database import write_transaction
from tasktrail.domain.chain import GENESIS_HASH, verify_chain
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields, UpdateTask
from tasktrail.domain.encoding import format_timestamp
from tasktrail.domain.events import Event
from tasktrail.events.store import event_from_row, read_task_stream
from tasktrail.schema import events, metadata, user_streams
from tasktrail.storage.sqlite.transaction import handle
from tests.conftest import Api

PROBLEM_JSON = "application/problem+json"
# The test client's own machinery (event loop, transport) keeps the real clock.
FREEZEGUN_IGNORE = ["anyio", "starlette", "httpx2", "httpx"]


# --- helpers ---------------------------------------------------------------------------------


def stored_events(engine: Engine, user_id: str) -> list[Event]:
    """A user's events straight from the table, in seq order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(events).where(events.c.user_id == user_id).order_by(events.c.seq)
        )
        return [event_from_row(row._mapping) for row in rows]


def stream_row(engine: Engine, user_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(user_streams).where(user_streams.c.user_id == user_id)
        ).one_or_none()


def a_mix_of_writes(api: Api) -> list[str]:
    """Creates, updates, completions, a delete and a restore over three tasks of one user."""
    first = api.create(title="first", tags=["a"])["id"]
    second = api.create(title="Ünïcödé ☕", due_at="2031-01-01T00:00:00+01:00")["id"]
    assert api.request("PATCH", f"/{first}", json={"priority": 2}).status_code == 200
    third = api.create(title="third", completed=True)["id"]
    assert api.request("PATCH", f"/{second}/complete").status_code == 200
    assert api.request("PUT", f"/{first}", json={"title": "first again"}).status_code == 200
    assert api.request("DELETE", f"/{third}").status_code == 204
    assert (
        api.request("PATCH", f"/{second}", json={"title": "x", "completed": False}).status_code
        == 200
    )
    assert api.request("POST", f"/{third}/restore").status_code == 200
    return [first, second, third]


@contextmanager
def failing_trigger(engine: Engine, operation: str, title: str) -> Iterator[None]:
    """A trigger on `tasks` that aborts an INSERT or UPDATE writing `title`; dropped afterwards."""
    name = f"inject_{uuid.uuid4().hex[:12]}"
    if engine.dialect.name == "sqlite":
        create = [
            f"CREATE TRIGGER {name} BEFORE {operation} ON tasks WHEN NEW.title = '{title}' "
            "BEGIN SELECT RAISE(ABORT, 'injected'); END"
        ]
        drop = [f"DROP TRIGGER IF EXISTS {name}"]
    else:
        create = [
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.title = '{title}' THEN RAISE EXCEPTION 'injected'; END IF; "
            "RETURN NEW; END $$",
            f"CREATE TRIGGER {name} BEFORE {operation} ON tasks "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()",
        ]
        drop = [f"DROP TRIGGER IF EXISTS {name} ON tasks", f"DROP FUNCTION IF EXISTS {name}()"]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))


@pytest.fixture
def lenient_client(app: FastAPI) -> Iterator[TestClient]:
    """A client that hands back the server's 500 instead of raising the exception in the test."""
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def assert_internal_error(response: Any) -> None:
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 500
    assert body["type"] == "urn:tasktrail:problem:internal"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "errors" not in body
    assert "Traceback" not in response.text
    assert "injected" not in response.text


def context(user_id: str) -> CommandContext:
    return CommandContext(user_id=user_id, actor=user_id, request_id=f"req-{uuid.uuid4().hex}")


def create_directly(engine: Engine, user_id: str, title: str) -> None:
    """A create through the real handler and transaction, without HTTP."""
    command = CreateTask(
        context=context(user_id), task_id=str(uuid.uuid4()), fields=TaskFields(title=title)
    )
    with write_transaction(engine) as conn:
        handle(conn, command)


# --- (a) events are append-only --------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'TaskDeleted' WHERE user_id = :user_id",
        "UPDATE events SET data_hash = hash WHERE user_id = :user_id",
        "DELETE FROM events WHERE user_id = :user_id",
    ],
    ids=["update-type", "update-hash", "delete"],
)
def test_updating_or_deleting_an_event_is_refused_by_the_database(
    api: Api, engine: Engine, statement: str
) -> None:
    """Triggers refuse UPDATE and DELETE on events on both engines; the rows stay as they were."""
    task = api.create(title="keep me")
    before = stored_events(engine, api.user_id)
    with pytest.raises(exc.DBAPIError), engine.begin() as conn:
        conn.execute(text(statement), {"user_id": api.user_id})
    assert stored_events(engine, api.user_id) == before
    assert [event.task_id for event in before] == [task["id"]]


def test_truncating_the_events_table_is_refused_on_postgresql(
    postgres_engine: Engine, user_id: str
) -> None:
    """A TRUNCATE trigger refuses to empty the log on PostgreSQL (SQLite has no TRUNCATE)."""
    engine = postgres_engine
    create_directly(engine, user_id, "survive")
    before = stored_events(engine, user_id)
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            with pytest.raises(exc.DBAPIError):
                conn.execute(text("TRUNCATE events"))
        finally:
            transaction.rollback()  # should the trigger be missing, the shared log survives
    assert stored_events(engine, user_id) == before
    assert len(before) == 1


# --- (b) invariant 1: the append and the projection commit together or not at all ------------


def test_a_create_whose_projection_fails_leaves_no_event_and_no_stream_advance(
    lenient_client: TestClient, engine: Engine, user_id: str
) -> None:
    """An injected failure after the append rolls the event back: no event, no seq used."""
    api = Api(lenient_client, user_id)
    boom = f"boom-{uuid.uuid4().hex}"
    with failing_trigger(engine, "INSERT", boom):
        response = api.request("POST", json={"title": boom})
        assert_internal_error(response)
    assert len(stored_events(engine, user_id)) == 0
    stream = stream_row(engine, user_id)
    assert stream is None or (stream.last_seq, stream.head_hash) == (0, GENESIS_HASH)
    assert api.request("GET").json() == []
    task = api.create(title="after the failure")
    [event] = api.history(task["id"])
    assert (event["seq"], event["prev_hash"]) == (1, GENESIS_HASH)


def test_an_update_whose_projection_fails_appends_nothing_and_keeps_the_task(
    lenient_client: TestClient, engine: Engine, user_id: str
) -> None:
    """An injected failure on the read-model update rolls back the TaskUpdated event too."""
    api = Api(lenient_client, user_id)
    task = api.create(title="before")
    boom = f"boom-{uuid.uuid4().hex}"
    with failing_trigger(engine, "UPDATE", boom):
        response = api.request("PATCH", f"/{task['id']}", json={"title": boom})
        assert_internal_error(response)
    assert len(api.history(task["id"])) == 1
    assert len(stored_events(engine, user_id)) == 1
    assert stream_row(engine, user_id).last_seq == 1
    assert api.get(task["id"]).json() == task
    after = api.request("PATCH", f"/{task['id']}", json={"title": "after"})
    assert after.status_code == 200, after.text
    assert [(e["seq"], e["version"]) for e in api.history(task["id"])] == [(1, 1), (2, 2)]


# --- (c) invariant 3: gapless seq and version, occurred_at never decreasing ------------------


def test_seq_and_versions_are_gapless_and_time_never_goes_back(api: Api, engine: Engine) -> None:
    """After mixed writes, seq is 1..n, each task's versions 1..k, occurred_at non-decreasing."""
    task_ids = a_mix_of_writes(api)
    stored = stored_events(engine, api.user_id)
    assert [event.seq for event in stored] == list(range(1, len(stored) + 1))
    assert len(stored) == 10
    for task_id in task_ids:
        versions = [event.version for event in stored if event.task_id == task_id]
        assert versions == list(range(1, len(versions) + 1))
    moments = [event.occurred_at for event in stored]
    assert moments == sorted(moments)
    stream = stream_row(engine, api.user_id)
    assert stream.last_seq == len(stored)
    assert stream.last_occurred_at == moments[-1]


def test_a_clock_that_goes_back_is_raised_to_the_previous_events_time(
    engine: Engine, user_id: str
) -> None:
    """With the clock at 12:00:05 and then 12:00:00, the second event occurs at 12:00:05."""
    later = datetime(2031, 6, 1, 12, 0, 5, 250000, tzinfo=UTC)
    earlier = datetime(2031, 6, 1, 12, 0, 0, tzinfo=UTC)
    task_id = str(uuid.uuid4())
    with write_transaction(engine) as conn:
        handle(
            conn,
            CreateTask(context=context(user_id), task_id=task_id, fields=TaskFields(title="a")),
            clock=lambda: later,
        )
    with write_transaction(engine) as conn:
        outcome = handle(
            conn,
            UpdateTask(context=context(user_id), task_id=task_id, changes={"title": "b"}),
            clock=lambda: earlier,
        )
    with write_transaction(engine) as conn:
        handle(
            conn,
            CreateTask(
                context=context(user_id), task_id=str(uuid.uuid4()), fields=TaskFields(title="c")
            ),
            clock=lambda: earlier,
        )
    stored = stored_events(engine, user_id)
    assert [event.occurred_at for event in stored] == [later, later, later]
    assert outcome.state is not None
    assert outcome.state.updated_at == later
    assert stream_row(engine, user_id).last_occurred_at == later
    assert verify_chain(stored).ok


def test_through_http_a_clock_that_goes_back_does_not_move_occurred_at_back(api: Api) -> None:
    """With the system clock frozen at T+5 s and then at T, the PATCH's event occurs at T+5 s."""
    # An hour ago, so that the test's tokens (valid for ten real minutes) are valid then too.
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    with freeze_time(base + timedelta(seconds=5), ignore=FREEZEGUN_IGNORE):
        task = api.create(title="first")
    with freeze_time(base, ignore=FREEZEGUN_IGNORE):
        response = api.request("PATCH", f"/{task['id']}", json={"title": "second"})
    assert response.status_code == 200, response.text
    later = format_timestamp(base + timedelta(seconds=5))
    assert [event["occurred_at"] for event in api.history(task["id"])] == [later, later]
    assert response.json()["updated_at"] == later


def test_a_clock_that_goes_forward_again_is_used_as_it_is(engine: Engine, user_id: str) -> None:
    """Raising the time is for that write only: a later clock reading is recorded unchanged."""
    readings = [
        datetime(2031, 6, 1, 12, 0, 5, tzinfo=UTC),
        datetime(2031, 6, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2031, 6, 1, 12, 0, 9, tzinfo=UTC),
    ]
    for reading in readings:
        with write_transaction(engine) as conn:
            handle(
                conn,
                CreateTask(
                    context=context(user_id),
                    task_id=str(uuid.uuid4()),
                    fields=TaskFields(title="t"),
                ),
                clock=lambda reading=reading: reading,  # type: ignore[misc]
            )
    assert [event.occurred_at for event in stored_events(engine, user_id)] == [
        readings[0],
        readings[0],
        readings[2],
    ]


# --- (d) invariant 4: the stored chain verifies ----------------------------------------------


def test_the_stored_chain_verifies_and_ends_at_the_streams_head(api: Api, engine: Engine) -> None:
    """verify_chain over the rows reports ok, with head and count equal to user_streams."""
    task_ids = a_mix_of_writes(api)
    stored = stored_events(engine, api.user_id)
    report = verify_chain(stored)
    stream = stream_row(engine, api.user_id)
    assert report.ok, report.reason
    assert (report.first_bad_seq, report.reason) == (None, None)
    assert report.head == stream.head_hash == stored[-1].hash
    assert report.events == stream.last_seq == len(stored)
    with engine.connect() as conn:
        per_task = [read_task_stream(conn, api.user_id, task_id) for task_id in task_ids]
    assert sorted((e for stream in per_task for e in stream), key=lambda e: e.seq) == stored


@pytest.mark.parametrize(
    ("tamper", "first_bad_seq"),
    [
        ("edit-data", 3),
        ("edit-occurred-at", 2),
        ("drop", 4),
        ("swap", 5),
        ("truncate-head", None),
    ],
    ids=["edit-data", "edit-occurred-at", "drop", "swap", "truncate-head"],
)
def test_the_chain_check_locates_a_change_to_the_stored_events(
    api: Api, engine: Engine, tamper: str, first_bad_seq: int | None
) -> None:
    """Edited, missing or reordered rows are reported at the first bad seq, not as ok."""
    a_mix_of_writes(api)
    stored = stored_events(engine, api.user_id)
    rows = list(stored)
    if tamper == "edit-data":
        rows[2] = _replace(rows[2], data={**rows[2].data, "title": "forged"})
    elif tamper == "edit-occurred-at":
        rows[1] = _replace(rows[1], occurred_at=datetime(2000, 1, 1, tzinfo=UTC))
    elif tamper == "drop":
        del rows[3]
    elif tamper == "swap":
        rows[4], rows[5] = rows[5], rows[4]
    else:
        rows = rows[:-2]
    report = verify_chain(rows)
    if first_bad_seq is None:
        # Truncating the tail still verifies: only a head recorded elsewhere catches it.
        assert report.ok
        assert report.head != stream_row(engine, api.user_id).head_hash
    else:
        assert not report.ok
        assert report.first_bad_seq == first_bad_seq
        assert report.reason


def _replace(event: Event, **changes: Any) -> Event:
    fields = {name: getattr(event, name) for name in Event.__slots__}
    fields.update(changes)
    return Event(**fields)


# --- (e) the migrated schema matches tasktrail/schema.py --------------------------------------


def live_columns(engine: Engine, table: str) -> dict[str, dict[str, Any]]:
    with warnings.catch_warnings():
        # SQLAlchemy's inspector has no class for PostgreSQL's xid8 and says so; the name is
        # what this test compares, and the type is checked below with the catalog.
        warnings.filterwarnings("ignore", "Did not recognize type 'xid8'", exc.SAWarning)
        return {column["name"]: dict(column) for column in inspect(engine).get_columns(table)}


@pytest.mark.parametrize("table", sorted(metadata.tables), ids=sorted(metadata.tables))
def test_the_migrated_tables_have_the_columns_of_the_schema_module(
    engine: Engine, table: str
) -> None:
    """Every table of tasktrail.schema exists with the same column names and nullability."""
    live = live_columns(engine, table)
    declared = metadata.tables[table].columns
    assert set(live) == {column.name for column in declared}
    for column in declared:
        if column.name == "xact_id":
            continue  # NOT NULL with a default on PostgreSQL, NULL on SQLite: checked apart
        assert live[column.name]["nullable"] == column.nullable, column.name


def test_the_events_table_has_its_two_unique_constraints(engine: Engine) -> None:
    """(user_id, seq) and (task_id, version) are unique in the migrated database."""
    unique = {
        tuple(constraint["column_names"])
        for constraint in inspect(engine).get_unique_constraints("events")
    }
    assert ("user_id", "seq") in unique
    assert ("task_id", "version") in unique
    primary = inspect(engine).get_pk_constraint("events")
    assert primary["constrained_columns"] == ["position"]


def test_the_database_refuses_a_duplicate_seq_or_version(api: Api, engine: Engine) -> None:
    """Inserting a second event with a used (user_id, seq) or (task_id, version) fails."""
    api.create(title="one")
    [event] = stored_events(engine, api.user_id)
    row = {
        column.name: getattr(event, column.name)
        for column in events.columns
        if column.name not in ("position", "xact_id")
    }
    row["task_id"] = uuid.UUID(event.task_id)
    for clash in ({"task_id": uuid.uuid4()}, {"seq": 99}):
        with pytest.raises(exc.IntegrityError), engine.begin() as conn:
            conn.execute(events.insert().values({**row, **clash}))
    assert len(stored_events(engine, api.user_id)) == 1


def test_the_read_model_has_its_list_index(engine: Engine) -> None:
    """tasks is indexed on (user_id, created_at, id) for the default list order."""
    indexes = {tuple(index["column_names"]) for index in inspect(engine).get_indexes("tasks")}
    assert ("user_id", "created_at", "id") in indexes


def test_events_carry_the_writing_transactions_xid8_on_postgresql(
    postgres_engine: Engine, user_id: str
) -> None:
    """On PostgreSQL events.xact_id is of type xid8 and every appended event has one."""
    engine = postgres_engine
    create_directly(engine, user_id, "xid")
    create_directly(engine, user_id, "xid 2")
    with engine.connect() as conn:
        column_type = conn.execute(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'events'::regclass AND attname = 'xact_id'"
            )
        ).scalar_one()
        xids = (
            conn.execute(
                text("SELECT xact_id::text FROM events WHERE user_id = :u ORDER BY seq"),
                {"u": user_id},
            )
            .scalars()
            .all()
        )
    assert column_type == "xid8"
    assert len(xids) == 2
    assert all(xid is not None and int(xid) > 0 for xid in xids)
    assert int(xids[0]) < int(xids[1])  # two transactions, the later one with the larger id


# --- (f) engine settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pragma", "expected"),
    [("journal_mode", "wal"), ("synchronous", 2), ("foreign_keys", 1)],
    ids=["wal", "synchronous-full", "foreign-keys-on"],
)
def test_sqlite_connections_use_the_durable_settings(
    sqlite_engine: Engine, pragma: str, expected: object
) -> None:
    """Every SQLite connection runs in WAL with synchronous=FULL and foreign keys on."""
    with sqlite_engine.connect() as conn:
        assert conn.exec_driver_sql(f"PRAGMA {pragma}").scalar() == expected


def test_sqlite_connections_wait_for_a_busy_database(sqlite_engine: Engine) -> None:
    """busy_timeout is set, so a writer waits for the lock instead of failing at once."""
    with sqlite_engine.connect() as conn:
        timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert isinstance(timeout, int)
    assert timeout > 0


@pytest.mark.parametrize("setting", ["statement_timeout", "lock_timeout"])
def test_postgresql_connections_have_timeouts(postgres_engine: Engine, setting: str) -> None:
    """A statement or a lock wait cannot hang a PostgreSQL connection: the timeouts are set."""
    with postgres_engine.connect() as conn:
        value = conn.exec_driver_sql(f"SHOW {setting}").scalar()
    assert value not in (None, "0")


def test_a_database_error_does_not_carry_the_statement_parameters(engine: Engine) -> None:
    """Errors end up in the log (a 500's traceback, a retry's warning): task titles and
    descriptions must not travel with them."""
    secret_title = "my diagnosis, which the log must never hold"
    with pytest.raises(exc.DBAPIError) as raised, engine.connect() as conn:
        conn.execute(
            text("SELECT * FROM no_such_table WHERE title = :title"), {"title": secret_title}
        )
    assert secret_title not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
