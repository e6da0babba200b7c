"""What every benchmark runs against: a scratch PostgreSQL database, and the commit it measures.

Everything here is made by the benchmark and dropped by it, also on Ctrl-C and on errors
(context managers all the way down).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import make_url

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


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
