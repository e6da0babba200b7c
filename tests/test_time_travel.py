"""as_of: the list and a task as they were at an instant, folded from the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from tasktrail.domain.encoding import format_timestamp
from tests.conftest import Api

# The test client's own machinery (event loop, transport) keeps the real clock.
FREEZEGUN_IGNORE = ["anyio", "starlette", "httpx2", "httpx"]


def at(api: Api, moment: datetime, method: str, suffix: str = "", **kwargs: Any) -> Any:
    with freeze_time(moment, ignore=FREEZEGUN_IGNORE):
        response = api.request(method, suffix, **kwargs)
    assert response.status_code in (200, 201, 204), response.text
    return response


def as_of(moment: datetime) -> str:
    return format_timestamp(moment)


@pytest.fixture
def story(api: Api) -> tuple[str, list[datetime]]:
    """A task created, renamed, completed and deleted one second apart, an hour ago (so the
    test's tokens are valid then), and a second task created in between."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    times = [base + timedelta(seconds=n) for n in range(1, 5)]
    task = at(api, times[0], "POST", json={"title": "Draft", "tags": ["home"]}).json()["id"]
    at(api, times[1], "PATCH", f"/{task}", json={"title": "Final"})
    at(api, times[1] + timedelta(milliseconds=500), "POST", json={"title": "Other"})
    at(api, times[2], "PATCH", f"/{task}/complete")
    at(api, times[3], "DELETE", f"/{task}")
    return task, times


def test_a_task_as_of_each_instant_of_its_life(api: Api, story: tuple[str, list[datetime]]) -> None:
    """Before creation 404; then each state, also exactly at each event's occurred_at; deleted 404."""
    task, (created, renamed, completed, deleted) = story
    half = timedelta(milliseconds=250)
    expectations: list[tuple[datetime, int, dict[str, Any]]] = [
        (created - half, 404, {}),
        (created, 200, {"title": "Draft", "status": "pending", "version": 1}),
        (created + half, 200, {"title": "Draft", "version": 1}),
        (renamed, 200, {"title": "Final", "status": "pending", "version": 2}),
        (completed, 200, {"status": "completed", "version": 3, "completed_at": as_of(completed)}),
        (completed + half, 200, {"completed": True, "updated_at": as_of(completed)}),
        (deleted, 404, {}),
        (deleted + timedelta(days=1), 404, {}),
    ]
    for moment, status, fields in expectations:
        response = api.get(task, params={"as_of": as_of(moment)})
        assert response.status_code == status, (moment, response.text)
        if status == 200:
            body = response.json()
            assert {name: body[name] for name in fields} == fields, moment
            assert response.headers["etag"] == f'"{body["version"]}"'


def test_the_list_as_of_each_instant(api: Api, story: tuple[str, list[datetime]]) -> None:
    """The list at each instant: what existed, with the filters applied to the past state."""
    _, (created, renamed, completed, deleted) = story

    def titles(moment: datetime, **params: Any) -> list[str]:
        response = api.request("GET", params={"as_of": as_of(moment), **params})
        assert response.status_code == 200, response.text
        assert response.headers["x-total-count"] == str(len(response.json()))
        return [item["title"] for item in response.json()]

    assert titles(created - timedelta(seconds=1)) == []
    assert titles(created) == ["Draft"]
    assert titles(renamed, q="fin") == ["Final"]
    assert titles(renamed + timedelta(seconds=0.5)) == ["Other", "Final"]
    assert titles(completed, status="completed") == ["Final"]
    assert titles(completed, status="pending") == ["Other"]
    assert titles(deleted) == ["Other"]
    assert titles(deleted, status="deleted") == ["Final"]
    assert titles(deleted, tag="HOME", status="deleted") == ["Final"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"sort": "title"},
        {"sort": "-due"},
        {"sort": "priority"},
        {"sort": "-updated", "status": "pending"},
        {"q": "MILK", "sort": "due"},
        {"tag": "work", "due_after": "2030-01-03T00:00:00Z"},
        {"due_before": "2030-01-05T00:00:00+02:00", "sort": "-title"},
        {"status": "deleted"},
    ],
    ids=lambda params: "&".join(f"{k}={v}" for k, v in params.items()) or "default",
)
def test_as_of_now_lists_exactly_what_the_read_model_lists(
    api: Api, params: dict[str, str]
) -> None:
    """The rules applied to folded states give the same answer as the SQL on the read model,
    page by page."""
    for n in range(12):
        task = api.create(
            title=["milk", "Bread", "apple", "MILK run"][n % 4] + f" {n}",
            priority=n % 4,
            tags=["work"] if n % 3 else ["home"],
            due_at=None if n % 5 == 0 else f"2030-01-{1 + n % 7:02d}T00:00:00Z",
        )
        if n % 4 == 1:
            api.request("PATCH", f"/{task['id']}/complete")
        if n % 6 == 2:
            api.request("DELETE", f"/{task['id']}")
    now = as_of(datetime.now(UTC) + timedelta(seconds=1))

    def walk(extra: dict[str, str]) -> tuple[list[Any], list[str]]:
        pages, totals = [], []
        query = {**params, **extra, "limit": "5"}
        response = api.request("GET", params=query)
        while True:
            assert response.status_code == 200, response.text
            pages.extend(response.json())
            totals.append(response.headers["x-total-count"])
            link = response.headers.get("link")
            if link is None:
                return pages, totals
            cursor = link.split("cursor=", 1)[1].split(">", 1)[0].split("&", 1)[0]
            response = api.request("GET", params={**query, "cursor": cursor})

    assert walk({"as_of": now}) == walk({})
