"""The rebuild's reader of the log: every field as stored, and folded through the upcasters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from tasktrail.api.app import create_app
from tasktrail.domain.events import JsonObject
from tasktrail.domain.upcasting import registered
from tasktrail.projections.rebuild import rebuild
from tasktrail.projections.replay import _POSTGRES_TYPES, LoggedChange, logged_changes
from tasktrail.projections.verify import diff_read_model
from tasktrail.schema import events, tasks
from tests.conftest import Api, make_settings
from tests.test_upcasting import append_legacy_event


def stored_changes(engine: Engine, task_ids: set[str]) -> list[LoggedChange]:
    """The same events read the ordinary way, through SQLAlchemy and its types."""
    columns = [events.c[name] for name in LoggedChange._fields]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).order_by(events.c.task_id, events.c.version))
        changes = [LoggedChange(str(row[0]), *row[1:]) for row in rows]
    return [change for change in changes if change.task_id in task_ids]


def test_the_reader_gives_every_field_as_stored(api: Api, engine: Engine) -> None:
    """The bulk reader (COPY in binary on PostgreSQL) and the catch-up's reader (by task ids)
    give each event's fields with the values and types the event store has: a schema_version
    of 0 and of 1, the data, the instant."""
    legacy, _ = append_legacy_event(engine, api.user_id)
    task = api.create(title="read back", tags=["a"], due_at="2026-12-01T09:00:00.5Z")
    api.request("PATCH", f"/{task['id']}", json={"title": "read back again"})
    api.request("PATCH", f"/{task['id']}/complete")
    mine = {legacy, task["id"]}
    expected = stored_changes(engine, mine)
    assert {change.schema_version for change in expected} == {0, 1}
    with engine.connect() as conn:
        whole_log = [change for change in logged_changes(conn) if change.task_id in mine]
        by_ids = list(logged_changes(conn, sorted(mine)))
    assert whole_log == expected
    assert by_ids == expected
    for change in whole_log:
        assert [type(value) for value in change] == [type(value) for value in expected[0]]


def title_v2(data: JsonObject) -> JsonObject:
    """An upcaster from the current TaskCreated shape to a newer one: the title changes."""
    return {**data, "title": f"{data['title']} (v2)"}


@pytest.fixture
def created_at_v1(fresh_database_url: str, fresh_engine: Engine) -> Iterator[Api]:
    with TestClient(create_app(make_settings(fresh_database_url), engine=fresh_engine)) as client:
        api = Api(client, "upcast-user")
        for n in range(3):
            api.create(title=f"Task {n}")
        yield api


def titles(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(tasks.c.title)).scalars())


def test_verify_and_rebuild_fold_through_an_upcaster_of_the_current_version(
    fresh_engine: Engine, created_at_v1: Api
) -> None:
    """Once TaskCreated v1 has an upcaster, the read model written before it drifts from the
    fold, verify says so, and the rebuild writes the upcast shape (the bulk reader must read
    schema_version right for the upcaster to apply)."""
    with registered("TaskCreated", 1, title_v2):
        assert len(list(diff_read_model(fresh_engine))) == 3
        rebuild(fresh_engine, workers=1)  # upcasters registered by a test live in this process
        fresh_engine.dispose()
        assert titles(fresh_engine) == ["Task 0 (v2)", "Task 1 (v2)", "Task 2 (v2)"]
        assert list(diff_read_model(fresh_engine)) == []


def test_the_postgres_reader_casts_every_field_of_a_change_in_its_order() -> None:
    """The bulk reader's query and COPY types are built from one mapping: its columns must be
    LoggedChange's fields, in their order, or values land in the wrong field."""
    assert tuple(_POSTGRES_TYPES) == LoggedChange._fields
