"""Issue 14, the Python side of the baseline and of a table as it was: the ``snapshot``
option of ``op.enable_tracking()`` and of a model's flag (rendered by autogenerate, in
order with the audit schema upgrade that makes it possible), SNAPSHOT rows in the
history API and the command line, and ``table_as_of()``.

Expectations are exact: the audit rows, the rendered migration lines, the rebuilt rows
and the error text. Online and offline (``alembic upgrade --sql`` through psql) give the
same database.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic_project import Project, autogenerate, migration_body
from audit_helpers import (
    Db,
    apply_sql,
    catalog_snapshot,
    connect,
    extra_database,
    offline_sql,
    psql_error,
    record_id,
    run_online,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from test_upgrades import install_released

from hyper_audit_alembic import (
    IncompleteTrailError,
    Operation,
    PastRow,
    as_of,
    history,
    table_as_of,
    table_history,
)
from hyper_audit_alembic.cli import main
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.errors import AuditOperationError
from hyper_audit_alembic.migration.ops import EnableTrackingOp, UpgradeAuditOp

PAIRS = """
create table pairs (region text, code text, label text, primary key (region, code));
insert into pairs values ('eu', 'a', 'Alpha'), ('us', 'b', 'Beta');
"""


def snapshot_rows(db: Db) -> list[tuple[Any, ...]]:
    """(record_id, old_record_id, table, record, old_record) of each SNAPSHOT row."""
    return [
        (rid, old_rid, name, rec, old_rec)
        for op, rid, old_rid, _oid, _schema, name, rec, old_rec in db.audit_rows()
        if op == "SNAPSHOT"
    ]


def pairs_snapshot(db: Db) -> list[tuple[Any, ...]]:
    oid = db.oid("pairs")
    return [
        (
            record_id(oid, "eu", "a"),
            None,
            "pairs",
            {"region": "eu", "code": "a", "label": "Alpha"},
            None,
        ),
        (
            record_id(oid, "us", "b"),
            None,
            "pairs",
            {"region": "us", "code": "b", "label": "Beta"},
            None,
        ),
    ]


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with connect(db_url) as db:
        yield db


@pytest.fixture
def offline_db(pg_server: ThrowawayPostgres) -> Iterator[Db]:
    name = f"offline_{uuid.uuid4().hex[:12]}"
    with extra_database(pg_server, name), connect(pg_server.url(name)) as db:
        yield db


# --- op.enable_tracking(..., snapshot=True) --------------------------------------------


def test_snapshot_op_online_equals_offline_and_disable_keeps_the_rows(
    engine: sa.Engine, db: Db, offline_db: Db, pg_server: ThrowawayPostgres
) -> None:
    def script(op: Any) -> None:
        op.install_audit()
        op.enable_tracking("pairs", snapshot=True)

    for each in (db, offline_db):
        each.run(PAIRS)
    run_online(engine, script)
    text = offline_sql(script)
    assert "perform audit.snapshot_batch(target::regclass, null);" in text
    apply_sql(pg_server, offline_db.conn.info.dbname, text)
    assert sorted(snapshot_rows(db)) == sorted(pairs_snapshot(db))
    assert sorted(snapshot_rows(offline_db)) == sorted(pairs_snapshot(offline_db))
    assert catalog_snapshot(db) == catalog_snapshot(offline_db)
    assert db.normalized_audit_rows() == offline_db.normalized_audit_rows()
    assert db.one("select how from audit.trail_complete_since") == "snapshot"

    # A second snapshot writes nothing: the trail is complete.
    run_online(engine, lambda op: op.enable_tracking("pairs", snapshot=True))
    assert len(snapshot_rows(db)) == 2
    # Stopping tracking keeps the baseline (history is never deleted).
    run_online(engine, lambda op: op.disable_tracking("pairs"))
    assert sorted(snapshot_rows(db)) == sorted(pairs_snapshot(db))


def test_snapshot_op_checks_its_argument_and_reverses_to_disable() -> None:
    with pytest.raises(AuditOperationError) as bad:
        EnableTrackingOp("pairs", snapshot="yes")  # type: ignore[arg-type]
    assert str(bad.value) == (
        "op.enable_tracking: snapshot must be True (record the rows the table holds as its "
        "baseline) or False, not 'yes'"
    )
    reverse = EnableTrackingOp("pairs", snapshot=True).reverse()
    assert reverse.to_diff_tuple() == ("disable_tracking", None, "pairs")
    assert EnableTrackingOp("pairs", snapshot=True).to_diff_tuple() == (
        "enable_tracking",
        None,
        "pairs",
        "snapshot",
    )
    with pytest.raises(AuditOperationError) as commit:
        UpgradeAuditOp(3, 4, commit=1)  # type: ignore[arg-type]
    assert str(commit.value) == (
        "op.upgrade_audit: commit must be True (commit the upgrade before the operations "
        "after it) or False, not 1"
    )


def test_snapshot_needs_version_4(engine: sa.Engine, db: Db) -> None:
    install_released(engine, 3)
    db.run(PAIRS)
    run_online(engine, lambda op: op.enable_tracking("pairs"))
    with pytest.raises(sa.exc.DBAPIError) as refused:
        run_online(engine, lambda op: op.enable_tracking("pairs", snapshot=True))
    assert refused.value.orig.diag.message_primary == (  # type: ignore[union-attr]
        "op.enable_tracking: snapshot=True needs audit schema version 4, so the rows of "
        "pairs cannot be recorded as its baseline"
    )
    assert refused.value.orig.diag.message_hint == (  # type: ignore[union-attr]
        "Upgrade the audit schema first: op.upgrade_audit(from_version=3, to_version=4, "
        "commit=True) before this operation."
    )


# --- the flag, autogenerate ------------------------------------------------------------

FLAG_MODELS = """
from sqlalchemy import Column, Integer, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Pair(Base):
    __tablename__ = "pairs"
    __audited__ = {{"snapshot": True}}

    region: Mapped[str] = mapped_column(Text, primary_key=True)
    code: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str | None] = mapped_column(Text)

