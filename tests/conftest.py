"""Fixtures: every database test runs on SQLite and on PostgreSQL through one `database` param.

PostgreSQL tests create their own database on TASKTRAIL_TEST_POSTGRES_URL and drop it afterwards.
When no PostgreSQL answers they skip with a message, unless TASKTRAIL_REQUIRE_POSTGRES=1 (CI),
which makes them fail instead.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, make_url

from tasktrail.api.app import create_app
from tasktrail.api.http.bounded_http import BoundedHttpToolsProtocol
from tasktrail.api.services import services_of_app
from tasktrail.database import create_database_engine
from tasktrail.logs import configure_logging
from tasktrail.migrations.runner import upgrade
from tasktrail.settings import Settings

# Helper modules that assert for several test files: pytest's assert messages there too.
pytest.register_assert_rewrite(
    "tests.audit_helpers",
    "tests.keyed_writers",
    "tests.list_helpers",
    "tests.row_security_helpers",
    "tests.tamper_helpers",
    "tests.task_helpers",
    "tests.validation_helpers",
)

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
POSTGRES_ADMIN_URL = os.environ.get(
    "TASKTRAIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("TASKTRAIL_REQUIRE_POSTGRES") == "1"

# Configuration of the developer's shell must not leak into the tests' own settings.
_LEAKY = ("TASKTRAIL_", "BETTER_AUTH_SECRET")
_KEPT = ("TASKTRAIL_TEST_", "TASKTRAIL_REQUIRE_POSTGRES", "TASKTRAIL_FUZZ_EXAMPLES")
for _name in list(os.environ):
    if _name.startswith(_LEAKY) and not _name.startswith(_KEPT):
        del os.environ[_name]


def pytest_sessionstart(session: pytest.Session) -> None:
    """The suite starts many `tasktrail` processes (servers, CLI commands). Where PYTHONDONTWRITEBYTECODE is
    set, each compiled the package from source (the installed libraries' bytecode is written at
    install: pyproject's [tool.uv]); written once here, they load it."""
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "tasktrail", quiet=1)


# Tests log as the service does in production (JSON, plain tracebacks), not structlog's default.
configure_logging("json")


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": database_url, "auth_secret": SECRET, "pool_size": 5}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def postgres_unreachable(reason: str) -> None:
    message = (
        f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({reason}); set "
        "TASKTRAIL_TEST_POSTGRES_URL to a server where the tests may create databases"
    )
    if REQUIRE_POSTGRES:
        pytest.fail(message + " (TASKTRAIL_REQUIRE_POSTGRES=1 makes this a failure)")
    pytest.skip(message)


@contextmanager
def scratch_postgres_database(prefix: str = "tasktrail_test") -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    admin = make_url(POSTGRES_ADMIN_URL.replace("postgres://", "postgresql://", 1))
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin_conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        postgres_unreachable(str(error).strip().splitlines()[0])
        raise  # unreachable: skip or fail raised
    with admin_conn:
        admin_conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as admin_conn:
            admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The login role the tests' service connects as on PostgreSQL: a member of tasktrail_service
# (migration 0012), so the apps of the tests are bound by its privileges and row security.
SERVICE_LOGIN = "tasktrail_test_service"


def as_service(owner_url: str) -> str:
    """The URL of a migrated database as the service's login role sees it (made once per
    cluster); SQLite's URL as it is."""
    url = make_url(owner_url)
    if url.get_backend_name() != "postgresql":
        return owner_url
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (SERVICE_LOGIN,))
        if exists.fetchone() is None:
            # Another test session may make it at the same moment.
            with contextlib.suppress(
                psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation
            ):
                conn.execute(f"CREATE ROLE {SERVICE_LOGIN} LOGIN IN ROLE tasktrail_service")
    return url.set(username=SERVICE_LOGIN, password=None).render_as_string(hide_password=False)


def service_role_settings(owner_url: str, **overrides: Any) -> Settings:
    """Settings of the service as production runs it: connected as the service's role, the
    owner's URL kept for what the owner does."""
    return make_settings(as_service(owner_url), owner_database_url=owner_url, **overrides)


def migrated(url: str) -> str:
    engine = create_database_engine(make_settings(url))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def owner_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test alone, as its owner (the roles' tests)."""
    with scratch_postgres_database("tasktrail_roles") as url:
        yield migrated(url)


@pytest.fixture
def service_url(owner_url: str) -> str:
    """The same database as the service's login role."""
    return as_service(owner_url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "tasktrail.db"
    return migrated(f"sqlite:///{path}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with scratch_postgres_database() as url:
        yield migrated(url)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The migrated database of one engine; every test that uses it runs once per engine."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    engine = create_database_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """For the few tests of something SQLite alone has."""
    engine = create_database_engine(make_settings(sqlite_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    """For the few tests of something PostgreSQL alone has."""
    engine = create_database_engine(make_settings(postgres_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[FastAPI]:
    """The service as it runs in production: on PostgreSQL, as the service's role, not the
    owner's (the `engine` fixture's), so every test through it is bound by row security."""
    app = create_app(service_role_settings(database_url))
    yield app
    # The lifespan disposes of it, but a test may use the app without a client, and then only
    # this closes the connections it opened (else: an unraisable ResourceWarning at exit).
    services_of_app(app).engine.dispose()


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def new_user_id() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def user_id() -> str:
    """A user of this test alone: tests share a database, never a user."""
    return new_user_id()


def make_token(
    sub: str | None, *, secret: str = SECRET, algorithm: str = "HS256", **claims: Any
) -> str:
    payload: dict[str, Any] = {"exp": int(time.time()) + 600}
    if sub is not None:
        payload["sub"] = sub
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)


def auth(user_id: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id, **claims)}"}


class Api:
    """A user's view of the API through the test client: paths and the token filled in."""

    def __init__(self, client: TestClient, user_id: str) -> None:
        self.client = client
        self.user_id = user_id
        self.headers = auth(user_id)

    def url(self, suffix: str = "") -> str:
        return f"/api/{self.user_id}/tasks{suffix}"

    def request(self, method: str, suffix: str = "", **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.request(method, self.url(suffix), headers=headers, **kwargs)

    def create(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("title", "a task")
        response = self.request("POST", json=fields)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def get(self, task_id: str, **kwargs: Any) -> Any:
        return self.request("GET", f"/{task_id}", **kwargs)

    def history(self, task_id: str) -> list[dict[str, Any]]:
        response = self.request("GET", f"/{task_id}/events")
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()
        return events


@pytest.fixture
def api(client: TestClient, user_id: str) -> Api:
    return Api(client, user_id)


@pytest.fixture
def make_api(client: TestClient) -> Callable[[], Api]:
    """Another user, for isolation tests."""
    return lambda: Api(client, new_user_id())


@contextmanager
def live_server(
    app: FastAPI, http: type[BoundedHttpToolsProtocol] = BoundedHttpToolsProtocol
) -> Iterator[str]:
    """A real uvicorn on a free loopback port, in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=http,  # as `tasktrail serve` runs it
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_tcp_port() -> int:
    """A loopback port nothing listens on (bound and released at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of this test alone, for checks that read a whole table."""
    if request.param == "sqlite":
        yield migrated(f"sqlite:///{tmp_path / 'fresh.db'}")
        return
    with scratch_postgres_database("tasktrail_fresh") as url:
        yield migrated(url)


@pytest.fixture
def fresh_engine(fresh_database_url: str) -> Iterator[Engine]:
    """An engine on this test's own database."""
    engine = create_database_engine(make_settings(fresh_database_url))
    yield engine
    engine.dispose()
