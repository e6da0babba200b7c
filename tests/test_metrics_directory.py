"""PROMETHEUS_MULTIPROC_DIR set to a directory with other files in it, or to a file: serve refuses
it, untouched.

serve removes an earlier run's metric files from the directory at start. It used to remove
every *.db there: set to the data directory, that was the SQLite database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.conftest import SECRET, auth, free_tcp_port, new_user_id
from tests.processes import served, tasktrail_env


def serve_until_it_exits_or_answers(cwd: Path, **env: str) -> tuple[int | None, str]:
    """`tasktrail serve` until it exits (its code) or starts serving (None; it is killed)."""
    log = cwd / "refused-serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tasktrail", "serve", "--port", str(free_tcp_port())],
            cwd=cwd,
            env=tasktrail_env(TASKTRAIL_LOG_FORMAT="json", **env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    try:
        while process.poll() is None:
            if "running on http" in log.read_text() or time.monotonic() > deadline:
                return None, log.read_text()
            time.sleep(0.1)
        return process.returncode, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_metrics_directory_holding_the_database_is_refused_and_left_as_it_was(
    tmp_path: Path,
) -> None:
    """A first run leaves real metric files; a run whose metrics directory is the data
    directory is refused at start, the database intact; the next run, with a directory of the
    metrics' own, removes the first run's files and serves the same database."""
    data = tmp_path / "data"
    data.mkdir()
    database = data / "tasktrail.db"
    metrics = tmp_path / "metrics"
    env = {"TASKTRAIL_DATABASE_URL": f"sqlite:///{database}", "BETTER_AUTH_SECRET": SECRET}
    user = new_user_id()
    with served(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics), **env) as (base_url, _, pid):
        created = httpx2.post(
            f"{base_url}/api/{user}/tasks", json={"title": "kept"}, headers=auth(user), timeout=10
        )
        assert created.status_code == 201, created.text
    left = sorted(path.name for path in metrics.iterdir())
    assert f"counter_{pid}.db" in left, left  # prometheus-client's, of a process now gone

    contents = database.read_bytes()
    in_data = sorted(path.name for path in data.iterdir())
    code, output = serve_until_it_exits_or_answers(
        tmp_path, PROMETHEUS_MULTIPROC_DIR=str(data), **env
    )
    assert database.exists(), f"serve deleted the database:\n{output[-2000:]}"
    assert database.read_bytes() == contents, "the database was replaced by an empty one"
    assert sorted(path.name for path in data.iterdir()) == in_data
    assert code == 2, f"serve was not refused (exit {code}):\n{output[-2000:]}"
    assert "PROMETHEUS_MULTIPROC_DIR" in output
    assert "tasktrail.db" in output

    with served(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics), **env) as (base_url, _, _):
        now = [path.name for path in metrics.iterdir()]
        assert not set(left) & set(now), f"the earlier run's files stayed: {now}"
        listed = httpx2.get(f"{base_url}/api/{user}/tasks", headers=auth(user), timeout=10)
        assert listed.status_code == 200, listed.text
        assert [task["title"] for task in listed.json()] == ["kept"]


def test_a_metrics_directory_that_is_a_file_is_refused_cleanly(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR naming a file is refused at start, exit 2 with a message naming
    the variable, not a traceback; the file is left as it was. So is a path under a file."""
    env = {
        "TASKTRAIL_DATABASE_URL": f"sqlite:///{tmp_path / 'tasktrail.db'}",
        "BETTER_AUTH_SECRET": SECRET,
    }
    mistaken = tmp_path / "notes.txt"
    mistaken.write_bytes(b"not yours to touch")
    for chosen in (mistaken, mistaken / "metrics"):
        code, output = serve_until_it_exits_or_answers(
            tmp_path, PROMETHEUS_MULTIPROC_DIR=str(chosen), **env
        )
        assert code == 2, f"serve was not refused (exit {code}):\n{output[-2000:]}"
        assert f"PROMETHEUS_MULTIPROC_DIR={chosen}" in output
        assert "Traceback" not in output, output[-2000:]
        assert mistaken.read_bytes() == b"not yours to touch"
