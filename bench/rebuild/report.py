"""The rebuild benchmark's report: the table on stdout, the checks said plainly, the JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from bench.rebuild.loading import LoadFacts
from bench.rebuild.metering import Measurement
from bench.rebuild.options import Options

TARGET_EVENTS_PER_SECOND = 100_000
NOISE_PCT = 20.0  # % of a core used by others during a measurement before the run says so


def report(
    options: Options,
    result: dict[str, Any],
    rows: Sequence[Measurement],
    checks: dict[str, Any],
    facts: LoadFacts,
) -> int:
    """Print the run, write it as JSON to --out, and return the exit status (1 if a check
    failed)."""
    rebuild_rate = rows[0].events_per_second or 0.0
    sql_rate = next(r.events_per_second for r in rows if r.name == "set-based SQL replay") or 0.0
    print(
        f"rebuild_speed: {options.events:,} events, {facts.users:,} users, {facts.tasks:,} tasks; "
        f"PostgreSQL {result['postgresql']}, {os.cpu_count()} cores, batch {options.batch_size}"
    )
    print("load (not measured): " + ", ".join(f"{k} {v:.1f} s" for k, v in facts.seconds.items()))
    total = sum(facts.types.values())
    mix = sorted(facts.types.items(), key=lambda item: -item[1])
    print("mix: " + ", ".join(f"{kind} {100 * n / total:.1f}%" for kind, n in mix))
    sizes = ", ".join(f"{table} {n / 2**20:,.0f} MiB" for table, n in facts.database_bytes.items())
    print(f"on disk, with indexes: {sizes}")
    print()
    print(table(rows))
    print()
    failures = _failures(checks, facts)
    verdict = (
        f"rebuild: {rebuild_rate:,.0f} events/s, {100 * rebuild_rate / TARGET_EVENTS_PER_SECOND:.0f}%"
        f" of the {TARGET_EVENTS_PER_SECOND:,} events/s target; the SQL replay is "
        f"{sql_rate / rebuild_rate if rebuild_rate else 0:.1f}x faster"
    )
    print(verdict)
    print("checks: " + ("; ".join(failures) if failures else "all passed"))
    noise = [
        f"{r.name.strip()} {r.cpu.other_pct:.0f}%"
        for r in rows
        if r.cpu and r.cpu.other_pct > NOISE_PCT
    ]
    if noise:
        result["noise"] = noise
        print(
            "Noise: other processes used a share of a core during "
            + ", ".join(noise)
            + "; on 2 cores that slows the measurement down: rerun on a quiet machine"
        )
    if "profile" in result:
        print(f"\nrebuild under cProfile, by own time ({options.profile}):")
        for entry in result["profile"][:20]:
            print(
                f"  {entry['share_pct']:5.1f}%  {entry['tottime_s']:8.2f} s  "
                f"{entry['calls']:>10,}  {entry['function']}"
            )
    print(f"\nwall time of the whole run: {result['wall_seconds']:.0f} s")
    result["verdict"] = verdict
    result["failures"] = failures
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"written to {options.out}")
    return 1 if failures else 0


def table(rows: Sequence[Measurement]) -> str:
    header = ("measurement", "events", "seconds", "events/s", "py cpu", "pg cpu", "other cpu")
    lines = [header]
    for row in rows:
        rate = row.events_per_second
        cpu = row.cpu
        lines.append(
            (
                row.name,
                f"{row.events:,}" if row.events else "",
                f"{row.seconds:.2f}",
                f"{rate:,.0f}" if rate else "",
                f"{cpu.python_pct:.0f}%" if cpu else "",
                f"{cpu.postgres_pct:.0f}%" if cpu else "",
                f"{cpu.other_pct:.0f}%" if cpu else "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        note = rows[n - 1].note if n else "note"
        out.append("  ".join(cells) + "  " + note)
    return "\n".join(out)


def _failures(checks: dict[str, Any], facts: LoadFacts) -> list[str]:
    """Everything that would make the figures meaningless, said plainly."""
    failures = []
    expected = checks["expected"]
    if checks["rebuild"]["events"] != expected["events"]:
        failures.append(f"the rebuild read {checks['rebuild']['events']:,} events")
    if checks["rebuild"]["tasks"] != facts.tasks:
        failures.append(
            f"the rebuild made {checks['rebuild']['tasks']:,} tasks, not {facts.tasks:,}"
        )
    if checks["rebuilt_vs_generated_differing_columns"]:
        failures.append(
            "the rebuilt table differs from the generated read model: "
            f"{checks['rebuilt_vs_generated_differing_columns']}"
        )
    if checks["sql_replay"]["rows"] != facts.tasks:
        failures.append(f"the SQL replay made {checks['sql_replay']['rows']:,} rows")
    if checks["sql_replay"]["differing_columns_vs_rebuild"]:
        failures.append(
            "the SQL replay differs from the rebuild: "
            f"{checks['sql_replay']['differing_columns_vs_rebuild']}"
        )
    if checks["verify"]["drifts"]:
        failures.append(f"projections verify found {checks['verify']['drifts']} drifts")
    if checks["audit"]["broken"] or checks["audit"]["events"] != expected["events"]:
        failures.append(f"audit verify: {checks['audit']['broken']}")
    if checks["audit"]["users"] != expected["users"]:
        failures.append(f"audit verify saw {checks['audit']['users']:,} users")
    return failures
