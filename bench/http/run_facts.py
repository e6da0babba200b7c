"""Facts about an HTTP load run, kept with its figures: the machine, the versions, the commit,
the settings, and what the server logged."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

import tasktrail
from bench.common.stack import git_changed_files, git_commit, postgres_version
from bench.http.options import (
    OPEN_LOOP_RATE,
    OPEN_LOOP_USERS,
    POOL_SIZE,
    TASKS_PER_LISTER,
    TASKS_PER_WRITER,
    Options,
)
from bench.http.scenarios import OPEN_LOOP_WRITE_SHARE


def server_log_summary(path: Path) -> dict[str, Any]:
    """What the server logged: lines by level, 5xx by route, and a few non-JSON complaints."""
    levels: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    complaints: list[str] = []
    with path.open(errors="replace") as log:
        for line in log:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                # uvicorn's own lines are text: keep the few that are not routine.
                if any(word in line for word in ("ERROR", "WARNING", "Traceback")):
                    complaints.append(line.strip()[:300])
                continue
            levels[str(entry.get("level"))] += 1
            status = entry.get("status")
            if isinstance(status, int) and status >= 500:
                failures[f"{entry.get('method')} {entry.get('route')} {status}"] += 1
    return {
        "path": str(path),
        "lines_by_level": dict(levels),
        "5xx_by_route": dict(failures),
        "text_complaints": complaints[:10],
    }


def _proc_field(path: str, name: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return None


def describe_run(options: Options, database_url: str, started: datetime) -> dict[str, Any]:
    memory = _proc_field("/proc/meminfo", "MemTotal")  # "24570124 kB"
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    return {
        "started_at": started.isoformat(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "nproc": os.cpu_count(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name"),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": postgres_version(database_url),
        "max_connections": int(row[0]) if row else None,
        "git_commit": git_commit(),
        # The run measures the service as it is on disk: files that differ from the commit.
        "uncommitted_service_files": git_changed_files(),
        "tasktrail_version": tasktrail.__version__,
        "server": {"workers": options.workers, "pool_size": POOL_SIZE, "log_format": "json"},
        "bare_app": {"workers": 1, "pool_size": POOL_SIZE, "loop": "uvloop", "http": "httptools"},
        "runs": options.runs,
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "concurrency": list(options.concurrency),
        "open_loop": {
            "users": OPEN_LOOP_USERS,
            "rate_per_user": OPEN_LOOP_RATE,
            "arrivals": "poisson",
            "duration_s": options.open_loop_duration,
            "write_share": round(OPEN_LOOP_WRITE_SHARE, 3),
        },
        "history_events": options.history_events,
        "client_processes": options.client_processes,
        "list_users": options.list_users,
        "tasks_per_list_user": TASKS_PER_LISTER,
        "tasks_seeded_per_writer": TASKS_PER_WRITER,
    }
