"""More requests than connections, for real: one uvicorn worker, a pool of 5, 100 users at once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from fastapi import FastAPI

from tests.conftest import auth, live_server, new_user_id

USERS = 100
TASKS_EACH = 3


async def _one_user(client: httpx2.AsyncClient, user_id: str) -> list[str]:
    """Create, read and list as one user would; return what went wrong (nothing, we expect)."""
    headers = auth(user_id)
    problems: list[str] = []
    created: list[dict[str, Any]] = []
    for n in range(TASKS_EACH):
        response = await client.post(
            f"/api/{user_id}/tasks", json={"title": f"{user_id} #{n}"}, headers=headers
        )
        if response.status_code != 201:
            problems.append(f"create {response.status_code}")
            continue
        created.append(response.json())
    for task in created:
        response = await client.get(f"/api/{user_id}/tasks/{task['id']}", headers=headers)
        if response.status_code != 200 or response.json() != task:
            problems.append(f"get {response.status_code}")
    listed = await client.get(f"/api/{user_id}/tasks", headers=headers)
    if listed.status_code != 200:
        problems.append(f"list {listed.status_code}")
    elif [task["id"] for task in listed.json()] != [task["id"] for task in reversed(created)]:
        problems.append("list shows other tasks than the user's own, or out of order")
    return problems


def test_a_hundred_users_at_once_on_five_connections_all_get_correct_answers(
    app: FastAPI,
) -> None:
    """Requests wait for a connection instead of failing or deadlocking, and none sees another
    user's data."""
    users = [new_user_id() for _ in range(USERS)]

    async def run(base_url: str) -> list[list[str]]:
        limits = httpx2.Limits(max_connections=USERS)
        async with httpx2.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(_one_user(client, user) for user in users))

    with live_server(app) as base_url:
        outcomes = asyncio.run(run(base_url))
    assert outcomes == [[] for _ in users]


def test_two_updates_racing_with_the_same_if_match_give_one_200_and_one_412(
    app: FastAPI, user_id: str
) -> None:
    """Optimistic concurrency holds under a real race: exactly one writer wins."""
    headers = auth(user_id)

    async def race(base_url: str) -> list[int]:
        async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
            created = await client.post(
                f"/api/{user_id}/tasks", json={"title": "contested"}, headers=headers
            )
            url = f"/api/{user_id}/tasks/{created.json()['id']}"
            responses = await asyncio.gather(
                *(
                    client.patch(
                        url,
                        json={"title": f"writer {n}"},
                        headers={**headers, "If-Match": created.headers["etag"]},
                    )
                    for n in range(2)
                )
            )
            final = await client.get(url, headers=headers)
            assert final.json()["version"] == 2
            return sorted(response.status_code for response in responses)

    with live_server(app) as base_url:
        assert asyncio.run(race(base_url)) == [200, 412]
