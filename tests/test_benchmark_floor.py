"""The benchmark's floor writes exactly the audit rows the package writes.

The benchmark (python benchmarks/run.py) reports "ours / floor": the package against the
least work that writes the same audit rows (benchmarks/floor_design.sql's bare row trigger
for single-row statements; the bulk statements writing their own audit rows, no trigger:
benchmarks/workloads/bulk.py). That ratio only means something if the floor's rows are the
package's rows: same record ids, same jsonb, same ops, same history per record. Both run the
benchmark's own statements, imported from the benchmarks package, in one transaction (so
now() in the rows is the same) and their audit tables are compared.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from audit_helpers import Db, connect

from benchmarks.variants import FLOOR_SQL, TABLE_DDL
from benchmarks.workloads.bulk import bulk_statements, floor_bulk_statements
from benchmarks.workloads.pgbench import PGBENCH_SCRIPTS
from hyper_audit_alembic.sql import install_statements

ROWS = 5
# The pgbench scripts' variables, fixed: the inserted row's values, the updated row's key.
PGBENCH_VALUES = {":a": "7", ":id": "2"}


def pgbench_statement(script: str) -> str:
    """The SQL line of a pgbench script, its variables replaced."""
    (statement,) = [line for line in script.splitlines() if not line.startswith("\\")]
    for name, value in PGBENCH_VALUES.items():
        statement = statement.replace(name, value)
    return statement


def run_workload(db: Db, floor: bool) -> list[tuple[Any, ...]]:
    """The benchmark's statements, as the floor or ours runs them; the audit rows written."""
    bulk = floor_bulk_statements(ROWS) if floor else bulk_statements(ROWS)

    def run_bulk(key: str) -> None:
        if floor:  # no trigger: the statement writes its own audit rows
            db.run("set local session_replication_role = replica")
        db.run(bulk[key])
        db.run("set local session_replication_role = origin")

    run_bulk("bulk_insert")
    db.run("select setval(pg_get_serial_sequence('public.bench', 'id'), %s)", [ROWS])
    db.run("select setval('public.bench_delete_seq', 1, false)")
    for workload in ("insert", "update", "delete"):
        db.run(pgbench_statement(PGBENCH_SCRIPTS[workload]))
    run_bulk("bulk_update")
    run_bulk("bulk_delete")
    return db.audit_rows()


def hashable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Audit rows with their jsonb records as canonical JSON text."""
    return [
        (*row[:6], *(None if rec is None else json.dumps(rec, sort_keys=True) for rec in row[6:]))
        for row in rows
    ]


def per_record_ops(rows: list[tuple[Any, ...]]) -> dict[Any, list[str]]:
    found: dict[Any, list[str]] = defaultdict(list)
    for op, record_id, old_record_id, *_ in rows:
        for named in {record_id, old_record_id} - {None}:
            found[named].append(op)
    return dict(found)


def test_floor_writes_the_audit_rows_of_ours(db_url: str) -> None:
    with connect(db_url) as db:
        db.run(TABLE_DDL)
        for statement in install_statements():
            db.run(statement)
        db.run(FLOOR_SQL.read_text(encoding="utf-8"))
        db.conn.autocommit = False  # one transaction: now() is the same in both runs

        floor_rows = run_workload(db, floor=True)
        db.run("drop trigger audit_floor_row on public.bench")
        db.run("truncate public.bench")
        db.run("truncate audit.record_version")
        db.run("select audit.enable_tracking('public.bench'::regclass)")
        ours_rows = run_workload(db, floor=False)
        db.conn.rollback()

    # 5 inserted, 1 more inserted, 1 updated, 1 deleted, then 5 updated and 5 deleted.
    assert Counter(op for op, *_ in ours_rows) == {"INSERT": 6, "UPDATE": 6, "DELETE": 6}
    assert Counter(hashable(floor_rows)) == Counter(hashable(ours_rows))
    assert per_record_ops(floor_rows) == per_record_ops(ours_rows)
    # The statements really changed the rows: an updated record carries its old values.
    updated = [row for row in ours_rows if row[0] == "UPDATE" and row[7]["status"] == "new"]
    assert {row[6]["status"] for row in updated} == {"updated"}
