"""A rebuild's progress, recorded in the database, on the service's /metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update

from tasktrail.api.app import create_app
from tasktrail.projections import shadow
from tasktrail.projections.inline import TASK_COLUMNS
from tasktrail.projections.rebuild import RebuildAborted, rebuild
from tasktrail.schema import rebuild_progress
from tests.conftest import Api, make_settings
from tests.processes import run_cli
from tests.test_metrics import sample


def test_metrics_follow_a_rebuild_while_it_runs_and_after_it_ends(
    fresh_database_url: str, fresh_engine: Engine, tmp_path: Path
) -> None:
    """While a rebuild replays, /metrics says it runs, in which phase, out of how many events;
    after a rebuild run as its own process, it says when it ended and that it swapped."""
    app = create_app(make_settings(fresh_database_url), engine=fresh_engine)
    with TestClient(app) as client:
        api = Api(client, "progress-user")
        for n in range(6):
            api.create(title=f"Task {n}")
        assert "tasktrail_rebuild_" not in client.get("/metrics").text  # none ever ran
        during: list[str] = []
        rebuild(
            fresh_engine,
            batch_size=2,
            on_events=lambda _: during.append(client.get("/metrics").text),
        )
        assert during
        for text in during:
            assert sample(text, "tasktrail_rebuild_running") == 1
            assert sample(text, "tasktrail_rebuild_phase_info", phase="replay") == 1
            assert sample(text, "tasktrail_rebuild_events_total") == 6
        started = time.time()
        result = run_cli(
            "projections",
            "rebuild",
            "--json",
            cwd=tmp_path,
            TASKTRAIL_DATABASE_URL=fresh_database_url,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["events"] == 6
        text = client.get("/metrics").text
    assert sample(text, "tasktrail_rebuild_running") == 0
    assert sample(text, "tasktrail_rebuild_phase_info", phase="finished") == 1
    assert sample(text, "tasktrail_rebuild_events_done") == 6
    assert sample(text, "tasktrail_rebuild_events_total") == 6
    finished = sample(text, "tasktrail_rebuild_last_finished_timestamp_seconds", outcome="swapped")
    assert started - 1 <= finished <= time.time()
    assert sample(text, "tasktrail_rebuild_started_timestamp_seconds") >= started - 1


def test_a_rebuild_that_never_recorded_its_end_runs_only_while_its_lock_is_held(
    fresh_database_url: str, fresh_engine: Engine
) -> None:
    """A rebuild killed before it could record its end: PostgreSQL knows by the rebuild's
    advisory lock that nothing runs; SQLite has only the row's word for it."""
    rebuild(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(
            update(rebuild_progress).values(phase="replay", finished_at=None, outcome=None)
        )
    app = create_app(make_settings(fresh_database_url), engine=fresh_engine)
    with TestClient(app) as client:
        text = client.get("/metrics").text
    postgres = fresh_engine.dialect.name == "postgresql"
    assert sample(text, "tasktrail_rebuild_running") == (0 if postgres else 1)
    assert "tasktrail_rebuild_last_finished_timestamp_seconds" not in text


def test_a_database_without_the_progress_table_leaves_those_series_out(tmp_path: Path) -> None:
    """When the progress cannot be read (here: the schema is not migrated), /metrics answers
    200 with everything else."""
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'empty.db'}"))
    with TestClient(app) as client:
        client.get("/healthz")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert "tasktrail_rebuild_" not in response.text
    assert (
        sample(
            response.text,
            "tasktrail_http_requests_total",
            method="GET",
            route="/healthz",
            status="200",
        )
        == 1
    )


def test_a_rebuild_that_aborts_says_so_and_runs_no_longer(
    fresh_database_url: str, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shadow table that disagrees with the fold aborts the rebuild: /metrics shows it
    ended, aborted, in the phase that found the mismatch."""
    app = create_app(make_settings(fresh_database_url), engine=fresh_engine)
    with TestClient(app) as client:
        Api(client, "aborted-user").create(title="kept")
        real_write = shadow.write_rows
        title = TASK_COLUMNS.index("title")

        def corrupting(conn: Any, batch: list[tuple[Any, ...]]) -> None:
            real_write(conn, [(*row[:title], "corrupted", *row[title + 1 :]) for row in batch])

        monkeypatch.setattr(shadow, "write_rows", corrupting)
        with pytest.raises(RebuildAborted):
            rebuild(fresh_engine)
        text = client.get("/metrics").text
    assert sample(text, "tasktrail_rebuild_running") == 0
    assert sample(text, "tasktrail_rebuild_phase_info", phase="check") == 1
    assert sample(text, "tasktrail_rebuild_last_finished_timestamp_seconds", outcome="aborted") > 0
