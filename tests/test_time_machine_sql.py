"""Issue 14, the database side (audit schema version 4): SNAPSHOT rows, the completeness
mark, ``audit.table_as_of`` and the column renames and drops it maps across.

Every expectation is the exact audit row, the exact rebuilt table or the exact error
(SQLSTATE and text). Scenarios run on autocommit connections, so each statement is a
transaction of its own, as an application's would be.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from audit_helpers import Db, catalog_snapshot, connect, record_id, run_online
from test_upgrades import install_released

from hyper_audit_alembic import sql

INCOMPLETE = "HA001"

# The TimescaleDB server's fixtures (skipped where TimescaleDB is missing).


@pytest.fixture
def db(engine: sa.Engine, db_url: str) -> Iterator[Db]:
    """The test's database with the current audit schema installed."""
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        yield db


def snapshot_rows(db: Db) -> list[tuple[Any, ...]]:
    """The SNAPSHOT rows, in insertion order: (record_id, old_record_id, table, record, old)."""
    return [
        (rid, old_rid, (schema, name), rec, old_rec)
        for op, rid, old_rid, _oid, schema, name, rec, old_rec in db.audit_rows()
        if op == "SNAPSHOT"
    ]


def as_of(db: Db, table: str, when: Any) -> list[tuple[uuid.UUID, dict[str, Any], Any]]:
    """audit.table_as_of(table, when) as (record_id, record, dropped), by record id."""
    return sorted(
        (uuid.UUID(rid), rec, dropped)
        for rid, _version, rec, dropped in db.rows(
            "select * from audit.table_as_of(%s, %s)", [table, when]
        )
    )


def table_now(db: Db, table: str, keys: tuple[str, ...]) -> list[tuple[uuid.UUID, Any, None]]:
    """The table's rows as table_as_of renders them (to_jsonb, UTC), by record id."""
    oid = db.oid(table)
    db.run("set TimeZone = 'UTC'")
    rows = db.rows(f"select to_jsonb(t) from {table} as t")
    db.run("reset TimeZone")
    return sorted((record_id(oid, *(_text(rec[k]) for k in keys)), rec, None) for (rec,) in rows)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def now(db: Db) -> Any:
    """A moment after every committed transaction so far (a transaction's own start)."""
    return db.one("select now()")


def error_of(db: Db, statement: str, params: list[Any] | None = None) -> tuple[str, str, str]:
    error = db.error(statement, params)
    return error.pgcode, error.diag.message_primary, error.diag.message_hint


# --- SNAPSHOT rows --------------------------------------------------------------------


def test_snapshot_writes_one_row_per_row_with_the_triggers_record_ids(db: Db) -> None:
    """Composite and text keys, a column left out by the table's options, a value whose
    rendering the session would change (TimeZone): each row once, as the triggers would
    record it, with the id they compute."""
    db.run("create schema shop")
    db.run(
        """create table shop."Line Item" (order_id int, code text, what text, secret text,
        at timestamptz, primary key (order_id, code))"""
    )
    db.run(
        """insert into shop."Line Item" values (10, 'a', 'pen', 's1', '2024-05-01 12:00+02'),
        (10, 'B ü"', 'ink', 's2', null), (11, 'a', null, 's3', null)"""
    )
    db.run("""select audit.enable_tracking('shop."Line Item"', '{secret}', false, false)""")
    oid = db.oid('shop."Line Item"')
    db.run("set TimeZone = 'Asia/Kathmandu'")
    assert db.rows("""select * from audit.snapshot_batch('shop."Line Item"', null)""") == [
        (3, True)
    ]
    db.run("reset TimeZone")
    table = ("shop", "Line Item")
    assert snapshot_rows(db) == [
        (record_id(oid, "10", "a"), None, table,
         {"order_id": 10, "code": "a", "what": "pen", "at": "2024-05-01T10:00:00+00:00"}, None),
        (record_id(oid, "10", 'B ü"'), None, table,
         {"order_id": 10, "code": 'B ü"', "what": "ink", "at": None}, None),
        (record_id(oid, "11", "a"), None, table,
         {"order_id": 11, "code": "a", "what": None, "at": None}, None),
    ]  # fmt: skip
    (since, after_id, how), = db.rows(
        "select since, after_id, how from audit.trail_complete_since where table_oid = %s",
        [oid],
    )  # fmt: skip
    assert (after_id, how) == (0, "snapshot")
    assert since == db.one("select max(ts) from audit.record_version")
    # A second call finds the trail complete and writes nothing.
    assert db.rows("""select * from audit.snapshot_batch('shop."Line Item"', 2)""") == [(0, True)]
    db.run("""call audit.snapshot('shop."Line Item"')""")
    assert len(snapshot_rows(db)) == 3
    # What the triggers record next pairs with the snapshot's record ids.
    db.run("""update shop."Line Item" set what = 'pencil' where code = 'a' and order_id = 10""")
    assert db.audit_rows()[-1][:3] == (
        "UPDATE",
        record_id(oid, "10", "a"),
        record_id(oid, "10", "a"),
    )
    # The table rebuilt from the trail: without the excluded column, never recorded.
    rebuilt = as_of(db, 'shop."Line Item"', now(db))
    assert rebuilt == [
        (rid, {k: v for k, v in rec.items() if k != "secret"}, None)
        for rid, rec, _ in table_now(db, 'shop."Line Item"', ("order_id", "code"))
    ]


def filled_table(db: Db, rows: int) -> int:
    """public.item with ``rows`` rows of about 200 bytes (a few dozen per page), tracked."""
    db.run("create table public.item (id int primary key, v text not null, pad text)")
    db.run(
        "insert into public.item select g, 'v' || g, repeat('x', 200)"
        " from generate_series(1, %s) g",
        [rows],
    )
    db.run("analyze public.item")
    db.run("select audit.enable_tracking('public.item')")
    return db.oid("public.item")


def item(i: int, v: str | None = None) -> dict[str, Any]:
    return {"id": i, "v": v or f"v{i}", "pad": "x" * 200}


