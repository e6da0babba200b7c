"""projections rebuild: blue/green from the log, verified before the swap, under live load."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, func, inspect, select, text, update

from tasktrail.api.app import create_app
from tasktrail.database import create_database_engine
from tasktrail.domain.commands import CommandContext, UpdateTask
from tasktrail.projections import shadow
from tasktrail.projections.fill import fill_in_processes
from tasktrail.projections.inline import TASK_COLUMNS
from tasktrail.projections.progress import REBUILD_LOCK_KEY
from tasktrail.projections.rebuild import RebuildAborted, rebuild
from tasktrail.projections.verify import diff_read_model
from tasktrail.schema import events, tasks
from tasktrail.storage.sqlite.transaction import handle
from tests.conftest import (
    Api,
    auth,
    live_server,
    make_settings,
    migrated,
    scratch_postgres_database,
)
from tests.processes import run_cli


@pytest.fixture
def history(fresh_database_url: str, fresh_engine: Engine) -> Iterator[Api]:
    with TestClient(create_app(make_settings(fresh_database_url), engine=fresh_engine)) as client:
        api = Api(client, "rebuild-user")
        for n in range(12):
            task = api.create(title=f"Task {n}", tags=["x"], priority=n % 4)
            if n % 3 == 0:
                api.request("PATCH", f"/{task['id']}/complete")
            if n % 4 == 1:
                api.request("DELETE", f"/{task['id']}")
        yield api


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(tasks).order_by(tasks.c.id))]


@pytest.mark.parametrize("workers", [1, 3], ids=["one-process", "three-processes"])
def test_a_rebuild_gives_back_the_same_read_model_and_its_indexes(
    fresh_engine: Engine, history: Api, workers: int
) -> None:
    """Replaying the log reproduces every row, in one process or several (each folding its
    share of the tasks, on PostgreSQL); indexes and constraints are as before."""
    before = rows(fresh_engine)
    indexes_before = {index["name"] for index in inspect(fresh_engine).get_indexes("tasks")}
    report = rebuild(fresh_engine, batch_size=5, workers=workers)
    fresh_engine.dispose()  # forget cached table metadata of the swapped table
    assert rows(fresh_engine) == before
    assert {index["name"] for index in inspect(fresh_engine).get_indexes("tasks")} == indexes_before
    assert (report.tasks, report.swap_attempts) == (12, 1)
    assert report.events == 12 + 4 + 3
    assert report.workers == (workers if fresh_engine.dialect.name == "postgresql" else 1)
    assert list(report.phases) == ["replay", "catch-up", "check", "indexes", "fence and swap"]
    assert "tasks_shadow" not in inspect(fresh_engine).get_table_names()


def test_a_rebuild_repairs_a_hand_edited_read_model(fresh_engine: Engine, history: Api) -> None:
    """Drift in the tasks table is gone after a rebuild: the log wins."""
    victim = history.request("GET").json()[0]["id"]
    with fresh_engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.id == uuid.UUID(victim)).values(title="forged"))
    assert list(diff_read_model(fresh_engine)) != []
    rebuild(fresh_engine)
    assert list(diff_read_model(fresh_engine)) == []


def test_a_shadow_table_that_disagrees_with_the_fold_is_not_swapped_in(
    fresh_engine: Engine, history: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault while writing the shadow table aborts the rebuild; the live table stays."""
    before = rows(fresh_engine)
    real_write = shadow.write_rows
    title = TASK_COLUMNS.index("title")

    def corrupting(conn: Any, batch: list[tuple[Any, ...]]) -> None:
        if batch:
            first = list(batch[0])
            first[title] = "corrupted"
            batch = [tuple(first), *batch[1:]]
        real_write(conn, batch)

    monkeypatch.setattr(shadow, "write_rows", corrupting)
    with pytest.raises(RebuildAborted):
        rebuild(fresh_engine)
    assert rows(fresh_engine) == before
    assert "tasks_shadow" not in inspect(fresh_engine).get_table_names()


def test_a_rebuild_under_live_writes_and_reads_loses_nothing(
    fresh_database_url: str, fresh_engine: Engine
) -> None:
    """Writers and readers keep going through the API during the rebuild: every acknowledged
    write is in the new read model, no read fails, and projections verify passes after."""
    app = create_app(make_settings(fresh_database_url, pool_size=6), engine=fresh_engine)
    users = [f"live-{n}" for n in range(3)]
    stop = threading.Event()
    acknowledged: dict[str, str] = {}  # task id -> the title its last acknowledged write set
    failures: list[str] = []
    lock = threading.Lock()

    def writer(base_url: str, user: str) -> None:
        headers = auth(user)
        with httpx2.Client(base_url=base_url, timeout=30) as client:
            mine: list[str] = []
            for n in itertools.count():
                if stop.is_set():
                    return
                if n % 3 == 0 or not mine:
                    response = client.post(
                        f"/api/{user}/tasks", json={"title": f"{user} {n}"}, headers=headers
                    )
                    if response.status_code == 201:
                        mine.append(response.json()["id"])
                        with lock:
                            acknowledged[response.json()["id"]] = f"{user} {n}"
                else:
                    task = mine[n % len(mine)]
                    response = client.patch(
                        f"/api/{user}/tasks/{task}", json={"title": f"{user} {n}"}, headers=headers
                    )
                    if response.status_code == 200:
                        with lock:
                            acknowledged[task] = f"{user} {n}"
                if response.status_code not in (200, 201):
                    failures.append(f"write {response.status_code} {response.text}")

    def reader(base_url: str, user: str) -> None:
        with httpx2.Client(base_url=base_url, timeout=30) as client:
            while not stop.is_set():
                response = client.get(f"/api/{user}/tasks?limit=1000", headers=auth(user))
                if response.status_code != 200:
                    failures.append(f"read {response.status_code} {response.text}")

    with live_server(app) as base_url:
        threads = [threading.Thread(target=writer, args=(base_url, user)) for user in users]
        threads += [threading.Thread(target=reader, args=(base_url, user)) for user in users[:2]]
        for thread in threads:
            thread.start()
        try:
            with TestClient(app) as warm:  # let the log grow a little before the rebuild
                while len(acknowledged) < 20:
                    warm.get("/healthz")
            report = rebuild(fresh_engine, batch_size=10, workers=2)
            with TestClient(app) as after:
                while len(acknowledged) < report.tasks + 10:  # and keep writing after the swap
                    after.get("/healthz")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    assert failures == []
    stored = {str(row["id"]): row["title"] for row in rows(fresh_engine)}
    assert {task: stored.get(task) for task in acknowledged} == acknowledged
    assert list(diff_read_model(fresh_engine)) == []


