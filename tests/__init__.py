"""The tests. They build many apps in one process, each with its own metrics registry, so
prometheus-client must not start in multiprocess mode, which it picks from
PROMETHEUS_MULTIPROC_DIR when it is first imported: a developer's shell may have it set."""

import os

os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
