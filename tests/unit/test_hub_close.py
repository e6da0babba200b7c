"""The live feed hub's close is bounded: a watcher that will not end when cancelled (a library
that swallowed the cancellation) is left behind after `CLOSE_SECONDS`, and shutdown goes on."""

from __future__ import annotations

import asyncio
import time

import pytest

from tasktrail.api.live import hub
from tasktrail.api.live.hub import FeedHub

_released: list[bool] = []


async def _stubborn(_: FeedHub) -> None:
    while not _released:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue  # the bug this guards against: a cancellation turned into a retry


async def _obedient(_: FeedHub) -> None:
    await asyncio.sleep(3600)


def _close_after_subscribing(watcher: hub.Watcher) -> float:
    async def run() -> float:
        feed = FeedHub(watcher, streams_per_user=5)
        feed.subscribe("ann")
        await asyncio.sleep(0)  # the watcher starts
        started = time.monotonic()
        await feed.aclose()
        took = time.monotonic() - started
        _released.append(True)  # let the stubborn one go, so that the loop can end
        return took

    return asyncio.run(run())


def test_a_watcher_that_ignores_cancellation_does_not_hold_up_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub, "CLOSE_SECONDS", 0.2)
    assert 0.2 <= _close_after_subscribing(_stubborn) < 5


def test_a_watcher_that_ends_when_cancelled_is_waited_for_and_no_longer() -> None:
    assert _close_after_subscribing(_obedient) < hub.CLOSE_SECONDS
