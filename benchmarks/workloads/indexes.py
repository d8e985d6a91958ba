"""What each lookup index of audit.record_version costs a write and earns a read.

Only ours, plain layout, one database of its own. A copy of audit.record_version with no
index (``public.audit_copy``: its columns, defaults and CHECKs) is filled with
``INDEX_ROWS`` audit rows (default 2,000,000; ``HYPER_AUDIT_BENCH_INDEX_ROWS`` sets
another count) written as an application writes them: one busy table takes 30% of the
rows, 999 others share the rest, three rows per transaction, the rows spread over the two
days before the run (1,000,000 a day), every second-to-last row an UPDATE. The BRIN index
on ``ts`` stays throughout (every layout has ts pruning of some kind).

Then, for each candidate index alone (the installed ones and their alternatives): its
size; the cost of writing the next 100,000 audit rows into the copy with that index (one
INSERT ... SELECT in autocommit after a CHECKPOINT, commit included; the WAL it wrote and
its full-page images), against the same write with no index; and the median latency of
the queries the index is for (prepared statements, 50 calls each, random arguments). The
written rows are deleted and vacuumed away after each write, so every write starts from
the same table.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass

from benchmarks.results import Results, log, timed
from benchmarks.server import Connection, connect, drop_database, execute, recreate_database, scalar
from benchmarks.variants import install_ours
from benchmarks.workloads import Run, Workload

INDEX_DB = "bench_indexes"
INDEX_ROWS = 2_000_000
WRITE_ROWS = 100_000
QUERY_CALLS = 50
#: The busy table's share of the rows, in tenths.
BUSY_TENTHS = 3
BUSY_OID = 100_000
ROWS_PER_DAY = 1_000_000


def index_rows() -> int:
    return int(os.environ.get("HYPER_AUDIT_BENCH_INDEX_ROWS", INDEX_ROWS))


def fill_sql(first: int, last: int, total: int) -> str:
    """Audit rows first..last (ids) of a history of `total` rows ending now."""
    seconds_per_row = 86_400 / ROWS_PER_DAY
    return f"""
        insert into public.audit_copy (
            id, record_id, old_record_id, op, ts, table_oid, table_schema, table_name,
            record, old_record, transaction_id
        )
        select
            g,
            md5('r' || g)::uuid,
            case when g % 2 = 0 then md5('r' || g)::uuid end,
            case when g % 2 = 0 then 'UPDATE' else 'INSERT' end::audit.operation,
            now() - ({total} - g) * interval '{seconds_per_row} seconds',
            t.oid,
            'public',
            't' || t.oid,
            jsonb_build_object('id', g, 'account_id', g % 997, 'status', 'new',
                'note', 'a short note about this row', 'amount', g % 100),
            case when g % 2 = 0 then jsonb_build_object('id', g, 'account_id', g % 997,
                'status', 'old', 'note', 'a short note about this row', 'amount', g % 100) end,
            ((g / 3 + 1000)::text)::xid8
        from generate_series({first}, {last}) g,
            lateral (select case when g % 10 < {BUSY_TENTHS} then {BUSY_OID}
                else {BUSY_OID} + 1 + (hashint8(g) & 1023) % 999 end::oid as oid) t
    """


@dataclass(frozen=True)
class Query:
    title: str
    sql: str  # a prepared statement's body, $1... filled by `arguments`
    arguments: str  # a SQL expression list giving random arguments (evaluated per call)


def queries(total: int) -> dict[str, Query]:
    small = f"({BUSY_OID} + 1 + floor(random() * 999))::bigint::text::oid"
    return {
        "id": Query(
            "one audit row by id",
            "select * from public.audit_copy where id = $1",
            f"(1 + floor(random() * {total}))::bigint",
        ),
        "transaction": Query(
            "one transaction's rows",
            "select * from public.audit_copy where transaction_id = $1",
            f"(((1 + floor(random() * {total}))::bigint / 3 + 1000)::text)::xid8",
        ),
        "transaction_brin": Query(
            "one transaction's rows (by the expression the BRIN index holds)",
            "select * from public.audit_copy where (transaction_id::text)::bigint = $1"
            " and transaction_id = $1::text::xid8",
            f"((1 + floor(random() * {total}))::bigint / 3 + 1000)",
        ),
        "small_newest": Query(
            "a small table's newest 50 changes of the last day",
            "select * from public.audit_copy where table_oid = $1"
            " and ts >= now() - interval '1 day' order by ts desc limit 50",
            small,
        ),
        "small_all": Query(
            "a small table's whole history (count)",
            "select count(*) from public.audit_copy where table_oid = $1",
            small,
        ),
        "busy_hour": Query(
            "the busy table's last hour (count)",
            "select count(*) from public.audit_copy where table_oid = $1"
            " and ts >= now() - interval '1 hour'",
            f"{BUSY_OID}::oid",
        ),
    }


#: name -> (its definition, the queries it is for); "no index" answers every query.
CANDIDATES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "no index (ts BRIN only)": (
        None, ("id", "transaction", "small_newest", "small_all", "busy_hour")),
    "btree (id): the primary key": (
        "create unique index candidate on public.audit_copy (id)", ("id",)),
    "brin (id)": ("create index candidate on public.audit_copy using brin (id)", ("id",)),
    "btree (record_id), partial: record history": (
        "create index candidate on public.audit_copy (record_id) where record_id is not null", ()),
    "btree (transaction_id), partial": (
        "create index candidate on public.audit_copy (transaction_id)"
        " where transaction_id is not null", ("transaction",)),
    "brin ((transaction_id::text)::bigint)": (
        "create index candidate on public.audit_copy using brin (((transaction_id::text)::bigint))",
        ("transaction_brin",)),
    "btree (table_oid): version 5": (
        "create index candidate on public.audit_copy (table_oid)",
        ("small_newest", "small_all", "busy_hour")),
    "btree (table_oid, ts): version 6": (
        "create index candidate on public.audit_copy (table_oid, ts)",
        ("small_newest", "small_all", "busy_hour")),
    "brin (table_oid oid_bloom_ops)": (
        "create index candidate on public.audit_copy using brin (table_oid oid_bloom_ops)",
        ("small_newest", "small_all", "busy_hour")),
}  # fmt: skip


def wal_position(conn: Connection) -> tuple[int, int]:
    """The WAL written so far (bytes) and the full-page images counted so far."""
    execute(conn, "select pg_stat_force_next_flush()")
    lsn = int(scalar(conn, "select pg_current_wal_lsn() - '0/0'"))
    fpi = int(scalar(conn, "select wal_fpi from pg_stat_wal"))
    return lsn, fpi


def timed_write(conn: Connection, total: int) -> tuple[float, float, int]:
    """Seconds, WAL MB and full-page images of writing the next WRITE_ROWS rows."""
    execute(conn, "checkpoint")
    lsn, fpi = wal_position(conn)
    started = time.perf_counter()
    execute(conn, fill_sql(total + 1, total + WRITE_ROWS, total))
    elapsed = time.perf_counter() - started
    lsn_after, fpi_after = wal_position(conn)
    execute(conn, f"delete from public.audit_copy where id > {total}")
    execute(conn, "vacuum public.audit_copy")
    return elapsed, (lsn_after - lsn) / 1e6, fpi_after - fpi


def query_latency(conn: Connection, query: Query) -> float:
    """Median round trip in ms of QUERY_CALLS calls of the prepared query."""
    execute(conn, "deallocate all")
    execute(conn, f"prepare candidate_query as {query.sql}")
    timings = []
    for _ in range(QUERY_CALLS):
        argument = scalar(conn, f"select {query.arguments}")
        started = time.perf_counter()
        execute(conn, "execute candidate_query(%s)", (argument,))
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def bench(run: Run) -> None:
    results, total = run.results, index_rows()
    found = queries(total)
    recreate_database(run.server, INDEX_DB)
    with contextlib.closing(connect(run.server, INDEX_DB)) as conn:
        install_ours(conn)
        execute(
            conn,
            "create table public.audit_copy (like audit.record_version"
            " including defaults including constraints)",
        )
        started = time.perf_counter()
        execute(conn, fill_sql(1, total, total))
        execute(conn, "create index audit_copy_ts on public.audit_copy using brin (ts)")
        execute(conn, "vacuum analyze public.audit_copy")
        log(f"  filled {total:,} audit rows in {time.perf_counter() - started:.1f} s")
        for name, (definition, query_names) in CANDIDATES.items():
            execute(conn, "drop index if exists public.candidate")
            if definition:
                execute(conn, definition)
                execute(conn, "analyze public.audit_copy")
                size = int(scalar(conn, "select pg_relation_size('public.candidate')"))
                results.notes[f"index_size_{name}"] = f"{size / 1e6:.1f} MB"
            for _ in range(run.repeat):
                elapsed, wal, fpi = timed_write(conn, total)
                results.add("index_write", name, elapsed)
                results.add("index_wal", name, wal)
                results.add("index_fpi", name, fpi)
            for query_name in query_names:
                latency = query_latency(conn, found[query_name])
                results.add(f"index_query_{query_name}", name, latency)
            log(
                f"  {name}: write {results.median('index_write', name):.3f} s, "
                f"WAL {results.median('index_wal', name):.1f} MB, "
                + ", ".join(
                    f"{q} {results.median(f'index_query_{q}', name):.3f} ms" for q in query_names
                )
            )
        execute(conn, "drop index if exists public.candidate")
    drop_database(run.server, INDEX_DB)
    results.notes["index_rows"] = f"{total:,}"


def measure(run: Run) -> None:
    timed(f"what each index costs and earns among {index_rows():,} audit rows", lambda: bench(run))


def tables(results: Results) -> list[str]:
    if results.median("index_write", "no index (ts BRIN only)") is None:
        return []
    titles = queries(1)
    lines = [
        f"| index of audit.record_version, alone, among {results.notes['index_rows']} audit rows "
        f"| size | writing {WRITE_ROWS:,} audit rows | / with no index | WAL | full-page images "
        "| query | median |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, (_, query_names) in CANDIDATES.items():
        write = results.median("index_write", name)
        if write is None:
            continue
        ratio = results.ratio("index_write", name, "no index (ts BRIN only)")
        wal = results.median("index_wal", name)
        fpi = results.median("index_fpi", name)
        head = (
            f"| {name} | {results.notes.get(f'index_size_{name}', '—')} | {write:.3f} s "
            f"| {'—' if ratio is None else f'{ratio:.2f}×'} | {wal:.1f} MB | {fpi:,.0f} "  # noqa: RUF001
        )
        if not query_names:
            lines.append(head + "| (see the history rows) | — |")
        for index, query_name in enumerate(query_names):
            latency = results.median(f"index_query_{query_name}", name)
            # Each row's first cell names it alone (the docs hook finds a cell by it).
            cells = head if index == 0 else f"| {name}, {titles[query_name].title} | | | | | "
            lines.append(cells + f"| {titles[query_name].title} | {latency:.3f} ms |")
    return [*lines, ""]


def notes(results: Results) -> list[str]:
    if results.median("index_write", "no index (ts BRIN only)") is None:
        return []
    return [
        "What each index costs and earns: a copy of audit.record_version with no index "
        f"(its defaults and CHECKs) holds {results.notes['index_rows']} audit rows written "
        "as an application writes them (a busy table 30% of them, 999 small tables the "
        "rest, three per transaction, 1,000,000 a day over the last days, half of them "
        f"UPDATEs); each candidate index alone is built, then {WRITE_ROWS:,} more rows are "
        "written by one INSERT ... SELECT after a CHECKPOINT (commit included; the rows "
        "are deleted and vacuumed away afterwards), and the queries the index is for run "
        f"as prepared statements, {QUERY_CALLS} calls with random arguments (median round "
        "trip). The BRIN index on ts stays throughout. '/ with no index' is the median over "
        "the repetitions of the write's time with the index / without."
    ]


WORKLOAD = Workload("indexes", measure, in_default_run=False, tables=tables, notes=notes)
