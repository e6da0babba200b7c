"""The `tasktrail` command, run as a real process: serve, db upgrade, token."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import jwt
import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import SECRET, free_tcp_port, scratch_postgres_database
from tests.processes import run_cli, served, tasktrail_env


def test_serve_with_no_configuration_runs_on_sqlite_with_a_development_secret(
    tmp_path: Path,
) -> None:
    """The README's first command: no settings at all gives a working service and a secret file."""
    with served(tmp_path) as (base_url, _, _):
        token_run = run_cli("token", "alice", cwd=tmp_path)
        assert token_run.returncode == 0, token_run.stderr
        headers = {"Authorization": f"Bearer {token_run.stdout.strip()}"}
        created = httpx2.post(
            f"{base_url}/api/alice/tasks", json={"title": "Buy milk"}, headers=headers
        )
        assert created.status_code == 201, created.text
        listed = httpx2.get(f"{base_url}/api/alice/tasks", headers=headers)
        assert [task["title"] for task in listed.json()] == ["Buy milk"]
        assert httpx2.get(base_url + "/readyz").status_code == 200
    secret_file = tmp_path / ".tasktrail-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret_file.read_text().strip().encode()) >= 32
    assert (tmp_path / "tasktrail.db").exists()


def test_token_is_signed_with_the_configured_secret_and_carries_roles(tmp_path: Path) -> None:
    """`tasktrail token` signs with BETTER_AUTH_SECRET, sets sub, exp from --ttl, and roles."""
    result = run_cli(
        "token", "bob", "--role", "auditor", "--ttl", "30m", cwd=tmp_path, BETTER_AUTH_SECRET=SECRET
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "bob"
    assert claims["role"] == "auditor"
    assert claims["exp"] - claims["iat"] == 30 * 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("token", "audit"), "user id"),
        (("token", "bob", "--ttl", "forever"), "--ttl"),
    ],
    ids=["reserved-user-id", "bad-ttl"],
)
def test_token_refuses_bad_input_with_a_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """A reserved user id or an unreadable --ttl exits 2 and says why."""
    result = run_cli(*args, cwd=tmp_path, BETTER_AUTH_SECRET=SECRET)
    assert result.returncode == 2
    assert message in result.stderr


def test_serve_refuses_a_secret_shorter_than_32_bytes(tmp_path: Path) -> None:
    """A short shared secret stops the service at start, with the reason."""
    result = run_cli(
        "serve", "--port", str(free_tcp_port()), cwd=tmp_path, BETTER_AUTH_SECRET="short"
    )
    assert result.returncode == 2
    assert "at least 32 bytes" in result.stderr


def test_serve_refuses_to_start_without_a_secret_off_the_embedded_default(
    tmp_path: Path,
) -> None:
    """Only the embedded default may make its own secret; any other database must be told one."""
    result = run_cli(
        "serve",
        "--port",
        str(free_tcp_port()),
        cwd=tmp_path,
        TASKTRAIL_DATABASE_URL=f"sqlite:///{tmp_path / 'elsewhere.db'}",
    )
    assert result.returncode == 2
    assert "BETTER_AUTH_SECRET is not set" in result.stderr
    assert not (tmp_path / ".tasktrail-secret").exists()


def test_db_upgrade_creates_the_schema_on_sqlite(tmp_path: Path) -> None:
    """`tasktrail db upgrade` migrates an empty SQLite file to the newest revision."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = run_cli("db", "upgrade", cwd=tmp_path, TASKTRAIL_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"events", "tasks", "user_streams", "alembic_version"} <= tables


def test_two_upgrades_at_once_on_postgres_both_succeed(tmp_path: Path) -> None:
    """Migrations run under an advisory lock: two processes migrating together do not collide."""
    with scratch_postgres_database("tasktrail_cli") as url:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "tasktrail", "db", "upgrade"],
                cwd=tmp_path,
                env=tasktrail_env(TASKTRAIL_DATABASE_URL=url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes = [process.communicate(timeout=60) for process in processes]
        assert [process.returncode for process in processes] == [0, 0], outcomes
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            assert {"events", "tasks", "user_streams"} <= set(inspect(engine).get_table_names())
        finally:
            engine.dispose()


def test_each_request_is_logged_once_without_the_token(tmp_path: Path) -> None:
    """One JSON line per request: request id, method, route template, status, duration; no token."""
    with served(tmp_path, BETTER_AUTH_SECRET=SECRET) as (base_url, log, _):
        token = run_cli("token", "carol", cwd=tmp_path, BETTER_AUTH_SECRET=SECRET).stdout.strip()
        response = httpx2.get(
            f"{base_url}/api/carol/tasks",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-me-42"},
        )
        assert response.status_code == 200
        assert response.headers["X-Request-ID"] == "trace-me-42"
        time.sleep(0.2)  # let the line reach the file; correctness, not speed, is asserted
        text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "trace-me-42"]
    assert len(mine) == 1
    assert mine[0]["method"] == "GET"
    assert mine[0]["route"] == "/api/{user_id}/tasks"
    assert mine[0]["status"] == 200
    assert isinstance(mine[0]["duration_ms"], float)
    assert token not in text