def test_snapshot_resumes_after_an_interruption_and_writes_no_row_twice(db: Db) -> None:
    """Batches in transactions of their own; between them writers change rows already read
    and rows not read yet, a batch is rolled back (an interruption), and the table is
    rewritten; the rest is done by CALL audit.snapshot. Each row is recorded once: by the
    snapshot, or by the writer's change when that came first."""
    count = 1000
    oid = filled_table(db, count)
    assert db.one("select count(*) from audit.record_version") == 0
    # The first batch reads the first pages: the rows inserted first.
    written, complete = db.rows("select * from audit.snapshot_batch('public.item', 100)")[0]
    progress = db.rows("select next_page, written from audit.snapshot_progress")
    # Whole pages: as many as hold about 100 rows (the table's statistics), no more.
    ((pages, recorded),) = progress
    assert not complete and recorded == written >= 100
    assert written == db.one(
        "select count(*) from public.item where ctid < ('(' || %s || ',0)')::tid", [pages]
    )
    assert written - 100 < db.one("select count(*) from public.item where ctid < '(1,0)'::tid")
    first = [rec for *_, rec, _ in snapshot_rows(db)]
    assert first == [item(i) for i in range(1, written + 1)]

    db.run("update public.item set v = 'changed' where id in (1, %s)", [count])  # read / not
    db.run("delete from public.item where id = %s", [count - 1])
    db.run("update public.item set id = 5000 where id = %s", [count - 2])  # a key change
    db.run("insert into public.item values (%s, 'new', 'p')", [count + 1])
    # An interruption: a batch whose transaction does not commit leaves nothing.
    db.run("begin")
    db.run("select audit.snapshot_batch('public.item', 100)")
    db.run("rollback")
    assert db.rows("select next_page, written from audit.snapshot_progress") == progress
    # A rewrite moves rows to other pages: the scan starts again, without a row twice.
    db.run("vacuum full public.item")
    db.run("call audit.snapshot('public.item', batch_size => 150)")
    assert db.rows("select count(*) from audit.snapshot_progress") == [(0,)]

    expected = [item(i) for i in range(1, count - 2)]
    assert sorted((rec for *_, rec, _ in snapshot_rows(db)), key=lambda r: r["id"]) == expected
    ids = [rid for rid, *_ in snapshot_rows(db)]
    assert sorted(ids) == sorted(record_id(oid, str(i)) for i in range(1, count - 2))
    assert (
        db.one("select count(*) from audit.record_version where op <> 'SNAPSHOT'") == 5
    )  # the writers' own rows
    assert as_of(db, "public.item", now(db)) == table_now(db, "public.item", ("id",))
    assert len(as_of(db, "public.item", now(db))) == count  # one deleted, one inserted
    # Called again: complete, nothing written.
    db.run("call audit.snapshot('public.item', batch_size => 150)")
    assert len(snapshot_rows(db)) == count - 3


def test_a_writer_in_flight_is_waited_for_and_a_later_one_ordered_after(
    db: Db, db_url: str
) -> None:
    """A change committed while the snapshot waits for its lock is snapshotted as
    committed; a change whose transaction began before the snapshot (an earlier ts) but
    wrote after it counts after it, in table_as_of too."""
    oid = filled_table(db, 50)
    with connect(db_url) as writer, connect(db_url) as late:
        writer.run("begin")
        writer.run("update public.item set v = 'in flight' where id = 7")
        late.run("begin")
        late.run("select now()")  # the late writer's ts: before the snapshot's
        done: list[Any] = []
        snapshotter = threading.Thread(
            target=lambda: done.append(
                db.rows("select * from audit.snapshot_batch('public.item', null)")
            )
        )
        snapshotter.start()
        for _ in range(100):
            if writer.one(
                "select count(*) from pg_locks where not granted and relation = %s", [oid]
            ):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the snapshot did not wait for the writer in flight")
        assert not done
        writer.run("commit")
        snapshotter.join(30)
        assert done == [[(50, True)]]
        late.run("update public.item set v = 'late' where id = 8")
        late.run("commit")
    records = {rec["id"]: rec for *_, rec, _ in snapshot_rows(db)}
    assert records[7] == item(7, "in flight")
    assert records[8] == item(8)
    late_ts, snapshot_ts = db.rows(
        "select min(ts) filter (where op = 'UPDATE' and record->>'v' = 'late'),"
        " max(ts) filter (where op = 'SNAPSHOT') from audit.record_version"
    )[0]
    assert late_ts < snapshot_ts
    rebuilt = {rec["id"]: rec for _, rec, _ in as_of(db, "public.item", now(db))}
    assert rebuilt[7] == item(7, "in flight") and rebuilt[8] == item(8, "late")
    assert as_of(db, "public.item", now(db)) == table_now(db, "public.item", ("id",))


# --- table_as_of ------------------------------------------------------------------------


