"""Killed at any moment, the service keeps every write it acknowledged, once.

Writers of several users send keyed writes to a real `tasktrail serve`; the server is killed
with SIGKILL at seeded random moments and started again (on a new port), and the writers send
what was not acknowledged again, with the same key, until it is. Afterwards every acknowledged
write is in the log exactly once and in the read model, nothing else is in the log, and
`tasktrail audit verify` and `tasktrail projections verify` pass. On SQLite (the file) and on
PostgreSQL (a scratch database).

Bounded by default (3 kills, some 15 s an engine). The full size, 20 kills an engine:

    TASKTRAIL_TEST_CRASH_ROUNDS=20 uv run pytest tests/test_crash.py
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tests.conftest import SECRET, new_user_id
from tests.keyed_writers import Servers, Writer, check_outcome
from tests.processes import server_process

ROUNDS = int(os.environ.get("TASKTRAIL_TEST_CRASH_ROUNDS", "3"))
SEED = int(os.environ.get("TASKTRAIL_TEST_CRASH_SEED", "20261124"))
USERS = 3
WRITERS = 4  # the first user has two, each with tasks of its own
# How long a server lives before its kill, after it answers: long enough for writes to flow.
UP_SECONDS = (1.0, 3.0)

_log = logging.getLogger(__name__)


def test_a_server_killed_at_random_moments_loses_no_acknowledged_write_and_applies_none_twice(
    tmp_path: Path, fresh_database_url: str
) -> None:
    """SIGKILL mid-traffic, restart, retry with the same keys: the log holds each acknowledged
    write once, the API serves the last acknowledged state, and both verify commands pass."""
    rng = random.Random(SEED)
    users = [new_user_id() for _ in range(USERS)]
    servers = Servers()
    writers = [
        Writer(users[n % USERS], f"w{n}", rng.randrange(2**32), servers) for n in range(WRITERS)
    ]
    env = {
        "TASKTRAIL_DATABASE_URL": fresh_database_url,
        "BETTER_AUTH_SECRET": SECRET,
        "TASKTRAIL_POOL_SIZE": "4",
    }
    stop = threading.Event()
    with ThreadPoolExecutor(WRITERS) as pool:
        running: list[Future[None]] = []
        try:
            for _ in range(ROUNDS):
                with server_process(tmp_path, **env) as server:
                    servers.set([server.base_url])
                    running = running or [pool.submit(writer.run, stop) for writer in writers]
                    time.sleep(rng.uniform(*UP_SECONDS))
                    server.process.kill()
                    server.process.wait()
            with server_process(tmp_path, **env) as server:
                servers.set([server.base_url])
                time.sleep(UP_SECONDS[0])  # the retries land, and some more writes
                stop.set()
                for future in running:
                    future.result()
                replays = sum(writer.check_replays(server.base_url) for writer in writers)
                check_outcome(fresh_database_url, tmp_path, server.base_url, writers)
        finally:
            stop.set()
    acknowledged = [done for writer in writers for done in writer.acknowledged]
    retried = [done for done in acknowledged if done.attempts > 1]
    # Every kill broke the writes in flight and those sent while the server was down.
    assert len(retried) >= ROUNDS, retried
    assert replays >= len(retried)
    _log.info(  # shown with --log-cli-level=INFO: how much the run exercised
        "%d writes acknowledged, %d after retries, %d of them replayed",
        len(acknowledged),
        len(retried),
        sum(done.replayed for done in acknowledged),
    )
