"""What an audited write costs as the history grows: per layout and history size, WAL and
full-page images per write, throughput and bulk ratios to an untracked twin, history lookups.

``python benchmarks/run.py --only growth`` (not in the default run: about 35 minutes; its
report goes to benchmarks/results-growth.md, see cli.py). For each layout of
audit.record_version (plain; natively partitioned by day; a TimescaleDB hypertable with
1-day chunks, on a second server with TimescaleDB preloaded, or "not measured" with the
reason where TimescaleDB is absent) and each code version (the working tree, and with
``--baseline REF`` the audit SQL of that git commit, each in a database of its own), one
database is filled incrementally to each history size (``--growth-rows``, default 0, 2M,
10M), and at each size:

- pgbench, 1 client, ``--duration`` seconds: single-row INSERT and UPDATE by key (pgbench.py's
  scripts, the UPDATE over 100,000 prefilled rows) into public.bench (tracked) and into
  public.bench_twin (the same table, untracked, in the same database), a CHECKPOINT before
  each run; tps, and pg_stat_wal's wal_bytes and wal_fpi (cluster-wide: nothing else runs)
  per transaction; every tracked run is checked (one audit row per transaction, of its op);
- one INSERT ... SELECT of 100,000 rows into each table: time and WAL;
- at a size above 0, the history of one record of the fill (prepared, the median over
  HISTORY_SAMPLES random records), without and with a one-day ``ts`` range holding the
  record's rows; every lookup checked (the record's rows, all of them);
- at the largest size, one more INSERT and UPDATE pair with wal_compression (lz4, or pglz
  where the server has no lz4) set for the pgbench sessions.

The fill is what a busy history looks like: ROWS_PER_DAY audit rows a day ending just
before today (UTC), so today's partition or chunk, where the measured writes go, starts
empty; 1,000 table oids; each day's records get 5 versions (INSERT, UPDATEs, a DELETE for
every fourth) spread over the day, their record ids (uuid v5, as audit.to_record_id makes
them) in random order; jsonb rows of the bench table's size. Written with one INSERT ...
SELECT straight into audit.record_version (no trigger), then VACUUM ANALYZE and a
CHECKPOINT. What a measurement adds to the audit table is deleted (and the table vacuumed)
right after it, so the history keeps the size its row names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2  # type: ignore[import-untyped]

from benchmarks.results import BenchmarkError, Results, log, timed
from benchmarks.server import (
    Connection,
    connect,
    drop_database,
    execute,
    recreate_database,
    scalar,
    timescale_server,
)
from benchmarks.variants import FILL_SQL, TABLE_DDL
from benchmarks.workloads import Run, Workload
from benchmarks.workloads.history import missing_timescaledb, plan_shape
from benchmarks.workloads.pgbench import PGBENCH_SCRIPTS, UPDATE_TABLE_ROWS, run_pgbench
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[2]

DEFAULT_SIZES = (0, 2_000_000, 10_000_000)
LAYOUTS = ("plain", "partitioned", "hypertable")
LAYOUT_TITLES = {
    "plain": "plain",
    "partitioned": "partitioned (daily)",
    "hypertable": "hypertable (1-day chunks)",
}
WORKING_TREE = "working tree"

#: The fill's pace: audit rows per day of history (the rows end just before today, UTC).
ROWS_PER_DAY = 1_000_000
MICROSECONDS_PER_ROW = 86_400_000_000 // ROWS_PER_DAY
VERSIONS = 5  # audit rows per record and day: INSERT, 3 UPDATEs, then DELETE or UPDATE
RECORDS_PER_DAY = ROWS_PER_DAY // VERSIONS
TABLES = 1_000
TABLE_OID_BASE = 100_000
#: The namespace of the fill's record ids (uuid v5 of 'growth:<table>:<key>').
RECORD_NAMESPACE = uuid.UUID("6f1b7a52-3c1e-4d5a-9b0e-2f4c8d7e9a10")

#: The plain layout's fillfactor for the measured writes after a fill (see grow()): the
#: 409 bytes it keeps free are more than the gaps the fill leaves exceed a measured row by.
PLAIN_FILLFACTOR = 95
BULK_ROWS = 100_000
HISTORY_SAMPLES = 200
TABLES_MEASURED = ("bench", "bench_twin")  # tracked, untracked twin
SCRIPTS = ("insert", "update")
OP = {"insert": "INSERT", "update": "UPDATE", "bulk": "INSERT"}

HISTORY_QUERY = (
    "select * from audit.record_version where record_id = $1 or old_record_id = $1 order by ts, id"
)
HISTORY_RANGE_QUERY = (
    "select * from audit.record_version where (record_id = $1 or old_record_id = $1) "
    "and ts >= $2 and ts < $3 order by ts, id"
)

# The audit install of one layout, printed as JSON by a child interpreter whose first
# sys.path entry is the code version's source folder (argv[1]); argv[2] is the layout.
INSTALL_SCRIPT = """
import json, sys
source, layout = sys.argv[1], sys.argv[2]
sys.path.insert(0, source)
import hyper_audit_alembic
if not hyper_audit_alembic.__file__.startswith(source):
    sys.exit(f"imported {hyper_audit_alembic.__file__}, not the package under {source}")
