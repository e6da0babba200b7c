"""Several `tasktrail serve` processes on one database, the same users writing through all of
them at once: the log stays one log per user.

Each user has writer threads that send every write to a server picked at random, so a user's
writes race each other across processes for the user's stream. Afterwards `seq` is 1..n for
each user, `version` 1..n for each task, every acknowledged write is in the log once and in the
read model, and `tasktrail audit verify` and `tasktrail projections verify` pass.

Bounded by default (a few seconds of writes a case). The full size, a minute of writes a case:

    TASKTRAIL_TEST_MANY_SECONDS=60 uv run pytest tests/test_many_processes.py
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.conftest import SECRET, migrated, new_user_id, scratch_postgres_database
from tests.keyed_writers import Servers, Writer, check_outcome
from tests.processes import server_process

WRITE_SECONDS = float(os.environ.get("TASKTRAIL_TEST_MANY_SECONDS", "4"))
SEED = 20261125
USERS = 3


@contextmanager
def database(engine: str, tmp_path: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield migrated(f"sqlite:///{tmp_path / 'shared.db'}")
        return
    with scratch_postgres_database("tasktrail_many") as url:
        yield migrated(url)


def write_for_a_while(servers: Servers, writers_per_user: int) -> list[Writer]:
    """The same users write through every server at once for WRITE_SECONDS."""
    rng = random.Random(SEED)
    users = [new_user_id() for _ in range(USERS)]
    writers = [
        Writer(user, f"w{n}", rng.randrange(2**32), servers)
        for user in users
        for n in range(writers_per_user)
    ]
    stop = threading.Event()
    with ThreadPoolExecutor(len(writers)) as pool:
        running = [pool.submit(writer.run, stop) for writer in writers]
        try:
            time.sleep(WRITE_SECONDS)
        finally:
            stop.set()
        for future in running:
            future.result()
    return writers


@pytest.mark.parametrize(
    ("engine", "processes"),
    [("postgres", 2), ("postgres", 4), ("sqlite", 2)],
    ids=["postgres-2", "postgres-4", "sqlite-2"],
)
def test_the_same_users_writing_through_several_processes_keep_one_gapless_log_each(
    tmp_path: Path, engine: str, processes: int
) -> None:
    """Writes of one user spread over separate servers: seq and version stay 1..n, every
    acknowledged write is there once, the chains and the read model verify."""
    with database(engine, tmp_path) as url, ExitStack() as stack:
        env = {
            "TASKTRAIL_DATABASE_URL": url,
            "BETTER_AUTH_SECRET": SECRET,
            "TASKTRAIL_POOL_SIZE": "3",
        }
        started = [stack.enter_context(server_process(tmp_path, **env)) for _ in range(processes)]
        servers = Servers(server.base_url for server in started)
        writers = write_for_a_while(servers, writers_per_user=processes)
        check_outcome(url, tmp_path, started[0].base_url, writers)
    assert all(writer.acknowledged for writer in writers)


def test_the_same_users_writing_through_two_workers_of_one_serve_keep_one_gapless_log_each(
    tmp_path: Path,
) -> None:
    """`serve --workers 2` on PostgreSQL: the workers share the users' writes, and the log
    holds."""
    with scratch_postgres_database("tasktrail_many") as url:
        env = {
            "TASKTRAIL_DATABASE_URL": migrated(url),
            "BETTER_AUTH_SECRET": SECRET,
            "TASKTRAIL_POOL_SIZE": "3",
        }
        with server_process(tmp_path, "--workers", "2", **env) as server:
            writers = write_for_a_while(Servers([server.base_url]), writers_per_user=2)
            check_outcome(url, tmp_path, server.base_url, writers)
    assert all(writer.acknowledged for writer in writers)