def test_table_as_of_row_for_row_through_changes_renames_and_drops(db: Db) -> None:
    """A table tracked empty is complete from then on. At each moment the rebuilt table is
    the table as it was, under today's column names, with dropped columns' values kept."""
    db.run("create table public.note (id int primary key, title text, body text, tag text)")
    db.run("select audit.enable_tracking('public.note')")
    oid = db.oid("public.note")
    assert db.rows(
        "select how, after_id from audit.trail_complete_since where table_oid = %s", [oid]
    ) == [("empty", 0)]
    rid = {i: record_id(oid, str(i)) for i in (1, 2, 3, 4, 30)}

    t0 = now(db)
    db.run("insert into note values (1, 'a', 'A', 't1'), (2, 'b', 'B', 't2'), (3, 'c', 'C', null)")
    t1 = now(db)
    db.run("update note set title = 'a2' where id = 1")
    db.run("delete from note where id = 2")
    t2 = now(db)
    db.run("update note set id = 30 where id = 3")  # a key change
    t3 = now(db)
    db.run("truncate note")
    db.run("insert into note values (4, 'd', 'D', 't4')")
    t4 = now(db)
    db.run("alter table note rename column title to heading")
    db.run("alter table note drop column tag")
    t5 = now(db)
    db.run("update note set heading = 'd2' where id = 4")
    db.run("alter table note rename column body to text")
    t6 = now(db)

    assert db.rows(
        "select kind, old_name::text, new_name::text from audit.column_change order by id"
    ) == [("rename", "title", "heading"), ("drop", "tag", None), ("rename", "body", "text")]
    assert as_of(db, "note", t0) == []
    assert as_of(db, "note", t1) == sorted([
        (rid[1], {"id": 1, "heading": "a", "text": "A"}, {"tag": "t1"}),
        (rid[2], {"id": 2, "heading": "b", "text": "B"}, {"tag": "t2"}),
        (rid[3], {"id": 3, "heading": "c", "text": "C"}, {"tag": None}),
    ])  # fmt: skip
    assert as_of(db, "note", t2) == sorted([
        (rid[1], {"id": 1, "heading": "a2", "text": "A"}, {"tag": "t1"}),
        (rid[3], {"id": 3, "heading": "c", "text": "C"}, {"tag": None}),
    ])  # fmt: skip
    assert as_of(db, "note", t3) == sorted([
        (rid[1], {"id": 1, "heading": "a2", "text": "A"}, {"tag": "t1"}),
        (rid[30], {"id": 30, "heading": "c", "text": "C"}, {"tag": None}),
    ])  # fmt: skip
    assert as_of(db, "note", t4) == [
        (rid[4], {"id": 4, "heading": "d", "text": "D"}, {"tag": "t4"})
    ]
    assert as_of(db, "note", t5) == as_of(db, "note", t4)
    assert as_of(db, "note", t6) == [(rid[4], {"id": 4, "heading": "d2", "text": "D"}, None)]
    assert as_of(db, "note", t6) == table_now(db, "note", ("id",))
    # The mapping on its own: a record of the first version under today's names.
    first = db.one("select min(id) from audit.record_version")
    assert db.rows(
        "select * from audit.current_names(%s, %s::jsonb, %s)",
        [oid, '{"id": 1, "title": "a", "body": "A", "tag": "t1"}', first],
    ) == [({"id": 1, "heading": "a", "text": "A"}, {"tag": "t1"})]


def test_renames_seen_late_without_the_event_trigger_map_together(db: Db) -> None:
    """Without the event trigger (a non-superuser install), the next enable_tracking sees
    the changes: a swap of two names is one step, applied together."""
    db.run("create table public.pair (id int primary key, a text, b text)")
    db.run("select audit.enable_tracking('public.pair')")
    db.run("insert into pair values (1, 'A', 'B')")
    db.run("alter event trigger audit_follow_primary_key_changes disable")
    db.run("alter table pair rename column a to tmp")
    db.run("alter table pair rename column b to a")
    db.run("alter table pair rename column tmp to b")
    db.run("alter event trigger audit_follow_primary_key_changes enable")
    assert db.rows("select count(*) from audit.column_change") == [(0,)]
    db.run("select audit.enable_tracking('public.pair')")
    assert db.rows(
        "select step, old_name::text, new_name::text from audit.column_change order by id"
    ) == [(db.one("select min(step) from audit.column_change"), "a", "b"),
          (db.one("select min(step) from audit.column_change"), "b", "a")]  # fmt: skip
    oid = db.oid("public.pair")
    assert as_of(db, "pair", now(db)) == [
        (record_id(oid, "1"), {"id": 1, "a": "B", "b": "A"}, None)
    ]
    assert as_of(db, "pair", now(db)) == table_now(db, "pair", ("id",))


def test_table_as_of_refuses_where_the_trail_is_not_complete(db: Db) -> None:
    db.run("create table public.account (id int primary key, name text)")
    db.run("insert into account values (1, 'before tracking')")
    db.run("select audit.enable_tracking('public.account')")
    db.run("insert into account values (2, 'tracked')")
    assert error_of(db, "select * from audit.table_as_of('account', now())") == (
        INCOMPLETE,
        "audit.table_as_of: the audit trail of public.account is not complete: it does not record"
        " the rows the table held when tracking began",
        "Take a snapshot: call audit.snapshot('public.account') (op.enable_tracking(...,"
        " snapshot=True) in a migration); the trail rebuilds public.account from its end on.",
    )
    before = now(db)
    db.run("select audit.snapshot_batch('account', null)")
    since = db.one("select since from audit.trail_complete_since")
    code, message, hint = error_of(db, "select * from audit.table_as_of('account', %s)", [before])
    assert code == INCOMPLETE
    assert message == db.one(
        "select 'audit.table_as_of: the audit trail of public.account is complete from '"
        " || %s::timestamptz || ' on, not at ' || %s::timestamptz from (select set_config("
        "'TimeZone', 'UTC', true)) s",
        [since, before],
    )
    assert hint == (
        "Its snapshot finished then: ask for a later time. Rows from before were not"
        " recorded, so an earlier state cannot be rebuilt."
    )
    oid = db.oid("account")
    assert as_of(db, "account", now(db)) == sorted([
        (record_id(oid, "1"), {"id": 1, "name": "before tracking"}, None),
        (record_id(oid, "2"), {"id": 2, "name": "tracked"}, None),
    ])  # fmt: skip
    # Audit triggers disabled: a gap begins, the mark goes (the event trigger sees it).
    db.run("alter table account disable trigger audit_insert")
    assert db.rows("select count(*) from audit.trail_complete_since") == [(0,)]
    assert error_of(db, "select * from audit.table_as_of('account', now())") == (
        INCOMPLETE,
        "audit.table_as_of: table public.account is not tracked now, so its audit trail may"
        " have a gap",
        "Track it (op.enable_tracking()) and take a snapshot: call"
        " audit.snapshot('public.account').",
    )
    db.run("alter table account enable trigger audit_insert")
    assert error_of(db, "select * from audit.table_as_of('account', now())")[0] == INCOMPLETE
    db.run("select audit.snapshot_batch('account', null)")
    assert len(as_of(db, "account", now(db))) == 2
    # Tracking stopped and started again: the mark goes with disable_tracking.
    db.run("select audit.disable_tracking('account')")
    db.run("select audit.enable_tracking('account')")
    assert error_of(db, "select * from audit.table_as_of('account', now())")[0] == INCOMPLETE


