"""Edits between pages do not move a task in a walk: seen once, never skipped, never twice."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Api

TASKS = 9
PAGE = 3

# For each sort: the body that gives task n its key, and two edits that move a task to the far
# front and the far back of that order.
SORTS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "title": (lambda n: {"title": f"m{n}"}, {"title": "a-first"}, {"title": "z-last"}),
    "due": (
        lambda n: {"due_at": f"2030-01-{10 + n:02d}T00:00:00Z"},
        {"due_at": "2029-01-01T00:00:00Z"},
        {"due_at": "2031-01-01T00:00:00Z"},
    ),
    "priority": (lambda n: {"priority": 1 + n % 2}, {"priority": 0}, {"priority": 3}),
    "updated": (lambda n: {}, {}, {"description": "touched"}),
}


def walk(api: Api, params: dict[str, Any], between_pages: Any = None) -> list[dict[str, Any]]:
    """Every page of a walk by Link; `between_pages(page_number, seen)` runs after each page."""
    seen: list[dict[str, Any]] = []
    response = api.request("GET", params={**params, "limit": PAGE})
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        seen.extend(response.json())
        pages += 1
        if between_pages is not None:
            between_pages(pages, seen)
        link = response.headers.get("link")
        if link is None:
            return seen
        cursor = re.search(r"cursor=([^&>]+)", link)
        assert cursor is not None
        response = api.request("GET", params={**params, "limit": PAGE, "cursor": cursor.group(1)})


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("field", list(SORTS))
def test_tasks_edited_between_pages_are_seen_exactly_once(
    api: Api, field: str, descending: bool
) -> None:
    """Move a seen task to the end and an unseen one to the front of the order mid-walk:
    every task still comes exactly once, with its current body."""
    key_of, to_front, to_back = SORTS[field]
    ids = [api.create(**{"title": f"m{n}", **key_of(n)})["id"] for n in range(TASKS)]
    sort = f"-{field}" if descending else field
    front, back = (to_back, to_front) if descending else (to_front, to_back)
    edited: dict[str, dict[str, Any]] = {}

    def edit(page: int, seen: list[dict[str, Any]]) -> None:
        if page != 1:
            return
        seen_ids = {task["id"] for task in seen}
        unseen = [task_id for task_id in ids if task_id not in seen_ids]
        for task_id, change in ((seen[0]["id"], back), (unseen[-1], front)):
            response = api.request("PATCH", f"/{task_id}", json=change or {"title": "renamed"})
            assert response.status_code == 200
            edited[task_id] = response.json()

    tasks = walk(api, {"sort": sort}, edit)
    returned = [task["id"] for task in tasks]
    assert sorted(returned) == sorted(ids), "a task was skipped or seen twice"
    unseen_edit = next(task_id for task_id in edited if task_id != tasks[0]["id"])
    shown = next(task for task in tasks if task["id"] == unseen_edit)
    assert shown == edited[unseen_edit]  # its place is from the snapshot, its body is current


def test_a_walk_without_edits_equals_one_big_page(api: Api) -> None:
    """The snapshot changes nothing when nothing changes: paging equals a single page."""
    for n in range(TASKS):
        api.create(title=f"t{n % 4}", priority=n % 3)
    whole = api.request("GET", params={"sort": "-priority", "limit": 1000}).json()
    assert walk(api, {"sort": "-priority"}) == whole


def test_a_task_created_mid_walk_takes_its_place_by_its_own_key(api: Api) -> None:
    """A task younger than the snapshot has no past: it shows up if it sorts after the cursor."""
    for n in range(TASKS):
        api.create(title=f"m{n}")

    def add(page: int, _: list[dict[str, Any]]) -> None:
        if page == 1:
            api.create(title="zz-late")  # sorts last by title: ahead of the cursor
            api.create(title="aa-early")  # sorts first: already behind the cursor

    titles = [task["title"] for task in walk(api, {"sort": "title"}, add)]
    assert titles.count("zz-late") == 1
    assert "aa-early" not in titles
    assert len(titles) == TASKS + 1
