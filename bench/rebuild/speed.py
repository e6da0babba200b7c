"""Rebuild speed: `projections rebuild` on a generated log, beside a set-based SQL replay of it.

    uv run python -m bench.rebuild.speed [--events 1000000] [--users 10000]
        [--out bench/results/rebuild_speed.json] [--profile bench/results/rebuild.pstats]

One run, on a scratch PostgreSQL database (created on TASKTRAIL_TEST_POSTGRES_URL, dropped at the
end, also on Ctrl-C or an error):

1. Generates a valid log: per user a gapless seq and a correct hash chain, per task gapless
   versions, timestamps increasing, about 29% TaskCreated (so ~287k tasks for 1M events, as in
   shared/design/performance.md); the tasks read model is folded from it with the projector's own
   `fold` and `task_row`. Everything is loaded with COPY, in time order (a real log is appended
   in time order, users interleaved), then VACUUM ANALYZE and CHECKPOINT, so that no measurement
   pays for hint bits or a checkpoint the load left behind.
2. Measures, each with time.perf_counter, in this order: `rebuild()` (events/s, and its phases);
   a set-based SQL replay of the same log into a scratch table (one INSERT ... SELECT with ordered
   aggregates), compared column by column with the rebuilt table; `diff_read_model()` (what
   `projections verify` does); `verify_user()` for every user (what `audit verify` does).
3. Prints a table, writes it as JSON to --out, and with --profile runs the rebuild once more
   under cProfile and prints where its Python time goes.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

import tasktrail
from bench.common.progress import progress
from bench.common.stack import git_commit, libpq_url, postgres_version, scratch_database
from bench.rebuild.loading import load_log
from bench.rebuild.measurements import measure, profile_rebuild
from bench.rebuild.metering import CpuMeter
from bench.rebuild.options import Options, parse_args
from bench.rebuild.report import TARGET_EVENTS_PER_SECOND, report
from tasktrail.database import create_database_engine
from tasktrail.migrations.runner import upgrade
from tasktrail.settings import Settings


def run(options: Options) -> int:
    began = time.perf_counter()
    started_at = datetime.now(UTC)
    admin_url = libpq_url(options.postgres_url)
    result: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": postgres_version(admin_url),
        "git_commit": git_commit(),
        "tasktrail_version": tasktrail.__version__,
        "options": {
            "events": options.events,
            "users": options.users,
            "batch_size": options.batch_size,
            "workers": options.workers,
            "seed": options.seed,
        },
        "target_events_per_second": TARGET_EVENTS_PER_SECOND,
    }
    with (
        scratch_database(admin_url) as database,
        psycopg.connect(admin_url, autocommit=True) as admin,
    ):
        settings = Settings(
            _env_file=None,  # no .env: the benchmark says everything
            database_url=database.url,
            auth_secret="x" * 64,
            # Reading the whole log and building indexes are long statements; the service's
            # 10 s timeout is for requests.
            statement_timeout_ms=24 * 3_600_000,
        )
        engine = create_database_engine(settings)
        try:
            upgrade(engine)
            progress(f"generating {options.events:,} events over {options.users:,} users")
            facts = load_log(options, database.url)
            progress(
                f"loaded {facts.users:,} users, {facts.tasks:,} tasks: "
                + ", ".join(f"{name} {s:.1f} s" for name, s in facts.seconds.items())
            )
            result["load"] = dataclasses.asdict(facts)
            meter = CpuMeter(admin, database.name)
            rows, checks = measure(engine, meter, options, database.url, facts)
            result["measurements"] = [
                {
                    "name": row.name.strip(),
                    "events": row.events,
                    "seconds": round(row.seconds, 3),
                    "events_per_second": row.events_per_second,
                    "cpu_pct": None
                    if row.cpu is None
                    else {**dataclasses.asdict(row.cpu), "other_pct": row.cpu.other_pct},
                    "note": row.note,
                }
                for row in rows
            ]
            result["checks"] = checks
            if options.profile is not None:
                progress("rebuilding once more under cProfile")
                result["profile"] = profile_rebuild(engine, options, options.profile)
        finally:
            engine.dispose()
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    return report(options, result, rows, checks, facts)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv, __doc__.split("\n\n")[0] if __doc__ else None)
    try:
        return run(options)
    except KeyboardInterrupt:
        progress("interrupted; the scratch database was dropped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