def test_table_as_of_uses_the_table_oid_index(db: Db) -> None:
    filled_table(db, 3000)
    db.run("create table public.other (id int primary key, v text)")
    db.run("select audit.enable_tracking('public.other')")
    db.run("insert into other select g, 'x' from generate_series(1, 20000) g")
    db.run("select audit.snapshot_batch('public.item', null)")
    db.run("update item set v = 'w' where id <= 100")
    db.run("update other set v = 'y'")
    db.run("analyze audit.record_version")
    db.run("load 'auto_explain'")
    db.run(
        "set auto_explain.log_min_duration = 0; set auto_explain.log_nested_statements = on;"
        " set client_min_messages = log"
    )
    db.take_notices()
    assert len(db.rows("select * from audit.table_as_of('public.item', now())")) == 3000
    plans = "\n".join(db.take_notices())
    db.run("reset client_min_messages; reset auto_explain.log_min_duration")
    # Both reads of the history (the last TRUNCATE, the versions) go through an index:
    # the table's (table_oid) or the ids after the snapshot began (the primary key).
    scans = [
        line.strip().removeprefix("->").strip()
        for line in plans.splitlines()
        if " on record_version " in line
    ]
    assert len(scans) == 2, plans
    assert all(
        scan.startswith(("Index Scan using record_version_table_oid on record_version v",
                         "Index Scan using record_version_pkey on record_version v"))
        or (scan.startswith("Bitmap Heap Scan on record_version v")
            and "Bitmap Index Scan on record_version_table_oid" in plans)
        for scan in scans
    ), plans  # fmt: skip


# --- who may snapshot ---------------------------------------------------------------------


def test_who_may_take_a_snapshot(db: Db) -> None:
    """The audit owner, and a table's owner to whom it granted the function; never a
    writer with DML rights alone, nor an owner for another role's table."""
    suffix = uuid.uuid4().hex[:8]
    owner, writer = f"owner_{suffix}", f"writer_{suffix}"
    db.run(f"create role {owner}; create role {writer}")
    try:
        db.run(f"create table public.mine (id int primary key); alter table mine owner to {owner}")
        db.run("create table public.theirs (id int primary key)")
        db.run("insert into mine values (1); insert into theirs values (1)")
        db.run("select audit.enable_tracking('mine'), audit.enable_tracking('theirs')")
        db.run(f"grant select, insert, update, delete, truncate on mine, theirs to {writer}")
        db.run(f"set role {writer}")
        assert error_of(db, "select audit.snapshot_batch('mine', null)")[:2] == (
            "42501",
            "permission denied for schema audit",
        )
        assert error_of(db, "call audit.snapshot('mine')")[:2] == (
            "42501",
            "permission denied for schema audit",
        )
        db.run("reset role")
        # Granted EXECUTE by mistake: still only for tables the acting role owns.
        db.run(
            f"grant usage on schema audit to {writer}, {owner};"
            f" grant execute on function audit.snapshot_batch(regclass, integer) to {writer},"
            f" {owner}; grant execute on procedure audit.snapshot(regclass, integer) to {owner}"
        )
        db.run(f"set role {writer}")
        assert error_of(db, "select audit.snapshot_batch('mine', null)") == (
            "42501",
            f"audit.snapshot: role {writer} does not own table public.mine",
            "Take the snapshot as the owner of public.mine or as the role that installed the"
            " audit trail.",
        )
        db.run(f"set role {owner}")
        assert error_of(db, "select audit.snapshot_batch('theirs', null)")[:2] == (
            "42501",
            f"audit.snapshot: role {owner} does not own table public.theirs",
        )
        db.run("call audit.snapshot('mine')")
        db.run("reset role")
        assert [rec for *_, rec, _ in snapshot_rows(db)] == [{"id": 1}]
        assert db.one("select count(*) from audit.trail_complete_since") == 1
    finally:
        db.run("reset role")
        db.run(f"drop owned by {owner}, {writer}; drop role {owner}, {writer}")


def test_snapshot_refuses_what_it_cannot_do_right(db: Db) -> None:
    db.run("create table public.plain (id int primary key)")
    assert error_of(db, "select audit.snapshot_batch('plain', null)") == (
        "55000",
        "audit.snapshot: table public.plain is not tracked",
        "Track it first (op.enable_tracking() in a migration, or"
        " audit.enable_tracking('public.plain')): the snapshot records its rows, the triggers"
        " every change after.",
    )
    db.run("select audit.enable_tracking('plain')")
    assert error_of(db, "select audit.snapshot_batch('plain', 0)")[:2] == (
        "22023",
        "audit.snapshot: batch_size must be 1 or more (or null: the whole table), not 0",
    )
    db.run("begin isolation level repeatable read")
    assert error_of(db, "select audit.snapshot_batch('plain', null)")[:2] == (
        "25000",
        "audit.snapshot: run it under READ COMMITTED, not REPEATABLE READ",
    )
    db.run("rollback")
    db.run("begin")
    assert error_of(db, "call audit.snapshot('plain')")[0] == "2D000"
    db.run("rollback")


# --- upgrades, downgrades and the migration's own transaction ------------------------------


def test_a_fresh_install_snapshots_in_its_own_transaction(engine: sa.Engine, db_url: str) -> None:
    """A first migration installs the audit trail, tracks a table with rows and snapshots it,
    all in one transaction (the label SNAPSHOT exists from the install's first step)."""
    with engine.begin() as connection:
        connection.exec_driver_sql("create table account (id int primary key, name text)")
        connection.exec_driver_sql("insert into account values (1, 'a'), (2, 'b')")

    def migration(op: Any) -> None:
        op.install_audit()
        op.enable_tracking("account")
        op.execute("select audit.snapshot_batch('account', null)")

    run_online(engine, migration)
    with connect(db_url) as db:
        oid = db.oid("account")
        assert snapshot_rows(db) == [
            (record_id(oid, "1"), None, ("public", "account"), {"id": 1, "name": "a"}, None),
            (record_id(oid, "2"), None, ("public", "account"), {"id": 2, "name": "b"}, None),
        ]


