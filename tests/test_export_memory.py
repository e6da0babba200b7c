"""The NDJSON export streams 100 000 events through a real uvicorn process in flat memory."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
from sqlalchemy import Engine, text

from tasktrail.database import create_database_engine
from tests.conftest import SECRET, auth, make_settings
from tests.processes import served

EVENTS = 100_000
USERS = 100

FILL_POSTGRES = """
INSERT INTO events (user_id, seq, task_id, version, type, schema_version, data, data_hash,
                    occurred_at, actor, request_id, prev_hash, hash)
SELECT 'mem-' || (g % :users), g / :users + 1, gen_random_uuid(), 1, 'TaskCreated', 1,
       '{"title": "an event of the memory test", "tags": ["export"]}'::jsonb, repeat('a', 64),
       now(), 'mem', NULL, repeat('0', 64), repeat('b', 64)
FROM generate_series(0, :events - 1) AS g
"""
FILL_SQLITE = """
WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < :events)
INSERT INTO events (user_id, seq, task_id, version, type, schema_version, data, data_hash,
                    occurred_at, actor, request_id, prev_hash, hash)
SELECT 'mem-' || (n % :users), n / :users + 1, lower(hex(randomblob(16))), 1, 'TaskCreated', 1,
       '{"title": "an event of the memory test", "tags": ["export"]}', printf('%.64c', 'a'),
       '2026-11-25 10:00:00.000000', 'mem', NULL, printf('%.64c', '0'), printf('%.64c', 'b')
FROM g
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fill(engine: Engine) -> None:
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        conn.execute(
            text(FILL_POSTGRES if postgres else FILL_SQLITE), {"events": EVENTS, "users": USERS}
        )


def test_exporting_100_000_events_keeps_the_server_memory_flat(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """The server's resident memory while it streams ~50 MB of NDJSON stays within a few MB of
    what it was before: it never holds the export (nor a list of events) whole."""
    engine = create_database_engine(make_settings(fresh_database_url))
    try:
        fill(engine)
    finally:
        engine.dispose()
    headers = {**auth("memory-auditor", role="auditor"), "Accept": "application/x-ndjson"}
    server = served(tmp_path, TASKTRAIL_DATABASE_URL=fresh_database_url, BETTER_AUTH_SECRET=SECRET)
    with server as (base_url, _, pid), httpx2.Client(base_url=base_url, timeout=120) as client:
        # A small export first, so its code is loaded before the baseline is taken. On
        # PostgreSQL the feed hands out the new events once every older transaction of the
        # cluster has ended: wait for that (another client's long transaction may delay it).
        deadline = time.monotonic() + 60
        while True:
            warm = client.get("/api/audit/events", params={"user_id": "mem-1"}, headers=headers)
            if len(warm.text.splitlines()) == EVENTS // USERS or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(warm.text.splitlines()) == EVENTS // USERS
        baseline = rss_kib(pid)
        peak = baseline
        lines = 0
        received = 0
        with client.stream("GET", "/api/audit/events", headers=headers) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines += 1
                received += len(line) + 1
                if lines % 5_000 == 0:
                    peak = max(peak, rss_kib(pid))
    assert lines == EVENTS
    assert received > 40 * 1024 * 1024  # what a server holding it whole would have to hold
    assert (peak - baseline) < 25 * 1024, f"grew {(peak - baseline) / 1024:.1f} MiB"
