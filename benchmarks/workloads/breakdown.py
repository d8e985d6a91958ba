"""Where the time of ours on the 100,000-row INSERT goes, part by part.

In the database of ours, each part of the bulk INSERT is timed alone, commit included:
the untracked statement, capturing a transition table, making the jsonb and the record
ids, writing the audit rows into copies of audit.record_version (bare, with its CHECKs,
with each of its indexes alone, read from the catalog). Each part reads as a multiple of
the untracked statement of the same repetition.
"""

from __future__ import annotations

import re
import time

from benchmarks.report import fmt_ratio, fmt_seconds
from benchmarks.results import BenchmarkError, Results, log, timed
from benchmarks.server import Connection, execute
from benchmarks.variants import FILL_SQL, reset_table
from benchmarks.workloads import Run, Workload
from benchmarks.workloads.bulk import AUDIT_COLUMNS, BULK_ROWS, BULK_STATEMENTS

BREAKDOWN_TITLES = {
    "statement": "the INSERT ... SELECT itself, untracked",
    "transition": "the same with its rows captured in a transition table (no-op trigger)",
    "jsonb": "making the rows' jsonb (SELECT to_jsonb(row), nothing written)",
    "record_id": "making the rows' jsonb and record ids (nothing written)",
    "heap": "writing the audit rows into a copy of audit.record_version: no index, no CHECK",
    "checks": "the same with the CHECK constraints",
}


def breakdown_copies(conn: Connection) -> dict[str, str]:
    """Copies of audit.record_version to write into: bare, with its CHECKs, with one index.

    Returns part name -> table. The indexes are read from the catalog, so the breakdown
    follows whatever the install makes.
    """
    copies = {"heap": "public.breakdown_heap", "checks": "public.breakdown_checks"}
    execute(
        conn, "create table public.breakdown_heap (like audit.record_version including defaults)"
    )
    execute(
        conn,
        "create table public.breakdown_checks "
        "(like audit.record_version including defaults including constraints)",
    )
    indexes = execute(
        conn,
        "select c.relname, pg_get_indexdef(i.indexrelid) from pg_index i "
        "join pg_class c on c.oid = i.indexrelid "
        "where i.indrelid = 'audit.record_version'::regclass order by c.relname",
    )
    for number, (name, definition) in enumerate(indexes):
        table = f"public.breakdown_index_{number}"
        execute(conn, f"create table {table} (like audit.record_version including defaults)")
        on_copy = re.sub(
            r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ ", rf"CREATE \1INDEX ON {table} ", definition
        )
        if on_copy == definition:
            raise BenchmarkError(f"cannot read the index definition: {definition}")
        execute(conn, on_copy)
        copies[f"index {name}"] = table
    return copies


def bench_breakdown(run: Run) -> None:
    """Where the time of ours on the 100,000-row INSERT goes, part by part, in one database.

    Each part is timed alone (commit included) in the same repetition as the untracked
    statement, so the parts can be read as multiples of it.
    """
    conn, results, repeat = run.conns["ours"], run.results, run.repeat
    execute(conn, "create table public.breakdown_plain (like public.bench including all)")
    execute(conn, "create table public.breakdown_noop (like public.bench including all)")
    execute(
        conn,
        "create function public.breakdown_noop() returns trigger language plpgsql "
        "as 'begin return null; end'",
    )
    execute(
        conn,
        "create trigger noop after insert on public.breakdown_noop referencing new table as "
        "n for each statement execute function public.breakdown_noop()",
    )
    reset_table(conn, "ours", 0)
    execute(conn, BULK_STATEMENTS["bulk_insert"])
    execute(
        conn,
        f"create unlogged table alone_rows as select {AUDIT_COLUMNS} from audit.record_version",
    )
    copies = breakdown_copies(conn)
    fill = FILL_SQL.format(rows=BULK_ROWS)
    record_id = "audit.to_record_id('public.bench'::regclass, '{id}', s.rec)"
    parts: dict[str, tuple[str, str | None]] = {
        "statement": (
            fill.replace("public.bench", "public.breakdown_plain"),
            "public.breakdown_plain",
        ),
        "transition": (
            fill.replace("public.bench", "public.breakdown_noop"),
            "public.breakdown_noop",
        ),
        "jsonb": (
            "select count(s.rec) from "
            "(select to_jsonb(b) as rec from public.bench as b offset 0) as s",
            None,
        ),
        "record_id": (
            f"select count({record_id}) from "
            "(select to_jsonb(b) as rec from public.bench as b offset 0) as s",
            None,
        ),
    }
    for part, table in copies.items():
        parts[part] = (
            f"insert into {table} ({AUDIT_COLUMNS}) select {AUDIT_COLUMNS} from alone_rows",
            table,
        )
    reset_table(conn, "ours", BULK_ROWS)  # the rows the jsonb parts read
    for rep in range(repeat):
        order = list(parts)
        if rep % 2:
            order.reverse()
        for part in order:
            statement, target = parts[part]
            if target is not None:
                execute(conn, f"truncate {target}")
            execute(conn, "checkpoint")
            started = time.perf_counter()
            execute(conn, statement)
            results.add("breakdown", part, time.perf_counter() - started)
        log(f"  [{rep + 1}/{repeat}] breakdown: {len(parts)} parts")
    for table in [
        *copies.values(),
        "public.breakdown_plain",
        "public.breakdown_noop",
        "alone_rows",
    ]:
        execute(conn, f"drop table {table}")
    execute(conn, "drop function public.breakdown_noop()")
    reset_table(conn, "ours", 0)


def measure(run: Run) -> None:
    timed(
        f"where the time of ours on a {BULK_ROWS:,}-row INSERT goes", lambda: bench_breakdown(run)
    )


def breakdown_table(results: Results) -> list[str]:
    """Its own table after the comparison table, with the paragraph that reads it."""
    if results.median("breakdown", "statement") is None:
        return []
    rows = [
        f"| part of ours on one INSERT ... SELECT of {BULK_ROWS:,} rows | median "
        "| / the untracked statement |",
        "|---|---:|---:|",
    ]
    parts = [part for key, part in results.samples if key == "breakdown"]
    for part in parts:
        title = BREAKDOWN_TITLES.get(part) or f"the same with only the {part} (no CHECK)"
        value = results.median("breakdown", part)
        if value is not None:
            ratio = results.ratio("breakdown", part, "statement")
            rows.append(f"| {title} | {fmt_seconds(value)} | {fmt_ratio(ratio, 'time')} |")
    return [
        *rows,
        "",
        "Each part timed alone, commit included, in the database of ours; the index "
        "rows are a bare copy of audit.record_version with that one index, so each "
        "index costs its row minus the bare row.",
        "",
    ]


WORKLOAD = Workload("breakdown", measure, needs_variants=True, tables=breakdown_table)
