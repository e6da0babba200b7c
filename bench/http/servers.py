"""The servers a load benchmark measures: `tasktrail serve` and the bare reference apps.

Each runs on a free loopback port until its block ends, then stops with SIGTERM (also on Ctrl-C
and on errors); it is up once it answers.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from bench.common.stack import REPO_DIR, libpq_url

SERVER_START_TIMEOUT = 60.0  # seconds; serve applies the migrations before it listens
SERVER_STOP_TIMEOUT = 15.0


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


def server_environment(database_url: str, secret: str, pool_size: int) -> dict[str, str]:
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
    env = server_environment(database_url, secret, pool_size)
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
    env = server_environment(owner_url, secret, 2)  # the migration lock holds one of two
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


# Where the bare reference apps live: uvicorn imports bench.http.bare_app from there (--app-dir).
APP_DIR = REPO_DIR


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
        *(sys.executable, "-m", "uvicorn", f"bench.http.bare_app:{factory}", "--factory"),
        *("--app-dir", str(APP_DIR), "--host", "127.0.0.1", "--port", str(port)),
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
