"""PostgreSQL's one-round-trip list (queries/hot_list.py) answers exactly what `list_tasks` does.

The route serves the live list from `list_documents` on PostgreSQL and from `list_tasks`
elsewhere; the walk, its filters, its order, its cursor positions and its counts must not depend
on which one ran. Each case walks every page both ways over the same rows and compares.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tasktrail.api.app import create_app
from tasktrail.database import read_connection
from tasktrail.pg_pool import conninfo_of
from tasktrail.queries.hot_list import list_documents
from tasktrail.queries.list_query import ListTasks, Sort, StatusFilter
from tasktrail.queries.tasks import DocumentPage, list_tasks
from tests.conftest import Api, new_user_id, service_role_settings

TITLES = ["50% off", "under_score", "a/slash", "Ünïcode straße", "plain", "PLAIN too", "x%_/y"]


@pytest.fixture(scope="module")
def populated(postgres_engine: Engine, postgres_url: str) -> tuple[str, str]:
    """A user with varied tasks: LIKE's special characters, tags, due dates or none, priorities,
    completed and deleted ones."""
    settings = service_role_settings(postgres_url)
    with TestClient(create_app(settings)) as client:
        api = Api(client, new_user_id())
        for n in range(23):
            fields: dict[str, Any] = {
                "title": f"{TITLES[n % len(TITLES)]} {n}",
                "priority": n % 4,
                "tags": [["Home", "work"], ["work"], []][n % 3],
            }
            if n % 3:
                fields["due_at"] = f"2031-0{n % 9 + 1}-01T00:00:00Z"
            if n % 5 == 0:
                fields["description"] = "call about 100% of it"
            task = api.create(**fields)
            if n % 4 == 0:
                assert api.request("PATCH", f"/{task['id']}/complete").status_code == 200
            if n % 7 == 0:
                assert api.request("DELETE", f"/{task['id']}").status_code == 204
    return api.user_id, conninfo_of(settings)


CASES: list[dict[str, Any]] = [
    {},
    {"sort": Sort.parse("title")},
    {"sort": Sort.parse("-title")},
    {"sort": Sort.parse("due")},
    {"sort": Sort.parse("-due")},
    {"sort": Sort.parse("priority")},
    {"sort": Sort.parse("-updated")},
    {"status": StatusFilter.PENDING},
    {"status": StatusFilter.COMPLETED, "sort": Sort.parse("created")},
    {"status": StatusFilter.DELETED},
    {"q": "%"},
    {"q": "_"},
    {"q": "/"},
    {"q": "x%_/"},
    {"q": "STRASSE"},
    {"q": "100%"},
    {"tags": ("WORK",)},
    {"tags": ("home", "work"), "sort": Sort.parse("due")},
    {"due_after": datetime(2031, 3, 1, tzinfo=UTC)},
    {"due_before": datetime(2031, 5, 1, tzinfo=UTC), "sort": Sort.parse("-due")},
]


def walk_both_ways(engine: Engine, conninfo: str, query: ListTasks) -> list[DocumentPage]:
    """Every page of the walk from both implementations; fails where they differ."""
    pages: list[DocumentPage] = []

    async def natively(page_query: ListTasks) -> DocumentPage | None:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            return await list_documents(conn, page_query)

    while True:
        hot = anyio.run(natively, query)
        with read_connection(engine) as conn:
            reference = list_tasks(conn, query)
        assert hot == reference
        pages.append(reference)
        if reference.next_position is None or len(pages) > 30:
            return pages
        query = replace(query, after=reference.next_position, snapshot_seq=reference.snapshot_seq)


@pytest.mark.parametrize("case", CASES, ids=lambda case: ",".join(f"{k}" for k in case) or "none")
def test_every_page_matches_the_reference_walk(
    postgres_engine: Engine, populated: tuple[str, str], case: dict[str, Any]
) -> None:
    user_id, conninfo = populated
    pages = walk_both_ways(postgres_engine, conninfo, ListTasks(user_id=user_id, limit=4, **case))
    seen = [task["id"] for page in pages for task in json.loads(f"[{page.documents}]")]
    assert len(seen) == pages[0].total
    assert len(set(seen)) == len(seen)


def test_the_cases_select_something_and_leave_something_out(
    postgres_engine: Engine, populated: tuple[str, str]
) -> None:
    """The comparison above means something only if the filters select: a filter that matched
    every task (or none) in both would agree trivially."""
    user_id, _ = populated
    with read_connection(postgres_engine) as conn:
        everything = list_tasks(conn, ListTasks(user_id=user_id, limit=1000)).total
        totals = [
            list_tasks(conn, ListTasks(user_id=user_id, limit=1000, **case)).total
            for case in CASES
            if {"q", "tags", "due_after", "due_before", "status"} & case.keys()
        ]
    assert all(0 < total < everything for total in totals), totals


def test_a_task_changed_since_the_snapshot_is_left_to_the_reference_walk(
    postgres_engine: Engine, postgres_url: str
) -> None:
    """A later page with a task edited since the walk began: the native list declines (None),
    and the reference walk, which places the task as of the snapshot, serves it."""
    settings = service_role_settings(postgres_url)
    with TestClient(create_app(settings)) as client:
        api = Api(client, new_user_id())
        ids = [api.create(title=f"t{n}")["id"] for n in range(5)]
        first = api.request("GET", "", params={"limit": 2, "sort": "title"})
        assert first.status_code == 200
        assert api.request("PATCH", f"/{ids[4]}", json={"title": "a first now"}).status_code == 200
        with read_connection(postgres_engine) as conn:
            head = list_tasks(
                conn, ListTasks(user_id=api.user_id, limit=2, sort=Sort.parse("title"))
            )
        later = ListTasks(
            user_id=api.user_id,
            limit=2,
            sort=Sort.parse("title"),
            after=head.next_position,
            snapshot_seq=head.snapshot_seq - 1,  # the walk began before the rename
        )

        async def natively() -> DocumentPage | None:
            conninfo = conninfo_of(settings)
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                return await list_documents(conn, later)

        assert anyio.run(natively) is None
        # Through the route the walk goes on: the renamed task keeps its place (t4, last).
        walked = [task["title"] for task in first.json()]
        link = first.headers["Link"]
        while link:
            url = link.split(";")[0].strip("<>")
            response = client.get(url, headers=api.headers)
            assert response.status_code == 200, response.text
            walked += [task["title"] for task in response.json()]
            link = response.headers.get("Link", "")
        assert walked == ["t0", "t1", "t2", "t3", "a first now"]
