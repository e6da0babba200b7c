"""PostgreSQL plans of the list queries for one user's 1 000 tasks among 1 000 000.

    uv run python -m bench.http.list_plans [--users 1000] [--tasks-per-user 1000]

Fills the read model of a scratch database with generated rows (SQL, in one statement), then
runs the exact statements `queries.tasks.list_tasks` sends, under EXPLAIN (ANALYZE, BUFFERS), for
every sort (first page and a keyset page) and every filter, and prints each plan. The database is
dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, event, make_url, text

from tasktrail.database import create_database_engine
from tasktrail.migrations.runner import upgrade
from tasktrail.queries.list_query import KeysetPosition, ListTasks, Sort, SortField, StatusFilter
from tasktrail.queries.tasks import list_tasks
from tasktrail.settings import Settings

ADMIN_URL = os.environ.get(
    "TASKTRAIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# g numbers the rows; user g % users, and i = g / users numbers the tasks within a user, so
# every user gets the same varied mix (due dates, priorities, tags, deleted ones).
FILL = """
INSERT INTO tasks (id, user_id, title, title_folded, description, description_folded, completed,
                   due_at, priority, tags, tags_folded, created_at, updated_at, completed_at,
                   deleted_at, version, last_seq, body, etag)
SELECT gen_random_uuid(), 'user-' || (g % :users), 'Task ' || i, 'task ' || i,
       CASE WHEN i % 3 = 0 THEN 'buy milk ' || i END, CASE WHEN i % 3 = 0 THEN 'buy milk ' || i END,
       i % 4 = 0,
       CASE WHEN i % 5 <> 0 THEN timestamptz '2026-12-01' + (i % 1000) * interval '1 hour' END,
       i % 4,
       CASE WHEN i % 2 = 0 THEN '["home"]'::jsonb ELSE '["work", "urgent"]'::jsonb END,
       CASE WHEN i % 2 = 0 THEN '["home"]'::jsonb ELSE '["work", "urgent"]'::jsonb END,
       timestamptz '2026-01-01' + g * interval '1 second',
       timestamptz '2026-01-01' + g * interval '1 second' + (i % 97) * interval '1 minute',
       CASE WHEN i % 4 = 0 THEN timestamptz '2026-06-01' END,
       CASE WHEN i % 50 = 0 THEN timestamptz '2026-06-02' END,
       1,
       0,  -- no user_streams row: the walk's snapshot is seq 0, and no task changed since
       -- A stand-in for the served document, of a real one's size (about 330 bytes): the plans
       -- read it from the heap (or TOAST) like the real one.
       '{"title":"Task ' || i || '","filler":"' || repeat('x', 300) || '"}', '"1"'
FROM generate_series(0, :rows - 1) AS g, LATERAL (SELECT g / :users AS i) AS per_user
"""


@contextmanager
def scratch_database() -> Iterator[str]:
    admin = make_url(ADMIN_URL.replace("postgres://", "postgresql://", 1))
    name = f"tasktrail_plans_{uuid.uuid4().hex[:8]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def captured_statements(
    engine: Engine, conn: Connection, query: ListTasks
) -> list[tuple[str, Any]]:
    """The statements list_tasks sends for this query, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        list_tasks(conn, query)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--tasks-per-user", type=int, default=1000)
    args = parser.parse_args()
    rows = args.users * args.tasks_per_user
    with scratch_database() as url:
        # The fill is one long statement: lift the service's 10 s statement timeout for it.
        settings = Settings(database_url=url, auth_secret="x" * 64, statement_timeout_ms=600_000)
        engine = create_database_engine(settings)
        try:
            upgrade(engine)
            started = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(text(FILL), {"users": args.users, "rows": rows})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE tasks"))
            print(
                f"filled {rows:,} tasks over {args.users:,} users "
                f"in {time.perf_counter() - started:.1f} s\n"
            )
            user = "user-7"
            middle = datetime(2026, 12, 20, tzinfo=UTC)
            queries = {
                f"sort={'-' if descending else ''}{field}": ListTasks(
                    user_id=user, sort=Sort(field, descending), limit=50
                )
                for field in SortField
                for descending in (True, False)
            }
            queries |= {
                "sort=-created, second page (keyset)": ListTasks(
                    user_id=user,
                    limit=50,
                    after=KeysetPosition(datetime(2026, 1, 6, tzinfo=UTC), str(uuid.UUID(int=0))),
                ),
                "sort=-due, second page (keyset)": ListTasks(
                    user_id=user,
                    sort=Sort(SortField.DUE, True),
                    limit=50,
                    after=KeysetPosition(datetime(2026, 12, 30, tzinfo=UTC), str(uuid.UUID(int=0))),
                ),
                "sort=due, a page among the undated": ListTasks(
                    user_id=user,
                    sort=Sort(SortField.DUE, False),
                    limit=50,
                    after=KeysetPosition(None, str(uuid.UUID(int=0))),
                ),
                "status=pending": ListTasks(user_id=user, status=StatusFilter.PENDING, limit=50),
                "status=deleted": ListTasks(user_id=user, status=StatusFilter.DELETED, limit=50),
                "q=milk": ListTasks(user_id=user, q="milk", limit=50),
                "tag=urgent&tag=work": ListTasks(user_id=user, tags=("urgent", "work"), limit=50),
                "due_after..due_before": ListTasks(
                    user_id=user,
                    due_after=datetime(2026, 12, 5, tzinfo=UTC),
                    due_before=middle,
                    limit=50,
                ),
                "limit=1000": ListTasks(user_id=user, limit=1000),
            }
            with engine.connect() as conn:
                for name, query in queries.items():
                    for statement, parameters in captured_statements(engine, conn, query):
                        plan = (
                            conn.exec_driver_sql(
                                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, parameters
                            )
                            .scalars()
                            .all()
                        )
                        kind = "count" if "count(" in statement else "page"
                        print(f"== {name} ({kind})")
                        print("\n".join(plan), end="\n\n")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
