"""The single-task read under row security, four ways, in one process: client CPU per read.

    uv run python -m bench.http.scoped_read            # about 20 s; a table on stdout

A scratch database (migrated, with the service's login role, one task), then 10 concurrent
readers on a pool of 10 autocommit connections, as the service reads. Each variant reads the same
task 3,000 times, after a warm-up, in alternating rounds; the table gives the process's CPU per
read (`time.process_time`, the client's side: PostgreSQL's CPU is not in it) and reads a second:

- pipeline: `set_config` and the `SELECT` in one psycopg pipeline (the hot path before 0013,
  still the list's and the write snapshot's);
- function: `tasktrail_task_document(user, id)` (migration 0013), one call, as the service reads
  now;
- plain, as the owner: the same `SELECT` with no scope to set, which row security does not bind:
  the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from bench.common.stack import libpq_url, scratch_database
from bench.http.seeding import seed_tasks
from bench.http.servers import service_login
from tasktrail.pg_pool import AsyncConnection
from tasktrail.row_security import SET_SCOPE_SQL, DatabaseScope

SECRET = "scoped-read-benchmark-secret-0123456789abcdef"
USER = "bench-reader"
READERS = 10
_PLAIN = "SELECT body, etag FROM tasks WHERE id = %s AND user_id = %s AND deleted_at IS NULL"

Read = Callable[[AsyncConnection], Awaitable[Any]]


def variants(task_id: uuid.UUID) -> dict[str, Read]:
    async def pipeline(conn: AsyncConnection) -> Any:
        async with conn.pipeline():
            await conn.execute(SET_SCOPE_SQL, DatabaseScope(user_id=USER).parameters())
            cursor = await conn.execute(_PLAIN, (task_id, USER))
        return await cursor.fetchone()

    async def function(conn: AsyncConnection) -> Any:
        cursor = await conn.execute(
            "SELECT body, etag FROM tasktrail_task_document(%s, %s)", (USER, task_id)
        )
        return await cursor.fetchone()

    async def plain(conn: AsyncConnection) -> Any:
        cursor = await conn.execute(_PLAIN, (task_id, USER))
        return await cursor.fetchone()

    return {"pipeline": pipeline, "function": function, "plain, as the owner": plain}


async def measure(url: str, read: Read, reads: int) -> tuple[float, float]:
    """(client CPU in us per read, reads a second) for `reads` reads by READERS tasks."""
    async with AsyncConnectionPool(
        url, min_size=READERS, max_size=READERS, kwargs={"autocommit": True}, open=False
    ) as pool:
        await pool.open(wait=True)

        async def reader(count: int) -> None:
            for _ in range(count):
                async with pool.connection() as conn:
                    if await read(conn) is None:
                        raise RuntimeError("the task was not found: the scope did not hold")

        await asyncio.gather(*(reader(50) for _ in range(READERS)))  # warm: plans, caches
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.gather(*(reader(reads // READERS) for _ in range(READERS)))
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return 1e6 * cpu / reads, reads / wall


async def run(admin_url: str, rounds: int, reads: int) -> None:
    with scratch_database(admin_url) as database:
        service_url = libpq_url(service_login(database.url, SECRET))
        seed_tasks(database.url, SECRET, [USER], 1)
        with psycopg.connect(database.url) as conn:
            row = conn.execute("SELECT id FROM tasks").fetchone()
        assert row is not None
        reads_of = variants(row[0])
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in reads_of}
        for _ in range(rounds):
            for name, read in reads_of.items():
                url = database.url if name.startswith("plain") else service_url
                results[name].append(await measure(url, read, reads))
    print(f"{'the read':24} {'client CPU per read (us)':>28} {'reads/s':>20}")
    for name, runs in results.items():
        cpu = " / ".join(f"{us:.0f}" for us, _ in runs)
        rate = " / ".join(f"{per_second:,.0f}" for _, per_second in runs)
        print(f"{name:24} {cpu:>28} {rate:>20}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=3000)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.postgres_url, arguments.rounds, arguments.reads))


if __name__ == "__main__":
    main()
