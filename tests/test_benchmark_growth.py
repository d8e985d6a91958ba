"""The growth benchmark (``python benchmarks/run.py --only growth``): its options, its fill,
its checks, its table, and the docs hook that places its results file.

The benchmark's numbers are only worth something if the history it builds is the one its
rows name (the size, the days, the record ids the lookups ask for) and if a broken install
shows as a problem, not as a fast number: those run against a real server, with the fill's
day shrunk so that a few thousand rows span several days.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from benchmarks import cli
from benchmarks.results import Results
from benchmarks.server import Connection, connect, drop_database, execute, recreate_database
from benchmarks.variants import TABLE_DDL, install_ours
from benchmarks.workloads import growth
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "performance.py"
GROWTH_PAGE = ROOT / "docs" / "layouts-and-scaling.md"
GROWTH_RESULTS = ROOT / "benchmarks" / "results-growth.md"


# --- Options ------------------------------------------------------------------------------


def test_growth_rows_take_k_and_m_suffixes_sorted_once() -> None:
    assert growth.parse_sizes("0,2M,10M,50M") == (0, 2_000_000, 10_000_000, 50_000_000)
    assert growth.parse_sizes("200k, 0, 1.5M, 200000") == (0, 200_000, 1_500_000)
    assert growth.parse_sizes("100_000") == (100_000,)
    with pytest.raises(ValueError, match="'2G' is not a row count"):
        growth.parse_sizes("0,2G")
    with pytest.raises(ValueError, match=r"'1\.0001k' is not a whole number of rows"):
        growth.parse_sizes("1.0001k")


def test_growth_alone_writes_its_own_results_file(capsys: pytest.CaptureFixture[str]) -> None:
    options = cli.parse_args(["--only", "growth"])
    assert options.output == cli.RESULTS_GROWTH_MD
    assert options.growth_rows is None and options.baseline is None
    assert cli.parse_args([]).output == cli.RESULTS_MD
    assert cli.parse_args(["--only", "pgbench"]).output == cli.RESULTS_MD
    options = cli.parse_args(
        ["--only", "growth", "--growth-rows", "0,100k", "--baseline", "73c1095"]
    )
    assert (options.growth_rows, options.baseline) == ((0, 100_000), "73c1095")
    assert cli.parse_args(["--only", "indexes"]).output == cli.RESULTS_GROWTH_MD
    assert cli.parse_args(["--only", "growth", "--only", "indexes"]).output == (
        cli.RESULTS_GROWTH_MD
    )
    mixed = ["--only", "growth", "--only", "pgbench"]
    assert cli.parse_args([*mixed, "--output", "x.md"]).output == Path("x.md")
    for argv, message in (
        (mixed, "the growth part writes its own results file (results-growth.md)"),
        (["--growth-rows", "0,1M"], "--growth-rows and --baseline are options of the growth"),
        (["--only", "growth", "--growth-rows", "0,1G"], "'1G' is not a row count"),
    ):
        with pytest.raises(SystemExit):
            cli.parse_args(argv)
        assert message in capsys.readouterr().err


def test_growth_is_not_in_the_default_run() -> None:
    assert growth.WORKLOAD in cli.WORKLOADS
    assert growth.WORKLOAD not in cli.chosen(cli.parse_args([]))


# --- The fill, the checks (a real server) ------------------------------------------------


@pytest.fixture
def small_days(monkeypatch: pytest.MonkeyPatch) -> None:
    """A day of 1,000 audit rows (200 records, 5 versions): a few thousand rows span days."""
    monkeypatch.setattr(growth, "ROWS_PER_DAY", 1_000)
    monkeypatch.setattr(growth, "RECORDS_PER_DAY", 200)
    monkeypatch.setattr(growth, "MICROSECONDS_PER_ROW", 86_400_000)


@pytest.fixture
def growth_db(pg_server: ThrowawayPostgres) -> Iterator[growth.GrowthDb]:
    """A plain audit install with the tracked bench table and its untracked twin."""
    recreate_database(pg_server, "growth_test")
    conn: Connection = connect(pg_server, "growth_test")
    try:
        install_ours(conn)
        for table in growth.TABLES_MEASURED:
            execute(conn, TABLE_DDL.replace("public.bench", f"public.{table}"))
        execute(conn, "select audit.enable_tracking('public.bench'::regclass)")
        today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        db = growth.GrowthDb(
            growth.CodeVersion("working tree", ROOT), "plain", "growth_test", conn, today
        )
        db.bench_oid = int(execute(conn, "select 'public.bench'::regclass::oid")[0][0])
        db.uuid_v5 = "public.uuid_generate_v5"
        yield db
    finally:
        conn.close()
        drop_database(pg_server, "growth_test")


def test_the_fill_is_the_history_its_rows_name(
    small_days: None, growth_db: growth.GrowthDb
) -> None:
    db = growth_db
    for size in (700, 2_500):  # incrementally, ending inside a day
        growth.grow(db, size)
        rows = execute(
            db.conn,
            "select id, coalesce(record_id, old_record_id)::text, op::text, ts, table_oid "
            "from audit.record_version order by ts",
        )
        assert len(rows) == size == db.size
        assert db.fill_max_id == max(row[0] for row in rows)
        # ts: one row every 86.4 s (1,000 a day), the newest just before today's midnight.
        assert rows[-1][3] == db.today - dt.timedelta(microseconds=86_400_000)
        assert rows[0][3] == db.today - dt.timedelta(microseconds=86_400_000 * size)
        by_record: dict[str, list[tuple[str, dt.datetime]]] = {}
        for _, record_id, op, ts, _ in rows:
            by_record.setdefault(record_id, []).append((op, ts))
        # Every row of the fill is the history of the record record_of() names, and the
        # lookups' expected counts and day windows are right.
        for q in range(size):
            record_id, day, number = growth.record_of(q)
            history = by_record[record_id]
            assert len(history) == growth.versions_in_fill(day, number, size)
            lower = db.today - dt.timedelta(days=day + 1)
            assert all(lower <= ts < lower + dt.timedelta(days=1) for _, ts in history)
            table = (day * growth.RECORDS_PER_DAY + number) % growth.TABLES
            assert {row[4] for row in rows if row[1] == record_id} == {100_000 + table}
        assert len(by_record) == len({growth.record_of(q)[0] for q in range(size)})
    # A whole day's record: INSERT, 3 UPDATEs, then a DELETE for every fourth record.
    ops = [op for op, _ in by_record[growth.record_of(1_000)[0]]]  # day 1, record 200
    assert ops == ["INSERT", "UPDATE", "UPDATE", "UPDATE", "DELETE"]
    ops = [op for op, _ in by_record[growth.record_of(1_001)[0]]]
    assert ops == ["INSERT", "UPDATE", "UPDATE", "UPDATE", "UPDATE"]
    assert execute(
        db.conn, "select reloptions from pg_class where oid = 'audit.record_version'::regclass"
    ) == [([f"fillfactor={growth.PLAIN_FILLFACTOR}"],)]


def test_a_write_is_checked_then_removed_and_a_broken_install_is_a_problem(
    small_days: None, growth_db: growth.GrowthDb
) -> None:
    db, results = growth_db, Results()
    growth.grow(db, 1_500)
    insert = "insert into public.{} (account_id, status, amount) values (1, 'new', 1)"
    for _ in range(3):
        execute(db.conn, insert.format("bench"))
        execute(db.conn, insert.format("bench_twin"))
    growth.check_and_remove(results, db, "bench", "INSERT", 3, "tracked")
    growth.check_and_remove(results, db, "bench_twin", "INSERT", 3, "twin")
    assert results.problems == []
    assert execute(db.conn, "select count(*) from audit.record_version") == [(1_500,)]
    # Tracking that records nothing (its triggers off) shows as a problem, not as speed.
    execute(db.conn, "alter table public.bench disable trigger user")
    execute(db.conn, insert.format("bench"))
    growth.check_and_remove(results, db, "bench", "INSERT", 1, "tracked")
    assert results.problems == [
        "growth, tracked: 1 rows changed but 0 audit rows (0 INSERT of public.bench), not 1"
    ]


# --- The table -----------------------------------------------------------------------------


def test_the_table_has_a_row_per_layout_size_and_code_version() -> None:
    results = Results()
    results.notes["growth_versions"] = "working tree / 73c1095"
    results.notes["growth_compression"] = "lz4"
    results.notes["growth_hypertable_skipped"] = "TimescaleDB is not installed (no x)"
    for version, factor in (("working tree", 1.0), ("73c1095", 2.0)):
        for prefix in ("", "compressed_"):
            key = f"growth|plain|2000000|{version}|{prefix}"
            for script, tps in (("insert", 1_000.0), ("update", 800.0)):
                results.add(key + f"{script}_tps", "tracked", tps / factor)
                results.add(key + f"{script}_tps", "twin", 2_000.0)
                results.add(key + f"{script}_wal", "tracked", 1_024.0 * factor)
                results.add(key + f"{script}_wal", "twin", 256.0)
                results.add(key + f"{script}_fpi", "tracked", 0.125 * factor)
                results.add(key + f"{script}_fpi", "twin", 0.0)
        key = f"growth|plain|2000000|{version}|"
        results.add(key + "bulk_time", "tracked", 1.0 * factor)
        results.add(key + "bulk_time", "twin", 0.25)
        results.add(key + "bulk_wal", "tracked", 100 * 1024 * 1024.0)
        results.add(key + "bulk_wal", "twin", 20 * 1024 * 1024.0)
        results.add(key + "history", "tracked", 0.1234)
        results.add(key + "history_range", "tracked", 0.05)
    lines = growth.tables(results)
    # (x: the report's multiplication sign)
    assert [line.replace("\N{MULTIPLICATION SIGN}", "x") for line in lines[2:]] == [
        "| plain, 2,000,000 audit rows, working tree | 0.50x | 1.00 KB (twin 0.25 KB) "
        "| 0.12 (twin 0.00) | 0.40x | 1.00 KB (twin 0.25 KB) | 0.12 (twin 0.00) | 4.00x "
        "| 100 MB (twin 20 MB) | 0.123 ms | 0.050 ms |",
        "| plain, 2,000,000 audit rows, 73c1095 | 0.25x | 2.00 KB (twin 0.25 KB) "
        "| 0.25 (twin 0.00) | 0.20x | 2.00 KB (twin 0.25 KB) | 0.25 (twin 0.00) | 8.00x "
        "| 100 MB (twin 20 MB) | 0.123 ms | 0.050 ms |",
        "| plain, 2,000,000 audit rows, working tree, wal_compression=lz4 | 0.50x "
        "| 1.00 KB (twin 0.25 KB) | 0.12 (twin 0.00) | 0.40x | 1.00 KB (twin 0.25 KB) "
        "| 0.12 (twin 0.00) | — | — | — | — |",
        "| plain, 2,000,000 audit rows, 73c1095, wal_compression=lz4 | 0.25x "
        "| 2.00 KB (twin 0.25 KB) | 0.25 (twin 0.00) | 0.20x | 2.00 KB (twin 0.25 KB) "
        "| 0.25 (twin 0.00) | — | — | — | — |",
        "| hypertable (1-day chunks) | not measured | — | — | — | — | — | — | — | — | — |",
        "",
    ]
    assert len({len(line.split("|")) for line in lines if line}) == 1
    assert "Growth, hypertable layout not measured: TimescaleDB is not installed (no x)." in (
        growth.notes(results)
    )


# --- The docs hook ---------------------------------------------------------------------------


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hyper_audit_docs_growth_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GROWTH_TEXT = """# Benchmark results

