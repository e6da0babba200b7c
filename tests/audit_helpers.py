"""Reading the audit feed in tests: a search as an auditor, and waiting for the feed's horizon."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import auth


def auditor() -> dict[str, str]:
    """A new token each call: a suite run in one process outlives a token made at import."""
    return auth("the-auditor", role="auditor")


def search(client: TestClient, **params: Any) -> Any:
    return client.get("/api/audit/events", params=params, headers=auditor())


def settle(client: TestClient, user_id: str, count: int) -> None:
    """Wait until the user's newest events are past the feed's horizon.

    On PostgreSQL the feed hands out an event once every transaction older than its own has
    ended, in any database of the cluster; a test in another process of the suite, or another
    test run, may hold one open for a while.
    """
    deadline = time.monotonic() + 15
    while True:
        page = search(client, user_id=user_id, limit=1000)
        # A problem's body is a JSON object: its length would pass for a count of events.
        assert page.status_code == 200, page.text
        if len(page.json()) >= count:
            return
        assert time.monotonic() < deadline, "the feed's horizon did not pass our events"
        time.sleep(0.05)
