"""/metrics on a port of its own (`serve --metrics-port`, TASKTRAIL_METRICS_PORT), through a
real `tasktrail serve`: answered there only, with the usual content; the API's port answers it
404, and the metrics port answers nothing else. Without the setting /metrics stays on the API's
port (tests/test_metrics.py, tests/test_metrics_workers.py)."""

from __future__ import annotations

from pathlib import Path

import httpx2

from tests.conftest import SECRET, free_tcp_port
from tests.processes import served
from tests.test_metrics import sample
from tests.test_metrics_workers import READYZ, assert_every_scrape_counts, send_requests

PROBLEM_JSON = "application/problem+json"


def assert_not_found(response: httpx2.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 404


def test_metrics_port_answers_metrics_and_the_api_port_does_not(tmp_path: Path) -> None:
    """One process: /metrics, GET and HEAD, on the metrics port, counting the API's requests;
    a 404 problem for /metrics on the API's port, and for the API's routes on the metrics
    port."""
    metrics_port = free_tcp_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    with served(tmp_path, "--metrics-port", str(metrics_port), BETTER_AUTH_SECRET=SECRET) as (
        base_url,
        _,
        _,
    ):
        send_requests(base_url, 3)
        assert_not_found(httpx2.get(base_url + "/metrics", timeout=10))
        scraped = httpx2.get(metrics_url + "/metrics", timeout=10)
        assert scraped.status_code == 200, scraped.text
        assert scraped.headers["content-type"].startswith("text/plain")
        assert sample(scraped.text, "tasktrail_http_requests_total", **READYZ) == 3
        assert "tasktrail_db_pool_size" in scraped.text  # the gauges read at scrape time
        assert httpx2.head(metrics_url + "/metrics", timeout=10).status_code == 200
        for path in ("/healthz", "/readyz", "/api/alice/tasks", "/docs", "/openapi.json"):
            assert_not_found(httpx2.get(metrics_url + path, timeout=10))
        assert httpx2.get(base_url + "/healthz", timeout=10).status_code == 200


def test_two_workers_both_answer_on_the_metrics_port_from_the_setting(
    tmp_path: Path, postgres_url: str
) -> None:
    """`serve --workers 2` with TASKTRAIL_METRICS_PORT: each worker accepts on the metrics
    port too (the pool gauges carry the answering worker's pid: both are seen), every scrape
    counts the requests of both, and neither answers /metrics on the API's port."""
    metrics_port = free_tcp_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    requests = 20
    with served(
        tmp_path,
        "--workers",
        "2",
        TASKTRAIL_DATABASE_URL=postgres_url,
        BETTER_AUTH_SECRET=SECRET,
        TASKTRAIL_METRICS_PORT=str(metrics_port),
    ) as (base_url, _, _):
        send_requests(base_url, requests)
        for _ in range(10):  # a new connection each: either worker may take it
            assert_not_found(
                httpx2.get(base_url + "/metrics", headers={"Connection": "close"}, timeout=10)
            )
        assert_every_scrape_counts(metrics_url, requests)