Command: `python benchmarks/run.py --only growth` — a run.

| growth: layout, audit rows, code | WAL per INSERT tx |
|---|---:|
| plain, 10,000,000 audit rows, working tree | 3.40 KB (twin 0.22 KB) |

## All samples
"""


def test_the_growth_page_places_the_growth_results() -> None:
    hook = load_hook()
    page = (
        "# Layouts\n\n<!-- benchmark-results: growth run -->\n\n"
        "<!-- benchmark-results: growth table 1 -->\n\n"
        "At 10M: {{ value | plain, 10,000,000 audit rows, working tree | WAL per INSERT tx }} KB.\n"
    )
    assert hook.render_growth_page(page, GROWTH_TEXT) == (
        "# Layouts\n\n> Command: `python benchmarks/run.py --only growth` — a run.\n\n"
        "| growth: layout, audit rows, code | WAL per INSERT tx |\n|---|---:|\n"
        "| plain, 10,000,000 audit rows, working tree | 3.40 KB (twin 0.22 KB) |\n\n"
        "At 10M: 3.40 KB.\n"
    )
    with pytest.raises(hook.PerformancePageError, match="has no <!-- benchmark-results: growth"):
        hook.render_growth_page("# Layouts\n", GROWTH_TEXT)
    with pytest.raises(hook.PerformancePageError, match="growth table 2 asked for"):
        hook.render_growth_page(page + "<!-- benchmark-results: growth table 2 -->", GROWTH_TEXT)
    with pytest.raises(hook.PerformancePageError, match="does not exist"):
        hook.render_growth_page(page, None)
    assert hook.render_growth_page("# Layouts\n", None) == "# Layouts\n"
    with pytest.raises(
        hook.PerformancePageError,
        match=r"layouts-and-scaling.md: no cell of row 'x' under column 'y' in "
        r"benchmarks/results-growth.md",
    ):
        hook.render_growth_page(page + "{{ cell | x | y }}", GROWTH_TEXT)
    # The performance page takes no growth marker: its tables come from results.md.
    results = (ROOT / "benchmarks" / "results.md").read_text(encoding="utf-8")
    performance = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    with pytest.raises(hook.PerformancePageError, match="marker not understood"):
        hook.render_page(performance + "<!-- benchmark-results: growth table 1 -->", results)


def test_the_layouts_page_places_every_table_of_the_growth_results_once() -> None:
    hook = load_hook()
    text = GROWTH_RESULTS.read_text(encoding="utf-8") if GROWTH_RESULTS.exists() else None
    rendered = hook.render_growth_page(GROWTH_PAGE.read_text(encoding="utf-8"), text)
    assert "benchmark-results" not in rendered
    if text is not None:
        for table in hook.parse_results(text).tables:
            assert rendered.count(table.markdown) == 1
