"""Who changed one column: ``column_history()`` among 1,000,000 (and 10,000,000) audit rows.

Only ours, plain layout. audit.record_version is filled by history.fill_history (1,000
tables, 5 versions per record: every UPDATE changes ``status``), then one "hot" table gets
100,000 audit rows (``HOT_ROWS``, the same at 1M and 10M), interleaved in time with the
others over the same four years. column_history() is then called through the Python API (a
SQLAlchemy session, as an application calls it) for the hot table's ``status``: its whole
history, and one day of it (``since``/``until``); and for a small table (1,000 rows). Each
is measured with the indexes as installed (since audit schema version 6 the table_oid
index is (table_oid, ts)), then with that index replaced by version 5's (table_oid) alone,
to show what the composite buys the reads. The EXPLAIN plan
of the query must use an index. 10,000,000 rows take minutes to fill: ``--only
column_history_10m`` (not in the default run).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import statistics
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from benchmarks.results import Results, log, timed
from benchmarks.server import connect, drop_database, execute, recreate_database, scalar
from benchmarks.variants import install_ours
from benchmarks.workloads import Run, Workload
from benchmarks.workloads.history import HISTORY_VERSIONS, fill_history, plan_nodes, plan_shape
from hyper_audit_alembic import column_history

COLUMN_DB = "bench_column_history"
SAMPLES = 5  # calls per measurement (the median is reported)
#: The hot table's audit rows, the same whatever the size of the whole audit table: the
#: 1M and 10M runs ask the same questions, so what differs is only the history around them.
HOT_ROWS = 100_000
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
CASES = ("hot, whole history", "hot, one day", "small table, whole history")
INDEX_VARIANTS = ("as installed", "with (table_oid) alone, as in version 5")


def fill_hot_table(conn: Any, rows: int, oid: int) -> None:
    """`rows` audit rows of table `oid` ('public.hot'), 5 versions per record: an
    INSERT, then UPDATEs of status (a DELETE for every fourth record's last)."""
    records = rows // HISTORY_VERSIONS
    step = 4 * 365 * 24 * 3600 / rows  # seconds: spread over the same four years
    execute(
        conn,
        f"""
        insert into audit.record_version (
            record_id, old_record_id, op, ts, table_oid, table_schema, table_name,
            record, old_record, actor, context
        )
        select
            case when x.op <> 'DELETE' then x.rid end,
            case when x.op <> 'INSERT' then x.rid end,
            x.op::audit.operation,
            timestamptz '2024-01-01 00:00:00+00' + x.g * interval '{step} seconds',
            {oid}, 'public', 'hot',
            case when x.op <> 'DELETE' then jsonb_build_object(
                'id', x.r, 'status', 'v' || x.v, 'amount', x.v) end,
            case when x.op <> 'INSERT' then jsonb_build_object(
                'id', x.r, 'status', 'v' || (x.v - 1), 'amount', x.v - 1) end,
            'user' || (x.g % 50), jsonb_build_object('request_id', 'r' || x.g)
        from (
            select g, g % {records} as r, g / {records} as v,
                md5('hot:' || (g % {records}))::uuid as rid,
                case
                    when g / {records} = 0 then 'INSERT'
                    when g / {records} = {HISTORY_VERSIONS - 1} and g % 4 = 0 then 'DELETE'
                    else 'UPDATE'
                end as op
            from generate_series(0, {rows - 1}) g
        ) x
        order by x.g
        """,
    )
    execute(conn, "vacuum analyze audit.record_version")


def bench(run: Run, rows: int, label: str) -> None:
    server, results = run.server, run.results
    recreate_database(server, COLUMN_DB)
    engine = sa.create_engine(server.url(COLUMN_DB), poolclass=sa.NullPool)
    try:
        with contextlib.closing(connect(server, COLUMN_DB)) as conn:
            install_ours(conn)
            # The tables column_history is asked about: the hot one (its audit rows carry
            # its oid) and t7, whose rows fill_history wrote under a made-up oid (100007):
            # found by the name they carry, as rows recorded before a dump and restore are.
            execute(conn, "create table public.hot (id int primary key, status text, amount int)")
            execute(conn, "create table public.t7 (id int primary key, account_id int,"
                    " status text, note text, amount int)")  # fmt: skip
            hot_oid = scalar(conn, "select 'public.hot'::regclass::oid::bigint")
            started = time.perf_counter()
            fill_history(conn, rows)
            fill_hot_table(conn, HOT_ROWS, hot_oid)
            execute(conn, "vacuum analyze audit.record_version")
            count = scalar(conn, "select count(*) from audit.record_version")
            log(f"  filled {count:,} audit rows in {time.perf_counter() - started:.1f} s")
        day = START + dt.timedelta(days=400)
        calls = {
            "hot, whole history": ("public.hot", None, None),
            "hot, one day": ("public.hot", day, day + dt.timedelta(days=1)),
            "small table, whole history": ("public.t7", None, None),
        }
        for variant in INDEX_VARIANTS:
            if variant != "as installed":
                with engine.begin() as connection:
                    connection.exec_driver_sql("drop index audit.record_version_table_oid")
                    connection.exec_driver_sql(
                        "create index record_version_table_oid on audit.record_version (table_oid)"
                    )
                    connection.exec_driver_sql("analyze audit.record_version")
            for case, (table, since, until) in calls.items():
                with Session(engine) as session:
                    found = column_history(session, table, "status", since, until)
                    plan = _plan(session, table, since, until)
                shape = plan_shape(plan)
                if len(shape) > 300:
                    shape = shape[:300] + " …"
                results.notes[f"colhist_plan_{label}_{case}_{variant}"] = shape
                if not any("Index" in node for node in plan_nodes(plan)):
                    results.problem(f"column_history ({case}, {variant}) uses no index: {shape}")
                for _ in range(run.repeat):
                    timings = []
                    for _ in range(SAMPLES):
                        with Session(engine) as session:
                            begun = time.perf_counter()
                            column_history(session, table, "status", since, until)
                            timings.append(time.perf_counter() - begun)
                    value = statistics.median(timings) * 1000
                    results.add(f"colhist_{label}_{case}", variant, value)
                    log(
                        f"  {label} {case} ({len(found):,} changes), {variant}: median "
                        f"{value:.1f} ms; plan {shape}"
                    )
    finally:
        engine.dispose()
    drop_database(server, COLUMN_DB)


def _plan(session: Session, table: str, since: Any, until: Any) -> dict[str, Any]:
    """The plan of column_history's main query: its SQL, captured, run under EXPLAIN."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "record_version" in statement and "is distinct from" in statement.lower():
            captured.append((statement, parameters))

    engine = session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        column_history(session, table, "status", since, until)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    with session.connection().connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("explain (analyze, format json) " + statement, parameters)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return dict(plan[0]["Plan"])


def measure(run: Run, rows: int, label: str) -> None:
    timed(
        f"column_history among {rows:,} + {HOT_ROWS:,} audit rows",
        functools.partial(bench, run, rows, label),
    )


def table_rows(label: str, rows: int) -> Any:
    def rows_of(results: Results) -> list[str]:
        found = []
        for case in CASES:
            for variant in INDEX_VARIANTS:
                value = results.median(f"colhist_{label}_{case}", variant)
                if value is not None:
                    found.append(
                        f"| column_history among {rows + HOT_ROWS:,} audit rows: {case},"
                        f" indexes {variant} | — | — | {value:.1f} ms | — | — | — | — | — | — |"
                    )
        return found

    return rows_of


def notes(label: str) -> Any:
    def notes_of(results: Results) -> list[str]:
        return [
            f"column_history plan ({label}, {case}, indexes {variant}): "
            f"{results.notes[f'colhist_plan_{label}_{case}_{variant}']}."
            for case in CASES
            for variant in INDEX_VARIANTS
            if f"colhist_plan_{label}_{case}_{variant}" in results.notes
        ]

    return notes_of


WORKLOAD = Workload(
    "column_history",
    functools.partial(measure, rows=1_000_000, label="1M"),
    table_rows=table_rows("1M", 1_000_000),
    notes=notes("1M"),
)
WORKLOAD_10M = Workload(
    "column_history_10m",
    functools.partial(measure, rows=10_000_000, label="10M"),
    in_default_run=False,
    table_rows=table_rows("10M", 10_000_000),
    notes=notes("10M"),
)
