"""One INSERT ... SELECT, UPDATE and DELETE of 100,000 rows, and what bounds their cost.

A bulk statement is where per-row and per-statement trigger designs part ways, so besides
the four variants each statement is also run through the floor's bare row trigger (what
any per-row design pays) and, after each run of ours, its audit rows are written again
alone (the cost of storing them, below which no design goes). Each is one statement in
autocommit, timed with its commit.

bulk_statements() and floor_bulk_statements() are the statements themselves:
tests/test_benchmark_floor.py runs both and checks they write the same audit rows.
"""

from __future__ import annotations

import time

from benchmarks.report import comparison_row
from benchmarks.results import Results, log, timed
from benchmarks.server import Connection, execute
from benchmarks.variants import AUDIT_TABLE, FILL_SQL, VARIANTS, audit_count, reset_table, rotated
from benchmarks.workloads import Run, Workload

BULK_ROWS = 100_000


def bulk_statements(rows: int) -> dict[str, str]:
    """The bulk statements: an INSERT ... SELECT of `rows` rows, an UPDATE and a DELETE of all."""
    return {
        "bulk_insert": FILL_SQL.format(rows=rows),
        "bulk_update": (
            "update public.bench set amount = amount + 1, status = 'updated', updated_at = now()"
        ),
        "bulk_delete": "delete from public.bench",
    }


# The floor of the bulk statements: the same change and its audit rows (the same columns,
# jsonb and record ids) in one statement, no trigger. PostgreSQL 15 has no OLD in
# RETURNING, so the UPDATE reads the old rows first (same snapshot) and pairs them by key.
BENCH_RECORD_ID = "audit.to_record_id('public.bench'::regclass, '{id}', s.rec)"
BENCH_TARGET = "'public.bench'::regclass, 'public', 'bench'"


def floor_bulk_statements(rows: int) -> dict[str, str]:
    """The bulk statements writing their own audit rows: run with triggers off."""
    change = bulk_statements(rows)
    return {
        "bulk_insert": (
            "with n as (" + change["bulk_insert"] + " returning *) "
            "insert into audit.record_version (record_id, op, table_oid, table_schema, "
            f"table_name, record) select {BENCH_RECORD_ID}, 'INSERT', {BENCH_TARGET}, s.rec "
            "from (select to_jsonb(n) as rec from n offset 0) as s"
        ),
        "bulk_update": (
            "with o as materialized (select b.id, to_jsonb(b) as rec from public.bench as b), "
            "n as (" + change["bulk_update"] + " returning *) "
            "insert into audit.record_version (record_id, old_record_id, op, table_oid, "
            "table_schema, table_name, record, old_record) "
            f"select k.rid, k.rid, 'UPDATE', {BENCH_TARGET}, k.rec, o.rec from ("
            f"select s.id, s.rec, {BENCH_RECORD_ID} as rid "
            "from (select n.id, to_jsonb(n) as rec from n offset 0) as s) as k join o using (id)"
        ),
        "bulk_delete": (
            "with o as (" + change["bulk_delete"] + " returning *) "
            "insert into audit.record_version (old_record_id, op, table_oid, table_schema, "
            f"table_name, old_record) select {BENCH_RECORD_ID}, 'DELETE', {BENCH_TARGET}, s.rec "
            "from (select to_jsonb(o) as rec from o offset 0) as s"
        ),
    }


BULK_STATEMENTS = bulk_statements(BULK_ROWS)
FLOOR_BULK_STATEMENTS = floor_bulk_statements(BULK_ROWS)
BULK_TITLES = {
    "bulk_insert": f"one INSERT ... SELECT of {BULK_ROWS:,} rows",
    "bulk_update": f"one UPDATE of {BULK_ROWS:,} rows",
    "bulk_delete": f"one DELETE of {BULK_ROWS:,} rows",
}
BULK_OP = {"bulk_insert": "INSERT", "bulk_update": "UPDATE", "bulk_delete": "DELETE"}

AUDIT_COLUMNS = (
    "record_id, old_record_id, op, ts, table_oid, table_schema, table_name, record, old_record"
)


