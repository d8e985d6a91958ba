"""Reading one record's history among 1,000,000 audit rows, in each layout of the audit table.

Only ours: audit.record_version is filled with generate_series in the plain, the natively
partitioned and (when TimescaleDB is installed for the server) the hypertable layout,
then the history query runs as a prepared statement for random records; its EXPLAIN plan
must use an index. fill_history() and install_layout() take the row count and the layout,
so a workload that needs a pre-filled audit table of another size can reuse them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.results import Results, log, timed
from benchmarks.server import (
    Connection,
    connect,
    drop_database,
    execute,
    recreate_database,
    scalar,
    timescale_server,
)
from benchmarks.variants import install_ours
from benchmarks.workloads import Run, Workload
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

HISTORY_DB = "bench_history"
HISTORY_ROWS = 1_000_000
HISTORY_TABLES = 1_000
HISTORY_VERSIONS = 5  # audit rows per record: INSERT, 3 UPDATEs, then DELETE or UPDATE
HISTORY_SAMPLES = 200  # records looked up per repetition
HISTORY_LAYOUTS = ("plain", "partitioned", "hypertable")

HISTORY_QUERY = (
    "select * from audit.record_version where record_id = $1 or old_record_id = $1 order by ts, id"
)


def history_record_id(table: int, key: int) -> str:
    """The record id the fill gives record `key` of table number `table` (md5 as a uuid)."""
    digest = hashlib.md5(f"t{table}:{key}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def fill_history(conn: Connection, rows: int = HISTORY_ROWS) -> float:
    """`rows` audit rows (1,000,000: 200,000 records of 1,000 tables), 5 versions each.

    Row g (0-based) is version g / records of record g % records, so the versions of one
    record lie far apart in the table, as they do when many tables are written at once.
    Version 0 is an INSERT, 1-3 are UPDATEs, 4 is a DELETE for every fourth record and
    an UPDATE otherwise. Timestamps and ids grow with g (2 minutes apart: 1,000,000 rows
    span four years from 2024-01-01). Returns the seconds it took, vacuum included.
    """
    records = rows // HISTORY_VERSIONS
    started = time.perf_counter()
    execute(
        conn,
        f"""
        insert into audit.record_version (
            record_id, old_record_id, op, ts, table_oid, table_schema, table_name,
            record, old_record
        )
        select
            case when x.op <> 'DELETE' then x.rid end,
            case when x.op <> 'INSERT' then x.rid end,
            x.op::audit.operation,
            timestamptz '2024-01-01 00:00:00+00' + x.g * interval '2 minutes',
            100000 + x.t,
            'public',
            't' || x.t,
            case when x.op <> 'DELETE' then jsonb_build_object(
                'id', x.k, 'account_id', x.r % 997, 'status', 'v' || x.v,
                'note', 'a short note about this row', 'amount', x.v) end,
            case when x.op <> 'INSERT' then jsonb_build_object(
                'id', x.k, 'account_id', x.r % 997, 'status', 'v' || (x.v - 1),
                'note', 'a short note about this row', 'amount', x.v - 1) end
        from (
            select
                s.g, s.r, s.v, s.r % {HISTORY_TABLES} as t, s.r / {HISTORY_TABLES} as k,
                md5('t' || (s.r % {HISTORY_TABLES}) || ':' || (s.r / {HISTORY_TABLES}))::uuid
                    as rid,
                case
                    when s.v = 0 then 'INSERT'
                    when s.v = {HISTORY_VERSIONS - 1} and s.r % 4 = 0 then 'DELETE'
                    else 'UPDATE'
                end as op
            from (
                select g, g % {records} as r, g / {records} as v
                from generate_series(0, {rows - 1}) g
            ) s
        ) x
        order by x.g
        """,
    )
    execute(conn, "vacuum analyze audit.record_version")
    return time.perf_counter() - started


def plan_nodes(plan: dict[str, Any]) -> Iterator[str]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, as 'Node Type on relation or index'."""
    name = plan["Node Type"]
    target = plan.get("Index Name") or plan.get("Relation Name")
    yield f"{name} on {target}" if target else name
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def plan_shape(plan: dict[str, Any]) -> str:
    """The plan on one line: 'Sort > Bitmap Heap Scan on t > BitmapOr [a, b]'."""
    head = next(plan_nodes({**plan, "Plans": []}))
    children = [plan_shape(child) for child in plan.get("Plans", [])]
    if not children:
        return head
    if len(children) == 1:
        return f"{head} > {children[0]}"
    return f"{head} [{', '.join(children)}]"


def install_layout(conn: Connection, layout: str) -> None:
    """The audit trail in one of its layouts, as op.install_audit(...) installs it."""
    if layout == "plain":
        install_ours(conn)
        return
    from hyper_audit_alembic.migration.options import TimescaleOptions
    from hyper_audit_alembic.migration.statements import install_statements as layout_statements

    if layout == "partitioned":
        statements = layout_statements(None, {"premake": 0})
    else:
        execute(conn, "create extension if not exists timescaledb")
        options = TimescaleOptions.parse({"chunk_interval": "1 month"}, "benchmark")
        statements = layout_statements(options, None)
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    if layout == "partitioned":
        # Monthly partitions for the whole span the history rows cover.
        execute(conn, "select audit.ensure_partitions('2024-01-01', '2028-01-01')")


