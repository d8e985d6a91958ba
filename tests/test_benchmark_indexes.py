"""The index study (``python benchmarks/run.py --only indexes``): the history it writes and
the table it renders.

Its numbers mean something only if the copy holds the history its notes describe (the busy
table's share, three rows per transaction, a day's rows, half of them UPDATEs with their
old record id) and if each row of its table can be cited by the docs hook (one cell per row
name).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.results import Results
from benchmarks.server import Connection, connect, drop_database, execute, recreate_database
from benchmarks.variants import install_ours
from benchmarks.workloads import indexes
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres


@pytest.fixture
def copy_db(pg_server: ThrowawayPostgres) -> Iterator[Connection]:
    recreate_database(pg_server, "indexes_test")
    conn: Connection = connect(pg_server, "indexes_test")
    try:
        install_ours(conn)
        execute(
            conn,
            "create table public.audit_copy (like audit.record_version"
            " including defaults including constraints)",
        )
        yield conn
    finally:
        conn.close()
        drop_database(pg_server, "indexes_test")


def test_the_fill_is_the_history_the_notes_describe(copy_db: Connection) -> None:
    execute(copy_db, indexes.fill_sql(1, 10_000, 10_000))
    assert execute(
        copy_db,
        "select count(*), min(id), max(id),"
        " count(*) filter (where table_oid = %s),"
        " count(distinct table_oid) >= 990,"
        " min(table_oid::bigint) = %s and max(table_oid::bigint) <= %s + 999,"
        " count(*) filter (where op = 'UPDATE' and old_record_id = record_id),"
        " count(*) filter (where op = 'INSERT' and old_record_id is null and old_record is null),"
        " count(distinct transaction_id)"
        " from public.audit_copy",
        (indexes.BUSY_OID, indexes.BUSY_OID, indexes.BUSY_OID),
    ) == [(10_000, 1, 10_000, 3_000, True, True, 5_000, 5_000, 3_334)]
    # A million rows a day ending now: 10,000 rows span 864 seconds, oldest first.
    span, newest = execute(
        copy_db,
        "select extract(epoch from max(ts) - min(ts)), now() - max(ts) < interval '1 second'"
        " from public.audit_copy",
    )[0]
    assert (round(float(span), 1), newest) == (863.9, True)


def test_every_row_of_the_table_has_a_name_of_its_own() -> None:
    results = Results()
    results.notes["index_rows"] = "2,000,000"
    for number, (name, (definition, query_names)) in enumerate(indexes.CANDIDATES.items()):
        results.add("index_write", name, 1.0 + number / 10)
        results.add("index_wal", name, 50.0)
        results.add("index_fpi", name, 4)
        if definition:
            results.notes[f"index_size_{name}"] = "1.0 MB"
        for query_name in query_names:
            results.add(f"index_query_{query_name}", name, 0.5)
    lines = indexes.tables(results)
    rows = [line for line in lines[2:] if line]
    first_cells = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert len(first_cells) == len(set(first_cells))
    assert rows[0] == (
        "| no index (ts BRIN only) | — | 1.000 s | 1.00× | 50.0 MB | 4 "  # noqa: RUF001
        "| one audit row by id | 0.500 ms |"
    )
    assert rows[1] == (
        "| no index (ts BRIN only), one transaction's rows | | | | | "
        "| one transaction's rows | 0.500 ms |"
    )
    record_id_row = "| btree (record_id), partial: record history | 1.0 MB | 1.300 s | 1.30× "  # noqa: RUF001
    assert any(row.startswith(record_id_row) for row in rows)