if layout == "plain":
    from hyper_audit_alembic.sql import install_statements
    statements = list(install_statements())
else:
    from hyper_audit_alembic.migration.options import TimescaleOptions
    from hyper_audit_alembic.migration.statements import install_statements
    if layout == "partitioned":
        statements = install_statements(None, {"interval": "1 day", "premake": 2})
    else:
        options = TimescaleOptions.parse({"chunk_interval": "1 day"}, "benchmark")
        statements = install_statements(options, None)
print(json.dumps(list(statements)))
"""

SIZE_PATTERN = re.compile(r"(\d+(?:\.\d+)?)([kKmM]?)")


def parse_sizes(text: str) -> tuple[int, ...]:
    """``0,2M,10M,50M`` -> (0, 2000000, 10000000, 50000000): sorted, each once.

    A suffix k or M multiplies by 1,000 or 1,000,000; underscores are ignored.
    """
    sizes: set[int] = set()
    for part in text.split(","):
        match = SIZE_PATTERN.fullmatch(part.strip().replace("_", ""))
        if match is None:
            raise ValueError(
                f"{part.strip()!r} is not a row count (give e.g. 0,2M,10M or 0,200k,500000)"
            )
        number, suffix = match.groups()
        scale = {"": 1, "k": 1_000, "m": 1_000_000}[suffix.lower()]
        rows = float(number) * scale
        if rows != int(rows):
            raise ValueError(f"{part.strip()!r} is not a whole number of rows")
        sizes.add(int(rows))
    return tuple(sorted(sizes))


def fmt_rows(rows: int) -> str:
    return f"{rows:,}"


# --- The code versions -------------------------------------------------------------------


@dataclass(frozen=True)
class CodeVersion:
    """The audit SQL one database gets: the working tree's, or a git commit's."""

    label: str
    source: Path  # the folder holding its hyper_audit_alembic package
    commit: str = ""  # a baseline's abbreviated hash and subject


def baseline_version(ref: str, workdir: Path) -> CodeVersion:
    """The package of git commit `ref`, extracted under workdir (git archive)."""
    target = workdir / "baseline"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "hyper_audit_alembic"],
        capture_output=True,
    )
    if archive.returncode != 0:
        raise BenchmarkError(
            f"--baseline {ref}: git archive failed: {archive.stderr.decode(errors='replace')}"
        )
    tar_path = workdir / "baseline.tar"
    tar_path.write_bytes(archive.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", ref],
        capture_output=True,
        text=True,
    ).stdout.strip()
    log(f"  baseline {ref}: {commit}")
    return CodeVersion(ref, target, commit)


def install_statements(version: CodeVersion, layout: str) -> list[str]:
    """The version's install statements for the layout, as op.install_audit(...) runs them."""
    done = subprocess.run(
        [sys.executable, "-c", INSTALL_SCRIPT, str(version.source), layout],
        capture_output=True,
        text=True,
        cwd=version.source,
    )
    if done.returncode != 0:
        raise BenchmarkError(
            f"the install statements of {version.label} ({layout}) could not be read:\n"
            f"{done.stderr.strip()[-2000:]}"
        )
    statements = json.loads(done.stdout)
    assert isinstance(statements, list)
    return [str(statement) for statement in statements]


# --- A database of one layout and code version ---------------------------------------------


@dataclass
class GrowthDb:
    version: CodeVersion
    layout: str
    dbname: str
    conn: Connection
    today: dt.datetime  # midnight UTC of the day the part started; the fill ends there
    size: int = 0  # audit rows of the fill
    fill_max_id: int = 0
    bench_oid: int = 0
    uuid_v5: str = ""  # the uuid-ossp function, schema-qualified (quoted)
    scripts: dict[str, Path] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.layout}, {self.version.label}"


