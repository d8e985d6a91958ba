"""The baseline snapshot: SNAPSHOT rows per second of a 100,000-row table, against what
the audit trail costs a bulk INSERT of the same rows.

``op.enable_tracking(..., snapshot=True)`` runs ``audit.snapshot_batch(t, null)``: one
statement that reads the whole table (TID range scans) and writes one SNAPSHOT audit row
per row. Its work is the audit write of a bulk INSERT without the INSERT, so it is set
beside bulk.py's "one INSERT ... SELECT of 100,000 rows", untracked and ours, measured
here in the same repetitions: the snapshot should cost about the INSERT's audit overhead
(ours - untracked), not more. Each run starts from the same table, an empty audit table
and no completeness mark; each is timed in autocommit, commit included, and checked to
write exactly one SNAPSHOT row per row. Left out of the default run (``--only snapshot``).
"""

from __future__ import annotations

import time

from benchmarks.results import Results, log, timed
from benchmarks.server import Connection, execute
from benchmarks.variants import reset_table
from benchmarks.workloads import Run, Workload
from benchmarks.workloads.bulk import BULK_ROWS, BULK_STATEMENTS, run_bulk

SNAPSHOT = "select written, complete from audit.snapshot_batch('public.bench'::regclass, null)"


def run_snapshot(conn: Connection, results: Results) -> float:
    """Time one whole-table snapshot of a fresh bench table (commit included)."""
    reset_table(conn, "ours", BULK_ROWS)
    # A fresh trail: no mark and no progress, as for a table just tracked with rows.
    execute(conn, "delete from audit.trail_complete_since")
    execute(conn, "delete from audit.snapshot_progress")
    execute(conn, "checkpoint")
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(SNAPSHOT)  # autocommit: the time includes the commit
        written, complete = cur.fetchone()
        elapsed = time.perf_counter() - started
    count = execute(conn, "select count(*) from audit.record_version where op::text = 'SNAPSHOT'")
    if (written, complete, int(count[0][0])) != (BULK_ROWS, True, BULK_ROWS):
        results.problem(
            f"snapshot: wrote {written} (complete {complete}), {count[0][0]} SNAPSHOT rows, "
            f"not {BULK_ROWS}"
        )
    return elapsed


def bench_snapshot(run: Run) -> None:
    conns, results = run.conns, run.results
    insert = BULK_STATEMENTS["bulk_insert"]
    for rep in range(run.repeat):
        line = []
        for variant in ("untracked", "ours") if rep % 2 == 0 else ("ours", "untracked"):
            label = f"one INSERT ... SELECT of {BULK_ROWS:,} rows, {variant}"
            elapsed = run_bulk(conns[variant], results, variant, "bulk_insert", insert, label)
            results.add("snapshot_insert", variant, elapsed)
            line.append(f"insert {variant} {elapsed:.3f} s")
        elapsed = run_snapshot(conns["ours"], results)
        results.add("snapshot", "ours", elapsed)
        line.append(f"snapshot {elapsed:.3f} s ({BULK_ROWS / elapsed:,.0f} rows/s)")
        log(f"  [{rep + 1}/{run.repeat}] {', '.join(line)}")
    for variant in ("untracked", "ours"):
        reset_table(conns[variant], variant, 0)
    execute(conns["ours"], "delete from audit.trail_complete_since")


def measure(run: Run) -> None:
    timed(f"snapshot of a {BULK_ROWS:,}-row table", lambda: bench_snapshot(run))


def tables(results: Results) -> list[str]:
    snapshot = results.median("snapshot", "ours")
    untracked = results.median("snapshot_insert", "untracked")
    ours = results.median("snapshot_insert", "ours")
    if snapshot is None or untracked is None or ours is None:
        return []
    overhead = ours - untracked
    return [
        f"| baseline snapshot of {BULK_ROWS:,} rows | median | rows/s |",
        "|---|---:|---:|",
        f"| `audit.snapshot_batch(t, null)` (SNAPSHOT rows) | {snapshot:.3f} s "
        f"| {BULK_ROWS / snapshot:,.0f} |",
        f"| one INSERT ... SELECT, untracked | {untracked:.3f} s | {BULK_ROWS / untracked:,.0f} |",
        f"| one INSERT ... SELECT, ours (tracked) | {ours:.3f} s | {BULK_ROWS / ours:,.0f} |",
        f"| its audit overhead (ours - untracked) | {overhead:.3f} s "
        f"| {BULK_ROWS / overhead:,.0f} |"
        if overhead > 0
        else "| its audit overhead | - | - |",
        f"| snapshot / audit overhead of the INSERT | {snapshot / overhead:.2f}x | |"
        if overhead > 0
        else "| snapshot / audit overhead | - | |",
        "",
    ]


WORKLOAD = Workload("snapshot", measure, needs_variants=True, in_default_run=False, tables=tables)
