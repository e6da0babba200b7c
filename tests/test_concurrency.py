"""Real concurrent requests through uvicorn on loopback."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import httpx2
from fastapi import FastAPI
from sqlalchemy import Engine, select

from tasktrail.schema import events
from tests.conftest import auth, live_server, new_user_id

CONCURRENT_CREATES = 50


async def _create_many(base_url: str, user_id: str, count: int) -> list[int]:
    headers = auth(user_id)
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"/api/{user_id}/tasks", json={"title": f"task {n}"}, headers=headers)
                for n in range(count)
            )
        )
    return [response.status_code for response in responses]


def test_fifty_concurrent_creates_by_one_user_get_seq_one_to_fifty(
    app: FastAPI, engine: Engine, user_id: str
) -> None:
    """50 simultaneous creates of one user all succeed, and their seq is 1..50 with no gap."""
    with live_server(app) as base_url:
        statuses = asyncio.run(_create_many(base_url, user_id, CONCURRENT_CREATES))
    assert statuses == [201] * CONCURRENT_CREATES
    with engine.connect() as conn:
        seqs = conn.scalars(
            select(events.c.seq).where(events.c.user_id == user_id).order_by(events.c.seq)
        ).all()
        hashes = conn.execute(
            select(events.c.prev_hash, events.c.hash)
            .where(events.c.user_id == user_id)
            .order_by(events.c.seq)
        ).all()
    assert seqs == list(range(1, CONCURRENT_CREATES + 1))
    # The chain stays linear under the race: each event links to the one before it.
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(hashes))


def test_concurrent_creates_of_different_users_each_start_at_seq_one(
    app: FastAPI, engine: Engine
) -> None:
    """Writers of different users do not share a sequence: each user's log starts at 1."""
    users = [new_user_id() for _ in range(5)]

    async def run() -> list[list[int]]:
        return await asyncio.gather(*(_create_many(base_url, user, 5) for user in users))

    with live_server(app) as base_url:
        results = asyncio.run(run())
    assert all(statuses == [201] * 5 for statuses in results)
    with engine.connect() as conn:
        for user in users:
            seqs = conn.scalars(
                select(events.c.seq).where(events.c.user_id == user).order_by(events.c.seq)
            ).all()
            assert seqs == [1, 2, 3, 4, 5]
