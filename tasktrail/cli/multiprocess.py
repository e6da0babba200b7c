"""The metrics directory of `serve --workers N`: prometheus-client's multiprocess mode.

Each worker writes its metric values into files of one directory and /metrics adds them up
(api/http/metrics.py). prometheus-client chooses the mode when it is first imported, from
PROMETHEUS_MULTIPROC_DIR, so the variable must be in the environment before a worker starts:
uvicorn's workers are spawned processes that import everything afresh and inherit it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from tasktrail.api.http.metrics import MULTIPROCESS_DIRECTORY
from tasktrail.cli.common import fail

_log = structlog.get_logger("tasktrail.serve")
# The names prometheus-client gives its files (prometheus_client/values.py): the metric's type
# and the writer's pid, a gauge's multiprocess mode between them.
_PROMETHEUS_FILE = re.compile(
    r"(?:counter|histogram|summary|gauge_(?:live)?(?:all|min|max|sum|mostrecent))_\d+\.db"
)


@contextmanager
def metrics_directory(workers: int) -> Iterator[str | None]:
    """The operator's PROMETHEUS_MULTIPROC_DIR, emptied of an earlier run's files; else, with
    several workers, a private temporary one for this run, removed at exit; else None.

    A chosen directory that holds anything but prometheus-client's files is refused (exit 2),
    untouched: a file we do not recognise is not ours to delete (a data directory set here by
    mistake lost its SQLite database), and /metrics would read any other *.db as metric values."""
    chosen = os.environ.get(MULTIPROCESS_DIRECTORY)
    if chosen:
        directory = Path(chosen)
        if directory.exists() and not directory.is_dir():
            fail(
                f"{MULTIPROCESS_DIRECTORY}={chosen} is not a directory: give the workers' metric "
                "files a directory of their own"
            )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            entries = sorted(directory.iterdir())
        except OSError as error:  # a parent that is a file, no permission
            fail(
                f"{MULTIPROCESS_DIRECTORY}={chosen} cannot be used as the workers' metrics "
                f"directory: {error.strerror or error}"
            )
        foreign = [entry.name for entry in entries if not _is_prometheus_file(entry)]
        if foreign:
            fail(
                f"{MULTIPROCESS_DIRECTORY}={chosen} holds files that are not prometheus-client's "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}): give the "
                "workers' metric files a directory of their own (serve removes an earlier run's "
                "from it at start)"
            )
        # prometheus-client's documented practice: files of a previous run would be added in.
        for stale in entries:
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


def _is_prometheus_file(entry: Path) -> bool:
    return (
        entry.is_file() and not entry.is_symlink() and bool(_PROMETHEUS_FILE.fullmatch(entry.name))
    )
