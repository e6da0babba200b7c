"""The audit feed: auditor-only search in commit-safe order, paging, NDJSON export."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from tasktrail.database import read_connection, write_transaction
from tasktrail.domain.commands import CommandContext, CreateTask, TaskFields
from tasktrail.queries.audit import AuditFilter, audit_page
from tasktrail.schema import events
from tasktrail.storage.sqlite.transaction import handle
from tests.audit_helpers import auditor, search, settle
from tests.conftest import Api, auth, new_user_id


def test_only_auditors_may_search(client: TestClient, api: Api) -> None:
    """A user's own token is 403 on the audit API; no token is 401."""
    assert client.get("/api/audit/events", headers=api.headers).status_code == 403
    assert client.get("/api/audit/events").status_code == 401
    assert client.get("/api/audit/events", headers=auth("x", roles=["auditor"])).status_code == 200


def test_search_filters_by_user_task_type_and_time(client: TestClient, api: Api) -> None:
    """Each filter narrows the search; the events come as written, oldest first."""
    first = api.create(title="one")
    second = api.create(title="two")
    api.request("PATCH", f"/{first['id']}/complete")
    settle(client, api.user_id, 3)
    mine = search(client, user_id=api.user_id).json()
    assert [event["seq"] for event in mine] == [1, 2, 3]
    assert mine == sorted(mine, key=lambda event: event["position"])
    of_task = search(client, task_id=first["id"]).json()
    assert [event["type"] for event in of_task] == ["TaskCreated", "TaskCompleted"]
    completed = search(client, user_id=api.user_id, type="TaskCompleted").json()
    assert [event["task_id"] for event in completed] == [first["id"]]
    both = search(client, user_id=api.user_id, type=["TaskCompleted", "TaskCreated"]).json()
    assert len(both) == 3
    since = mine[1]["occurred_at"]
    assert [e["seq"] for e in search(client, user_id=api.user_id, since=since).json()] == [2, 3]
    assert [e["seq"] for e in search(client, user_id=api.user_id, until=since).json()] == [1]
    assert second["id"] in {event["task_id"] for event in mine}


def test_search_pages_by_link_and_after(client: TestClient, api: Api) -> None:
    """`after` continues after a position; Link points to the next page while more remain."""
    for n in range(5):
        api.create(title=f"t{n}")
    settle(client, api.user_id, 5)
    seen: list[int] = []
    response = search(client, user_id=api.user_id, limit=2)
    while True:
        assert response.status_code == 200
        seen.extend(event["seq"] for event in response.json())
        link = response.headers.get("link")
        if link is None:
            break
        url = link[1 : link.index(">")]
        response = client.get(url, headers=auditor())
    assert seen == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "params",
    [
        {"after": "999999999"},
        {"type": "TaskArchived"},
        {"since": "yesterday"},
        {"task_id": "x"},
        {"bogus": "1"},
    ],
    ids=["unknown-position", "unknown-type", "bad-since", "bad-task-id", "unknown-parameter"],
)
def test_bad_search_parameters_are_422(client: TestClient, params: dict[str, str]) -> None:
    """Every bad parameter is named in a 422 problem."""
    response = search(client, **params)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_ndjson_export_streams_every_matching_event(client: TestClient, api: Api) -> None:
    """With Accept: application/x-ndjson the whole filtered history comes, one event a line."""
    for n in range(7):
        api.create(title=f"t{n}")
    settle(client, api.user_id, 7)
    response = client.get(
        "/api/audit/events",
        params={"user_id": api.user_id, "limit": 2},
        headers={**auditor(), "Accept": "application/x-ndjson"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 8))  # no limit applies
    paged = search(client, user_id=api.user_id, limit=1000).json()
    assert [json.loads(line) for line in lines] == paged


def test_audit_routes_never_write(client: TestClient, api: Api, engine: Engine) -> None:
    """Searching, exporting and verifying leave the log as it was."""
    api.create(title="t")

    def count() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(events)).scalar_one()

    before = count()
    search(client)
    client.get("/api/audit/events", headers={**auditor(), "Accept": "application/x-ndjson"})
    client.get(f"/api/audit/users/{api.user_id}/verify", headers=auditor())
    assert count() == before


def test_a_reader_tailing_the_feed_sees_every_event_once_while_commits_land_out_of_order(
    engine: Engine,
) -> None:
    """Writers hold their transactions open for random times after appending, so positions
    commit out of order; a reader following `after` still sees each event exactly once."""
    users = [new_user_id() for _ in range(3)]
    writes_each = 8
    done = threading.Event()
    failures: list[BaseException] = []

    def writer(user_id: str, seed: int) -> None:
        pace = random.Random(seed)
        try:
            for n in range(writes_each):
                command = CreateTask(
                    context=CommandContext(user_id=user_id, actor=user_id, request_id=None),
                    task_id=str(uuid.uuid4()),
                    fields=TaskFields(title=f"{user_id} {n}"),
                )
                with write_transaction(engine) as conn:
                    handle(conn, command)
                    time.sleep(pace.uniform(0, 0.08))  # commit late, after others have
        except BaseException as error:  # noqa: BLE001 - reported to the test thread below
            failures.append(error)

    with engine.connect() as conn:  # start at the end of what other tests wrote
        after: int | None = conn.execute(select(func.max(events.c.position))).scalar_one()
    threads = [threading.Thread(target=writer, args=(user, n)) for n, user in enumerate(users)]
    for thread in threads:
        thread.start()
    seen: list[tuple[str, int]] = []
    mine = AuditFilter()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        finished = done.is_set()
        with read_connection(engine) as conn:
            page = audit_page(conn, mine, after=after, limit=7)
        seen.extend((event.user_id, event.seq) for event in page.events if event.user_id in users)
        if page.events:
            after = page.events[-1].position
        elif finished and len(seen) >= len(users) * writes_each:
            # Not at the first empty page: a transaction of another database of the cluster
            # may hold the horizon back for a while (that delays events, it never skips one).
            break
        if all(not thread.is_alive() for thread in threads):
            done.set()
        time.sleep(0.005)
    for thread in threads:
        thread.join()
    assert failures == []
    expected = sorted((user, seq) for user in users for seq in range(1, writes_each + 1))
    assert len(seen) == len(set(seen)), "an event was handed out twice"
    assert sorted(seen) == expected, "an event was skipped"


def test_after_zero_reads_from_the_start_like_the_user_feed(client: TestClient, api: Api) -> None:
    """Position 0 is before the first event: the same page as no `after` at all."""
    api.create(title="t")
    settle(client, api.user_id, 1)
    assert (
        search(client, user_id=api.user_id, after=0).json()
        == search(client, user_id=api.user_id).json()
    )


def test_a_user_id_filter_with_a_nul_byte_is_422(client: TestClient) -> None:
    """PostgreSQL's text cannot hold U+0000: the driver refused it and the search was a 500."""
    response = search(client, user_id="a\x00b")
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "user_id"]