{extra}
"""

NEW_TABLE = """
fresh = Table(
    "fresh",
    Base.metadata,
    Column("id", Integer, primary_key=True),
    Column("note", Text),
    info={"audited": {"snapshot": True, "exclude": ["note"]}},
)
"""


def test_flag_renders_snapshot_for_an_existing_table_only(
    tmp_path: Path, db_url: str, db: Db
) -> None:
    db.run(PAIRS)
    project = Project.create(tmp_path, db_url, FLAG_MODELS.format(extra=NEW_TABLE))
    text = project.revision("track")
    assert migration_body(text, "upgrade") == [
        "op.install_audit()",
        "op.create_table('fresh',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.Column('note', sa.Text(), nullable=True),",
        "sa.PrimaryKeyConstraint('id'),",
        "info={'audited': {'snapshot': True, 'exclude': ['note']}}",
        ")",
        "op.enable_tracking('fresh', exclude=['note'])",
        "op.enable_tracking('pairs', snapshot=True)",
    ]
    assert migration_body(text, "downgrade") == [
        "op.disable_tracking('pairs')",
        "op.disable_tracking('fresh')",
        "op.drop_table('fresh')",
        "op.uninstall_audit(keep_history=True)",
    ]
    project.upgrade()
    assert sorted(snapshot_rows(db)) == sorted(pairs_snapshot(db))
    assert db.rows(
        "select table_oid::regclass::text, how from audit.trail_complete_since order by 1"
    ) == [("fresh", "empty"), ("pairs", "snapshot")]
    # One-off: nothing more is proposed, and alembic check is clean.
    assert "No new upgrade operations detected." in project.check()


def test_flag_gaining_snapshot_on_a_tracked_table(tmp_path: Path, db_url: str, db: Db) -> None:
    db.run(PAIRS)
    project = Project.create(
        tmp_path, db_url, FLAG_MODELS.format(extra="").replace('{"snapshot": True}', "True")
    )
    project.revision("track")
    project.upgrade()
    assert snapshot_rows(db) == []
    project.set_models(FLAG_MODELS.format(extra=""))
    text = project.revision("baseline")
    assert migration_body(text, "upgrade") == ["op.enable_tracking('pairs', snapshot=True)"]
    assert migration_body(text, "downgrade") == ["op.enable_tracking('pairs')"]
    project.upgrade()
    assert sorted(snapshot_rows(db)) == sorted(pairs_snapshot(db))
    assert "No new upgrade operations detected." in project.check()
    # The downgrade keeps tracking and the baseline.
    project.downgrade("-1")
    assert sorted(snapshot_rows(db)) == sorted(pairs_snapshot(db))


def test_flag_snapshot_must_be_a_bool(engine: sa.Engine) -> None:
    class Base(DeclarativeBase):
        pass

    class Pair(Base):
        __tablename__ = "pairs"
        __audited__ = {"snapshot": "yes", "sample": 1}
        region: Mapped[str] = mapped_column(primary_key=True)

    with engine.connect() as connection, pytest.raises(AuditOperationError) as unknown:
        autogenerate(connection, Base.metadata)
    assert str(unknown.value) == (
        "hyper_audit: model Pair (table pairs): __audited__ = {'snapshot': 'yes', 'sample': 1} "
        "has unknown option(s) sample; the options are exclude, skip_unchanged, on_replica, "
        "snapshot"
    )
    Pair.__audited__ = {"snapshot": "yes"}
    with engine.connect() as connection, pytest.raises(AuditOperationError) as bad:
        autogenerate(connection, Base.metadata)
    assert str(bad.value) == (
        "hyper_audit: model Pair (table pairs): __audited__ = {'snapshot': 'yes'}: snapshot "
        "must be True (record the rows the table holds as its baseline) or False, not 'yes'"
    )


# --- the upgrade to version 4 and a snapshot in one revision ----------------------------

AT_VERSION_3 = """
create table pairs (region text, code text, label text, primary key (region, code));
insert into pairs values ('eu', 'a', 'Alpha'), ('us', 'b', 'Beta');
"""


def test_upgrade_then_snapshot_in_one_revision(
    tmp_path: Path,
    engine: sa.Engine,
    db_url: str,
    db: Db,
    offline_db: Db,
    pg_server: ThrowawayPostgres,
) -> None:
    offline_engine = sa.create_engine(pg_server.url(offline_db.conn.info.dbname))
    try:
        for each_engine, each in ((engine, db), (offline_engine, offline_db)):
            install_released(each_engine, 3)
            each.run(AT_VERSION_3)
    finally:
        offline_engine.dispose()
    project = Project.create(tmp_path, db_url, FLAG_MODELS.format(extra=""))
    text = project.revision("baseline")
    assert migration_body(text, "upgrade") == [
        "op.upgrade_audit(from_version=3, to_version=6, commit=True)",
        "op.enable_tracking('pairs', snapshot=True)",
    ]
    assert migration_body(text, "downgrade") == [
        "op.disable_tracking('pairs')",
        "op.downgrade_audit(from_version=6, to_version=3)",
    ]
    offline = project.upgrade(sql=True)
    # The upgrade commits before the snapshot, in the offline SQL too.
    upgrade_end = offline.index("COMMIT;\n\nBEGIN;")
    assert offline.index("insert into audit.schema_version") < upgrade_end
    assert upgrade_end < offline.index("perform audit.snapshot_batch")
    project.upgrade()
    apply_sql(pg_server, offline_db.conn.info.dbname, offline)
    for each in (db, offline_db):
        assert each.one("select max(version) from audit.schema_version") == 6
        assert sorted(snapshot_rows(each)) == sorted(pairs_snapshot(each))
    assert db.normalized_audit_rows() == offline_db.normalized_audit_rows()
    assert "No new upgrade operations detected." in project.check()


def test_upgrade_without_commit_then_snapshot_fails_and_changes_nothing(
    engine: sa.Engine, db: Db, offline_db: Db, pg_server: ThrowawayPostgres
) -> None:
    """Written by hand without commit=True: HA002 with the fix, online and offline."""
    offline_engine = sa.create_engine(pg_server.url(offline_db.conn.info.dbname))
    try:
        for each_engine, each in ((engine, db), (offline_engine, offline_db)):
            install_released(each_engine, 3)
            each.run(AT_VERSION_3)
    finally:
        offline_engine.dispose()
    before = catalog_snapshot(db)

    def script(op: Any) -> None:
        op.upgrade_audit(from_version=3, to_version=4)
        op.enable_tracking("pairs", snapshot=True)

    with pytest.raises(sa.exc.DBAPIError) as refused:
        run_online(engine, script)
    assert refused.value.orig.pgcode == "HA002"  # type: ignore[union-attr]
    assert catalog_snapshot(db) == before
    error = psql_error(pg_server, offline_db.conn.info.dbname, offline_sql(script))
    assert (
        "ERROR:  audit.snapshot: the audit schema was upgraded to version 4 in this "
        "transaction, and PostgreSQL cannot write the new label SNAPSHOT before that commits"
    ) in error
    assert offline_db.one("select max(version) from audit.schema_version") == 3


# --- SNAPSHOT rows in the history API and the command line -----------------------------


class Base(DeclarativeBase):
    pass


class Colour(enum.Enum):
    red = "red"
    blue = "blue"


class Item(Base):
    __tablename__ = "item"

    sku: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    batch: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    price: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(10, 2))
    colour: Mapped[Colour] = mapped_column(sa.Enum(Colour, native_enum=False, length=10))
    made: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


ITEMS = """
create table item (
    sku text, batch int, price numeric(10, 2), colour varchar(10), made timestamptz,
    primary key (sku, batch)
);
insert into item values
    ('A-1', 1, 9.50, 'red', '2024-01-02 03:04:05+00'),
    ('B 2', 7, 20, 'blue', '2024-02-03 04:05:06+00');
