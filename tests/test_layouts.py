"""The partitioned layout of ``audit.record_version`` (no TimescaleDB needed).

``op.install_audit(partitioned={...})`` range-partitions the history by ``ts`` with a
default partition; ``audit.maintain_partitions()`` drains it, creates partitions ahead and
applies the retention; ``op.set_audit_partitioning()`` changes the settings, and
autogenerate compares them with the ones env.py declares. Tracking writes the same rows in
every layout.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.util import CommandError
from alembic_project import Project, autogenerate, migration_body
from audit_helpers import (
    Db,
    account_scenario,
    apply_sql,
    audited_metadata,
    catalog_snapshot,
    connect,
    create_account,
    extra_database,
    offline_sql,
    record_id,
    run_online,
    track_account,
)

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.errors import AuditOperationError
from hyper_audit_alembic.migration.ops import SetAuditPartitioningOp

# --- helpers -----------------------------------------------------------------------------


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with connect(db_url) as db:
        yield db


def install(operations: Operations) -> None:
    operations.install_audit()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def partitioned_indexes(pg_server: ThrowawayPostgres) -> list[str]:
    """The indexes of the partitioned table: exactly those of a plain install (read from
    one), as partitioned indexes, with ts in the primary key."""
    name = f"plain_{uuid.uuid4().hex[:12]}"
    with extra_database(pg_server, name):
        engine = sa.create_engine(pg_server.url(name))
        try:
            run_online(engine, install)
            with connect(pg_server.url(name)) as plain:
                found = indexes(plain)
        finally:
            engine.dispose()
    assert (
        "CREATE UNIQUE INDEX record_version_pkey ON audit.record_version USING btree (id)" in found
    )
    return sorted(
        definition.replace(" ON audit.", " ON ONLY audit.").replace("btree (id)", "btree (id, ts)")
        for definition in found
    )


def install_partitioned(**options: Any) -> Any:
    def script(operations: Operations) -> None:
        operations.install_audit(partitioned=options or True)  # type: ignore[attr-defined]

    return script


def set_partitioning(**options: Any) -> Any:
    def script(operations: Operations) -> None:
        operations.set_audit_partitioning(**options)  # type: ignore[attr-defined]

    return script


def add_history(db: Db, *timestamps: str, table_oid: int = 424242) -> None:
    """Audit rows written at the given times (as an old history would hold them)."""
    for n, ts in enumerate(timestamps):
        db.run(
            "insert into audit.record_version (record_id, op, ts, table_oid, table_schema,"
            " table_name, record) values (%s, 'INSERT', %s, %s, 'public', 'old', %s)",
            [str(uuid.uuid4()), ts, table_oid, json.dumps({"n": n})],
        )


def partitions(db: Db) -> list[tuple[str, str, str]]:
    """(partition, from, to) in UTC, oldest first."""
    return db.rows(
        "select partition::text, to_char(from_ts at time zone 'UTC', 'YYYY-MM-DD HH24:MI'),"
        " to_char(to_ts at time zone 'UTC', 'YYYY-MM-DD HH24:MI') from audit.partitions()"
    )


def maintain(db: Db) -> list[tuple[Any, ...]]:
    return db.rows("select * from audit.maintain_partitions()")


def in_default(db: Db) -> int:
    return int(db.one("select count(*) from audit.record_version_default"))


def indexes(db: Db) -> list[str]:
    return [
        row[0]
        for row in db.rows(
            "select pg_get_indexdef(indexrelid) from pg_index"
            " where indrelid = 'audit.record_version'::regclass order by 1"
        )
    ]


def settings(db: Db) -> tuple[Any, ...]:
    (row,) = db.rows(
        "select layout, partition_interval::text, premake, retention::text, retention_action"
        " from audit.settings"
    )
    return row


def db_error(engine: sa.Engine, script: Any) -> tuple[str, str | None]:
    """The (message, hint) of the database error ``script`` raises."""
    with pytest.raises(sa.exc.DBAPIError) as raised:
        run_online(engine, script)
    diag = raised.value.orig.diag  # type: ignore[union-attr]
    return diag.message_primary, diag.message_hint


# --- the layout --------------------------------------------------------------------------


def test_partitioned_install_creates_the_table_its_partitions_and_settings(
    db: Db, engine: sa.Engine, partitioned_indexes: list[str]
) -> None:
    run_online(engine, install_partitioned())

    assert (
        db.one("select relkind from pg_class where oid = 'audit.record_version'::regclass") == "p"
    )
    assert db.one("select pg_get_partkeydef('audit.record_version'::regclass)") == "RANGE (ts)"
    assert indexes(db) == partitioned_indexes
    assert db.rows(
        "select conname::text, pg_get_constraintdef(oid) from pg_constraint"
        " where conrelid = 'audit.record_version'::regclass and contype = 'p'"
    ) == [("record_version_pkey", "PRIMARY KEY (id, ts)")]
    assert (
        db.one(
            "select pg_get_expr(relpartbound, oid) from pg_class"
            " where oid = 'audit.record_version_default'::regclass"
        )
        == "DEFAULT"
    )
    assert settings(db) == ("partitioned", "1 mon", 3, None, "detach")
    # This month's partition and three more, contiguous, from the first of a month (UTC),
    # each named after its lower bound.
    found = partitions(db)
    assert len(found) == 4
    assert db.one(
        "select from_ts <= now() and now() < to_ts from audit.partitions() order by from_ts limit 1"
    )
    for (_, _, upper), (_, next_lower, _) in itertools.pairwise(found):
        assert upper == next_lower
    for name, lower, _ in found:
        assert lower.endswith("-01 00:00")
        assert name == "audit.record_version_p" + lower[:10].replace("-", "")
    # The layout's functions are the owner's: nobody else may run them.
    assert db.rows(
        "select p.oid::regprocedure::text, p.prosecdef from pg_proc p"
        " where p.pronamespace = 'audit'::regnamespace and p.proname in ('partitions',"
        " 'partition_bucket', 'create_partition', 'ensure_partitions', 'maintain_partitions')"
        " and not exists (select from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))"
        " a where a.grantee = 0) order by 1"
    ) == [
        ("audit.create_partition(timestamp with time zone)", False),
        ("audit.ensure_partitions(timestamp with time zone,timestamp with time zone)", False),
        ("audit.maintain_partitions()", True),
        ("audit.partition_bucket(timestamp with time zone,interval)", False),
        ("audit.partitions()", False),
    ]


@pytest.mark.parametrize("layout", ["plain", "partitioned"])
def test_account_history_is_the_same_in_every_layout(
    db: Db, engine: sa.Engine, layout: str
) -> None:
    create_account(db)
    run_online(engine, install if layout == "plain" else install_partitioned())
    run_online(engine, track_account)

    expected = account_scenario(db)

    assert db.audit_rows() == expected
    if layout == "partitioned":
        assert in_default(db) == 0
        assert db.one("select count(*) from only audit.record_version") == 0


def test_weekly_partitions_start_on_mondays(db: Db, engine: sa.Engine) -> None:
    run_online(engine, install_partitioned(interval="7 days", premake=1))

    found = db.rows(
        "select extract(isodow from from_ts at time zone 'UTC')::int, (to_ts - from_ts)::text"
        " from audit.partitions()"
    )
    assert found == [(1, "7 days"), (1, "7 days")]


# --- maintenance -------------------------------------------------------------------------


def test_rows_without_a_partition_wait_in_the_default_partition_until_drained(
    db: Db, engine: sa.Engine, partitioned_indexes: list[str]
) -> None:
    run_online(engine, install_partitioned())
    premade = partitions(db)
    add_history(db, "2021-03-15 10:00+00", "2021-03-31 23:59:59+00", "2021-05-02 00:00+00")
    rows = db.audit_rows()
    assert in_default(db) == 3

    assert maintain(db) == [
        ("drained", "audit.record_version_p20210301", 2),
        ("drained", "audit.record_version_p20210501", 1),
    ]

    assert in_default(db) == 0
    assert db.audit_rows() == rows
    assert partitions(db) == [
        ("audit.record_version_p20210301", "2021-03-01 00:00", "2021-04-01 00:00"),
        ("audit.record_version_p20210501", "2021-05-01 00:00", "2021-06-01 00:00"),
        *premade,
    ]
    # The new partitions carry every index of the table.
    assert db.one(
        "select count(*) from pg_index where indrelid = 'audit.record_version_p20210301'::regclass"
    ) == len(partitioned_indexes)

    # Nothing left to do: a second run changes nothing.
    before = catalog_snapshot(db)
    assert maintain(db) == []
    assert catalog_snapshot(db) == before


def test_a_changed_interval_never_overlaps_existing_partitions(db: Db, engine: sa.Engine) -> None:
    run_online(engine, install_partitioned())
    add_history(db, "2021-03-15 10:00+00")
    maintain(db)
    run_online(engine, set_partitioning(interval="7 days"))
    # Weekly partitions run Monday to Monday: the week of 2021-04-01 starts on 2021-03-29,
    # inside March's partition, so its partition starts where March's ends.
    add_history(db, "2021-04-01 12:00+00", "2021-04-05 00:00+00")

    assert maintain(db) == [
        ("drained", "audit.record_version_p20210401", 1),
        ("drained", "audit.record_version_p20210405", 1),
    ]
    assert partitions(db)[:3] == [
        ("audit.record_version_p20210301", "2021-03-01 00:00", "2021-04-01 00:00"),
        ("audit.record_version_p20210401", "2021-04-01 00:00", "2021-04-05 00:00"),
        ("audit.record_version_p20210405", "2021-04-05 00:00", "2021-04-12 00:00"),
    ]


def test_retention_detaches_by_default_and_drops_only_when_told(db: Db, engine: sa.Engine) -> None:
    run_online(engine, install_partitioned())
    add_history(db, "2021-03-15 10:00+00", "2021-05-02 00:00+00")
    maintain(db)
    current = [name for name, _, _ in partitions(db)][2:]

    # No retention configured: old partitions stay, however old.
    assert maintain(db) == []
    assert db.one("select count(*) from audit.record_version") == 2

    run_online(engine, set_partitioning(retention="1 year"))
    assert maintain(db) == [
        ("detached", "audit.record_version_p20210301", None),
        ("detached", "audit.record_version_p20210501", None),
    ]
    assert [name for name, _, _ in partitions(db)] == current
    assert db.one("select count(*) from audit.record_version") == 0
    # A detached partition is a table of its own that keeps its rows.
    assert db.rows(
        "select relkind::text, relispartition from pg_class"
        " where oid = 'audit.record_version_p20210301'::regclass"
    ) == [("r", False)]
    assert db.one("select count(*) from audit.record_version_p20210301") == 1

    run_online(engine, set_partitioning(retention_action="drop"))
    add_history(db, "2021-03-16 00:00+00")
    # The old name is taken by the detached table: the new partition gets a suffix.
    assert maintain(db) == [
        ("drained", "audit.record_version_p20210301_2", 1),
        ("dropped", "audit.record_version_p20210301_2", None),
    ]
    assert db.one("select to_regclass('audit.record_version_p20210301_2')") is None
    assert db.one("select count(*) from audit.record_version_p20210301") == 1

    # Detached partitions are the user's tables now: they stop the audit schema's removal.
    message, _ = db_error(engine, lambda op: op.uninstall_audit(drop_history=True))
    assert message == "cannot drop type audit.operation because other objects depend on it"
    db.run("drop table audit.record_version_p20210301, audit.record_version_p20210501")
    run_online(engine, lambda op: op.uninstall_audit(drop_history=True))
    assert db.one("select to_regnamespace('audit')") is None


def test_maintenance_runs_one_at_a_time(db: Db, db_url: str, engine: sa.Engine) -> None:
    run_online(engine, install_partitioned())
    add_history(db, "2021-03-15 10:00+00")
    with connect(db_url) as other:
        other.conn.autocommit = False
        assert other.rows("select * from audit.maintain_partitions()") == [
            ("drained", "audit.record_version_p20210301", 1)
        ]
        # The first run's transaction is still open: a second run returns at once.
        assert maintain(db) == [("skipped", None, None)]
        assert db.take_notices()[-1] == (
            "NOTICE:  audit.maintain_partitions: another run is busy; nothing done"
        )
        other.conn.commit()
    assert maintain(db) == []


def test_maintenance_is_for_the_partitioned_layout_only(db: Db, engine: sa.Engine) -> None:
    run_online(engine, install)

    # The plain layout has no maintenance function at all.
    assert db.error("select * from audit.maintain_partitions()").pgcode == "42883"
    message, hint = db_error(engine, set_partitioning(premake=1))
    assert (message, hint) == (
        "op.set_audit_partitioning: audit.record_version is not partitioned",
        "op.install_audit(partitioned={...}) makes it a partitioned table; this operation "
        "changes the settings of one.",
    )


# --- lookups -----------------------------------------------------------------------------


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def index_scans_of_filled_partitions(db: Db, query: str, params: list[Any]) -> set[str]:
    """The parent indexes used by the scans of partitions that hold rows.

    Empty partitions (the default one, those made ahead) may be scanned however the
    planner likes; every partition with rows must be read through an index.
    """
    (plan,) = db.one(f"explain (format json) {query}", params)
    filled = {
        name
        for (name,) in db.rows(
            "select c.relname::text from audit.partitions() p"
            " join pg_class c on c.oid = p.partition where c.reltuples > 0"
        )
    }
    parents = dict(
        db.rows(
            "select c.relname::text, p.relname::text from pg_inherits i"
            " join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent"
            " where c.relkind = 'i'"
        )
    )
    used: dict[str, set[str]] = {}
    for node in _plan_nodes(plan["Plan"]):
        if "Relation Name" in node and node["Relation Name"] in filled:
            assert "Index" in node["Node Type"] or "Bitmap Heap" in node["Node Type"], node
        if "Index Name" in node:
            for table in filled:
                if node["Index Name"].startswith(table + "_"):
                    used.setdefault(table, set()).add(parents[node["Index Name"]])
    assert set(used) == filled, (used, filled)
    return {index for found in used.values() for index in found}


def test_history_lookups_use_the_partitioned_indexes(db: Db, engine: sa.Engine) -> None:
    run_online(engine, install_partitioned())
    db.run(
        "insert into audit.record_version (record_id, old_record_id, op, ts, table_oid,"
        " table_schema, table_name, record, old_record)"
        " select gen_random_uuid(), gen_random_uuid(), 'UPDATE',"
        " timestamptz '2021-01-01 00:00+00' + g * interval '10 minutes', 1000 + g % 100,"
        " 'public', 't', '{}', '{}' from generate_series(0, 90 * 144 - 1) g"
    )
    assert [action for action, _, _ in maintain(db)] == ["drained"] * 3
    db.run("analyze audit.record_version")
    wanted = db.one("select record_id from audit.record_version where id = 1500")

    by_record = index_scans_of_filled_partitions(
        db,
        "select * from audit.record_version where record_id = %s or old_record_id = %s"
        " order by ts, id",
        [wanted, wanted],
    )
    by_table = index_scans_of_filled_partitions(
        db,
        "select * from audit.record_version where table_oid = %s order by ts, id",
        [1007],
    )

    assert by_record == {"record_version_record_id", "record_version_old_record_id"}
    assert by_table == {"record_version_table_oid"}
    assert db.rows(
        "select id from audit.record_version where record_id = %s or old_record_id = %s",
        [wanted, wanted],
    ) == [(1500,)]


# --- conversion, offline, uninstall ----------------------------------------------------


def test_install_partitioned_converts_a_plain_install_keeping_every_row(
    db: Db, engine: sa.Engine, partitioned_indexes: list[str]
) -> None:
    create_account(db)
    run_online(engine, install)
    run_online(engine, track_account)
    expected = account_scenario(db)
    db.run("update audit.record_version set ts = ts - interval '3 years' where id <= 2")
    rows = db.audit_rows()
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    db.run(f"create role {reader}")
    try:
        db.run(f"grant select on audit.record_version to {reader}")

        run_online(engine, install_partitioned(premake=1))

        assert db.audit_rows() == rows == expected
        assert in_default(db) == 0
        assert db.one("select count(*) from audit.partitions()") >= 3
        assert indexes(db) == partitioned_indexes
        assert db.one("select to_regclass('audit.record_version_unpartitioned')") is None
        assert db.one(f"select has_table_privilege('{reader}', 'audit.record_version', 'select')")
        # The id sequence carries on, owned by the new table.
        db.run("insert into public.account values (2, 'After')")
        assert db.one("select max(id) from audit.record_version") == 5
        assert db.one("select pg_get_serial_sequence('audit.record_version', 'id')") == (
            "audit.record_version_id_seq"
        )
    finally:
        db.run(f"revoke all on audit.record_version from {reader}")
        db.run(f"drop role {reader}")


def test_offline_sql_gives_the_same_partitioned_database(
    pg_server: ThrowawayPostgres, db: Db, engine: sa.Engine
) -> None:
    script = install_partitioned(interval="1 day", premake=2, retention="90 days")
    text = offline_sql(script)
    assert offline_sql(script, env_py_settings=False) == text
    assert "%" not in text

    run_online(engine, script)
    with extra_database(pg_server, f"offline_{uuid.uuid4().hex[:12]}") as name:
        apply_sql(pg_server, name, text)
        with connect(pg_server.url(name)) as offline:
            assert catalog_snapshot(offline) == catalog_snapshot(db)
            assert settings(offline) == ("partitioned", "1 day", 2, "90 days", "detach")


def test_uninstall_keeping_history_keeps_the_layout_for_a_later_install(
    db: Db, engine: sa.Engine, partitioned_indexes: list[str]
) -> None:
    create_account(db)
    run_online(engine, install_partitioned(premake=1))
    run_online(engine, track_account)
    expected = account_scenario(db)

    run_online(engine, lambda op: op.uninstall_audit(keep_history=True))
    assert db.audit_rows() == expected
    assert settings(db) == ("partitioned", "1 mon", 1, None, "detach")

    run_online(engine, install)
    run_online(engine, track_account)
    db.run("insert into public.account values (7, 'Back')")

    assert indexes(db) == partitioned_indexes
    assert db.audit_rows()[-1][:2] == ("INSERT", record_id(db.oid("public.account"), "7"))
    add_history(db, "2021-03-15 10:00+00")
    assert maintain(db) == [("drained", "audit.record_version_p20210301", 1)]

    run_online(engine, lambda op: op.uninstall_audit(drop_history=True))
    assert db.one("select to_regnamespace('audit')") is None


# --- options and their checks ------------------------------------------------------------


def test_set_audit_partitioning_changes_the_settings_and_reverses(
    db: Db, engine: sa.Engine
) -> None:
    run_online(engine, install_partitioned())
    change = SetAuditPartitioningOp(
        {"premake": 6, "retention": "5 years"}, {"premake": 3, "retention": None}
    )

    run_online(engine, lambda op: op.invoke(change))
    assert settings(db) == ("partitioned", "1 mon", 6, "5 years", "detach")
    run_online(engine, lambda op: op.invoke(change.reverse()))
    assert settings(db) == ("partitioned", "1 mon", 3, None, "detach")

    assert change.arguments() == [
        "premake=6",
        "retention='5 years'",
        "existing_premake=3",
        "existing_retention=None",
    ]
    assert change.reverse().arguments() == [
        "premake=3",
        "retention=None",
        "existing_premake=6",
        "existing_retention='5 years'",
    ]
    assert change.to_diff_tuple() == (
        "set_audit_partitioning",
        (("premake", 6, 3), ("retention", "5 years", None)),
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"interval": "1 month; drop table x"},
            "op.install_audit: interval must be an interval written as text, such as '30 days' "
            "or '1 month', not '1 month; drop table x'",
        ),
        (
            {"premake": -1},
            "op.install_audit: premake (how many partitions to create ahead) must be an int of "
            "0 or more, not -1",
        ),
        (
            {"retention_action": "archive"},
            "op.install_audit: retention_action must be 'detach' (keep old partitions as "
            "tables of their own) or 'drop' (delete them), not 'archive'",
        ),
        (
            {"every": "1 month"},
            "op.install_audit: unknown partitioning option 'every'; the options are interval, "
            "premake, retention, retention_action",
        ),
    ],
)
def test_partitioning_options_are_checked_before_any_sql(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(AuditOperationError) as refused:
        offline_sql(install_partitioned(**options))
    assert str(refused.value) == message


def test_timescale_and_partitioned_exclude_each_other() -> None:
    with pytest.raises(AuditOperationError) as refused:
        offline_sql(lambda op: op.install_audit(timescale={}, partitioned={}))
    assert str(refused.value) == (
        "op.install_audit: choose timescale= or partitioned=, not both: TimescaleDB "
        "partitions the audit table itself"
    )


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        ("36 hours", "36:00:00"),
        ("1 month 2 days", "1 mon 2 days"),
        ("0 days", "00:00:00"),
    ],
)
def test_the_partition_interval_is_whole_days_or_months(
    db: Db, engine: sa.Engine, interval: str, message: str
) -> None:
    assert db_error(engine, install_partitioned(interval=interval)) == (
        "op.install_audit: the partition interval must be a whole number of days or of "
        f"months, not {message}",
        "For example 1 day, 7 days, 1 month, 3 months or 1 year.",
    )
    assert db.one("select to_regnamespace('audit')") is None


# --- autogenerate ------------------------------------------------------------------------


ACCOUNT_CREATE = [
    "op.create_table('account',",
    "sa.Column('id', sa.Integer(), nullable=False),",
    "sa.PrimaryKeyConstraint('id'),",
    "info={'audited': True}",
    ")",
    "op.enable_tracking('account')",
]


def test_autogenerate_installs_the_declared_layout_then_proposes_changes(
    engine: sa.Engine,
) -> None:
    metadata = audited_metadata()
    declared = {"partitioned": {"interval": "7 days"}}
    with engine.begin() as connection:
        upgrade, downgrade = autogenerate(connection, metadata, hyper_audit=declared)
    assert upgrade == ["op.install_audit(partitioned={'interval': '7 days'})", *ACCOUNT_CREATE]
    assert downgrade[-1] == "op.uninstall_audit(keep_history=True)"

    with engine.begin() as connection:
        metadata.create_all(connection)
        operations = Operations(sa_context(connection))
        operations.install_audit(partitioned={"interval": "7 days"})  # type: ignore[attr-defined]
        operations.enable_tracking("account")  # type: ignore[attr-defined]
        assert autogenerate(connection, metadata, hyper_audit=declared) == ([], [])
        # Written differently, the same interval: no change.
        same = {"partitioned": {"interval": "1 week", "premake": 3, "retention": None}}
        assert autogenerate(connection, metadata, hyper_audit=same) == ([], [])

        changed = {"partitioned": {"interval": "7 days", "retention": "2 years", "premake": 5}}
        assert autogenerate(connection, metadata, hyper_audit=changed) == (
            [
                "op.set_audit_partitioning(premake=5, retention='2 years', existing_premake=3, "
                "existing_retention=None)"
            ],
            [
                "op.set_audit_partitioning(premake=3, retention=None, existing_premake=5, "
                "existing_retention='2 years')"
            ],
        )
        # Undeclared settings go back to the defaults.
        assert autogenerate(connection, metadata, hyper_audit={"partitioned": True})[0] == [
            "op.set_audit_partitioning(interval='1 month', existing_interval='7 days')"
        ]


def sa_context(connection: sa.Connection) -> Any:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection)


def test_layout_comparison_costs_two_queries_and_only_when_declared(engine: sa.Engine) -> None:
    metadata = audited_metadata()
    counted: list[str] = []

    def count(*args: Any) -> None:
        counted.append(args[2])

    def layout_queries() -> int:
        found = sum("audit.settings" in statement for statement in counted)
        counted.clear()
        return found

    with engine.begin() as connection:
        metadata.create_all(connection)
        operations = Operations(sa_context(connection))
        operations.install_audit(partitioned=True)  # type: ignore[attr-defined]
        operations.enable_tracking("account")  # type: ignore[attr-defined]
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            assert autogenerate(connection, metadata) == ([], [])
            assert layout_queries() == 0
            assert autogenerate(connection, metadata, hyper_audit={"partitioned": True}) == ([], [])
            assert layout_queries() == 2
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)


def test_autogenerate_refuses_a_layout_the_database_does_not_have(engine: sa.Engine) -> None:
    metadata = audited_metadata()
    with engine.begin() as connection:
        Operations(sa_context(connection)).install_audit()  # type: ignore[attr-defined]
        with pytest.raises(CommandError) as partitioned:
            autogenerate(connection, metadata, hyper_audit={"partitioned": True})
        with pytest.raises(CommandError) as timescale:
            autogenerate(connection, metadata, hyper_audit={"timescale": {"retention": "1 year"}})
    assert str(partitioned.value) == (
        "hyper_audit: env.py declares hyper_audit={'partitioned': ...}, but "
        "audit.record_version is not partitioned. Convert the audit table in a migration "
        "written by hand "
        "(op.install_audit(partitioned={...}) converts a plain audit table, keeping every "
        "row), or remove the 'partitioned' options from env.py."
    )
    assert str(timescale.value) == (
        "hyper_audit: env.py declares hyper_audit={'timescale': ...}, but the timescaledb "
        "extension is not installed in this database. Convert the audit table in a migration "
        "written by hand (create extension timescaledb, then "
        "op.convert_audit_to_hypertable(...), which keeps every row), or remove the "
        "'timescale' options from env.py."
    )


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            {"partitioned": True, "timescale": True},
            "hyper_audit: context.configure(hyper_audit=...): choose timescale= or "
            "partitioned=, not both: TimescaleDB partitions the audit table itself",
        ),
        (
            {"layout": "partitioned"},
            "hyper_audit: unknown key 'layout' in context.configure(hyper_audit=...); the keys "
            "are 'timescale', 'partitioned' and 'citus'",
        ),
        (
            {"timescale": {"compress": "30 days"}},
            "hyper_audit: context.configure(hyper_audit=...): unknown TimescaleDB option "
            "'compress'; the options are chunk_interval, compress_after, retention",
        ),
    ],
)
def test_a_wrong_declaration_fails_autogenerate_clearly(
    engine: sa.Engine, declared: dict[str, Any], message: str
) -> None:
    with engine.begin() as connection, pytest.raises(CommandError) as refused:
        autogenerate(connection, audited_metadata(), hyper_audit=declared)
    assert str(refused.value) == message


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


def test_project_declares_the_layout_in_env_py(tmp_path: Path, db_url: str, db: Db) -> None:
    project = Project.create(tmp_path, db_url, MODELS)
    project.edit_env(
        PLUGINS_LINE, PLUGINS_LINE + '    hyper_audit={"partitioned": {"premake": 1}},\n'
    )
    first = project.revision("accounts")
    assert migration_body(first, "upgrade")[0] == "op.install_audit(partitioned={'premake': 1})"
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    assert settings(db) == ("partitioned", "1 mon", 1, None, "detach")

    project.edit_env('{"premake": 1}', '{"premake": 2, "retention": "3 years"}')
    second = project.revision("retention")
    assert migration_body(second, "upgrade") == [
        "op.set_audit_partitioning(premake=2, retention='3 years', existing_premake=1, "
        "existing_retention=None)"
    ]
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    assert settings(db) == ("partitioned", "1 mon", 2, "3 years", "detach")

    project.downgrade("-1")
    assert settings(db) == ("partitioned", "1 mon", 1, None, "detach")


def test_the_settings_table_refuses_what_maintenance_cannot_use(db: Db, engine: sa.Engine) -> None:
    run_online(engine, install_partitioned())
    error = db.error("update audit.settings set premake = -1")
    assert isinstance(error, psycopg2.errors.CheckViolation)
    error = db.error("insert into audit.settings (id, layout) values (true, 'plain')")
    assert isinstance(error, psycopg2.errors.UniqueViolation)
