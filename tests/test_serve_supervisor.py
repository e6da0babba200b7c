"""The workers of `serve --workers 2` stop by themselves when their supervisor is killed outright
(api/http/supervisor_watch.py): they free the port and end gracefully, not a moment before."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx2

from tests.conftest import SECRET
from tests.processes import served


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, Z...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _running(pid: int) -> bool:
    # A worker reparented to a PID 1 that does not reap stays a zombie: exited all the same.
    return _state(pid) not in (None, "Z", "X")


def _workers_of(supervisor: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if parent == supervisor and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, postgres_url: str) -> None:
    with served(
        tmp_path,
        "--workers",
        "2",
        TASKTRAIL_DATABASE_URL=postgres_url,
        BETTER_AUTH_SECRET=SECRET,
    ) as (base_url, log, supervisor):
        port = int(base_url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while len(workers := _workers_of(supervisor)) < 2:
            assert time.monotonic() < deadline, f"two workers did not start:\n{log.read_text()}"
            time.sleep(0.1)
        assert httpx2.get(base_url + "/readyz", timeout=10).status_code == 200

        os.kill(supervisor, signal.SIGKILL)

        deadline = time.monotonic() + 20
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, (
                f"workers {[pid for pid in workers if _running(pid)]} outlived their supervisor"
                f" by 20 s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.1)
        assert _port_is_free(port), "the port is still held"
        text = log.read_text()
        assert text.count("the supervisor is gone: this worker stops") == 2, text[-3000:]
        # Each stopped the way a SIGTERM from the supervisor stops it: lifespan shutdown ran.
        assert text.count("Application shutdown complete") >= 2, text[-3000:]