def setup_db(
    server: ThrowawayPostgres,
    run: Run,
    layout: str,
    version: CodeVersion,
    dbname: str,
    today: dt.datetime,
) -> GrowthDb:
    """A database with the version's audit in the layout, the tracked table and its twin."""
    recreate_database(server, dbname)
    conn = connect(server, dbname)
    db = GrowthDb(version, layout, dbname, conn, today)
    if layout == "hypertable":
        execute(conn, "create extension if not exists timescaledb")
    statements = install_statements(version, layout)
    with conn.cursor() as cur:
        for number, statement in enumerate(statements, 1):
            try:
                cur.execute(statement)
            except psycopg2.Error as error:
                raise BenchmarkError(
                    f"{db.label}: install statement {number} failed: {error}\n{statement[:300]}"
                ) from error
    for table in TABLES_MEASURED:
        execute(conn, TABLE_DDL.replace("public.bench", f"public.{table}"))
        # Vacuumed and analyzed by reset_bench before every run: autovacuum would add its
        # own WAL to a measured run at random.
        execute(conn, f"alter table public.{table} set (autovacuum_enabled = false)")
    execute(conn, "select audit.enable_tracking('public.bench'::regclass)")
    db.bench_oid = int(scalar(conn, "select 'public.bench'::regclass::oid"))
    db.uuid_v5 = str(
        scalar(
            conn,
            "select quote_ident(n.nspname) || '.uuid_generate_v5' from pg_extension e "
            "join pg_namespace n on n.oid = e.extnamespace where e.extname = 'uuid-ossp'",
        )
    )
    if layout == "partitioned":
        ensure_partitions(db, 0)
    if layout == "plain":  # as after a fill (see grow()), so that every size compares
        execute(conn, f"alter table audit.record_version set (fillfactor = {PLAIN_FILLFACTOR})")
    # The install records what it should: one audit row per change, of its op, only for
    # the tracked table.
    for table in TABLES_MEASURED:
        execute(conn, FILL_SQL.format(rows=3).replace("public.bench", f"public.{table}"))
        execute(conn, f"update public.{table} set amount = amount + 1 where id = 2")
        execute(conn, f"delete from public.{table} where id = 3")
    ops = execute(conn, "select table_oid, op::text from audit.record_version order by id")
    expected = [(db.bench_oid, op) for op in ("INSERT", "INSERT", "INSERT", "UPDATE", "DELETE")]
    if [(int(oid), op) for oid, op in ops] != expected:
        run.results.problem(f"growth, {db.label}: unexpected audit rows after set-up: {ops}")
    execute(conn, "truncate audit.record_version")
    for table in TABLES_MEASURED:
        reset_bench(conn, table, 0)
    for script in SCRIPTS:
        for table in TABLES_MEASURED:
            path = run.workdir / f"growth_{script}_{table}.sql"
            path.write_text(PGBENCH_SCRIPTS[script].replace("public.bench", f"public.{table}"))
            db.scripts[f"{script}_{table}"] = path
    return db