def run_bulk(
    conn: Connection,
    results: Results,
    variant: str,
    key: str,
    statement: str,
    label: str,
    triggers: bool = True,
) -> float:
    """Time one bulk statement on a fresh table (commit included) and check its audit rows."""
    reset_table(conn, variant, 0 if key == "bulk_insert" else BULK_ROWS)
    if not triggers:
        execute(conn, "set session_replication_role = replica")
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(statement)  # autocommit: the time includes the commit
        elapsed = time.perf_counter() - started
        affected = cur.rowcount
    if not triggers:
        execute(conn, "reset session_replication_role")
    if affected != BULK_ROWS:
        results.problem(f"{label}: {affected} rows affected, not {BULK_ROWS}")
    if variant in AUDIT_TABLE:
        matching, total = audit_count(conn, variant, BULK_OP[key])
        if matching != BULK_ROWS or total != BULK_ROWS:
            results.problem(
                f"{label}: {total} audit rows ({matching} {BULK_OP[key]}), not {BULK_ROWS}"
            )
    return elapsed


def write_alone(conn: Connection) -> float:
    """The audit write alone: the audit rows the statement just produced, written again.

    Copies them aside (not timed), removes them, and times one INSERT ... SELECT of the
    very same rows into audit.record_version with its indexes, commit included.
    """
    execute(conn, "drop table if exists alone_rows")
    execute(
        conn,
        f"create unlogged table alone_rows as select {AUDIT_COLUMNS} from audit.record_version",
    )
    execute(conn, "truncate audit.record_version")
    execute(conn, "checkpoint")
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(
            f"insert into audit.record_version ({AUDIT_COLUMNS}) "
            f"select {AUDIT_COLUMNS} from alone_rows"
        )
        elapsed = time.perf_counter() - started
    execute(conn, "drop table alone_rows")
    return elapsed


def bench_bulk(run: Run) -> None:
    conns, results, repeat = run.conns, run.results, run.repeat
    for rep in range(repeat):
        for key, statement in BULK_STATEMENTS.items():
            line = []
            for variant in rotated(rep):
                conn = conns[variant]
                label = f"{BULK_TITLES[key]}, {variant}"
                if variant == "floor":
                    # No trigger: the statement writes its audit rows itself.
                    floor = FLOOR_BULK_STATEMENTS[key]
                    elapsed = run_bulk(conn, results, variant, key, floor, label, triggers=False)
                else:
                    elapsed = run_bulk(conn, results, variant, key, statement, label)
                results.add(key, variant, elapsed)
                line.append(f"{variant} {elapsed:.3f} s")
                if variant == "ours":
                    alone = write_alone(conn)
                    results.add(key, "write_alone", alone)
                    line.append(f"write alone {alone:.3f} s")
                if variant == "floor":
                    # The floor's bare row trigger on the same statement: what a per-row
                    # design, however lean, pays for a bulk statement.
                    per_row = run_bulk(
                        conn, results, variant, key, statement, f"{label} (bare row trigger)"
                    )
                    results.add(key, "row_trigger", per_row)
                    line.append(f"bare row trigger {per_row:.3f} s")
            log(f"  [{rep + 1}/{repeat}] {BULK_TITLES[key]}: {', '.join(line)}")
    for variant in VARIANTS:
        reset_table(conns[variant], variant, 0)


def measure(run: Run) -> None:
    timed(f"bulk statements of {BULK_ROWS:,} rows", lambda: bench_bulk(run))


def table_rows(results: Results) -> list[str]:
    found = [comparison_row(results, key, BULK_TITLES[key], "time") for key in BULK_STATEMENTS]
    found += [
        comparison_row(
            results,
            key,
            f"the same statement ({BULK_OP[key]}) through the floor's bare row trigger "
            "(one audit INSERT per row)",
            "time",
            {"untracked": "untracked", "reference": None, "ours": "ours", "floor": "row_trigger"},
        )
        for key in BULK_STATEMENTS
    ]
    found += [
        comparison_row(
            results,
            key,
            f"the audit write alone: the same {BULK_ROWS:,} audit rows ({BULK_OP[key]}) "
            "written again by one INSERT ... SELECT",
            "time",
            {"untracked": "untracked", "reference": None, "ours": None, "floor": "write_alone"},
        )
        for key in BULK_STATEMENTS
    ]
    return [row for row in found if row is not None]


WORKLOAD = Workload("bulk", measure, needs_variants=True, table_rows=table_rows)
