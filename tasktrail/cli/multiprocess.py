"""The metrics directory of `serve --workers N`: prometheus-client's multiprocess mode.

Each worker writes its metric values into files of one directory and /metrics adds them up
(api/metrics.py). prometheus-client chooses the mode when it is first imported, from
PROMETHEUS_MULTIPROC_DIR, so the variable must be in the environment before a worker starts:
uvicorn's workers are spawned processes that import everything afresh and inherit it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from tasktrail.api.metrics import MULTIPROCESS_DIRECTORY

_log = structlog.get_logger("tasktrail.serve")


@contextmanager
def metrics_directory(workers: int) -> Iterator[str | None]:
    """The operator's PROMETHEUS_MULTIPROC_DIR, emptied of an earlier run's files; else, with
    several workers, a private temporary one for this run, removed at exit; else None."""
    chosen = os.environ.get(MULTIPROCESS_DIRECTORY)
    if chosen:
        directory = Path(chosen)
        directory.mkdir(parents=True, exist_ok=True)
        # prometheus-client's documented practice: files of a previous run would be added in.
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield chosen
        return
    if workers == 1:
        yield None
        return
    private = tempfile.mkdtemp(prefix="tasktrail-metrics-")
    os.environ[MULTIPROCESS_DIRECTORY] = private
    _log.info("metrics of the workers are kept in a private directory", directory=private)
    try:
        yield private
    finally:
        del os.environ[MULTIPROCESS_DIRECTORY]
        shutil.rmtree(private, ignore_errors=True)
