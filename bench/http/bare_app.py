"""The yardstick: the least a FastAPI app can do to serve one task, on the service's own table.

    BARE_APP_DATABASE_URL=postgresql://... BARE_APP_POOL_SIZE=10 \\
        python -m uvicorn bench.http.bare_app:create_async_app --factory \\
        --loop uvloop --http httptools --workers 1 --no-access-log --log-level warning

One route, `GET /tasks/{task_id}`: one primary-key read of the `tasks` table through a pool of
psycopg 3 connections, the row out as JSON with orjson. No auth, no middleware, no validation,
no transaction (autocommit: one round trip). What tasktrail's "get one" does beyond this (a
token, the user in the path, its middleware, SQLAlchemy, a transaction, the contract's headers)
is what the ratio to this row measures.

`create_async_app` is an `async def` route on `AsyncConnectionPool`: the fastest plain way.
`create_sync_app` is the same route as a plain `def` on `ConnectionPool`, which Starlette runs in
its threadpool (as tasktrail's routes are): the difference is the cost of that hop and of the
sync driver.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from starlette.responses import Response

# The task's served fields, named: the yardstick must not grow when the service adds storage
# columns to its table (a prebuilt document, say) that a bare read would never send.
QUERY = (
    "SELECT id, user_id, title, description, completed, due_at, priority, tags, created_at,"
    " updated_at, completed_at, version FROM tasks WHERE id = %s"
)


def _settings() -> tuple[str, int]:
    return os.environ["BARE_APP_DATABASE_URL"], int(os.environ.get("BARE_APP_POOL_SIZE", "10"))


def _json(row: dict[str, Any] | None) -> Response:
    if row is None:
        return Response(status_code=404)
    return Response(orjson.dumps(row), media_type="application/json")


def _bare_fastapi(lifespan: Any) -> FastAPI:
    # No OpenAPI or docs routes: nothing but the one route is mounted.
    return FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


def create_async_app() -> FastAPI:
    url, size = _settings()
    # min = max: every connection is open before the first request, as tasktrail's pool is
    # after its warm-up. Autocommit: a read needs no BEGIN/COMMIT round trips.
    pool = AsyncConnectionPool(
        url, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    app = _bare_fastapi(lifespan)

    @app.get("/tasks/{task_id}")
    async def read_task(task_id: str) -> Response:
        # The id goes as text; PostgreSQL casts it to uuid (psycopg sends str as "unknown").
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(QUERY, (task_id,))
            row = await cursor.fetchone()
        return _json(row)

    return app


def create_sync_app() -> FastAPI:
    url, size = _settings()
    pool = ConnectionPool(
        url, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True)
        try:
            yield
        finally:
            pool.close()

    app = _bare_fastapi(lifespan)

    @app.get("/tasks/{task_id}")
    def read_task(task_id: str) -> Response:
        with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(QUERY, (task_id,))
            row = cursor.fetchone()
        return _json(row)

    return app