"""


@pytest.fixture
def items(engine: sa.Engine, db: Db) -> Db:
    """item, with two rows before tracking began, tracked with a snapshot."""
    db.run(ITEMS)
    run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("item", snapshot=True)))
    return db


def test_history_shows_the_snapshot_as_a_baseline(engine: sa.Engine, items: Db) -> None:
    after_snapshot = items.one("select now()")
    items.run("update item set price = 10 where sku = 'A-1'")
    with Session(engine) as session:
        versions = history(session, Item, ("A-1", 1))
        assert [v.op for v in versions] == [Operation.SNAPSHOT, Operation.UPDATE]
        baseline = versions[0]
        assert baseline.values == {
            "sku": "A-1",
            "batch": 1,
            "price": 9.50,
            "colour": "red",
            "made": "2024-01-02T03:04:05+00:00",
        }
        assert baseline.changes == {}
        assert versions[1].changes == {"price": (9.50, 10)}
        assert as_of(session, Item, ("A-1", 1), after_snapshot) == baseline.values
        assert as_of(session, Item, ("B 2", 7), after_snapshot) == {
            "sku": "B 2",
            "batch": 7,
            "price": 20,
            "colour": "blue",
            "made": "2024-02-03T04:05:06+00:00",
        }
        assert [str(v.op) for v in table_history(session, Item)] == [
            "SNAPSHOT",
            "SNAPSHOT",
            "UPDATE",
        ]


def test_cli_history_shows_the_snapshot(
    items: Db, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items.run("update item set price = 10 where sku = 'A-1'")
    assert main(["history", "--url", db_url, "item", "A-1", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "item (sku, batch) = (A-1, 1): 1 snapshot, 1 change"
    assert out[1].split() == ["ts", "op", "actor", "context", "changes"]
    assert out[2].split()[2:] == [
        "SNAPSHOT",
        items.one("select current_user"),
        'sku="A-1",',
        "batch=1,",
        "price=9.5,",
        'colour="red",',
        'made="2024-01-02T03:04:05+00:00"',
    ]
    assert out[3].split()[2:4] == ["UPDATE", items.one("select current_user")]
    assert out[3].endswith("price: 9.5 -> 10.0")
    assert main(["history", "--json", "--url", db_url, "item", "B 2", "7"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["op"], row["record"], row["old_record"], row["old_record_id"]) == (
        "SNAPSHOT",
        {
            "sku": "B 2",
            "batch": 7,
            "price": 20,
            "colour": "blue",
            "made": "2024-02-03T04:05:06+00:00",
        },
        None,
        None,
    )
    assert row["record_id"] == str(record_id(items.oid("item"), "B 2", "7"))


# --- table_as_of ------------------------------------------------------------------------


def values_of(rows: list[PastRow]) -> list[dict[str, Any]]:
    return [row.values for row in rows]


A1 = {
    "sku": "A-1",
    "batch": 1,
    "price": decimal.Decimal("9.50"),
    "colour": Colour.red,
    "made": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
}
B2 = {
    "sku": "B 2",
    "batch": 7,
    "price": decimal.Decimal("20.00"),
    "colour": Colour.blue,
    "made": dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
}


def test_table_as_of_row_for_row(engine: sa.Engine, items: Db) -> None:
    t0 = items.one("select now()")
    items.run("update item set price = 11 where sku = 'A-1'")
    t1 = items.one("select now()")
    items.run("update item set sku = 'A-9' where sku = 'A-1'")  # a key change
    items.run("delete from item where sku = 'B 2'")
    t2 = items.one("select now()")
    items.run("truncate item")
    t3 = items.one("select now()")
    items.run("insert into item values ('C', 3, 1.25, 'red', '2024-03-04 05:06:07+00')")
    t4 = items.one("select now()")
    oid = items.oid("item")
    with Session(engine) as session:
        at_t0 = table_as_of(session, Item, t0)
        assert values_of(at_t0) == [A1, B2]
        assert [(r.record_id, r.dropped) for r in at_t0] == [
            (record_id(oid, "A-1", "1"), {}),
            (record_id(oid, "B 2", "7"), {}),
        ]
        assert values_of(table_as_of(session, Item, t1)) == [
            {**A1, "price": decimal.Decimal("11.00")},
            B2,
        ]
        assert values_of(table_as_of(session, Item, t2)) == [
            {**A1, "sku": "A-9", "price": decimal.Decimal("11.00")}
        ]
        assert table_as_of(session, Item, t3) == []
        assert values_of(table_as_of(session, "public.item", t4)) == [
            {
                "sku": "C",
                "batch": 3,
                "price": decimal.Decimal("1.25"),
                "colour": "red",  # by name: the database's types only
                "made": dt.datetime(2024, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc),
            }
        ]
        # The rows the table holds now, by the Core table too.
        now_rows = table_as_of(session, Item.__table__, t4)
        assert [r.values["sku"] for r in now_rows] == ["C"]


def test_table_as_of_maps_renames_and_reports_drops(engine: sa.Engine, items: Db) -> None:
    items.run("alter table item rename column price to amount")
    items.run("alter table item drop column colour")
    items.run("update item set amount = 12 where sku = 'B 2'")
    when = items.one("select now()")
    with Session(engine) as session:
        rows = table_as_of(session, "item", when)
    assert [(r.values, r.dropped) for r in rows] == [
        (
            {
                "sku": "A-1",
                "batch": 1,
                "amount": decimal.Decimal("9.50"),
                "made": A1["made"],
            },
            {"colour": "red"},
        ),
        (
            {
                "sku": "B 2",
                "batch": 7,
                "amount": decimal.Decimal("12.00"),
                "made": B2["made"],
            },
            {},
        ),
    ]


def test_table_as_of_refuses_an_incomplete_trail(engine: sa.Engine, db: Db) -> None:
    db.run(ITEMS)
    run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("item")))
    when = db.one("select now()")
    with Session(engine) as session:
        with pytest.raises(IncompleteTrailError) as refused:
            table_as_of(session, Item, when)
        assert str(refused.value) == (
            "table_as_of: the audit trail of public.item is not complete: it does not record "
            "the rows the table held when tracking began. Take a snapshot: call "
            "audit.snapshot('public.item') (op.enable_tracking(..., snapshot=True) in a "
            "migration); the trail rebuilds public.item from its end on."
        )
        # The session's transaction stays usable.
        assert session.scalar(sa.text("select 1")) == 1
        run_online(engine, lambda op: op.enable_tracking("item", snapshot=True))
        since = db.one("select since from audit.trail_complete_since")
        with pytest.raises(IncompleteTrailError) as early:
            table_as_of(session, Item, since - dt.timedelta(seconds=1))
        assert str(early.value).startswith(
            "table_as_of: the audit trail of public.item is complete from "
        )
        assert str(early.value).endswith(
            "Its snapshot finished then: ask for a later time. Rows from before were not "
            "recorded, so an earlier state cannot be rebuilt."
        )
        assert values_of(table_as_of(session, Item, since)) == [A1, B2]
        with pytest.raises(ValueError, match="timezone-aware"):
            table_as_of(session, Item, dt.datetime(2024, 1, 1))
        with pytest.raises(ValueError, match=r"^table_as_of: no such table: nowhere$"):
            table_as_of(session, "nowhere", since)


def test_table_as_of_with_a_partitioned_audit_table(engine: sa.Engine, db: Db) -> None:
    db.run(ITEMS)
    run_online(
        engine,
        lambda op: (
            op.install_audit(partitioned=True),
            op.enable_tracking("item", snapshot=True),
        ),
    )
    assert (
        db.one("select relkind::text from pg_class where oid = 'audit.record_version'::regclass")
        == "p"
    )
    db.run("delete from item where batch = 1")
    when = db.one("select now()")
    with Session(engine) as session:
        assert values_of(table_as_of(session, Item, when)) == [B2]
