"""The read model is a replay of the log: `projections verify` proves it, and names any drift."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, insert, update

from tasktrail.api.app import create_app
from tasktrail.projections.verify import Drift, diff_read_model
from tasktrail.schema import tasks
from tests.conftest import Api, make_settings
from tests.processes import run_cli


@pytest.fixture
def busy_user(fresh_database_url: str, fresh_engine: Engine) -> Iterator[Api]:
    """A user with a varied history: creates, edits, completion, a delete and a restore."""
    with TestClient(create_app(make_settings(fresh_database_url), engine=fresh_engine)) as client:
        api = Api(client, "verify-user")
        made = [
            api.create(title=f"Task {n}", tags=["a", "B"], priority=n % 4, due_at=None)
            for n in range(6)
        ]
        api.request("PATCH", f"/{made[0]['id']}", json={"title": "Renamed", "tags": None})
        api.request("PATCH", f"/{made[1]['id']}/complete")
        api.request("DELETE", f"/{made[2]['id']}")
        api.request("DELETE", f"/{made[3]['id']}")
        api.request("POST", f"/{made[3]['id']}/restore")
        api.request(
            "PUT", f"/{made[4]['id']}", json={"title": "Put", "due_at": "2030-01-01T00:00:00Z"}
        )
        yield api


def test_an_untouched_read_model_equals_the_replay(fresh_engine: Engine, busy_user: Api) -> None:
    """Every row the API wrote is exactly what folding the log gives."""
    assert list(diff_read_model(fresh_engine)) == []


def test_a_hand_edited_row_is_named_with_its_fields(fresh_engine: Engine, busy_user: Api) -> None:
    """Editing a row behind the service's back shows up as that task and those fields."""
    listed = busy_user.request("GET").json()
    victim = listed[0]["id"]
    with fresh_engine.begin() as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == uuid.UUID(victim))
            .values(priority=3 - listed[0]["priority"], completed=not listed[0]["completed"])
        )
    assert list(diff_read_model(fresh_engine)) == [Drift(victim, fields=("completed", "priority"))]


def test_a_missing_row_and_a_row_without_events_are_both_named(
    fresh_engine: Engine, busy_user: Api
) -> None:
    """A row deleted by hand, and a row no event ever made, are drift too."""
    victim = busy_user.request("GET").json()[0]["id"]
    phantom = uuid.uuid4()
    now = datetime.now(UTC)
    with fresh_engine.begin() as conn:
        conn.execute(delete(tasks).where(tasks.c.id == uuid.UUID(victim)))
        conn.execute(
            insert(tasks).values(
                id=phantom,
                user_id="nobody",
                title="ghost",
                title_folded="ghost",
                completed=False,
                priority=0,
                tags=[],
                tags_folded=[],
                created_at=now,
                updated_at=now,
                version=1,
                last_seq=1,
                body="{}",
                etag='"1"',
            )
        )
    drifts = {drift.task_id: drift for drift in diff_read_model(fresh_engine)}
    assert drifts == {
        victim: Drift(victim, missing_row=True),
        str(phantom): Drift(str(phantom), row_without_events=True),
    }


def test_the_command_exits_1_naming_the_drift_and_0_when_clean(
    fresh_database_url: str, fresh_engine: Engine, busy_user: Api, tmp_path: Path
) -> None:
    """`tasktrail projections verify`: 0 and a count when clean; 1 and the task and fields when not."""
    clean = run_cli(
        "projections", "verify", cwd=tmp_path, TASKTRAIL_DATABASE_URL=fresh_database_url
    )
    assert clean.returncode == 0, clean.stderr
    assert "matches the log: 6 tasks" in clean.stdout
    victim = busy_user.request("GET").json()[0]["id"]
    with fresh_engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.id == uuid.UUID(victim)).values(title="forged"))
    drifted = run_cli(
        "projections", "verify", cwd=tmp_path, TASKTRAIL_DATABASE_URL=fresh_database_url
    )
    assert drifted.returncode == 1
    assert f"task {victim}: title differ" in drifted.stdout
    assert "1 of 6 tasks differ" in drifted.stdout


def test_the_command_works_with_a_pool_of_one(
    fresh_database_url: str, busy_user: Api, tmp_path: Path
) -> None:
    """It reads the log and the table side by side, on two connections: a service configured
    with one (TASKTRAIL_POOL_SIZE=1) must not make the operator's check time out on the pool."""
    clean = run_cli(
        "projections",
        "verify",
        cwd=tmp_path,
        TASKTRAIL_DATABASE_URL=fresh_database_url,
        TASKTRAIL_POOL_SIZE="1",
        TASKTRAIL_POOL_TIMEOUT="1",
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "matches the log: 6 tasks" in clean.stdout


def test_a_hand_edited_document_or_etag_is_drift_that_a_rebuild_repairs(
    fresh_database_url: str, fresh_engine: Engine, busy_user: Api, tmp_path: Path
) -> None:
    """A stored body or ETag changed behind the service's back is served as it is, named by
    `projections verify`, and `projections rebuild` writes the log's document and ETag back."""
    listed = busy_user.request("GET").json()
    first, second = listed[0]["id"], listed[1]["id"]
    served = busy_user.request("GET", f"/{first}")
    forged_body = served.content.decode().replace('"title":', '"title":"forged","was":')
    with fresh_engine.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.id == uuid.UUID(first)).values(body=forged_body))
        conn.execute(update(tasks).where(tasks.c.id == uuid.UUID(second)).values(etag='"99"'))
    assert busy_user.request("GET", f"/{first}").content == forged_body.encode()
    assert busy_user.request("GET", f"/{second}").headers["ETag"] == '"99"'
    drifts = set(diff_read_model(fresh_engine))
    assert drifts == {Drift(first, fields=("body",)), Drift(second, fields=("etag",))}
    env = {"TASKTRAIL_DATABASE_URL": fresh_database_url}
    drifted = run_cli("projections", "verify", cwd=tmp_path, **env)
    assert drifted.returncode == 1
    assert f"task {first}: body differ" in drifted.stdout
    assert f"task {second}: etag differ" in drifted.stdout
    rebuilt = run_cli("projections", "rebuild", "--workers", "1", cwd=tmp_path, **env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    fresh_engine.dispose()  # the swapped-in table is a new one: forget pooled statements
    assert list(diff_read_model(fresh_engine)) == []
    repaired = busy_user.request("GET", f"/{first}")
    assert (repaired.content, repaired.headers["ETag"]) == (served.content, served.headers["ETag"])
    assert busy_user.request("GET", f"/{second}").headers["ETag"] == f'"{listed[1]["version"]}"'
