"""The sockets `serve` listens on: the API's, and /metrics's own when it has a port.

uvicorn.run binds one socket. With a metrics port, `serve` binds a second and runs uvicorn as
uvicorn.run does (its reloader aside) with both: one process, or the supervisor of `--workers
N`, whose every worker accepts on both sockets and serves the one app. The app answers /metrics
on the metrics port only (api/http/metrics_listener.py), so the route, its multiprocess counters and
the gauges it reads at scrape time stay as they are, whichever socket and worker a scrape
reaches.
"""

from __future__ import annotations

import socket
import sys

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

_log = structlog.get_logger("tasktrail.serve")


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port, listening, which spawned workers may inherit; OSError
    when the address is taken or not this host's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    sock.set_inheritable(True)
    return sock


def run_server(config: uvicorn.Config, metrics: socket.socket | None) -> None:
    """uvicorn.run's one process or its supervisor of workers, with the metrics socket beside
    the API's when there is one. Exits 3, as uvicorn.run does, when one process fails to start."""
    if metrics is not None:
        host, port = metrics.getsockname()[:2]
        _log.info("metrics served on their own listener", url=f"http://{host}:{port}/metrics")
    server = uvicorn.Server(config)
    try:
        if config.workers == 1 and metrics is None:
            server.run()  # uvicorn binds (and names) its socket itself, as uvicorn.run has it
        else:
            sockets = [config.bind_socket(), *([] if metrics is None else [metrics])]
            if config.workers > 1:
                Multiprocess(config, sockets=sockets).run()
            else:
                server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)
