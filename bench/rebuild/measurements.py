"""The rebuild benchmark's measurements, in one run on the same log: the rebuild, the SQL
replay, `projections verify` and `audit verify`; and the rebuild once more under cProfile."""

from __future__ import annotations

import cProfile
import dataclasses
import pstats
import time
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine

from bench.common.progress import progress
from bench.rebuild.loading import LoadFacts
from bench.rebuild.metering import Cpu, CpuMeter, Measurement
from bench.rebuild.options import Options
from bench.rebuild.sql_replay import differing_columns, measure_sql_replay
from tasktrail.projections.rebuild import RebuildReport, rebuild
from tasktrail.projections.verify import VerifyCount, diff_read_model
from tasktrail.queries.audit import users_with_events, verify_user


def measure(
    engine: Engine, meter: CpuMeter, options: Options, url: str, facts: LoadFacts
) -> tuple[list[Measurement], dict[str, Any]]:
    """The four measurements, in one run, on the same log."""
    checks: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        # The generated read model, kept to compare with what the rebuild makes of the log.
        conn.execute("CREATE TABLE tasks_generated AS TABLE tasks")
        conn.commit()
    progress("measuring rebuild()")
    rows, report = measure_rebuild(engine, meter, options)
    checks["rebuild"] = dataclasses.asdict(report)
    with psycopg.connect(url) as conn:
        checks["rebuilt_vs_generated_differing_columns"] = differing_columns(
            conn, "tasks", "tasks_generated"
        )
    progress("measuring the set-based SQL replay")
    sql_row, checks["sql_replay"] = measure_sql_replay(url, meter, report.events)
    rows.append(sql_row)
    progress("measuring projections verify (diff_read_model)")
    verify_row, checks["verify"] = measure_verify(engine, meter, report.events)
    rows.append(verify_row)
    progress("measuring audit verify (verify_user for every user)")
    audit_row, checks["audit"] = measure_audit(engine, meter)
    rows.append(audit_row)
    checks["expected"] = {"events": options.events, "users": facts.users, "tasks": facts.tasks}
    return rows, checks


def measure_rebuild(
    engine: Engine, meter: CpuMeter, options: Options
) -> tuple[list[Measurement], RebuildReport]:
    marks: list[tuple[float, int]] = []
    step = max(options.events // 10, 1)

    def on_events(count: int) -> None:
        marks.append((time.perf_counter(), count))
        if len(marks) > 1 and count // step != marks[-2][1] // step:
            progress(f"  rebuild: {count:,} events replayed")

    cpu: list[Cpu] = []
    with meter.measuring(cpu):
        started = time.perf_counter()
        report = rebuild(
            engine, batch_size=options.batch_size, workers=options.workers, on_events=on_events
        )
        wall = time.perf_counter() - started
    rows = [
        Measurement(
            "rebuild (its report)",
            report.events,
            report.seconds,
            cpu[0],
            f"{report.tasks:,} tasks; {report.workers} workers; wall {wall:.2f} s; "
            f"fence {report.fence_ms:.1f} ms",
        )
    ]
    notes = {
        "replay": "read, fold, COPY (workers started)",
        "check": "count and checksum, in SQL",
        "indexes": "indexes, primary key, ANALYZE",
    }
    rows.extend(
        Measurement(
            f"  {name}", report.events if name == "replay" else None, s, None, notes.get(name, "")
        )
        for name, s in report.phases.items()
    )
    return rows, report


def measure_verify(
    engine: Engine, meter: CpuMeter, events_total: int
) -> tuple[Measurement, dict[str, Any]]:
    count = VerifyCount()
    drifts: list[str] = []
    cpu: list[Cpu] = []
    with meter.measuring(cpu):
        started = time.perf_counter()
        for drift in diff_read_model(engine, count):  # consumed whole, as the CLI does
            drifts.append(drift.describe())
        seconds = time.perf_counter() - started
    measurement = Measurement(
        "projections verify", events_total, seconds, cpu[0], f"{count.tasks:,} tasks compared"
    )
    return measurement, {"tasks": count.tasks, "drifts": len(drifts), "samples": drifts[:10]}


def measure_audit(engine: Engine, meter: CpuMeter) -> tuple[Measurement, dict[str, Any]]:
    users = events_seen = 0
    broken: list[str] = []
    cpu: list[Cpu] = []
    with meter.measuring(cpu):
        started = time.perf_counter()
        # As `tasktrail audit verify` does: one connection, every user in order (the CLI stops
        # at the first break; here every chain is checked and the breaks collected).
        with engine.connect() as conn:
            for user_id in users_with_events(conn):
                report = verify_user(conn, user_id)
                users += 1
                events_seen += report.events
                if not report.ok:
                    broken.append(f"{user_id}: seq {report.first_bad_seq}: {report.reason}")
        seconds = time.perf_counter() - started
    measurement = Measurement(
        "audit verify", events_seen, seconds, cpu[0], f"{users:,} users, {len(broken)} broken"
    )
    return measurement, {"users": users, "events": events_seen, "broken": broken[:10]}


def profile_rebuild(engine: Engine, options: Options, path: Path) -> list[dict[str, Any]]:
    """Rebuild once more under cProfile (not a measurement: profiling slows Python calls down,
    the small ones most) and return the functions that spend the most time themselves."""
    profiler = cProfile.Profile()
    profiler.enable()
    rebuild(engine, batch_size=options.batch_size)  # one process: cProfile sees only its own
    profiler.disable()
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    top = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:25]
    return [
        {
            "function": f"{Path(file).name}:{line}({name})" if line else name,
            "calls": entry[1],
            "tottime_s": round(entry[2], 3),
            "share_pct": round(100 * entry[2] / total, 1) if total else 0.0,
            "cumtime_s": round(entry[3], 3),
        }
        for (file, line, name), entry in top
    ]
