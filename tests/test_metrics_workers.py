"""/metrics of `serve --workers 2`: whichever worker answers, it reports the whole service."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import httpx2

from tasktrail.api.http.metrics import reap_dead_processes
from tests.conftest import SECRET
from tests.processes import served
from tests.test_metrics import sample

READYZ = {"method": "GET", "route": "/readyz", "status": "200"}


def scrape(base_url: str) -> tuple[str, set[str]]:
    """/metrics on a new connection, and the pid of the worker that answered."""
    text = httpx2.get(base_url + "/metrics", headers={"Connection": "close"}, timeout=10).text
    return text, set(re.findall(r'tasktrail_db_pool_size\{pid="(\d+)"', text))


def assert_every_scrape_counts(metrics_url: str, requests: int) -> None:
    """Scrapes on new connections, until both workers have answered (10 at least): each one,
    whichever worker answers it, counts all `requests` /readyz of the service."""
    answered_by: set[str] = set()
    scrapes = 0
    while scrapes < 10 or (len(answered_by) < 2 and scrapes < 200):
        text, pids = scrape(metrics_url)
        scrapes += 1
        answered_by |= pids
        assert sample(text, "tasktrail_http_requests_total", **READYZ) == requests
    assert len(answered_by) == 2, f"one worker answered all {scrapes} scrapes"


def send_requests(base_url: str, count: int) -> None:
    for _ in range(count):  # one connection each: the workers share them out
        response = httpx2.get(base_url + "/readyz", headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200, response.text


def test_two_workers_report_every_request_whichever_answers_the_scrape(
    tmp_path: Path, postgres_url: str
) -> None:
    """Requests spread over two workers; every scrape, answered by either worker, counts them
    all. serve made a private metrics directory for the run and removed it at exit."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    requests = 60
    with served(
        tmp_path,
        "--workers",
        "2",
        TASKTRAIL_DATABASE_URL=postgres_url,
        BETTER_AUTH_SECRET=SECRET,
        TMPDIR=str(temp),
    ) as (base_url, _, _):
        assert [path.name[:18] for path in temp.iterdir()] == ["tasktrail-metrics-"]
        send_requests(base_url, requests)
        assert_every_scrape_counts(base_url, requests)
    assert not any(path.name.startswith("tasktrail-metrics-") for path in temp.iterdir())


def test_the_operators_directory_is_emptied_at_start_and_a_killed_workers_gauges_go(
    tmp_path: Path, postgres_url: str
) -> None:
    """PROMETHEUS_MULTIPROC_DIR set by the operator is used, its stale files removed at start.
    A worker killed outright loses its live gauges at the next scrape; its counts stay."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_999999.db").write_bytes(b"left by an earlier run")
    with served(
        tmp_path,
        "--workers",
        "2",
        TASKTRAIL_DATABASE_URL=postgres_url,
        BETTER_AUTH_SECRET=SECRET,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    ) as (base_url, _, _):
        assert not (directory / "counter_999999.db").exists()
        send_requests(base_url, 20)
        workers = {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_live*")}
        assert len(workers) == 2
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        live_gauges = f"gauge_livesum_{victim}.db"
        deadline = time.monotonic() + 20
        while (directory / live_gauges).exists():
            assert time.monotonic() < deadline, "the killed worker's live gauges stayed"
            with suppress(httpx2.TransportError):  # the survivor answers on the shared socket
                scrape(base_url)
            time.sleep(0.1)
        text, _ = scrape(base_url)
        assert sample(text, "tasktrail_http_requests_total", **READYZ) == 20
        assert sample(text, "tasktrail_sse_streams_open") == 0
    assert directory.exists()  # the operator's, not serve's to remove


def test_a_dead_worker_not_yet_reaped_by_its_supervisor_loses_its_live_gauges(
    tmp_path: Path,
) -> None:
    """A killed worker stays a zombie until uvicorn's supervisor reaps it, which can take its
    whole health-check timeout: a zombie counts as gone. A running process keeps its gauges."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    with subprocess.Popen(sleeper) as running, subprocess.Popen(sleeper) as dead:
        try:
            dead.kill()
            stat = Path(f"/proc/{dead.pid}/stat")
            while not stat.read_text().rsplit(")", 1)[1].startswith(" Z"):
                time.sleep(0.01)  # not reaped: this test is its parent and has not waited
            for pid in (running.pid, dead.pid):
                (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
            reap_dead_processes(str(tmp_path))
            left = [path.name for path in tmp_path.iterdir()]
            assert left == [f"gauge_livesum_{running.pid}.db"]
        finally:
            running.kill()