def test_upgrade_3_to_4_then_snapshot_and_the_downgrade_that_refuses_to_lose_them(
    engine: sa.Engine, db_url: str
) -> None:
    install_released(engine, 3)
    with connect(db_url) as db:
        db.run("create table account (id int primary key, name text)")
        db.run("insert into account values (1, 'before')")
        db.run("select audit.enable_tracking('account')")
        db.run("update account set name = 'tracked'")
        before = db.audit_rows()
        # In the upgrade's own transaction PostgreSQL cannot write the new label yet.
        db.run("begin")
        for statement in sql.upgrade_statements(3, 4):
            db.run(statement)
        assert error_of(db, "select audit.snapshot_batch('account', null)") == (
            "HA002",
            "audit.snapshot: the audit schema was upgraded to version 4 in this transaction,"
            " and PostgreSQL cannot write the new label SNAPSHOT before that commits",
            "Commit the upgrade first: op.upgrade_audit() in a migration of its own, run by"
            " its own alembic upgrade (or with transaction_per_migration=True), then snapshot"
            " public.account.",
        )
        db.run("rollback")
        assert db.one("select version from audit.schema_version") == 3
        run_online(engine, lambda op: op.upgrade_audit(from_version=3, to_version=4))
        assert db.audit_rows() == before
        # The tracked table's columns were noted by the upgrade: its first rename is seen.
        db.run("alter table account rename column name to full_name")
        assert db.rows("select old_name::text, new_name::text from audit.column_change") == [
            ("name", "full_name")
        ]
        db.run("select audit.snapshot_batch('account', null)")
        oid = db.oid("account")
        assert as_of(db, "account", now(db)) == [
            (record_id(oid, "1"), {"id": 1, "full_name": "tracked"}, None)
        ]
        with_snapshot = catalog_snapshot(db)

        # The downgrade refuses, changing nothing, while SNAPSHOT rows or column changes exist.
        with pytest.raises(sa.exc.DBAPIError) as error:
            run_online(engine, lambda op: op.downgrade_audit(from_version=4, to_version=3))
        assert error.value.orig.pgcode == "55000"  # type: ignore[union-attr]
        assert (
            "audit schema downgrade to version 3: audit.record_version holds SNAPSHOT rows,"
            " which version 3 cannot keep"
        ) in str(error.value)
        assert catalog_snapshot(db) == with_snapshot
        db.run("delete from audit.record_version where op = 'SNAPSHOT'")
        with pytest.raises(sa.exc.DBAPIError) as error:
            run_online(engine, lambda op: op.downgrade_audit(from_version=4, to_version=3))
        assert (
            "audit schema downgrade to version 3: audit.column_change records 1 column renames"
            " or drops of tracked tables, which version 3 cannot keep"
        ) in str(error.value)
        db.run("delete from audit.column_change")
        run_online(engine, lambda op: op.downgrade_audit(from_version=4, to_version=3))
        assert db.one("select version from audit.schema_version") == 3
        db.run("update account set full_name = 'after downgrade'")
        assert db.audit_rows()[: len(before)] == before
        assert [op for op, *_ in db.audit_rows()] == ["UPDATE", "UPDATE"]
        # Version 3's rules again: a SNAPSHOT row is refused.
        assert (
            error_of(
                db,
                "insert into audit.record_version (record_id, op, table_oid, table_schema,"
                " table_name, record) values (gen_random_uuid(), 'SNAPSHOT', 1, 's', 't', '{}')",
            )[0]
            == "23514"
        )


# --- layouts --------------------------------------------------------------------------------


def test_partitioned_layout(engine: sa.Engine, db_url: str) -> None:
    run_online(engine, lambda op: op.install_audit(partitioned={"interval": "1 month"}))
    with connect(db_url) as db:
        assert (
            db.one("select relkind from pg_class where oid = 'audit.record_version'::regclass")
            == "p"
        )
        oid = filled_table(db, 300)
        db.run("call audit.snapshot('public.item', batch_size => 100)")
        db.run("delete from item where id = 2")
        db.run("update item set v = 'w' where id = 3")
        assert len(snapshot_rows(db)) == 300
        assert as_of(db, "public.item", now(db)) == table_now(db, "public.item", ("id",))
        assert record_id(oid, "2") not in {rid for rid, *_ in as_of(db, "public.item", now(db))}


def test_timescale_layout(ts_engine: sa.Engine, ts_url: str) -> None:
    """The history as a TimescaleDB hypertable (skipped where TimescaleDB is missing)."""
    with ts_engine.begin() as connection:
        connection.exec_driver_sql("create extension if not exists timescaledb")
    run_online(ts_engine, lambda op: op.install_audit(timescale={"chunk_interval": "1 day"}))
    with connect(ts_url) as db:
        assert (
            db.one(
                "select count(*) from timescaledb_information.hypertables"
                " where hypertable_schema = 'audit' and hypertable_name = 'record_version'"
            )
            == 1
        )
        oid = filled_table(db, 300)
        db.run("call audit.snapshot('public.item', batch_size => 100)")
        db.run("delete from item where id = 2")
        db.run("alter table item rename column v to w")
        db.run("update item set w = 'changed' where id = 3")
        assert len(snapshot_rows(db)) == 300
        rebuilt = as_of(db, "public.item", now(db))
        assert rebuilt == table_now(db, "public.item", ("id",))
        assert {rid: rec for rid, rec, _ in rebuilt}[record_id(oid, "4")] == {
            "id": 4, "w": "v4", "pad": "x" * 200
        }  # fmt: skip


# --- red team (helper tmD): roles, concurrency, the completeness mark, exclude and renames --


@pytest.fixture
def roles(db: Db) -> Iterator[dict[str, str]]:
    """owner (owns public.vault), reader (may read the history), type_owner (schema app)."""
    suffix = uuid.uuid4().hex[:8]
    made = {kind: f"{kind}_{suffix}" for kind in ("owner", "reader", "type_owner")}
    for role in made.values():
        db.run(f"create role {role}")
    yield made
    db.run("reset role")
    for role in made.values():
        db.run(f"drop owned by {role} cascade; drop role {role}")


