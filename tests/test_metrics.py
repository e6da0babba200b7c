"""/metrics: Prometheus text with requests by route template and status, latency, events, pool,
open streams."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tasktrail.api.http.metrics import Metrics
from tests.conftest import Api


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample, found by its name and exact labels."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if (
            match is not None
            and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or "")) == labels
        ):
            return float(match.group(2))
    return 0.0


def test_metrics_count_requests_by_route_template_and_exact_status(
    client: TestClient, api: Api
) -> None:
    """Labels are the route template (no ids) and the exact status code."""
    before = client.get("/metrics").text
    task = api.create(title="measured")
    api.get(task["id"])
    api.get("01936d1e-0000-7000-8000-000000000000")
    after = client.get("/metrics")
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    template = "/api/{user_id}/tasks/{task_id}"
    for status, count in (("200", 1), ("404", 1)):
        labels = {"method": "GET", "route": template, "status": status}
        delta = sample(text, "tasktrail_http_requests_total", **labels) - sample(
            before, "tasktrail_http_requests_total", **labels
        )
        assert delta == count
    created = {"method": "POST", "route": "/api/{user_id}/tasks", "status": "201"}
    assert sample(text, "tasktrail_http_requests_total", **created) >= 1
    assert task["id"] not in text
    assert api.user_id not in text


def test_metrics_count_appended_events_and_show_the_pool(
    client: TestClient, api: Api, database_url: str
) -> None:
    """Each appended event is counted once committed; the pools' size and use are reported
    (on PostgreSQL the async pool of the hot path too, filled once it has served a request)."""
    before = sample(client.get("/metrics").text, "tasktrail_events_appended_total")
    task = api.create()
    api.request("PATCH", f"/{task['id']}/complete")
    api.request("PATCH", f"/{task['id']}", json={})  # changes nothing, appends nothing
    text = client.get("/metrics").text
    assert sample(text, "tasktrail_events_appended_total") - before == 2
    assert sample(text, "tasktrail_db_pool_size", pool="sync") == 5
    assert "tasktrail_db_pool_connections_in_use" in text
    if database_url.startswith("postgresql"):
        assert sample(text, "tasktrail_db_pool_size", pool="async") == 5
    assert "tasktrail_http_request_duration_seconds_bucket" in text


def test_unmatched_paths_share_one_label(client: TestClient) -> None:
    """A scanner's random paths do not create a series each."""
    client.get("/wp-admin/setup.php")
    text = client.get("/metrics").text
    assert "wp-admin" not in text
    assert (
        sample(text, "tasktrail_http_requests_total", method="GET", route="unmatched", status="404")
        >= 1
    )


def test_the_open_streams_gauge_follows_streams_opened_and_closed(sqlite_engine: Engine) -> None:
    """stream_opened and stream_closed move tasktrail_sse_streams_open up and down."""
    metrics = Metrics(sqlite_engine)
    assert sample(metrics.render().decode(), "tasktrail_sse_streams_open") == 0
    metrics.stream_opened()
    metrics.stream_opened()
    metrics.stream_closed()
    assert sample(metrics.render().decode(), "tasktrail_sse_streams_open") == 1
