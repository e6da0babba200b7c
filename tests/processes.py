"""tasktrail as a real process: the CLI and `serve`, for tests that need the whole program."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from tests.conftest import free_tcp_port


def tasktrail_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no tasktrail settings (nor a metrics directory) but
    those given."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("TASKTRAIL_")
        and name not in {"BETTER_AUTH_SECRET", "PROMETHEUS_MULTIPROC_DIR"}
    }
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tasktrail", *args],
        cwd=cwd,
        env=tasktrail_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Server:
    """A `tasktrail serve` process: where it answers, where it logs, the process itself."""

    base_url: str
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, as a supervisor stops it; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"serve did not stop within {timeout} s of SIGTERM") from None


def wait_until_answering(
    process: subprocess.Popen[bytes],
    log: Path,
    answering: Callable[[], bool],
    name: str,
    seconds: float = 30,
) -> None:
    """Poll `answering` until it is true; fail with the process's log if the process exits
    first or `seconds` pass. A refused or reset connection counts as not answering yet."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited early:\n{log.read_text()}")
        with contextlib.suppress(httpx2.TransportError):
            if answering():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not answer within {seconds:g} s:\n{log.read_text()}")
        time.sleep(0.1)


@contextmanager
def server_process(cwd: Path, *args: str, **env: str) -> Iterator[Server]:
    """`tasktrail serve [args]` in a subprocess, answering /healthz; stopped (SIGTERM) at the
    end."""
    port = free_tcp_port()
    log = cwd / f"serve-{port}.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tasktrail", "serve", "--port", str(port), *args],
            cwd=cwd,
            env=tasktrail_env(TASKTRAIL_LOG_FORMAT="json", **env),
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # its workers in its own process group, to check at the end
        )
        base_url = f"http://127.0.0.1:{port}"

        def answering() -> bool:
            # Our server's answer, not another's: a port found free a moment ago may have been
            # taken since (other tests start servers too), and then whoever holds it answers
            # /healthz while ours fails to bind.
            if f"running on {base_url}" not in log.read_text():
                return False
            return httpx2.get(base_url + "/healthz", timeout=1).is_success

        try:
            wait_until_answering(process, log, answering, "serve")
            yield Server(base_url, log, process)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            _no_worker_outlives(process.pid, log)


class ServeLeftAProcess(UserWarning):
    """Shown in the test summary, not raised (pyproject.toml's filterwarnings)."""


def _no_worker_outlives(group: int, log: Path) -> None:
    """A worker left running after `serve` exited would hold the port and the database: killed
    here, with a warning. Seen in the killed-worker test (tests/test_metrics_workers.py): the
    replacement worker uvicorn had just started, and multiprocessing's resource tracker, outlived
    `serve`. Workers now stop when their supervisor is gone (api/http/supervisor_watch.py,
    tests/test_serve_supervisor.py); this stays as the net that would show it again."""
    deadline = time.monotonic() + 5  # a worker that is exiting on its own gets a moment
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return  # the group is empty
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    left = _members(group)
    os.killpg(group, signal.SIGKILL)
    message = f"{left} outlived serve (killed now):\n{log.read_text()[-3000:]}"
    warnings.warn(message, ServeLeftAProcess, stacklevel=1)


def _members(group: int) -> list[str]:
    """The processes of a process group: pid and command line."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"{stat.parent.name}: {command.decode(errors='replace')[:120]}")
    return found


@contextmanager
def served(cwd: Path, *args: str, **env: str) -> Iterator[tuple[str, Path, int]]:
    """`tasktrail serve [args]` in a subprocess; yields its base URL, its log file and its pid."""
    with server_process(cwd, *args, **env) as server:
        yield server.base_url, server.log, server.process.pid
