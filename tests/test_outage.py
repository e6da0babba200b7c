"""With the database gone every route that needs it says 503 at once; then the service recovers."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from tasktrail.api.app import create_app
from tests.conftest import auth, make_settings, migrated
from tests.private_postgres import private_cluster

ROUTES = [
    ("GET", "/api/{user}/tasks", None),
    ("POST", "/api/{user}/tasks", {"title": "during the outage"}),
    ("GET", "/api/{user}/tasks/{task}", None),
    ("PATCH", "/api/{user}/tasks/{task}", {"title": "x"}),
    ("PATCH", "/api/{user}/tasks/{task}/complete", None),
    ("DELETE", "/api/{user}/tasks/{task}", None),
    ("GET", "/api/{user}/tasks/{task}/events", None),
    ("GET", "/api/{user}/events", None),
]


def test_a_stopped_database_gives_503_and_a_restarted_one_is_used_again() -> None:
    """Stop our own PostgreSQL: 503 with Retry-After everywhere, /readyz 503, /healthz 200.
    Start it again: the service answers normally without a restart of its own."""
    with private_cluster() as cluster:
        settings = make_settings(
            migrated(cluster.url), pool_size=3, connect_timeout=2, pool_timeout=2
        )
        user = "outage-user"
        headers = auth(user)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            created = client.post(f"/api/{user}/tasks", json={"title": "before"}, headers=headers)
            assert created.status_code == 201
            task = created.json()["id"]

            cluster.stop()
            for method, path, body in ROUTES:
                response = client.request(
                    method, path.format(user=user, task=task), json=body, headers=headers
                )
                assert response.status_code == 503, (method, path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert int(response.headers["retry-after"]) > 0
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200

            cluster.start()
            deadline = time.monotonic() + 30
            answers = []
            while time.monotonic() < deadline:
                answers.append(client.get(f"/api/{user}/tasks", headers=headers).status_code)
                if answers[-1] == 200:
                    break
                time.sleep(0.2)
            assert answers[-1] == 200, answers
            assert set(answers) <= {200, 503}  # never a 500 on the way back
            assert client.get("/readyz").status_code == 200
            after = client.post(f"/api/{user}/tasks", json={"title": "after"}, headers=headers)
            assert after.status_code == 201
            listed = client.get(f"/api/{user}/tasks", headers=headers).json()
            assert [item["title"] for item in listed] == ["after", "before"]