def test_the_command_prints_a_json_summary(
    fresh_database_url: str, history: Api, tmp_path: Path
) -> None:
    """`tasktrail projections rebuild --json`: what was replayed, how fast, how long writers waited."""
    result = run_cli(
        "projections", "rebuild", "--json", cwd=tmp_path, TASKTRAIL_DATABASE_URL=fresh_database_url
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tasks"] == 12
    assert summary["events"] == 19
    assert set(summary) >= {
        "seconds",
        "events_per_second",
        "fence_ms",
        "swap_attempts",
        "checksum",
        "workers",
        "phases",
    }
    verify = run_cli(
        "projections", "verify", cwd=tmp_path, TASKTRAIL_DATABASE_URL=fresh_database_url
    )
    assert verify.returncode == 0, verify.stdout


def test_a_second_rebuild_while_one_runs_is_refused(postgres_engine: Engine) -> None:
    """Rebuilds share one advisory lock: a second one stops before touching anything."""
    with postgres_engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": REBUILD_LOCK_KEY})
        try:
            with pytest.raises(RebuildAborted, match="another rebuild is running"):
                rebuild(postgres_engine)
        finally:
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": REBUILD_LOCK_KEY})
    assert "tasks_shadow" not in inspect(postgres_engine).get_table_names()


def test_a_worker_that_cannot_read_the_log_fails_the_fill_with_its_reason(
    postgres_engine: Engine, postgres_url: str
) -> None:
    """A worker process that fails (here: its database does not exist) fails the whole fill
    with the worker's own last words, and leaves no process behind."""
    nowhere = create_database_engine(make_settings(postgres_url.rsplit("/", 1)[0] + "/no_such_db"))
    with postgres_engine.connect() as reader:
        reader.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        with pytest.raises(RebuildAborted, match="no_such_db"):
            fill_in_processes(nowhere, reader, 2, 100, lambda _: None)
        reader.rollback()
    nowhere.dispose()


@pytest.fixture
def postgres_fresh() -> Iterator[tuple[str, Engine]]:
    """A migrated PostgreSQL database of this test alone, and an engine on it."""
    with scratch_postgres_database("tasktrail_fresh") as raw_url:
        url = migrated(raw_url)
        engine = create_database_engine(make_settings(url))
        yield url, engine
        engine.dispose()


def hold_an_update_while_a_later_one_commits(
    url: str, engine: Engine
) -> tuple[Connection, str, str]:
    """Two users' tasks; the first one's update is appended and left uncommitted (the lower
    position), then the second one's is committed through the API. Returns the open
    connection and the two task ids."""
    with TestClient(create_app(make_settings(url), engine=engine)) as client:
        first, second = Api(client, "held-user"), Api(client, "later-user")
        held_task = first.create(title="before")["id"]
        later_task = second.create(title="before")["id"]
        held = engine.connect()
        held.begin()
        context = CommandContext(user_id="held-user", actor="held-user", request_id=None)
        command = UpdateTask(context=context, task_id=held_task, changes={"title": "held"})
        handle(held, command)
        assert second.request("PATCH", f"/{later_task}", json={"title": "later"}).is_success
    return held, held_task, later_task


def last_positions(engine: Engine) -> dict[str, int]:
    query = select(events.c.task_id, func.max(events.c.position)).group_by(events.c.task_id)
    with engine.connect() as conn:
        return {str(task): position for task, position in conn.execute(query)}


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-processes"])
def test_an_event_committed_after_the_replay_began_is_caught_up_though_its_position_is_lower(
    postgres_fresh: tuple[str, Engine], workers: int
) -> None:
    """The log's positions are not its commit order. An update holds its transaction open (its
    event takes the lower position) while a later one commits; the rebuild's replay starts
    between the two, and the held one commits while the replay runs. A catch-up by position
    (above the highest the replay saw) would miss it; the rebuild must not."""
    url, engine = postgres_fresh
    held, held_task, later_task = hold_an_update_while_a_later_one_commits(url, engine)

    def commit_the_held_one(_: int) -> None:
        if held.in_transaction():
            held.commit()

    report = rebuild(engine, workers=workers, on_events=commit_the_held_one)
    held.close()
    engine.dispose()
    positions = last_positions(engine)
    assert positions[held_task] < positions[later_task]
    assert report.caught_up_tasks >= 1
    titles = {str(row["id"]): row["title"] for row in rows(engine)}
    assert titles == {held_task: "held", later_task: "later"}
    assert list(diff_read_model(engine)) == []
