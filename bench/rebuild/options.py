"""The rebuild benchmark's command line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common.stack import DEFAULT_ADMIN_URL, REPO_DIR


@dataclass(frozen=True, slots=True)
class Options:
    events: int
    users: int
    batch_size: int
    workers: int
    seed: int
    processes: int
    postgres_url: str
    out: Path
    profile: Path | None


def parse_args(argv: Sequence[str] | None, description: str | None) -> Options:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--users", type=int, default=10_000, help="users they are spread over")
    parser.add_argument(
        "--batch-size", type=int, default=5_000, help="rebuild(batch_size=...), the CLI default"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="rebuild(workers=...): processes folding the log, the CLI default",
    )
    parser.add_argument("--seed", type=int, default=1, help="the same seed makes the same log")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="processes generating the log (hashing is CPU-bound Python)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TASKTRAIL_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL),
        help="a server where the benchmark may create and drop a database",
    )
    parser.add_argument("--out", type=Path, default=REPO_DIR / "bench/results/rebuild_speed.json")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="after the measurements, rebuild once more under cProfile and save the stats here",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.users < 1 or args.events < args.users:
        parser.error("--events and --users must be positive, with at least one event a user")
    return Options(
        events=args.events,
        users=args.users,
        batch_size=args.batch_size,
        workers=max(1, args.workers),
        seed=args.seed,
        processes=max(1, args.processes),
        postgres_url=args.postgres_url,
        out=args.out,
        profile=args.profile,
    )