def ensure_partitions(db: GrowthDb, rows: int) -> None:
    """Daily partitions for the history of `rows` rows, today's and the next two days'."""
    days = -(-rows // ROWS_PER_DAY)
    execute(
        db.conn,
        "select count(*) from audit.ensure_partitions("
        "%(today)s - make_interval(days => %(days)s), %(today)s + interval '3 days')",
        {"today": db.today, "days": days},
    )
    in_default = scalar(db.conn, "select count(*) from audit.record_version_default")
    if in_default:
        raise BenchmarkError(f"growth, {db.label}: {in_default} rows in the default partition")


FILL_SQL_TEMPLATE = """
insert into audit.record_version (
    record_id, old_record_id, op, ts, table_oid, table_schema, table_name, record, old_record
)
select
    case when x.op <> 'DELETE' then x.rid end,
    case when x.op <> 'INSERT' then x.rid end,
    x.op::audit.operation,
    x.ts,
    {oid_base} + x.t,
    'public',
    't' || x.t,
    case when x.op <> 'DELETE' then jsonb_build_object(
        'id', x.k, 'account_id', x.k %% 1000 + 1,
        'status', case when x.v = 0 then 'new' else 'updated' end,
        'note', 'a short note about this row', 'amount', x.v,
        'created_at', x.created, 'updated_at', case when x.v > 0 then x.ts end) end,
    case when x.op <> 'INSERT' then jsonb_build_object(
        'id', x.k, 'account_id', x.k %% 1000 + 1,
        'status', case when x.v = 1 then 'new' else 'updated' end,
        'note', 'a short note about this row', 'amount', x.v - 1,
        'created_at', x.created,
        'updated_at', case when x.v > 1 then x.ts - interval '1 hour' end) end
from (
    select
        s.q, s.v, s.rec %% {tables} as t, s.rec / {tables} as k,
        {uuid_v5}(
            %(namespace)s::uuid, 'growth:' || (s.rec %% {tables}) || ':' || (s.rec / {tables})
        ) as rid,
        %(today)s - (s.q + 1) * interval '{us} microseconds' as ts,
        %(today)s - make_interval(days => (s.d + 1)::integer) as created,
        case
            when s.v = 0 then 'INSERT'
            when s.v = {last} and s.rec %% 4 = 0 then 'DELETE'
            else 'UPDATE'
        end as op
    from (
        select
            q, q / {per_day} as d,
            (q / {per_day}) * {records} + (q %% {per_day}) %% {records} as rec,
            {last} - (q %% {per_day}) / {records} as v
        from generate_series(%(oldest)s::bigint, %(newest)s::bigint, -1) q
    ) s
) x
"""


def grow(db: GrowthDb, rows: int) -> None:
    """Fill the history from its size to `rows` rows, then VACUUM ANALYZE and CHECKPOINT.

    Row q (0: the newest) is stamped (q + 1) * MICROSECONDS_PER_ROW before today's
    midnight, so a larger history adds older rows; they are written oldest first, so ids
    grow with ts within each fill. Row q of day d = q / ROWS_PER_DAY is version
    4 - j / RECORDS_PER_DAY of record d * RECORDS_PER_DAY + j % RECORDS_PER_DAY (j = q %
    ROWS_PER_DAY): a record's versions lie in one day, far apart in the table.
    """
    if rows <= db.size:
        return
    started = time.perf_counter()
    if db.layout == "partitioned":
        ensure_partitions(db, rows)
    if db.layout == "plain":
        execute(db.conn, "alter table audit.record_version reset (fillfactor)")
    sql = FILL_SQL_TEMPLATE.format(
        oid_base=TABLE_OID_BASE,
        tables=TABLES,
        uuid_v5=db.uuid_v5,
        us=MICROSECONDS_PER_ROW,
        last=VERSIONS - 1,
        per_day=ROWS_PER_DAY,
        records=RECORDS_PER_DAY,
    )
    written = execute(
        db.conn,
        sql,
        {
            "namespace": str(RECORD_NAMESPACE),
            "today": db.today,
            "newest": db.size,
            "oldest": rows - 1,
        },
    )
    filled = time.perf_counter() - started
    if written != rows - db.size:
        raise BenchmarkError(
            f"growth, {db.label}: the fill wrote {written:,} rows, not {rows - db.size:,}"
        )
    execute(db.conn, "vacuum analyze audit.record_version")
    if db.layout == "plain":
        # The VACUUM offers the space left at the end of every page of the fill to the next
        # inserts; a measured audit row would then go into a different old page each time
        # (a full-page image each), as only right after a bulk load. In a table written
        # row by row that space is used up as it appears: keep the measured rows at the end.
        execute(db.conn, f"alter table audit.record_version set (fillfactor = {PLAIN_FILLFACTOR})")
    execute(db.conn, "checkpoint")
    db.size = rows
    db.fill_max_id = int(scalar(db.conn, "select coalesce(max(id), 0) from audit.record_version"))
    if db.layout == "partitioned":
        in_today = scalar(
            db.conn, "select count(*) from audit.record_version where ts >= %s", (db.today,)
        )
        if in_today:
            raise BenchmarkError(f"growth, {db.label}: {in_today} fill rows dated today")
    log(
        f"  {db.label}: history filled to {rows:,} audit rows ({filled:.0f} s; vacuum, "
        f"analyze and checkpoint {time.perf_counter() - started - filled:.0f} s)"
    )


def record_of(q: int) -> tuple[str, int, int]:
    """(record id, day, record number within its day) of the fill's row q."""
    day, j = divmod(q, ROWS_PER_DAY)
    number = day * RECORDS_PER_DAY + j % RECORDS_PER_DAY
    name = f"growth:{number % TABLES}:{number // TABLES}"
    return str(uuid.uuid5(RECORD_NAMESPACE, name)), day, j % RECORDS_PER_DAY


def versions_in_fill(day: int, number: int, size: int) -> int:
    """How many audit rows a fill of `size` rows holds for record `number` of `day`."""
    return sum(
        1
        for version in range(VERSIONS)
        if day * ROWS_PER_DAY + (VERSIONS - 1 - version) * RECORDS_PER_DAY + number < size
    )


# --- The measurements ---------------------------------------------------------------------


def reset_bench(conn: Connection, table: str, rows: int) -> None:
    """The table emptied (ids from 1) and prefilled with `rows` rows, no trigger firing."""
    execute(conn, "set session_replication_role = replica")
    try:
        execute(conn, f"truncate public.{table} restart identity")
        if rows:
            execute(conn, FILL_SQL.format(rows=rows).replace("public.bench", f"public.{table}"))
            execute(
                conn,
                "select setval(pg_get_serial_sequence(%s, 'id'), %s)",
                (f"public.{table}", rows),
            )
    finally:
        execute(conn, "reset session_replication_role")
    execute(conn, f"vacuum analyze public.{table}")


def wal_counters(conn: Connection) -> tuple[float, float]:
    """pg_stat_wal's (wal_bytes, wal_fpi), this session's pending counts flushed first."""
    execute(conn, "select pg_stat_force_next_flush()")  # flushed when the session goes idle
    row = execute(conn, "select wal_bytes, wal_fpi from pg_stat_wal")[0]
    return float(row[0]), float(row[1])


def wait_for_other_sessions(conn: Connection, dbname: str) -> None:
    """Until pgbench's sessions are gone (they flush their WAL counts as they exit)."""
    for _ in range(200):
        others = scalar(
            conn,
            "select count(*) from pg_stat_activity where datname = %s "
            "and pid <> pg_backend_pid() and backend_type = 'client backend'",
            (dbname,),
        )
        if not others:
            return
        time.sleep(0.05)


@contextlib.contextmanager
def session_options(options: str | None) -> Iterator[None]:
    """PGOPTIONS for the child processes started inside (pgbench), restored after."""
    if options is None:
        yield
        return
    saved = os.environ.get("PGOPTIONS")
    os.environ["PGOPTIONS"] = options
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PGOPTIONS"]
        else:
            os.environ["PGOPTIONS"] = saved


def check_and_remove(
    results: Results, db: GrowthDb, table: str, op: str, expected: int, label: str
) -> None:
    """The audit rows the run added: `expected` rows of `op` for the tracked table (none
    for the twin), checked, then deleted and the audit table vacuumed."""
    tracked = table == "bench"
    matching, total = execute(
        db.conn,
        "select count(*) filter (where op::text = %s and table_oid = %s), count(*) "
        "from audit.record_version where ts >= %s and id > %s",
        (op, db.bench_oid, db.today, db.fill_max_id),
    )[0]
    want = expected if tracked else 0
    if matching != want or total != want:
        results.problem(
            f"growth, {label}: {expected:,} rows changed but {total:,} audit rows "
            f"({matching:,} {op} of public.bench), not {want:,}"
        )
    if total:
        execute(
            db.conn,
            "delete from audit.record_version where ts >= %s and id > %s",
            (db.today, db.fill_max_id),
        )
        execute(db.conn, "vacuum audit.record_version")


def key_of(db: GrowthDb, metric: str) -> str:
    return f"growth|{db.layout}|{db.size}|{db.version.label}|{metric}"


def measure_pgbench(
    run: Run,
    server: ThrowawayPostgres,
    db: GrowthDb,
    script: str,
    table: str,
    prefix: str = "",
    options: str | None = None,
) -> str:
    """One pgbench run into `table`: tps, WAL and FPI per transaction added to the results."""
    conn = db.conn
    reset_bench(conn, table, UPDATE_TABLE_ROWS if script == "update" else 0)
    execute(conn, "checkpoint")
    bytes_before, fpi_before = wal_counters(conn)
    with session_options(options):
        done = run_pgbench(server, db.dbname, db.scripts[f"{script}_{table}"], 1, run.duration)
    wait_for_other_sessions(conn, db.dbname)
    time.sleep(0.1)  # (an exiting session flushes its counts as it leaves)
    bytes_after, fpi_after = wal_counters(conn)
    label = f"{db.label}, {db.size:,} audit rows, {prefix}{script}, public.{table}"
    rows = int(scalar(conn, f"select count(*) from public.{table}"))
    changed = rows if script == "insert" else done.processed
    if changed != done.processed:
        run.results.problem(f"growth, {label}: {done.processed} transactions, {changed} rows")
    check_and_remove(run.results, db, table, OP[script], done.processed, label)
    variant = "tracked" if table == "bench" else "twin"
    processed = max(done.processed, 1)
    wal = (bytes_after - bytes_before) / processed
    fpi = (fpi_after - fpi_before) / processed
    run.results.add(key_of(db, f"{prefix}{script}_tps"), variant, done.tps)
    run.results.add(key_of(db, f"{prefix}{script}_wal"), variant, wal)
    run.results.add(key_of(db, f"{prefix}{script}_fpi"), variant, fpi)
    return f"{variant} {done.tps:,.0f} tps, {wal / 1024:.2f} KB, {fpi:.3f} FPI per tx"


def measure_bulk(run: Run, db: GrowthDb, table: str) -> str:
    """One INSERT ... SELECT of BULK_ROWS rows into `table`: time (commit included), WAL."""
    conn = db.conn
    reset_bench(conn, table, 0)
    execute(conn, "checkpoint")
    bytes_before, _ = wal_counters(conn)
    with conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute(FILL_SQL.format(rows=BULK_ROWS).replace("public.bench", f"public.{table}"))
        elapsed = time.perf_counter() - started
        affected = cur.rowcount
    bytes_after, _ = wal_counters(conn)
    label = f"{db.label}, {db.size:,} audit rows, bulk INSERT, public.{table}"
    if affected != BULK_ROWS:
        run.results.problem(f"growth, {label}: {affected} rows inserted, not {BULK_ROWS}")
    check_and_remove(run.results, db, table, "INSERT", BULK_ROWS, label)
    reset_bench(conn, table, 0)
    variant = "tracked" if table == "bench" else "twin"
    run.results.add(key_of(db, "bulk_time"), variant, elapsed)
    run.results.add(key_of(db, "bulk_wal"), variant, bytes_after - bytes_before)
    return f"{variant} {elapsed:.3f} s, {(bytes_after - bytes_before) / 1e6:.0f} MB"


def day_window(db: GrowthDb, day: int) -> tuple[dt.datetime, dt.datetime]:
    """[lower, upper) of day `day` before today (0: yesterday): the fill's rows of that day."""
    upper = db.today - dt.timedelta(days=day)
    return upper - dt.timedelta(days=1), upper


def measure_history(run: Run, db: GrowthDb, rng: random.Random) -> None:
    """The history of HISTORY_SAMPLES random records of the fill, without and with a ts range."""
    conn = db.conn
    execute(conn, "deallocate all")
    execute(conn, f"prepare history(uuid) as {HISTORY_QUERY}")
    execute(conn, f"prepare history_range(uuid, timestamptz, timestamptz) as {HISTORY_RANGE_QUERY}")
    probe, day, _ = record_of(db.size // 2)
    window = day_window(db, day)
    for _ in range(6):  # generic plans after five runs
        execute(conn, "execute history(%s)", (probe,))
        execute(conn, "execute history_range(%s, %s, %s)", (probe, *window))
    for name, args in (("history", (probe,)), ("history_range", (probe, *window))):
        marks = ", ".join(["%s"] * len(args))
        plan = scalar(conn, f"explain (format json) execute {name}({marks})", args)
        shape = plan_shape(plan[0]["Plan"])
        if "Index" not in shape:
            run.results.problem(f"growth, {db.label}, {db.size:,} rows: {name} uses no index")
        log(f"    {name} plan: {shape[:300]}{' …' if len(shape) > 300 else ''}")
    for rep in range(run.repeat):
        timings: dict[str, list[float]] = {"history": [], "history_range": []}
        for _ in range(HISTORY_SAMPLES):
            rid, day, number = record_of(rng.randrange(db.size))
            expected = versions_in_fill(day, number, db.size)
            lower, upper = day_window(db, day)
            for name, args in (("history", (rid,)), ("history_range", (rid, lower, upper))):
                marks = ", ".join(["%s"] * len(args))
                with conn.cursor() as cur:
                    started = time.perf_counter()
                    cur.execute(f"execute {name}({marks})", args)
                    found = cur.fetchall()
                    timings[name].append(time.perf_counter() - started)
                if len(found) != expected:
                    run.results.problem(
                        f"growth, {db.label}, {db.size:,} rows: {name} of {rid}: "
                        f"{len(found)} rows, not {expected}"
                    )
        line = []
        for name, values in timings.items():
            median = statistics.median(values) * 1000
            run.results.add(key_of(db, name), "tracked", median)
            line.append(f"{name} {median:.3f} ms")
        log(f"  [{rep + 1}/{run.repeat}] {db.label}, {db.size:,} rows: {', '.join(line)}")
    execute(conn, "deallocate all")


def compression_method(conn: Connection) -> str:
    """lz4 where the server was built with it, else pglz."""
    try:
        execute(conn, "set wal_compression = lz4")
    except psycopg2.Error:
        return "pglz"
    finally:
        execute(conn, "reset wal_compression")
    return "lz4"


def bench_layout(
    run: Run,
    server: ThrowawayPostgres,
    layout: str,
    versions: list[CodeVersion],
    sizes: tuple[int, ...],
    today: dt.datetime,
) -> None:
    dbs: list[GrowthDb] = []
    try:
        for index, version in enumerate(versions):
            dbs.append(setup_db(server, run, layout, version, f"bench_growth_{index}", today))
        log(f"  pgbench warm-up ({layout}: 1 s per script and table, not measured)")
        for db in dbs:
            for script in SCRIPTS:
                for table in TABLES_MEASURED:
                    reset_bench(db.conn, table, UPDATE_TABLE_ROWS if script == "update" else 0)
                    run_pgbench(server, db.dbname, db.scripts[f"{script}_{table}"], 1, 1)
                    execute(
                        db.conn,
                        "delete from audit.record_version where ts >= %s and id > %s",
                        (db.today, db.fill_max_id),
                    )
            execute(db.conn, "vacuum audit.record_version")
        rng = random.Random(42)
        for size in sizes:
            for db in dbs:
                grow(db, size)
            for rep in range(run.repeat):
                order = dbs if rep % 2 == 0 else dbs[::-1]
                tables = TABLES_MEASURED if rep % 2 == 0 else TABLES_MEASURED[::-1]
                for db in order:
                    for script in SCRIPTS:
                        line = [measure_pgbench(run, server, db, script, t) for t in tables]
                        log(
                            f"  [{rep + 1}/{run.repeat}] {db.label}, {size:,} rows, "
                            f"{script}: {'; '.join(line)}"
                        )
                    line = [measure_bulk(run, db, t) for t in tables]
                    log(
                        f"  [{rep + 1}/{run.repeat}] {db.label}, {size:,} rows, "
                        f"bulk INSERT of {BULK_ROWS:,}: {'; '.join(line)}"
                    )
            if size:
                for db in dbs:
                    measure_history(run, db, rng)
            if size == sizes[-1]:
                method = compression_method(dbs[0].conn)
                run.results.notes["growth_compression"] = method
                for db in dbs:
                    for script in SCRIPTS:
                        line = [
                            measure_pgbench(
                                run, server, db, script, t, "compressed_",
                                f"-c wal_compression={method}",
                            )
                            for t in TABLES_MEASURED
                        ]  # fmt: skip
                        log(
                            f"  {db.label}, {size:,} rows, {script}, "
                            f"wal_compression={method}: {'; '.join(line)}"
                        )
    finally:
        for db in dbs:
            with contextlib.suppress(psycopg2.Error):
                db.conn.close()
        for db in dbs:
            drop_database(server, db.dbname)


SETTINGS = ("checkpoint_timeout", "max_wal_size", "shared_buffers", "wal_compression")


def server_settings(server: ThrowawayPostgres) -> str:
    with contextlib.closing(connect(server, "postgres")) as conn:
        return ", ".join(
            f"{name} {scalar(conn, 'select current_setting(%s)', (name,))}" for name in SETTINGS
        )


def measure(run: Run) -> None:
    sizes = getattr(run.options, "growth_rows", None) or DEFAULT_SIZES
    versions = [CodeVersion(WORKING_TREE, ROOT)]
    baseline = getattr(run.options, "baseline", None)
    if baseline:
        versions.append(baseline_version(baseline, run.workdir))
    results = run.results
    results.notes["growth_versions"] = " / ".join(v.label for v in versions)
    if baseline:
        results.notes["growth_baseline_commit"] = versions[-1].commit
    results.notes["growth_settings"] = server_settings(run.server)
    with contextlib.closing(connect(run.server, "postgres")) as conn:
        today = scalar(
            conn, "select date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'"
        )
    results.notes["growth_today"] = str(today)
    for layout in LAYOUTS:
        title = (
            f"growth, {LAYOUT_TITLES[layout]}: history of {', '.join(map(fmt_rows, sizes))} "
            f"audit rows, {' and '.join(v.label for v in versions)}"
        )
        if layout != "hypertable":
            timed(
                title,
                functools.partial(bench_layout, run, run.server, layout, versions, sizes, today),
            )
            continue
        missing = missing_timescaledb(run.server)
        if missing:
            results.notes["growth_hypertable_skipped"] = missing
            log(f"  hypertable layout not measured: {missing}")
            continue
        with timescale_server() as server:
            results.notes["growth_timescale_settings"] = server_settings(server)
            timed(title, lambda: bench_layout(run, server, "hypertable", versions, sizes, today))


# --- The report ---------------------------------------------------------------------------

HEADER = [
    "| growth: layout, audit rows, code | INSERT tps ratio | WAL per INSERT tx "
    "| FPI per INSERT tx | UPDATE tps ratio | WAL per UPDATE tx | FPI per UPDATE tx "
    f"| bulk {BULK_ROWS // 1000}k INSERT time ratio | bulk {BULK_ROWS // 1000}k INSERT WAL "
    "| history of one record | with a one-day ts range |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
DASH = "—"


def measured(results: Results) -> dict[str, dict[int, set[str]]]:
    """layout -> size -> the code versions measured there, from the samples' keys."""
    found: dict[str, dict[int, set[str]]] = {}
    for key, _ in results.samples:
        if key.startswith("growth|"):
            _, layout, size, version, _ = key.split("|")
            found.setdefault(layout, {}).setdefault(int(size), set()).add(version)
    return found


def row_title(layout: str, size: int, version: str, compressed: str | None = None) -> str:
    title = f"{LAYOUT_TITLES[layout]}, {size:,} audit rows, {version}"
    return f"{title}, wal_compression={compressed}" if compressed else title


def growth_row(
    results: Results, layout: str, size: int, version: str, prefix: str = ""
) -> str | None:
    def key(metric: str) -> str:
        return f"growth|{layout}|{size}|{version}|{prefix}{metric}"

    def ratio(metric: str) -> str:
        value = results.ratio(key(metric), "tracked", "twin")
        return DASH if value is None else f"{value:.2f}×"  # noqa: RUF001

    def amount(metric: str, unit: float, suffix: str, digits: int) -> str:
        tracked = results.median(key(metric), "tracked")
        twin = results.median(key(metric), "twin")
        if tracked is None:
            return DASH
        shown = f"{tracked / unit:,.{digits}f}{suffix}"
        return shown if twin is None else f"{shown} (twin {twin / unit:,.{digits}f}{suffix})"

    def latency(metric: str) -> str:
        value = results.median(key(metric), "tracked")
        return DASH if value is None else f"{value:.3f} ms"

    if results.median(key("insert_tps"), "tracked") is None:
        return None
    cells = [
        row_title(
            layout, size, version, results.notes.get("growth_compression") if prefix else None
        ),
        ratio("insert_tps"),
        amount("insert_wal", 1024, " KB", 2),
        amount("insert_fpi", 1, "", 2),
        ratio("update_tps"),
        amount("update_wal", 1024, " KB", 2),
        amount("update_fpi", 1, "", 2),
    ]
    if prefix:
        cells += [DASH] * 4
    else:
        cells += [
            ratio("bulk_time"),
            amount("bulk_wal", 1024 * 1024, " MB", 0),
            latency("history"),
            latency("history_range"),
        ]
    return "| " + " | ".join(cells) + " |"


def tables(results: Results) -> list[str]:
    found = measured(results)
    skipped = results.notes.get("growth_hypertable_skipped")
    if not found and not skipped:
        return []
    versions = results.notes.get("growth_versions", WORKING_TREE).split(" / ")
    lines = list(HEADER)
    for layout in LAYOUTS:
        if layout == "hypertable" and skipped:
            lines.append(
                f"| {LAYOUT_TITLES[layout]} | not measured | "
                + " | ".join([DASH] * (len(HEADER[1].split("|")) - 4))
                + " |"
            )
            continue
        sizes = sorted(found.get(layout, {}))
        for size in sizes:
            for version in versions:
                row = growth_row(results, layout, size, version)
                if row:
                    lines.append(row)
        if sizes:
            for version in versions:
                row = growth_row(results, layout, sizes[-1], version, "compressed_")
                if row:
                    lines.append(row)
    return [*lines, ""]


def notes(results: Results) -> list[str]:
    if not measured(results) and "growth_hypertable_skipped" not in results.notes:
        return []
    compressed = results.notes.get("growth_compression", "lz4")
    found = [
        "Growth (`--only growth`): for each layout of audit.record_version and each history "
        "size, one database per code version, its history filled incrementally with "
        f"{ROWS_PER_DAY:,} audit rows a day ending just before today (UTC; today's "
        "partition or chunk starts empty), 1,000 table oids, 5 versions per record within "
        "a day, uuid v5 record ids in random order, jsonb rows of the bench table's size; "
        "written by one INSERT ... SELECT (no trigger), then VACUUM ANALYZE and CHECKPOINT; "
        f"then the plain table's fillfactor is set to {PLAIN_FILLFACTOR}, so that the "
        "measured rows are appended as in a table written row by row, instead of filling "
        "the space the VACUUM found left at the end of every page of the bulk-loaded fill "
        "(one full-page image per row). "
        "In the same database, public.bench (tracked) and public.bench_twin (untracked): "
        "pgbench, 1 client, single-row INSERT and UPDATE by key (100,000 rows), a "
        "CHECKPOINT before each run. Ratios: tracked tps / twin tps (higher is better), "
        f"bulk: time of one INSERT ... SELECT of {BULK_ROWS:,} rows, tracked / twin "
        "(lower is better); medians of the per-repetition ratios. WAL and FPI per tx: "
        "pg_stat_wal's wal_bytes and wal_fpi over the run (cluster-wide; nothing else "
        "runs) / transactions processed, the twin's in parentheses. Only the first change of "
        "a page after the checkpoint writes its image (an index leaf, the bench table's own "
        "pages), so FPI per transaction fall as a run holds more transactions: compare rows "
        "of one run. History: client round "
        "trip of a prepared `where record_id = $1 or old_record_id = $1 order by ts, id` "
        f"(and with `ts >= $2 and ts < $3`, the record's day), median over {HISTORY_SAMPLES} "
        "random records of the fill, every result checked; none at size 0. What a "
        "measurement writes to the audit table is deleted right after it (and the table "
        f"vacuumed). The rows `wal_compression={compressed}`: one more INSERT and UPDATE "
        "pair at the largest size with the pgbench sessions' wal_compression set.",
    ]
    settings = results.notes.get("growth_settings")
    if settings:
        timescale = results.notes.get("growth_timescale_settings")
        found.append(
            f"Growth server settings: {settings}"
            + (
                f"; the hypertable's server (TimescaleDB preloaded): {timescale}"
                if timescale
                else ""
            )
            + "."
        )
    versions = results.notes.get("growth_versions")
    if versions and " / " in versions:
        found.append(
            f"Code versions (growth): {versions} "
            f"({results.notes.get('growth_baseline_commit', '')}) — the audit install of "
            "each, as op.install_audit(...) runs it, in a database of its own."
        )
    if "growth_hypertable_skipped" in results.notes:
        found.append(
            f"Growth, hypertable layout not measured: {results.notes['growth_hypertable_skipped']}."
        )
    return found


WORKLOAD = Workload("growth", measure, in_default_run=False, tables=tables, notes=notes)