def missing_timescaledb(server: ThrowawayPostgres) -> str | None:
    """Why the hypertable layout cannot be measured here, or None when it can."""
    assert server.bin_dir is not None
    found = subprocess.run(
        [str(server.bin_dir / "pg_config"), "--sharedir", "--pkglibdir"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0 or len(found.stdout.splitlines()) != 2:
        return "pg_config did not say where extensions live"
    sharedir, pkglibdir = found.stdout.splitlines()
    for needed in (
        Path(sharedir) / "extension" / "timescaledb.control",
        Path(pkglibdir) / "timescaledb.so",
    ):
        if not needed.exists():
            return f"TimescaleDB is not installed (no {needed})"
    return None


def bench_history(
    server: ThrowawayPostgres, results: Results, repeat: int, layout: str = "plain"
) -> None:
    recreate_database(server, HISTORY_DB)
    with contextlib.closing(connect(server, HISTORY_DB)) as conn:
        install_layout(conn, layout)
        seconds = fill_history(conn)
        execute(conn, "analyze audit.record_version")
        count = scalar(conn, "select count(*) from audit.record_version")
        distinct_oids = scalar(conn, "select count(distinct table_oid) from audit.record_version")
        log(
            f"  filled audit.record_version with {count:,} rows over {distinct_oids} table "
            f"oids in {seconds:.1f} s"
        )
        execute(conn, f"prepare history(uuid) as {HISTORY_QUERY}")
        rng = random.Random(42)
        records = HISTORY_ROWS // HISTORY_VERSIONS
        # Plans: the prepared statement's (generic after five runs) must use an index.
        probe = history_record_id(7, 123)
        for _ in range(6):
            execute(conn, "execute history(%s)", (probe,))
        plan = scalar(conn, "explain (analyze, buffers, format json) execute history(%s)", (probe,))
        top = plan[0]["Plan"]
        nodes = list(plan_nodes(top))
        shape = plan_shape(top)
        if len(shape) > 400:  # one branch per partition or chunk: show the first ones
            shape = shape[:400].rsplit(",", 1)[0] + ", …]"
        results.notes[f"history_plan_{layout}"] = shape
        results.notes[f"history_explain_ms_{layout}"] = f"{plan[0]['Execution Time']:.3f}"
        if not any("Index" in node for node in nodes):
            results.problem(f"history query ({layout}) uses no index: {plan_shape(top)}")
        log(
            f"  {layout}: plan {shape} "
            f"(EXPLAIN ANALYZE execution {plan[0]['Execution Time']:.3f} ms)"
        )
        for rep in range(repeat):
            timings = []
            for _ in range(HISTORY_SAMPLES):
                r = rng.randrange(records)
                rid = history_record_id(r % HISTORY_TABLES, r // HISTORY_TABLES)
                with conn.cursor() as cur:
                    started = time.perf_counter()
                    cur.execute("execute history(%s)", (rid,))
                    rows = cur.fetchall()
                    timings.append(time.perf_counter() - started)
                if len(rows) != HISTORY_VERSIONS:
                    results.problem(f"history of {rid}: {len(rows)} rows, not {HISTORY_VERSIONS}")
            value = statistics.median(timings) * 1000
            results.add("history", layout, value)
            log(
                f"  [{rep + 1}/{repeat}] {layout}: history of one record: "
                f"median {value:.3f} ms over "
                f"{HISTORY_SAMPLES} records (client round trip, prepared statement)"
            )
    drop_database(server, HISTORY_DB)  # frees the disk space


def measure(run: Run) -> None:
    for layout in ("plain", "partitioned"):
        timed(
            f"history of one record among {HISTORY_ROWS:,} audit rows, {layout} layout",
            functools.partial(bench_history, run.server, run.results, run.repeat, layout),
        )
    missing = missing_timescaledb(run.server)
    if missing:
        run.results.notes["history_hypertable_skipped"] = missing
        log(f"  hypertable layout not measured: {missing}")
        return
    with timescale_server() as server:
        timed(
            f"history of one record among {HISTORY_ROWS:,} audit rows, hypertable",
            lambda: bench_history(server, run.results, run.repeat, "hypertable"),
        )


def table_rows(results: Results) -> list[str]:
    rows = []
    for layout in HISTORY_LAYOUTS:
        history = results.median("history", layout)
        if history is not None:
            rows.append(
                f"| history of one record among {HISTORY_ROWS:,} audit rows (by index), "
                f"{layout} layout | — | — | {history:.3f} ms | — | — | — | — | — | — |"
            )
    return rows


def notes(results: Results) -> list[str]:
    """The plan of each layout, and why the hypertable layout was not measured if it was not."""
    found = [
        f"History plan, {layout} layout: {results.notes[f'history_plan_{layout}']}; "
        f"EXPLAIN ANALYZE execution {results.notes[f'history_explain_ms_{layout}']} ms "
        "(the table value is the client round trip of a prepared statement, median)."
        for layout in HISTORY_LAYOUTS
        if f"history_plan_{layout}" in results.notes
    ]
    if "history_hypertable_skipped" in results.notes:
        found.append(
            f"Hypertable layout not measured: {results.notes['history_hypertable_skipped']}."
        )
    return found


WORKLOAD = Workload("history", measure, table_rows=table_rows, notes=notes)
