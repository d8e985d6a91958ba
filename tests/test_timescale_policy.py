"""TimescaleDB options of the audit hypertable: chunk interval, compression, retention.

``op.install_audit(timescale={...})``, ``op.set_audit_timescale_policy()`` and
``op.convert_audit_to_hypertable()`` emit sql/timescale_policy.sql: a pure planning
function (created in pg_temp for the length of the operation) decides the TimescaleDB
calls from the state a DO block reads, then the block runs them.

The first part runs everywhere: it calls the planning function on a plain server with
every state it can meet, and runs the operations where TimescaleDB is missing. The second
part needs TimescaleDB (like test_timescale.py) and is skipped without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic_project import Project, autogenerate, migration_body
from audit_helpers import (
    Db,
    account_scenario,
    apply_sql,
    audited_metadata,
    catalog_snapshot,
    connect,
    create_account,
    offline_sql,
    run_online,
    track_account,
)
from timescale_helpers import fresh_database, record_version_indexes

from hyper_audit_alembic import sql
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.errors import AuditOperationError
from hyper_audit_alembic.migration.ops import SetAuditTimescalePolicyOp

ALL = {"chunk_interval": "1 day", "compress_after": "30 days", "retention": "5 years"}


def install_timescale(**options: Any) -> Any:
    def script(operations: Operations) -> None:
        operations.install_audit(timescale=options)  # type: ignore[attr-defined]

    return script


def set_policy(**options: Any) -> Any:
    def script(operations: Operations) -> None:
        operations.set_audit_timescale_policy(**options)  # type: ignore[attr-defined]

    return script


def convert(**options: Any) -> Any:
    def script(operations: Operations) -> None:
        operations.convert_audit_to_hypertable(**options)  # type: ignore[attr-defined]

    return script


def install(operations: Operations) -> None:
    operations.install_audit()  # type: ignore[attr-defined]


def db_error(engine: sa.Engine, script: Any) -> tuple[str, str | None, str]:
    """(message, hint, SQLSTATE) of the database error ``script`` raises."""
    with pytest.raises(sa.exc.DBAPIError) as raised:
        run_online(engine, script)
    orig = raised.value.orig
    return orig.diag.message_primary, orig.diag.message_hint, orig.pgcode  # type: ignore[union-attr]


# --- the planning function, on any server ------------------------------------------------

PLAN_ARGUMENTS = [
    "caller",
    "phase",
    "timescale_schema",
    "extension_version",
    "license",
    "layout",
    "plain_keys",
    "plain_indexes",
    "compression_enabled",
    "current_chunk_interval",
    "current_compress_after",
    "current_retention",
    "set_chunk_interval",
    "new_chunk_interval",
    "set_compress_after",
    "new_compress_after",
    "set_retention",
    "new_retention",
]

#: A hypertable without policies on TimescaleDB 2.28 (community license).
HYPERTABLE: dict[str, Any] = {
    "caller": "op.x",
    "phase": "policy",
    "timescale_schema": "public",
    "extension_version": "2.28.3",
    "license": "timescale",
    "layout": "hypertable",
    "plain_keys": None,
    "plain_indexes": None,
    "compression_enabled": False,
    "current_chunk_interval": "7 days",
    "current_compress_after": None,
    "current_retention": None,
    "set_chunk_interval": False,
    "new_chunk_interval": None,
    "set_compress_after": False,
    "new_compress_after": None,
    "set_retention": False,
    "new_retention": None,
}


@pytest.fixture
def planner(db_url: str) -> Iterator[Db]:
    """A connection with pg_temp.hyper_audit_timescale_plan(), as the operations create it."""
    with connect(db_url) as db:
        create, drop = sql.statements("timescale_plan")
        db.run(create)
        yield db
        db.run(drop)


def plan(db: Db, **state: Any) -> list[str]:
    values = {**HYPERTABLE, **state}
    return list(
        db.one(
            "select pg_temp.hyper_audit_timescale_plan("
            "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [values[name] for name in PLAN_ARGUMENTS],
        )
    )


def plan_error(db: Db, **state: Any) -> tuple[str, str | None, str]:
    values = {**HYPERTABLE, **state}
    error = db.error(
        "select pg_temp.hyper_audit_timescale_plan("
        "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [values[name] for name in PLAN_ARGUMENTS],
    )
    return error.diag.message_primary, error.diag.message_hint, error.pgcode


COMPRESS = (
    "alter table audit.record_version set (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'table_oid', timescaledb.compress_orderby = 'ts'"
)


#: Retention is a job of audit.apply_retention(), which records each chunk in the seal chain
#: before it drops it (TimescaleDB's own retention policy keeps no record).
APPLY_RETENTION_JOB = (
    "select public.add_job('audit.apply_retention', interval '1 day', "
    "config => pg_catalog.jsonb_build_object('drop_after', '5 years'))"
)
#: Removing it removes TimescaleDB's policy too, where one is left from an earlier release.
REMOVE_RETENTION = [
    "select public.delete_job(j.job_id) from timescaledb_information.jobs j"
    " where j.proc_schema = 'audit' and j.proc_name = 'apply_retention'",
    "select public.remove_retention_policy('audit.record_version', if_exists => true)",
]


def test_plan_of_every_policy_on_a_new_hypertable(planner: Db) -> None:
    assert plan(
        planner,
        set_chunk_interval=True,
        new_chunk_interval="1 day",
        set_compress_after=True,
        new_compress_after="30 days",
        set_retention=True,
        new_retention="5 years",
    ) == [
        "select public.set_chunk_time_interval('audit.record_version', interval '1 day')",
        COMPRESS + ", timescaledb.sparse_index = 'bloom(record_id), bloom(old_record_id)')",
        "select public.add_compression_policy('audit.record_version', "
        "compress_after => interval '30 days')",
        APPLY_RETENTION_JOB,
    ]


def test_plan_leaves_out_the_sparse_index_option_before_timescaledb_2_22(planner: Db) -> None:
    assert plan(
        planner,
        extension_version="2.21.3",
        set_compress_after=True,
        new_compress_after="30 days",
    ) == [
        COMPRESS + ")",
        "select public.add_compression_policy('audit.record_version', "
        "compress_after => interval '30 days')",
    ]


def test_plan_replaces_and_removes_existing_policies(planner: Db) -> None:
    existing = {
        "compression_enabled": True,
        "current_compress_after": "30 days",
        "current_retention": "5 years",
    }
    assert plan(
        planner,
        **existing,
        set_compress_after=True,
        new_compress_after="60 days",
        set_retention=True,
        new_retention=None,
    ) == [
        "select public.remove_compression_policy('audit.record_version', if_exists => true)",
        "select public.add_compression_policy('audit.record_version', "
        "compress_after => interval '60 days')",
        *REMOVE_RETENTION,
    ]
    # Equal intervals written differently are the same ('1 month' is '1 mon'), but 720 hours
    # are not a month of 30 days to TimescaleDB's policy: they are replaced.
    assert plan(
        planner,
        **existing,
        current_chunk_interval="1 mon",
        set_chunk_interval=True,
        new_chunk_interval="1 month",
        set_compress_after=True,
        new_compress_after="720 hours",
    ) == [
        "select public.remove_compression_policy('audit.record_version', if_exists => true)",
        "select public.add_compression_policy('audit.record_version', "
        "compress_after => interval '720:00:00')",
    ]
    assert plan(planner, **existing, set_compress_after=True, new_compress_after="30 days") == []
    assert plan(planner, **existing) == []


def test_plan_of_the_conversion_of_a_plain_table(planner: Db) -> None:
    plain = {
        "layout": "plain",
        "timescale_schema": "Time Series",
        "plain_keys": ["record_version_pkey"],
        "plain_indexes": ["record_version_record_id", "record_version_ts"],
    }
    converts = [
        "alter table audit.record_version drop constraint record_version_pkey",
        "drop index audit.record_version_record_id",
        "drop index audit.record_version_ts",
    ]
    assert plan(
        planner, **plain, phase="convert", set_chunk_interval=True, new_chunk_interval="30 days"
    ) == [
        *converts,
        "select \"Time Series\".create_hypertable('audit.record_version', 'ts', "
        "chunk_time_interval => interval '30 days', create_default_indexes => false, "
        "migrate_data => true)",
    ]
    assert plan(planner, **plain, phase="install") == [
        *converts,
        "select \"Time Series\".create_hypertable('audit.record_version', 'ts', "
        "create_default_indexes => false, migrate_data => true)",
    ]
    # A new install is created and converted by indexes.sql; a hypertable stays.
    assert plan(planner, layout="missing", phase="install") == []
    assert plan(planner, phase="install") == []
    assert plan(planner, phase="convert") == []


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            {"timescale_schema": None},
            (
                "op.x: the timescaledb extension is not installed in this database",
                'Create it first (op.execute("create extension if not exists timescaledb") '
                "before this step), or leave out the TimescaleDB options.",
                "0A000",
            ),
        ),
        (
            {"layout": "partitioned"},
            (
                "op.x: audit.record_version is natively partitioned (the layout of "
                "op.install_audit(partitioned=...)), so it cannot be a hypertable",
                "Keep the partitioned layout and its audit.maintain_partitions(), or move the "
                "history into a new audit table by hand.",
                "0A000",
            ),
        ),
        (
            {"layout": "missing", "phase": "convert"},
            (
                "op.x: the audit trail is not installed in this database",
                "Run op.install_audit() first: where the timescaledb extension is installed it "
                "makes audit.record_version a hypertable itself.",
                "42P01",
            ),
        ),
        (
            {"layout": "plain"},
            (
                "op.x: audit.record_version is not a hypertable",
                "op.convert_audit_to_hypertable() converts it, keeping every row.",
                "55000",
            ),
        ),
        (
            {"license": "apache", "set_retention": True, "new_retention": "5 years"},
            (
                "op.x: compression and retention of the audit hypertable need the TimescaleDB "
                "community license, but this server runs the Apache-licensed edition "
                "(timescaledb.license = apache)",
                "Set timescaledb.license = 'timescale' in postgresql.conf (or with ALTER "
                "SYSTEM) and restart the server: the community license is free for "
                "self-hosting. Or leave out compress_after and retention; chunk_interval "
                "works under either license.",
                "0A000",
            ),
        ),
        (
            {"set_compress_after": True, "new_compress_after": "-1 day"},
            ("op.x: compress_after must be a positive interval, not -1 days", None, "22023"),
        ),
        (
            {"set_chunk_interval": True, "new_chunk_interval": None},
            (
                "op.x: chunk_interval cannot be None; a hypertable always has one",
                None,
                "22023",
            ),
        ),
    ],
)
def test_plan_refuses_with_the_fix(
    planner: Db, state: dict[str, Any], expected: tuple[str, str | None, str]
) -> None:
    assert plan_error(planner, **state) == expected


def test_apache_license_allows_the_chunk_interval_and_removals(planner: Db) -> None:
    assert plan(
        planner,
        license="apache",
        set_chunk_interval=True,
        new_chunk_interval="1 day",
        set_compress_after=True,
        new_compress_after=None,
    ) == ["select public.set_chunk_time_interval('audit.record_version', interval '1 day')"]


# --- the operations, on a server without TimescaleDB ------------------------------------


@pytest.mark.parametrize(
    ("script", "caller"),
    [
        (install_timescale(**ALL), "op.install_audit"),
        (set_policy(retention="1 year"), "op.set_audit_timescale_policy"),
        (convert(chunk_interval="1 day"), "op.convert_audit_to_hypertable"),
    ],
)
def test_without_timescaledb_the_operations_fail_with_the_fix(
    engine: sa.Engine, db_url: str, script: Any, caller: str
) -> None:
    assert db_error(engine, script) == (
        f"{caller}: the timescaledb extension is not installed in this database",
        'Create it first (op.execute("create extension if not exists timescaledb") before '
        "this step), or leave out the TimescaleDB options.",
        "0A000",
    )
    with connect(db_url) as db:
        assert db.one("select to_regnamespace('audit')") is None


def test_offline_sql_carries_the_values_into_the_do_block() -> None:
    text = offline_sql(set_policy(compress_after="30 days", retention=None))
    create, drop = sql.statements("timescale_plan")
    assert (
        text.index("\n" + create + ";\n")
        < text.index("do $hyper_audit$")
        < text.index(drop + ";\n")
    )
    assert "    caller constant text := 'op.set_audit_timescale_policy';\n" in text
    assert "    phase constant text := 'policy';\n" in text
    assert "    set_chunk_interval constant boolean := false;\n" in text
    assert "    new_chunk_interval constant interval := null;\n" in text
    assert "    set_compress_after constant boolean := true;\n" in text
    assert "    new_compress_after constant interval := '30 days';\n" in text
    assert "    set_retention constant boolean := true;\n" in text
    assert "    new_retention constant interval := null;\n" in text
    assert (
        "    managed_indexes constant text[] := array['record_version_ts', "
        "'record_version_record_id', 'record_version_old_record_id', "
        "'record_version_table_oid']::text[];\n"
    ) in text
    assert "/*" not in text.replace(create, "").replace(drop, "")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"retention": "5 years'; drop table x; --"},
            "op.install_audit: retention must be an interval written as text, such as "
            "'30 days' or '1 month', not \"5 years'; drop table x; --\"",
        ),
        (
            {"chunk_interval": None},
            "op.install_audit: chunk_interval cannot be None; a hypertable always has one",
        ),
        (
            {"compress": "30 days"},
            "op.install_audit: unknown TimescaleDB option 'compress'; the options are "
            "chunk_interval, compress_after, retention",
        ),
    ],
)
def test_timescale_options_are_checked_before_any_sql(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(AuditOperationError) as refused:
        offline_sql(install_timescale(**options))
    assert str(refused.value) == message


def test_policy_op_renders_and_reverses_with_the_existing_values() -> None:
    change = SetAuditTimescalePolicyOp(
        {"compress_after": "60 days", "retention": None},
        {"compress_after": "30 days", "retention": "5 years"},
    )
    assert change.arguments() == [
        "compress_after='60 days'",
        "retention=None",
        "existing_compress_after='30 days'",
        "existing_retention='5 years'",
    ]
    assert change.reverse().arguments() == [
        "compress_after='30 days'",
        "retention='5 years'",
        "existing_compress_after='60 days'",
        "existing_retention=None",
    ]
    assert change.to_diff_tuple() == (
        "set_audit_timescale_policy",
        (("compress_after", "60 days", "30 days"), ("retention", None, "5 years")),
    )
    # A hand-written change without the previous value cannot be undone for that option.
    assert SetAuditTimescalePolicyOp({"retention": "1 year"}, {}).reverse().arguments() == []


# --- with TimescaleDB --------------------------------------------------------------------


@pytest.fixture(scope="module")
def hypertable_indexes(ts_server: ThrowawayPostgres) -> list[str]:
    """The indexes of the hypertable that op.install_audit() makes, read from one."""
    with fresh_database(ts_server) as url, connect(url) as db:
        db.run("create extension timescaledb")
        engine = sa.create_engine(url)
        try:
            run_online(engine, install)
        finally:
            engine.dispose()
        return record_version_indexes(db)


@pytest.fixture
def ts_db(ts_url: str) -> Iterator[Db]:
    with connect(ts_url) as db:
        db.run("create extension timescaledb")
        yield db


def policy(db: Db) -> dict[str, Any]:
    """The hypertable's options as TimescaleDB's catalog shows them."""
    jobs = dict(
        db.rows(
            "select proc_name::text, config - 'hypertable_id' from timescaledb_information.jobs"
            " where (hypertable_schema = 'audit' and hypertable_name = 'record_version')"
            " or proc_schema = 'audit'"
        )
    )
    return {
        "chunk_interval": db.one(
            "select time_interval::text from timescaledb_information.dimensions"
            " where hypertable_schema = 'audit' and hypertable_name = 'record_version'"
        ),
        # Compression settings, once compression is enabled.
        "compression": db.rows(
            "select s.segmentby, s.orderby, s.index from"
            " timescaledb_information.hypertable_compression_settings s"
            " join timescaledb_information.hypertables h on h.compression_enabled"
            " and h.hypertable_schema = 'audit' and h.hypertable_name = 'record_version'"
            " where s.hypertable = 'audit.record_version'::regclass"
        ),
        **jobs,
    }


COMPRESSION_SETTINGS = [
    (
        "table_oid",
        "ts",
        [
            {"type": "bloom", "column": "record_id", "source": "config"},
            {"type": "bloom", "column": "old_record_id", "source": "config"},
            {"type": "minmax", "column": "ts", "source": "orderby"},
            {"type": "firstlast", "column": "ts", "source": "orderby"},
        ],
    )
]


def test_install_with_every_option_and_tracking_as_before(
    ts_db: Db, ts_engine: sa.Engine, hypertable_indexes: list[str]
) -> None:
    create_account(ts_db)
    run_online(ts_engine, install_timescale(**ALL))
    run_online(ts_engine, track_account)

    assert policy(ts_db) == {
        "chunk_interval": "1 day",
        "compression": COMPRESSION_SETTINGS,
        "policy_compression": {"compress_after": "30 days"},
        "apply_retention": {"drop_after": "5 years"},
    }
    assert record_version_indexes(ts_db) == hypertable_indexes
    expected = account_scenario(ts_db)
    assert ts_db.audit_rows() == expected


def test_set_policy_changes_and_its_reverse_restores(ts_db: Db, ts_engine: sa.Engine) -> None:
    run_online(ts_engine, install_timescale(compress_after="30 days", retention="5 years"))
    before = policy(ts_db)
    change = SetAuditTimescalePolicyOp(
        {"chunk_interval": "14 days", "compress_after": "60 days", "retention": None},
        {"chunk_interval": "7 days", "compress_after": "30 days", "retention": "5 years"},
    )

    run_online(ts_engine, lambda op: op.invoke(change))
    assert policy(ts_db) == {
        "chunk_interval": "14 days",
        "compression": COMPRESSION_SETTINGS,
        "policy_compression": {"compress_after": "60 days"},
    }
    run_online(ts_engine, lambda op: op.invoke(change.reverse()))
    assert policy(ts_db) == before


def test_convert_keeps_every_row_and_uses_the_chunk_interval(
    ts_url: str, ts_engine: sa.Engine, hypertable_indexes: list[str]
) -> None:
    with connect(ts_url) as db:
        create_account(db)
        run_online(ts_engine, install)
        run_online(ts_engine, track_account)
        db.run("insert into public.account select g, 'n' || g from generate_series(1, 60) g")
        db.run("update audit.record_version set ts = ts - id * interval '1 day'")
        rows = db.audit_rows()
        db.run("create extension timescaledb")

        run_online(ts_engine, convert(chunk_interval="30 days", compress_after="60 days"))

        assert db.audit_rows() == rows
        assert db.one("select count(*) from only audit.record_version") == 0
        assert db.rows(
            "select distinct (range_end - range_start)::text from timescaledb_information.chunks"
        ) == [("30 days",)]
        assert policy(db)["policy_compression"] == {"compress_after": "60 days"}
        assert record_version_indexes(db) == hypertable_indexes
        db.run("insert into public.account values (100, 'After')")
        assert db.one("select max(id) from audit.record_version") == 61
        # Converting again only checks: nothing left to convert, the policy is there.
        before = catalog_snapshot(db)
        run_online(ts_engine, convert(compress_after="60 days"))
        assert catalog_snapshot(db) == before


def test_install_with_options_converts_an_existing_install_with_the_chunk_interval(
    ts_url: str, ts_engine: sa.Engine, hypertable_indexes: list[str]
) -> None:
    with connect(ts_url) as db:
        create_account(db)
        run_online(ts_engine, install)
        run_online(ts_engine, track_account)
        expected = account_scenario(db)
        db.run("create extension timescaledb")

        run_online(ts_engine, install_timescale(chunk_interval="1 day"))

        assert db.audit_rows() == expected
        assert db.rows(
            "select distinct (range_end - range_start)::text from timescaledb_information.chunks"
        ) == [("1 day",)]
        assert record_version_indexes(db) == hypertable_indexes


def test_compression_and_retention_need_the_community_license(
    ts_apache_server: ThrowawayPostgres,
) -> None:
    with fresh_database(ts_apache_server) as url, connect(url) as db:
        engine = sa.create_engine(url)
        try:
            db.run("create extension timescaledb")
            message, hint, code = db_error(engine, install_timescale(**ALL))
            assert (code, message) == (
                "0A000",
                "op.install_audit: compression and retention of the audit hypertable need the "
                "TimescaleDB community license, but this server runs the Apache-licensed "
                "edition (timescaledb.license = apache)",
            )
            assert hint is not None and "timescaledb.license = 'timescale'" in hint
            assert db.one("select to_regnamespace('audit')") is None

            run_online(engine, install_timescale(chunk_interval="1 day"))
            assert policy(db) == {"chunk_interval": "1 day", "compression": []}
        finally:
            engine.dispose()


def test_partitioned_layout_and_timescaledb_exclude_each_other(
    ts_url: str, ts_engine: sa.Engine
) -> None:
    with connect(ts_url) as db:
        db.run("create extension timescaledb")
        message, _, _ = db_error(ts_engine, lambda op: op.install_audit(partitioned=True))
        assert message == (
            "op.install_audit(partitioned=...): the timescaledb extension is installed in this "
            "database, and with it audit.record_version is a hypertable"
        )
        assert db.one("select to_regnamespace('audit')") is None


def test_a_partitioned_layout_stays_when_timescaledb_arrives_later(
    ts_url: str, ts_engine: sa.Engine
) -> None:
    with connect(ts_url) as db:
        create_account(db)
        run_online(ts_engine, lambda op: op.install_audit(partitioned={"premake": 1}))
        run_online(ts_engine, track_account)
        expected = account_scenario(db)
        db.run("create extension timescaledb")

        run_online(ts_engine, install)

        assert (
            db.one(
                "select relkind::text from pg_class where oid = 'audit.record_version'::regclass"
            )
            == "p"
        )
        assert db.audit_rows() == expected
        assert db_error(ts_engine, set_policy(retention="1 year"))[0] == (
            "op.set_audit_timescale_policy: audit.record_version is natively partitioned (the "
            "layout of op.install_audit(partitioned=...)), so it cannot be a hypertable"
        )


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def test_lookups_use_indexes_and_bloom_filters_on_compressed_chunks(
    ts_db: Db, ts_engine: sa.Engine
) -> None:
    run_online(ts_engine, install_timescale(chunk_interval="7 days", compress_after="30 days"))
    ts_db.run(
        "insert into audit.record_version (record_id, old_record_id, op, ts, table_oid,"
        " table_schema, table_name, record, old_record)"
        " select gen_random_uuid(), gen_random_uuid(), 'UPDATE', ts, 100000 + g % 300,"
        " 'public', 't', '{}', '{}' from generate_series(1, 24000) g,"
        " lateral (select case when g <= 20000 then now() - interval '80 days'"
        "   + g * interval '1 minute' else now() - interval '1 day' + g * interval '1 ms' end"
        " as ts) t"
    )
    job = ts_db.one(
        "select job_id from timescaledb_information.jobs where proc_name = 'policy_compression'"
        " and hypertable_name = 'record_version'"
    )
    ts_db.run(f"call run_job({int(job)})")
    chunks = dict(
        ts_db.rows(
            "select chunk_name::text, is_compressed from timescaledb_information.chunks"
            " where hypertable_name = 'record_version'"
        )
    )
    assert sorted(set(chunks.values())) == [False, True]
    ts_db.run("analyze audit.record_version")
    wanted, table_oid = ts_db.one(
        "select array[record_id::text, table_oid::text] from audit.record_version where id = 1234"
    )

    def scans(query: str, params: list[Any]) -> dict[str, str]:
        """For each chunk: how it is read (index name, or the compressed chunk's filter)."""
        (found,) = ts_db.one(f"explain (format json) {query}", params)
        result: dict[str, str] = {}
        for node in _plan_nodes(found["Plan"]):
            relation = node.get("Relation Name", "")
            chunk = next((c for c in chunks if node.get("Index Name", "").startswith(c)), None)
            if chunk is not None:
                result.setdefault(chunk, "")
                result[chunk] += " " + node["Index Name"].removeprefix(chunk + "_")
            elif relation.startswith("compress_hyper_"):
                result[relation] = node.get("Filter", "") + " " + node.get("Index Name", "")
        return result

    by_record = scans(
        "select * from audit.record_version where record_id = %s or old_record_id = %s"
        " order by ts, id",
        [wanted, wanted],
    )
    by_table = scans(
        "select * from audit.record_version where table_oid = %s order by ts, id", [table_oid]
    )

    uncompressed = [c for c, compressed in chunks.items() if not compressed]
    compressed_reads = [read for name, read in by_record.items() if name.startswith("compress_")]
    assert len(compressed_reads) == sum(chunks.values())
    for read in compressed_reads:
        # The bloom sparse indexes of both id columns decide which batches to decompress.
        assert "bloom" in read and "record_id" in read and "old_record_id" in read, read
    for chunk in uncompressed:
        assert sorted(by_record[chunk].split()) == [
            "record_version_old_record_id",
            "record_version_record_id",
        ]
        assert by_table[chunk].split() == ["record_version_table_oid"]
    compressed_by_table = [read for name, read in by_table.items() if name.startswith("compress_")]
    assert len(compressed_by_table) == sum(chunks.values())
    for read in compressed_by_table:
        # Segmented by table_oid: the compressed chunk's own index finds the batches.
        assert read.split()[-1].startswith("compress_hyper_"), read
        assert "_table_oid_" in read.split()[-1], read
    assert (
        ts_db.one(
            "select count(*) from audit.record_version where record_id = %s or old_record_id = %s",
            [wanted, wanted],
        )
        == 1
    )


def test_offline_install_with_options_gives_the_same_database(
    ts_server: ThrowawayPostgres, ts_db: Db, ts_engine: sa.Engine
) -> None:
    script = install_timescale(**ALL)
    run_online(ts_engine, script)
    with fresh_database(ts_server) as other_url, connect(other_url) as offline:
        offline.run("create extension timescaledb")
        name = sa.engine.make_url(other_url).database
        assert name is not None
        apply_sql(ts_server, name, offline_sql(script))
        assert catalog_snapshot(offline) == catalog_snapshot(ts_db)
        assert policy(offline) == policy(ts_db)


def test_autogenerate_installs_and_then_follows_the_declared_policy(
    ts_db: Db, ts_engine: sa.Engine
) -> None:
    metadata = audited_metadata()
    declared = {"timescale": {"compress_after": "30 days", "retention": "5 years"}}
    with ts_engine.begin() as connection:
        upgrade, _ = autogenerate(connection, metadata, hyper_audit=declared)
        assert upgrade[0] == (
            "op.install_audit(timescale={'compress_after': '30 days', 'retention': '5 years'})"
        )
        metadata.create_all(connection)
        operations = Operations(MigrationContext.configure(connection))
        operations.install_audit(timescale=declared["timescale"])  # type: ignore[attr-defined]
        operations.enable_tracking("account")  # type: ignore[attr-defined]
        assert autogenerate(connection, metadata, hyper_audit=declared) == ([], [])

        changed = {"timescale": {"chunk_interval": "1 day", "compress_after": "1 month"}}
        assert autogenerate(connection, metadata, hyper_audit=changed) == (
            [
                "op.set_audit_timescale_policy(chunk_interval='1 day', compress_after='1 month', "
                "existing_chunk_interval='7 days', existing_compress_after='30 days')"
            ],
            [
                "op.set_audit_timescale_policy(chunk_interval='7 days', compress_after='30 "
                "days', existing_chunk_interval='1 day', existing_compress_after='1 month')"
            ],
        )


MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    __audited__ = True

    id: Mapped[int] = mapped_column(primary_key=True)
"""

PLUGINS_LINE = '    autogenerate_plugins=["alembic.autogenerate.*", "hyper_audit"],\n'


def test_project_policy_change_is_a_migration_and_check_stays_clean(
    tmp_path: Path, ts_url: str, ts_db: Db
) -> None:
    project = Project.create(tmp_path, ts_url, MODELS)
    project.edit_env(
        PLUGINS_LINE,
        PLUGINS_LINE + '    hyper_audit={"timescale": {"compress_after": "30 days"}},\n',
    )
    first = project.revision("accounts")
    assert migration_body(first, "upgrade")[0] == (
        "op.install_audit(timescale={'compress_after': '30 days'})"
    )
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"

    project.edit_env('{"compress_after": "30 days"}', '{"retention": "2 years"}')
    second = project.revision("retention")
    # compress_after is no longer declared: left as it is.
    assert migration_body(second, "upgrade") == [
        "op.set_audit_timescale_policy(retention='2 years', existing_retention=None)"
    ]
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    assert policy(ts_db)["apply_retention"] == {"drop_after": "2 years"}
    project.downgrade("-1")
    assert "apply_retention" not in policy(ts_db)
    assert policy(ts_db)["policy_compression"] == {"compress_after": "30 days"}
