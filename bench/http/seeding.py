"""The load benchmarks' users: their tasks, created through `handle`, and their tokens.

`handle` (storage/sqlite/transaction.py) is the SQLite adapter's transaction body, which the
service runs only on SQLite; on PostgreSQL, where the service writes through `tasktrail_append`,
these benchmarks use it to lay down the same events, chain and task rows on the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any

import jwt
import uuid_utils
from sqlalchemy import select

from tasktrail.database import create_database_engine, write_transaction
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields
from tasktrail.schema import tasks
from tasktrail.settings import Settings
from tasktrail.storage.sqlite.transaction import handle


def mint_token(user_id: str, secret: str, lifetime: timedelta) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, secret, algorithm="HS256")


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
    """Create tasks through `handle`, the SQLite adapter's transaction body (events, chain,
    projection).

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
                    handle(conn, command)
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