def owned_vault(db: Db, owner: str) -> int:
    """public.vault, tracked while empty (complete from then on), owned by ``owner``."""
    db.run("create table public.vault (id int primary key, v text)")
    db.run("select audit.enable_tracking('public.vault')")
    db.run(f"alter table public.vault owner to {owner}")
    db.run("insert into vault values (1, 'recorded')")
    return db.oid("public.vault")


NOT_TRACKED_NOW = (
    INCOMPLETE,
    "audit.table_as_of: table public.vault is not tracked now, so its audit trail may have a gap",
    "Track it (op.enable_tracking()) and take a snapshot: call audit.snapshot('public.vault').",
)
NOT_COMPLETE = (
    INCOMPLETE,
    "audit.table_as_of: the audit trail of public.vault is not complete: it does not record"
    " the rows the table held when tracking began",
    "Take a snapshot: call audit.snapshot('public.vault') (op.enable_tracking(...,"
    " snapshot=True) in a migration); the trail rebuilds public.vault from its end on.",
)


@pytest.mark.parametrize(
    "gap",
    [
        "drop trigger audit_insert on vault",
        "alter table vault enable replica trigger audit_insert",
    ],
)
def test_owner_cannot_keep_a_trail_marked_complete_across_a_gap(
    db: Db, roles: dict[str, str], gap: str
) -> None:
    """The table owner drops an audit trigger (DROP TRIGGER: no event trigger sees it) or
    makes it fire only on replicas (ENABLE REPLICA: enable_tracking kept it so), writes
    unrecorded rows, and has tracking made whole again by a migration: the trail must not
    stay marked complete, or table_as_of returns a table without those rows."""
    oid = owned_vault(db, roles["owner"])
    db.run(f"set role {roles['owner']}")
    db.run(gap)
    db.run("insert into vault values (2, 'unrecorded')")
    db.run("reset role")
    assert error_of(db, "select * from audit.table_as_of('public.vault', now())") == (
        NOT_TRACKED_NOW
    )
    assert error_of(db, "select audit.snapshot_batch('public.vault', null)")[:2] == (
        "55000",
        "audit.snapshot: table public.vault is not tracked (an audit trigger is disabled,"
        " replica-only or missing)",
    )
    # The event trigger saw the ALTER TABLE: the mark is gone already (DROP TRIGGER: later).
    assert db.one("select count(*) from audit.trail_complete_since") == (
        0 if "replica" in gap else 1
    )
    # Tracking made whole again: by the migration (a dropped trigger is made anew) or by
    # the owner (enable_tracking keeps a replica-only trigger as it is, like a disabled one).
    db.run("select audit.enable_tracking('public.vault', '{}', false, false)")
    if "replica" in gap:
        db.run("alter table vault enable trigger audit_insert")
    assert db.rows("select tgenabled from pg_trigger where tgrelid = %s", [oid]) == [("O",)] * 5
    assert db.one("select count(*) from audit.trail_complete_since") == 0
    assert error_of(db, "select * from audit.table_as_of('public.vault', now())") == NOT_COMPLETE
    db.run("select audit.snapshot_batch('public.vault', null)")
    assert as_of(db, "public.vault", now(db)) == table_now(db, "public.vault", ("id",))
    assert len(as_of(db, "public.vault", now(db))) == 2


