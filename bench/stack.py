"""What the benchmark runs against: a scratch PostgreSQL database, seeded, and `tasktrail serve`.

Everything here is started by the benchmark and stopped or dropped by it, also on Ctrl-C and on
errors (context managers all the way down).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import jwt
import psycopg
import uuid_utils
from psycopg import sql
from sqlalchemy import make_url, select

from tasktrail.commands import handlers
from tasktrail.commands.types import CommandContext, CreateTask, TaskFields
from tasktrail.database import create_database_engine, write_transaction
from tasktrail.schema import tasks
from tasktrail.settings import Settings

REPO_DIR = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 60.0  # seconds; serve applies the migrations before it listens
SERVER_STOP_TIMEOUT = 15.0


def git_commit() -> str | None:
    """The commit the benchmark runs, for its results; None outside a git checkout."""
    return _git("rev-parse", "HEAD").strip() or None


def git_changed_files() -> list[str]:
    """Files of the service that differ from that commit: the run measured them as they were
    on disk. bench/ and docs/ do not change what is measured."""
    lines = _git("status", "--porcelain", "--", "tasktrail", "pyproject.toml").splitlines()
    return [line[3:] for line in lines if line.strip()]


def _git(*arguments: str) -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    done = subprocess.run(  # noqa: S603 - read-only, fixed arguments
        [git, *arguments], cwd=REPO_DIR, capture_output=True, text=True, check=False
    )
    return done.stdout  # not stripped: porcelain lines start with a status column


def libpq_url(url: str) -> str:
    """A URL psycopg understands, from the forms tasktrail accepts (postgres://, +psycopg)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    name: str
    url: str  # libpq form; tasktrail's settings turn it into postgresql+psycopg://


@contextmanager
def scratch_database(admin_url: str) -> Iterator[ScratchDatabase]:
    """A new, empty database on the admin URL's server, dropped (WITH FORCE) afterwards."""
    admin = libpq_url(admin_url)
    name = f"tasktrail_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        yield ScratchDatabase(name, url)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


def postgres_version(url: str) -> str:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def backend_pids(admin: psycopg.Connection[Any], database: str) -> list[int]:
    """The server processes of the connections to `database`: the service's pool (and those of
    the bare app or pgbench while they run; idle backends add nothing)."""
    query = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
    return [int(row[0]) for row in admin.execute(query, (database,)).fetchall()]


def free_connections(admin: psycopg.Connection[Any]) -> int:
    """Connections the PostgreSQL server would still accept from a non-superuser."""
    row = admin.execute(
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
        " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
    ).fetchone()
    return int(row[0]) if row else 0


def vacuum_analyze(url: str) -> None:
    """Fresh statistics after seeding, so list queries get the plans of a database in use."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("VACUUM ANALYZE")


# --- tokens ---------------------------------------------------------------------------------


def mint_token(user_id: str, secret: str, lifetime: timedelta) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, secret, algorithm="HS256")


# --- the server -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    pid: int
    port: int
    log_path: Path


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _clean_environment() -> dict[str, str]:
    # Nothing of the caller's tasktrail configuration may leak in: only what is set here counts.
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TASKTRAIL_", "BARE_APP_")) and name != "BETTER_AUTH_SECRET"
    }


def _server_environment(database_url: str, secret: str, pool_size: int) -> dict[str, str]:
    env = _clean_environment()
    env.update(
        TASKTRAIL_DATABASE_URL=database_url,
        BETTER_AUTH_SECRET=secret,
        TASKTRAIL_LOG_FORMAT="json",
        TASKTRAIL_POOL_SIZE=str(pool_size),
    )
    return env


@contextmanager
def running_server(
    database_url: str, secret: str, pool_size: int, log_path: Path, workers: int = 1
) -> Iterator[Server]:
    """`python -m tasktrail serve --workers N` on a free loopback port, until the block ends."""
    port = free_tcp_port()
    command = [
        *(sys.executable, "-m", "tasktrail", "serve"),
        *("--port", str(port), "--workers", str(workers)),
    ]
    env = _server_environment(database_url, secret, pool_size)
    if database_url.startswith(("postgres://", "postgresql")):
        # As production runs it: the owner migrates, the service connects as its own role,
        # bound by row-level security (README, "PostgreSQL roles").
        env["TASKTRAIL_OWNER_DATABASE_URL"] = database_url
        env["TASKTRAIL_DATABASE_URL"] = service_login(database_url, secret)
    with _serving(command, env, port, log_path, "/healthz", "tasktrail serve") as server:
        yield server


SERVICE_LOGIN = "tasktrail_bench_service"


def service_login(owner_url: str, secret: str) -> str:
    """Migrate as the owner and make the service's login role (`db upgrade --service-login`);
    the service's URL."""
    password = uuid.uuid4().hex
    env = _server_environment(owner_url, secret, 2)  # the migration lock holds one of two
    env["TASKTRAIL_SERVICE_PASSWORD"] = password
    done = subprocess.run(  # noqa: S603 - our own CLI, with fixed arguments
        [sys.executable, "-m", "tasktrail", "db", "upgrade", "--service-login", SERVICE_LOGIN],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"db upgrade --service-login failed:\n{done.stderr}")
    url = make_url(libpq_url(owner_url)).set(username=SERVICE_LOGIN, password=password)
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One of the operator's checks, run as the operator runs it, and what it answered."""

    command: str
    exit_code: int
    last_line: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


# What a load run must leave behind: a read model that is the replay of the log, and every
# user's hash chain whole.
AFTER_RUN_CHECKS = (("projections", "verify"), ("audit", "verify"))


def verify_after_run(database_url: str, secret: str) -> list[CheckResult]:
    """`tasktrail projections verify` and `tasktrail audit verify` on the benchmark's database."""
    # `projections verify` reads the log and the table on two connections at once.
    env = _server_environment(database_url, secret, 4)
    results = []
    for command in AFTER_RUN_CHECKS:
        began = time.monotonic()
        done = subprocess.run(  # noqa: S603 - our own CLI, with fixed arguments
            [sys.executable, "-m", "tasktrail", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        results.append(
            CheckResult(
                " ".join(("tasktrail", *command)),
                done.returncode,
                lines[-1].strip() if lines else "",
                round(time.monotonic() - began, 1),
            )
        )
    return results


# Where the bare reference apps live; uvicorn imports them from there (--app-dir).
BENCH_DIR = Path(__file__).resolve().parent


@contextmanager
def running_bare_app(
    database_url: str, factory: str, pool_size: int, log_path: Path
) -> Iterator[Server]:
    """bare_app.py's `factory` under uvicorn, 1 worker, on a free loopback port.

    uvicorn's fastest settings, named rather than left to "auto" so that a missing uvloop or
    httptools fails loudly instead of quietly measuring something slower.
    """
    port = free_tcp_port()
    command = [
        *(sys.executable, "-m", "uvicorn", f"bare_app:{factory}", "--factory"),
        *("--app-dir", str(BENCH_DIR), "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "1", "--loop", "uvloop", "--http", "httptools"),
        *("--no-access-log", "--log-level", "warning"),
    ]
    env = _clean_environment()
    env.update(BARE_APP_DATABASE_URL=database_url, BARE_APP_POOL_SIZE=str(pool_size))
    # A task id no task has: the app answers 404 once it is up and its pool is open.
    probe = f"/tasks/{uuid.UUID(int=0)}"
    with _serving(command, env, port, log_path, probe, f"bare app {factory}") as server:
        yield server


@contextmanager
def _serving(
    command: list[str], env: dict[str, str], port: int, log_path: Path, probe: str, name: str
) -> Iterator[Server]:
    """Run `command` until the block ends, once `probe` answers on `port`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # An empty working directory: serve reads a .env file from where it runs.
    with log_path.open("wb") as log, tempfile.TemporaryDirectory(prefix="tasktrail-bench-") as cwd:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            # Its own session: Ctrl-C in the terminal reaches the benchmark only, which then
            # stops the server in order (SIGTERM, graceful shutdown).
            start_new_session=True,
        )
        try:
            _wait_until_answering(process, port, probe, log_path, name)
            yield Server(process.pid, port, log_path)
        finally:
            _stop(process)


def _wait_until_answering(
    process: subprocess.Popen[bytes], port: int, probe: str, log_path: Path, name: str
) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{_tail(log_path)}")
        if _answers(port, probe):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer within {SERVER_START_TIMEOUT} s")


def _answers(port: int, path: str) -> bool:
    """Whether the server answers `path` with a status it would give when working (not 5xx)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


# --- seeding --------------------------------------------------------------------------------


def bench_settings(database_url: str, secret: str) -> Settings:
    """The service's settings for the benchmark's own writes and reads (seeding), pool of 1."""
    values: dict[str, Any] = {"database_url": database_url, "auth_secret": secret, "pool_size": 1}
    return Settings(_env_file=None, **values)  # no .env: the benchmark says everything


def _seed_fields(user_id: str, n: int) -> TaskFields:
    """Varied like real tasks, so that list responses have a realistic size (~350 bytes each)."""
    return TaskFields(
        title=f"Task {n} of {user_id}",
        description=f"Notes for task {n}: call, write, check." if n % 4 == 0 else None,
        due_at=datetime(2031, 1, 1, tzinfo=UTC) + timedelta(hours=n) if n % 3 == 0 else None,
        priority=n % 4,
        tags=("bench", f"group-{n % 7}") if n % 2 == 0 else (),
    )


def seed_tasks(database_url: str, secret: str, user_ids: Sequence[str], tasks_each: int) -> int:
    """Create tasks through the service's own command handler (events, chain, projection).

    One transaction per user: the handler locks the user's stream per command, which is free
    inside a transaction that already holds it, and one commit per user instead of per task
    saves the fsyncs. Returns how many tasks were created.
    """
    engine = create_database_engine(bench_settings(database_url, secret))
    try:
        for user_id in user_ids:
            context = CommandContext(user_id=user_id, actor=user_id, request_id=None)
            with write_transaction(engine) as conn:
                for n in range(tasks_each):
                    command = CreateTask(
                        context=context,
                        task_id=str(uuid_utils.uuid7()),  # as the API makes them
                        fields=_seed_fields(user_id, n),
                    )
                    handlers.create_task(conn, command)
    finally:
        engine.dispose()
    return len(user_ids) * tasks_each


def seed_in_parallel(
    database_url: str, secret: str, plan: Sequence[tuple[Sequence[str], int]], processes: int
) -> int:
    """Run `seed_tasks` for each (users, tasks each) of `plan`, users spread over processes.

    The handler is CPU-bound Python (a few ms per task); two processes use both cores while
    PostgreSQL waits on the disk.
    """
    jobs = [
        (list(user_ids[start::processes]), tasks_each)
        for user_ids, tasks_each in plan
        for start in range(processes)
    ]
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(seed_tasks, database_url, secret, users, tasks_each)
            for users, tasks_each in jobs
            if users
        ]
        return sum(future.result() for future in futures)


def task_ids_by_user(
    database_url: str, secret: str, user_ids: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """Every live task of each user, read from the tasks table (the read model)."""
    found: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
    engine = create_database_engine(bench_settings(database_url, secret))
    try:
        with engine.connect() as conn:
            query = select(tasks.c.user_id, tasks.c.id).where(tasks.c.user_id.in_(user_ids))
            for user_id, task_id in conn.execute(query):
                found[user_id].append(str(task_id))
    finally:
        engine.dispose()
    return {user_id: tuple(ids) for user_id, ids in found.items()}
