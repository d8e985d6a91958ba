"""The audit install on a server with TimescaleDB: ``audit.record_version`` as a hypertable.

These tests need the TimescaleDB extension built for the server's PostgreSQL version
(``<sharedir>/extension/timescaledb.control``); where it is absent, as in CI, the whole
module is reported as skipped. The SQL they exercise is also checked without TimescaleDB
by ``test_timescale_ddl.py``.

Each test gets a fresh database on one session-wide server that preloads timescaledb.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from audit_helpers import (
    Db,
    account_scenario,
    apply_sql,
    catalog_snapshot,
    connect,
    offline_sql,
    record_id,
    run_online,
)
from timescale_helpers import HYPERTABLE_INDEXES, fresh_database, record_version_indexes

from hyper_audit_alembic import sql
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres


@pytest.fixture
def db(ts_url: str) -> Iterator[Db]:
    with connect(ts_url) as db:
        yield db


def install(operations: Operations) -> None:
    operations.install_audit()  # type: ignore[attr-defined]


def track_account(operations: Operations) -> None:
    operations.enable_tracking("account")  # type: ignore[attr-defined]


def uninstall_keeping_history(operations: Operations) -> None:
    operations.uninstall_audit(keep_history=True)  # type: ignore[attr-defined]


def uninstall_dropping_history(operations: Operations) -> None:
    operations.uninstall_audit(drop_history=True)  # type: ignore[attr-defined]


def uninstall(operations: Operations) -> None:
    operations.uninstall_audit()  # type: ignore[attr-defined]


def hypertable_dimensions(db: Db) -> list[tuple[Any, ...]]:
    return db.rows(
        "select column_name::text, dimension_type from timescaledb_information.dimensions"
        " where hypertable_schema = 'audit' and hypertable_name = 'record_version'"
    )


def assert_hypertable_layout(db: Db) -> None:
    assert hypertable_dimensions(db) == [("ts", "Time")]
    assert (
        db.rows(
            "select conname::text from pg_constraint"
            " where conrelid = 'audit.record_version'::regclass and contype in ('p', 'u')"
        )
        == []
    )
    assert record_version_indexes(db) == HYPERTABLE_INDEXES


def create_account(db: Db) -> None:
    db.run("create table public.account (id int primary key, name text not null)")


def rows_outside_chunks(db: Db) -> int:
    return int(db.one("select count(*) from only audit.record_version"))


def test_install_makes_record_version_a_hypertable_on_ts(db: Db, ts_engine: sa.Engine) -> None:
    db.run("create extension timescaledb")
    run_online(ts_engine, install)

    assert_hypertable_layout(db)
    # every step of the install
    assert db.one("select version from audit.schema_version") == sql.SCHEMA_VERSION
    # The history's columns and checks are those of the plain install.
    assert db.rows(
        "select attname::text, format_type(atttypid, atttypmod), attnotnull from pg_attribute"
        " where attrelid = 'audit.record_version'::regclass and attnum > 0 order by attnum"
    ) == [
        ("id", "bigint", True),
        ("record_id", "uuid", False),
        ("old_record_id", "uuid", False),
        ("op", "audit.operation", True),
        ("ts", "timestamp with time zone", True),
        ("table_oid", "oid", True),
        ("table_schema", "name", True),
        ("table_name", "name", True),
        ("record", "jsonb", False),
        ("old_record", "jsonb", False),
        ("actor", "text", False),
        ("context", "jsonb", False),
        ("transaction_id", "xid8", False),
    ]
    assert (
        db.one(
            "select count(*) from pg_constraint"
            " where conrelid = 'audit.record_version'::regclass and contype = 'c'"
        )
        == 5
    )


def test_tracking_writes_the_account_history_into_chunks(db: Db, ts_engine: sa.Engine) -> None:
    db.run("create extension timescaledb")
    create_account(db)
    run_online(ts_engine, install)
    run_online(ts_engine, track_account)

    expected = account_scenario(db)

    assert db.audit_rows() == expected
    assert rows_outside_chunks(db) == 0
    assert db.one("select count(*) from show_chunks('audit.record_version')") >= 1


def test_one_records_history_is_read_through_the_indexes(db: Db, ts_engine: sa.Engine) -> None:
    db.run("create extension timescaledb")
    create_account(db)
    run_online(ts_engine, install)
    run_online(ts_engine, track_account)
    db.run("insert into public.account select g, 'name ' || g from generate_series(1, 2000) g")
    db.run("update public.account set name = name || '!' where id % 2 = 0")
    db.run("analyze audit.record_version")
    wanted = record_id(db.oid("public.account"), "42")

    (plan,) = db.one(
        "explain (format json) select * from audit.record_version"
        " where record_id = %s or old_record_id = %s order by ts, id",
        [str(wanted), str(wanted)],
    )

    nodes = list(_plan_nodes(plan["Plan"]))
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], nodes
    used = {n["Index Name"].rsplit("_chunk_", 1)[-1] for n in nodes if "Index Name" in n}
    assert used == {"record_version_record_id", "record_version_old_record_id"}
    history = db.rows(
        "select op::text, record ->> 'name', old_record ->> 'name' from audit.record_version"
        " where record_id = %s or old_record_id = %s order by ts, id",
        [str(wanted), str(wanted)],
    )
    assert history == [("INSERT", "name 42", None), ("UPDATE", "name 42!", "name 42")]


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_install_again_changes_nothing(db: Db, ts_engine: sa.Engine) -> None:
    db.run("create extension timescaledb")
    create_account(db)
    run_online(ts_engine, install)
    run_online(ts_engine, track_account)
    expected = account_scenario(db)
    before = catalog_snapshot(db)

    run_online(ts_engine, install)

    assert catalog_snapshot(db) == before
    assert db.audit_rows() == expected


def test_uninstall_keeping_history_then_install_keeps_every_row(
    db: Db, ts_engine: sa.Engine
) -> None:
    db.run("create extension timescaledb")
    create_account(db)
    run_online(ts_engine, install)
    run_online(ts_engine, track_account)
    expected = account_scenario(db)

    run_online(ts_engine, uninstall_keeping_history)

    assert db.rows("select tgname::text from pg_trigger where tgname like 'audit%'") == []
    assert db.one("select to_regprocedure('audit.enable_tracking(regclass)')") is None
    assert_hypertable_layout(db)
    assert db.audit_rows() == expected

    run_online(ts_engine, install)
    run_online(ts_engine, track_account)
    db.run("insert into public.account (id, name) values (2, 'Again')")

    assert_hypertable_layout(db)
    oid = db.oid("public.account")
    assert db.audit_rows() == [
        *expected,
        (
            "INSERT",
            record_id(oid, "2"),
            None,
            oid,
            "public",
            "account",
            {"id": 2, "name": "Again"},
            None,
        ),
    ]
    assert rows_outside_chunks(db) == 0


def test_uninstall_refuses_to_drop_history_unless_told(db: Db, ts_engine: sa.Engine) -> None:
    db.run("create extension timescaledb")
    create_account(db)
    run_online(ts_engine, install)
    run_online(ts_engine, track_account)
    account_scenario(db)

    with pytest.raises(sa.exc.DBAPIError) as refused:
        run_online(ts_engine, uninstall)
    assert refused.value.orig.pgcode == "2BP01"  # type: ignore[union-attr]
    assert refused.value.orig.diag.message_primary == (  # type: ignore[union-attr]
        "uninstall_audit: audit.record_version holds recorded history; refusing to destroy it"
    )
    assert db.one("select count(*) from audit.record_version") == 4

    run_online(ts_engine, uninstall_dropping_history)

    assert db.one("select to_regnamespace('audit')") is None
    assert db.one("select count(*) from _timescaledb_catalog.hypertable") == 0
    assert (
        db.rows(
            "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = '_timescaledb_internal' and c.relname like '\\_hyper\\_%'"
        )
        == []
    )
    assert db.rows("select tgname::text from pg_trigger where tgname like 'audit%'") == []
    db.run("insert into public.account (id, name) values (3, 'Untracked')")


def test_uninstall_without_history_needs_no_choice(db: Db, ts_engine: sa.Engine) -> None:
    db.run("create extension timescaledb")
    run_online(ts_engine, install)

    run_online(ts_engine, uninstall)

    assert db.one("select to_regnamespace('audit')") is None
    assert db.one("select count(*) from _timescaledb_catalog.hypertable") == 0


def test_install_converts_an_audit_installed_before_timescaledb(
    db: Db, ts_engine: sa.Engine
) -> None:
    create_account(db)
    run_online(ts_engine, install)
    run_online(ts_engine, track_account)
    expected = account_scenario(db)
    assert "brin" in " ".join(record_version_indexes(db))

    db.run("create extension timescaledb")
    run_online(ts_engine, install)

    assert_hypertable_layout(db)
    assert db.audit_rows() == expected
    assert rows_outside_chunks(db) == 0
    db.run("insert into public.account (id, name) values (1, 'Back')")
    assert db.audit_rows()[-1][:2] == ("INSERT", record_id(db.oid("public.account"), "1"))
    assert db.one("select max(id) from audit.record_version") == 5


def test_offline_sql_gives_the_same_database(
    ts_server: ThrowawayPostgres, ts_engine: sa.Engine, db: Db
) -> None:
    db.run("create extension timescaledb")
    run_online(ts_engine, install)

    with fresh_database(ts_server) as other_url, connect(other_url) as offline_db:
        offline_db.run("create extension timescaledb")
        other = sa.engine.make_url(other_url).database
        assert other is not None
        apply_sql(ts_server, other, offline_sql(install))

        assert catalog_snapshot(offline_db) == catalog_snapshot(db)
        assert_hypertable_layout(offline_db)

        apply_sql(ts_server, other, offline_sql(uninstall_dropping_history))
        assert offline_db.one("select to_regnamespace('audit')") is None
        assert offline_db.one("select count(*) from _timescaledb_catalog.hypertable") == 0


def test_install_and_tracking_work_under_the_apache_license(
    ts_apache_server: ThrowawayPostgres,
) -> None:
    """Hypertables are Apache-licensed: the install needs no community feature."""
    with fresh_database(ts_apache_server) as url, connect(url) as db:
        engine = sa.create_engine(url)
        try:
            db.run("create extension timescaledb")
            assert db.one("select current_setting('timescaledb.license')") == "apache"
            create_account(db)
            run_online(engine, install)
            run_online(engine, track_account)

            expected = account_scenario(db)

            assert_hypertable_layout(db)
            assert db.audit_rows() == expected
            assert rows_outside_chunks(db) == 0
        finally:
            engine.dispose()