def test_a_second_snapshot_waiting_for_the_first_writes_nothing(db: Db, db_url: str) -> None:
    """Two snapshots of one table at once: the second waits for the first's lock, then
    finds the trail complete (it checks again under the lock), writes nothing and says so."""
    filled_table(db, 40)
    with connect(db_url) as first:
        first.run("begin")
        assert first.rows("select * from audit.snapshot_batch('public.item', null)") == [(40, True)]
        done: list[Any] = []
        second = threading.Thread(
            target=lambda: done.append(
                db.rows("select * from audit.snapshot_batch('public.item', null)")
            )
        )
        second.start()
        for _ in range(100):
            if first.one("select count(*) from pg_locks where not granted"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the second snapshot did not wait for the first")
        first.run("commit")
        second.join(30)
    assert done == [[(0, True)]]
    assert db.one("select count(*) from audit.record_version where op = 'SNAPSHOT'") == 40


def test_snapshot_checks_the_table_again_once_it_holds_the_lock(
    db: Db, db_url: str, roles: dict[str, str]
) -> None:
    """The owner disables an audit trigger while a snapshot waits for its lock: the
    snapshot refuses, instead of marking complete a trail that records no updates."""
    db.run("create table public.vault (id int primary key, v text)")
    db.run("insert into vault values (1, 'before tracking')")
    db.run("select audit.enable_tracking('public.vault')")
    db.run(f"alter table public.vault owner to {roles['owner']}")
    with connect(db_url) as owner:
        owner.run(f"set role {roles['owner']}")
        owner.run("begin")
        owner.run("alter table vault disable trigger audit_update")
        done: list[Any] = []

        def snapshot() -> None:
            try:
                db.run("select audit.snapshot_batch('public.vault', null)")
            except Exception as exc:  # the outcome is asserted below
                done.append(exc)

        taker = threading.Thread(target=snapshot)
        taker.start()
        for _ in range(100):
            if owner.one("select count(*) from pg_locks where not granted"):
                break
            time.sleep(0.05)
        owner.run("commit")
        taker.join(30)
    (error,) = done
    assert (error.pgcode, error.diag.message_primary) == (
        "55000",
        "audit.snapshot: table public.vault is not tracked (an audit trigger is disabled,"
        " replica-only or missing)",
    )
    assert db.one("select count(*) from audit.record_version") == 0
    assert db.one("select count(*) from audit.trail_complete_since") == 0


def test_a_reader_granted_the_history_can_rebuild_a_table(db: Db, roles: dict[str, str]) -> None:
    """table_as_of runs as its caller: the rights the design names are enough."""
    oid = owned_vault(db, roles["owner"])
    db.run("alter table vault rename column v to w")
    reader = roles["reader"]
    db.run(
        f"grant usage on schema audit to {reader}; grant select on audit.record_version,"
        f" audit.trail_complete_since, audit.column_change to {reader}"
    )
    db.run(f"set role {reader}")
    assert as_of(db, "public.vault", now(db)) == [
        (record_id(oid, "1"), {"id": 1, "w": "recorded"}, None)
    ]
    # Without SELECT on the table itself, nothing but what the history holds.
    assert error_of(db, "select * from public.vault")[0] == "42501"
    db.run("reset role")


def test_a_type_owners_operators_and_casts_never_run_in_a_snapshot(
    db: Db, roles: dict[str, str]
) -> None:
    """A key of a type whose owner wrote operators, a cast to text and a cast to a domain,
    each raising when called: the snapshot runs none (page ranges, jsonb, uuid)."""
    role = roles["type_owner"]
    db.run(f"create schema app authorization {role}; grant usage on schema app to public")
    db.run(f"set role {role}")
    db.run(
        "create type app.mood as enum ('ok', 'bad');"
        "create function app.boom(app.mood, app.mood) returns boolean language plpgsql as"
        " $$ begin raise exception 'type owner code ran as %', current_user; end $$;"
        "create function app.boom_text(app.mood) returns text language plpgsql as"
        " $$ begin raise exception 'type owner code ran as %', current_user; end $$;"
        "create operator app.= (leftarg = app.mood, rightarg = app.mood, function = app.boom);"
        "create operator app.< (leftarg = app.mood, rightarg = app.mood, function = app.boom);"
        "create cast (app.mood as text) with function app.boom_text(app.mood)"
    )
    db.run("reset role")
    db.run("set search_path = app, public")
    db.run("create table public.feeling (k app.mood primary key, n int)")
    db.run("insert into public.feeling values ('ok', 1), ('bad', 2)")
    db.run("select audit.enable_tracking('public.feeling')")
    assert db.rows("select * from audit.snapshot_batch('public.feeling', 1)") == [(2, True)]
    db.run("reset search_path")
    oid = db.oid("public.feeling")
    assert snapshot_rows(db) == [
        (record_id(oid, "ok"), None, ("public", "feeling"), {"k": "ok", "n": 1}, None),
        (record_id(oid, "bad"), None, ("public", "feeling"), {"k": "bad", "n": 2}, None),
    ]


def exclude_args(db: Db, table: str) -> list[bytes]:
    return sorted(
        {
            bytes(args)
            for (args,) in db.rows(
                "select tgargs from pg_trigger where tgrelid = %s::regclass"
                " and tgfoid = 'audit.record_row_change()'::regprocedure",
                [table],
            )
        }
    )


def test_an_excluded_column_stays_excluded_when_renamed_and_leaves_when_dropped(
    db: Db, roles: dict[str, str]
) -> None:
    """Before version 4 the trigger arguments kept the old name, so a renamed excluded
    column (a secret) began to be recorded. The event trigger now follows the rename."""
    db.run("create table public.login (id int primary key, who text, secret text, pin text)")
    db.run("select audit.enable_tracking('public.login', '{secret,pin}', true, false)")
    db.run(f"alter table login owner to {roles['owner']}")
    db.run(f"set role {roles['owner']}")
    db.run("alter table login rename column secret to password")
    db.run("insert into login values (1, 'ann', 'hunter2', '1234')")
    db.run("alter table login rename column pin to a_pin")  # sorts first now
    db.run("update login set who = 'anne', password = 'x', a_pin = '0'")
    db.run("reset role")
    assert exclude_args(db, "login") == [b"id\x00\x00exclude=a_pin\x00exclude=password\x00"
                                         b"skip_unchanged\x00"]  # fmt: skip
    assert [(op, rec, old) for op, _, _, _, _, _, rec, old in db.audit_rows()] == [
        ("INSERT", {"id": 1, "who": "ann"}, None),
        ("UPDATE", {"id": 1, "who": "anne"}, {"id": 1, "who": "ann"}),
    ]
    db.run("alter table login drop column password")
    assert exclude_args(db, "login") == [b"id\x00\x00exclude=a_pin\x00skip_unchanged\x00"]
    db.run("alter table login add column password text")  # a new column: recorded
    db.run("update login set password = 'new'")
    assert db.audit_rows()[-1][6] == {"id": 1, "who": "anne", "password": "new"}


def test_autogenerate_is_clean_after_renaming_an_excluded_column(engine: sa.Engine) -> None:
    """The model's exclude names the new column once the user renamed it (alembic check)."""
    from alembic_project import autogenerate

    def model(secret: str) -> sa.MetaData:
        metadata = sa.MetaData()
        sa.Table("login", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column(secret, sa.Text), info={"audited": {"exclude": [secret]}})  # fmt: skip
        return metadata

    with engine.begin() as connection:
        model("secret").create_all(connection)
    run_online(engine, lambda op: op.install_audit())
    with engine.begin() as connection:
        from alembic.migration import MigrationContext
        from alembic.operations import Operations

        operations = Operations(MigrationContext.configure(connection))
        operations.enable_tracking("login", exclude=["secret"])  # type: ignore[attr-defined]
        assert autogenerate(connection, model("secret")) == ([], [])
        operations.alter_column("login", "secret", new_column_name="password")
        assert autogenerate(connection, model("password")) == ([], [])


# --- the enum, the upgrade's rules in every layout ------------------------------------------


def enum_order(db: Db) -> list[tuple[Any, ...]]:
    return db.rows(
        "select e.enumlabel::text, e.enumsortorder, (select array_agg(x::text order by x)"
        " from unnest(enum_range(null::audit.operation)) as x)"
        " from pg_enum e where e.enumtypid = 'audit.operation'::regtype order by e.enumsortorder"
    )


def test_the_enum_of_a_fresh_install_and_an_upgraded_one_are_the_same(
    db: Db, engine: sa.Engine, db_url: str, pg_server: Any
) -> None:
    """steps/1.sql creates SNAPSHOT and REDACT with the other labels; an upgrade adds them
    at the end: the same labels, the same sort order (positions and comparisons)."""
    from audit_helpers import extra_database

    fresh = enum_order(db)
    order = ["INSERT", "UPDATE", "DELETE", "TRUNCATE", "SNAPSHOT", "REDACT"]
    assert fresh == [(label, float(i + 1), order) for i, label in enumerate(order)]
    for version in (1, 3, 4):
        with extra_database(pg_server, f"tmd_enum_{version}") as name:
            other = sa.create_engine(pg_server.url(name))
            try:
                install_released(other, version)
                run_online(
                    other, lambda op, v=version: op.upgrade_audit(from_version=v, to_version=5)
                )
                with connect(pg_server.url(name)) as upgraded:
                    assert enum_order(upgraded) == fresh
            finally:
                other.dispose()


RULES_3 = [
    ("record_version_record_id_when_new",
     "CHECK (((op = ANY (ARRAY['INSERT'::audit.operation, 'UPDATE'::audit.operation]))"
     " = (record_id IS NOT NULL)))"),
    ("record_version_record_when_new",
     "CHECK (((op = ANY (ARRAY['INSERT'::audit.operation, 'UPDATE'::audit.operation]))"
     " = (record IS NOT NULL)))"),
]  # fmt: skip
RULES_4 = [
    (name, definition.replace(
        "(op = ANY (ARRAY['INSERT'::audit.operation, 'UPDATE'::audit.operation]))",
        "((op = ANY (ARRAY['INSERT'::audit.operation, 'UPDATE'::audit.operation]))"
        " OR ((op)::text = 'SNAPSHOT'::text))",
    ))
    for name, definition in RULES_3
]  # fmt: skip


def new_rules(db: Db) -> list[tuple[Any, ...]]:
    """The two rules steps/4.sql replaces, on the audit table and on each partition/chunk."""
    found = db.rows(
        "select k.conrelid::regclass::text, k.conname::text, pg_get_constraintdef(k.oid)"
        " from pg_constraint k where k.conname like 'record_version_record%%_when_new'"
        " order by 1, 2"
    )
    tables = sorted({table for table, _, _ in found})
    assert "audit.record_version" in tables
    rules = [(name, definition) for table, name, definition in found if table == tables[0]]
    assert all([(n, d) for t, n, d in found if t == table] == rules for table in tables), found
    return rules


def upgrade_and_downgrade_in_a_layout(engine: sa.Engine, url: str, layout: list[str]) -> None:
    """Version 3 in ``layout`` with history, upgraded to 4 (snapshot, table_as_of), then
    back to 3: every row kept, the rules of each version on every part of the table."""
    install_released(engine, 3)
    with connect(url) as db:
        for statement in layout:
            db.run(statement)
        db.run("create table public.item (id int primary key, v text)")
        db.run("select audit.enable_tracking('public.item')")
        db.run("insert into item select g, 'v' || g from generate_series(1, 50) g")
        db.run("update item set v = 'w' where id <= 5")
        db.run("delete from item where id = 6")
        if db.one("select to_regclass('timescaledb_information.chunks') is not null"):
            db.run(
                "alter table audit.record_version set (timescaledb.compress,"
                " timescaledb.compress_segmentby = 'table_oid',"
                " timescaledb.compress_orderby = 'ts')"
            )
            db.run("select compress_chunk(c) from show_chunks('audit.record_version') as c")
            assert db.rows("select is_compressed from timescaledb_information.chunks") == [(True,)]
        history = db.audit_rows()
        assert new_rules(db) == RULES_3

        run_online(engine, lambda op: op.upgrade_audit(from_version=3, to_version=4))
        assert new_rules(db) == RULES_4
        assert db.audit_rows() == history
        # Tracked under version 3 (no completeness mark): its baseline, then the table.
        assert error_of(db, "select * from audit.table_as_of('public.item', now())")[0] == (
            INCOMPLETE
        )
        assert db.rows("select * from audit.snapshot_batch('public.item', null)") == [(49, True)]
        assert as_of(db, "public.item", now(db)) == table_now(db, "public.item", ("id",))
        # A SNAPSHOT row breaking the rules is refused on every part of the table.
        assert (
            error_of(
                db,
                "insert into audit.record_version (op, table_oid, table_schema, table_name)"
                " values ('SNAPSHOT', 1, 's', 't')",
            )[0]
            == "23514"
        )

        db.run("delete from audit.record_version where op = 'SNAPSHOT'")
        run_online(engine, lambda op: op.downgrade_audit(from_version=4, to_version=3))
        assert db.one("select version from audit.schema_version") == 3
        assert new_rules(db) == RULES_3
        assert db.audit_rows() == history
        db.run("update item set v = 'after' where id = 1")
        assert db.audit_rows()[:-1] == history and db.audit_rows()[-1][0] == "UPDATE"


def test_upgrade_and_downgrade_of_the_partitioned_layout(engine: sa.Engine, db_url: str) -> None:
    from hyper_audit_alembic.migration.statements import install_statements

    install = set(sql.install_statements())
    layout = [s for s in install_statements(None, {"interval": "1 month"}) if s not in install]
    upgrade_and_downgrade_in_a_layout(engine, db_url, layout)
    with connect(db_url) as db:
        kind = "select relkind from pg_class where oid = 'audit.record_version'::regclass"
        assert db.one(kind) == "p"


def test_upgrade_and_downgrade_of_a_hypertable_with_compressed_chunks(
    ts_engine: sa.Engine, ts_url: str
) -> None:
    """TimescaleDB (skipped where missing): the rules are replaced on the hypertable and its
    compressed chunk, whose rows stay compressed and unchanged."""
    with ts_engine.begin() as connection:
        connection.exec_driver_sql("create extension if not exists timescaledb")
    upgrade_and_downgrade_in_a_layout(ts_engine, ts_url, [])
    with connect(ts_url) as db:
        assert db.rows("select is_compressed from timescaledb_information.chunks") == [(True,)]
