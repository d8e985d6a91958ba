"""Issue 14, item 3: reverting a TRUNCATE (revert_transaction, revert_context, CLI revert).

A TRUNCATE is undone by INSERTing back the rows the table held just before it, as the
trail rebuilds them (``audit.table_before``: the table's audit rows with a smaller id),
where the table's trail is complete then (tracked while empty, or a snapshot); elsewhere
it is refused with the fix. Each test checks the table row for row and the audit rows the
revert wrote. Real PostgreSQL; writes through a SQLAlchemy Session, checks through an
autocommit psycopg2 connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from audit_helpers import Db, connect, run_online
from sqlalchemy.orm import Session

from hyper_audit_alembic import (
    ConflictError,
    IncompleteTrailError,
    RowWrite,
    audit_context,
    revert_context,
    revert_transaction,
)

ACCOUNT = "create table account (id int primary key, name text not null, balance int)"


@pytest.fixture
def db(engine: sa.Engine, db_url: str) -> Iterator[Db]:
    """The audit schema and public.account, tracked while empty (its trail is complete)."""
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run("set timezone = 'UTC'")
        db.run(ACCOUNT)
        db.run("select audit.enable_tracking('public.account')")
        yield db


def rows(db: Db, table: str = "account") -> list[tuple[Any, ...]]:
    return db.rows(f"select * from {table} order by 1, 2")


def audit(db: Db, after: int) -> list[tuple[Any, ...]]:
    """(op, record, old_record, actor, context) of the audit rows with id > after."""
    return db.rows(
        "select op::text, record, old_record, actor, context from audit.record_version"
        " where id > %s order by id",
        [after],
    )


def last_id(db: Db) -> int:
    return int(db.one("select coalesce(max(id), 0) from audit.record_version"))


def in_transaction(engine: sa.Engine, *statements: str) -> int:
    """Run the statements in one committed transaction; its id."""
    with Session(engine) as session:
        for statement in statements:
            session.execute(sa.text(statement))
        txid = session.scalar(sa.text("select pg_current_xact_id()::text::bigint"))
        session.commit()
    return int(txid)


def truncate_id(db: Db, txid: int, table: str = "account") -> int:
    return int(
        db.one(
            "select id from audit.record_version where op = 'TRUNCATE' and table_name = %s"
            " and transaction_id::text::bigint = %s",
            [table, txid],
        )
    )


def test_updates_truncate_and_inserts_in_one_transaction(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10), (2, 'Bob', 20), (3, 'Cy', 30)")
    start = rows(db)
    txid = in_transaction(
        engine,
        "update account set balance = 11 where id = 1",
        "update account set id = 33 where id = 3",  # a key change before the TRUNCATE
        "truncate account",
        "insert into account values (1, 'New', 1), (4, 'Dee', 4)",
    )
    truncated = truncate_id(db, txid)
    changed = last_id(db)
    assert rows(db) == [(1, "New", 1), (4, "Dee", 4)]
    with Session(engine) as session:
        plan = revert_transaction(session, txid, dry_run=True)
        assert last_id(db) == changed  # a dry run writes nothing
        # Newest first: the inserts after the TRUNCATE go, the rows the table held just
        # before it (the same transaction's update and key change included) come back,
        # then the update and the key change are undone.
        assert str(plan).splitlines() == [
            "DELETE public.account (id)=(4)",
            "DELETE public.account (id)=(1)",
            'INSERT public.account (id)=(2): id=2, name="Bob", balance=20',
            'INSERT public.account (id)=(1): id=1, name="Ann", balance=11',
            'INSERT public.account (id)=(33): id=33, name="Cy", balance=30',
            "UPDATE public.account (id)=(33): id: 33 -> 3",
            "UPDATE public.account (id)=(1): balance: 11 -> 10",
        ]
        assert plan.writes[2] == RowWrite(
            "INSERT", "public.account", {"id": 2}, {"id": 2, "name": "Bob", "balance": 20},
            None, truncated,
        )  # fmt: skip
        assert plan.conflicts == () and not plan.written
        with audit_context(session, actor="admin", reason="undo truncate"):
            done = revert_transaction(session, txid)
        session.commit()
    assert done.writes == plan.writes and done.written
    assert rows(db) == start
    context = {"reason": "undo truncate"}
    assert audit(db, changed) == [
        ("DELETE", None, {"id": 4, "name": "Dee", "balance": 4}, "admin", context),
        ("DELETE", None, {"id": 1, "name": "New", "balance": 1}, "admin", context),
        ("INSERT", {"id": 2, "name": "Bob", "balance": 20}, None, "admin", context),
        ("INSERT", {"id": 1, "name": "Ann", "balance": 11}, None, "admin", context),
        ("INSERT", {"id": 33, "name": "Cy", "balance": 30}, None, "admin", context),
        ("UPDATE", {"id": 3, "name": "Cy", "balance": 30},
         {"id": 33, "name": "Cy", "balance": 30}, "admin", context),
        ("UPDATE", {"id": 1, "name": "Ann", "balance": 10},
         {"id": 1, "name": "Ann", "balance": 11}, "admin", context),
    ]  # fmt: skip
    # The revert is a change like any other: reverting it truncates nothing, it deletes
    # what it put back and re-inserts what it deleted.
    (revert_txid,) = db.rows(
        "select distinct transaction_id::text::bigint from audit.record_version where id > %s",
        [changed],
    )[0]
    with Session(engine) as session:
        revert_transaction(session, revert_txid)
        session.commit()
    assert rows(db) == [(1, "New", 1), (4, "Dee", 4)]


def test_an_incomplete_trail_is_refused_and_a_snapshot_makes_later_truncates_reversible(
    db: Db, engine: sa.Engine
) -> None:
    db.run("create table item (id int primary key, v text)")
    db.run("insert into item values (1, 'a'), (2, 'b')")
    db.run("select audit.enable_tracking('public.item')")  # rows before: no complete trail
    txid = in_transaction(engine, "update item set v = 'A' where id = 1", "truncate item")
    first_truncate = truncate_id(db, txid, "item")
    refusal = (
        f"revert: transaction {txid} truncated public.item (audit row {first_truncate}), "
        "which the trail cannot undo: the audit trail of public.item is not complete: it "
        "does not record the rows the table held when tracking began; nothing written. A "
        "snapshot of the table makes later TRUNCATEs reversible: op.enable_tracking(..., "
        "snapshot=True) in a migration, or call audit.snapshot('public.item')"
    )
    before = last_id(db)
    with Session(engine) as session:
        for dry_run in (True, False):
            with pytest.raises(IncompleteTrailError) as refused:
                revert_transaction(session, txid, dry_run=dry_run)
            assert str(refused.value) == refusal
        # The refusal leaves the caller's transaction usable.
        assert session.scalar(sa.text("select count(*) from item")) == 0
    assert (rows(db, "item"), last_id(db)) == ([], before)

    # A snapshot (here the migration's way) makes the trail complete from then on.
    db.run("insert into item values (1, 'a'), (2, 'b')")
    run_online(engine, lambda op: op.enable_tracking("item", snapshot=True))
    db.run("update item set v = 'B' where id = 2")
    later = in_transaction(engine, "truncate item", "insert into item values (3, 'c')")
    with Session(engine) as session:
        plan = revert_transaction(session, later)
        session.commit()
    assert str(plan).splitlines() == [
        "DELETE public.item (id)=(3)",
        'INSERT public.item (id)=(1): id=1, v="a"',  # from its SNAPSHOT row
        'INSERT public.item (id)=(2): id=2, v="B"',
    ]
    assert rows(db, "item") == [(1, "a"), (2, "B")]
    # The TRUNCATE before the snapshot stays out of reach, saying from when it is complete.
    since = db.one(
        "select since::text from audit.trail_complete_since where table_oid = %s",
        [db.oid("public.item")],
    )
    at = db.one("select ts::text from audit.record_version where id = %s", [first_truncate])
    with Session(engine) as session:
        with pytest.raises(IncompleteTrailError) as refused:
            revert_transaction(session, txid)
    assert str(refused.value) == refusal.replace(
        "is not complete: it does not record the rows the table held when tracking began",
        f"is complete from {since} on, not before audit row {first_truncate} (at {at})",
    )
    # Tracking stopped since: the trail may have a gap, so no TRUNCATE of it is undone.
    db.run("select audit.disable_tracking('public.item')")
    with Session(engine) as session, pytest.raises(IncompleteTrailError) as refused:
        revert_transaction(session, later)
    assert str(refused.value).startswith(
        f"revert: transaction {later} truncated public.item (audit row "
    )
    assert "cannot undo: table public.item is not tracked now, so its audit trail may have a " \
        "gap; nothing written." in str(refused.value)  # fmt: skip


def test_changes_after_the_truncate_are_conflicts_and_nothing_is_written(
    db: Db, engine: sa.Engine
) -> None:
    db.run("insert into account values (1, 'Ann', 10), (2, 'Bob', 20)")
    txid = in_transaction(engine, "truncate account")
    truncated = truncate_id(db, txid)
    other = in_transaction(engine, "insert into account values (5, 'Eve', 5)")
    other_id = last_id(db)
    user = db.one("select current_user")
    with Session(engine) as session:
        plan = revert_transaction(session, txid, dry_run=True)
        with pytest.raises(ConflictError) as conflict:
            revert_transaction(session, txid)
        session.commit()
    assert [str(c) for c in plan.conflicts] == [
        f"public.account (id)=(5): added after the TRUNCATE of audit row {truncated} by audit "
        f"row {other_id} (INSERT by {user}, transaction {other}): not in the table that "
        "TRUNCATE left"
    ]
    assert conflict.value.conflicts == plan.conflicts
    assert str(conflict.value) == (
        f"revert transaction {txid}: {plan.conflicts[0]}; nothing written: undo the later "
        "changes first, or restore() the rows one by one"
    )
    assert (rows(db), last_id(db)) == ([(5, "Eve", 5)], other_id)

    # Undone, the later change is no conflict (what counts is the table now); a row
    # written outside the trail with the key of a row to put back is one.
    with Session(engine) as session:
        revert_transaction(session, other)
        session.commit()
    # A row written outside the trail with the key of a row to put back.
    db.run("set session_replication_role = replica")
    db.run("insert into account values (2, 'Ghost', 0)")
    db.run("reset session_replication_role")
    with Session(engine) as session:
        with pytest.raises(ConflictError) as conflict:
            revert_transaction(session, txid)
    assert [str(c) for c in conflict.value.conflicts] == [
        f"public.account (id)=(2): a row with this key exists now, though audit row "
        f"{truncated} left none: written outside the audit trail"
    ]
    assert rows(db) == [(2, "Ghost", 0)]
    db.run("set session_replication_role = replica")
    db.run("update account set id = 6")
    db.run("reset session_replication_role")
    with Session(engine) as session:
        with pytest.raises(ConflictError) as conflict:
            revert_transaction(session, txid)
    assert [str(c) for c in conflict.value.conflicts] == [
        f"public.account (id)=(6): added after the TRUNCATE of audit row {truncated} outside "
        "the audit trail: not in the table that TRUNCATE left"
    ]
    db.run("set session_replication_role = replica")
    db.run("delete from account")
    db.run("reset session_replication_role")
    with Session(engine) as session:
        revert_transaction(session, txid)
        session.commit()
    assert rows(db) == [(1, "Ann", 10), (2, "Bob", 20)]


def test_revert_context_across_transactions(db: Db, engine: sa.Engine) -> None:
    """A request that inserted, then (in another transaction) truncated: both undone."""
    db.run("insert into account values (1, 'Ann', 10)")
    with Session(engine) as session:
        with audit_context(session, request_id="r-1"):
            session.execute(sa.text("insert into account values (2, 'Bob', 20)"))
            session.commit()
            session.execute(sa.text("truncate account"))
            session.commit()
    changed = last_id(db)
    with Session(engine) as session:
        plan = revert_context(session, {"request_id": "r-1"})
        session.commit()
    assert str(plan).splitlines() == [
        'INSERT public.account (id)=(1): id=1, name="Ann", balance=10',
        'INSERT public.account (id)=(2): id=2, name="Bob", balance=20',
        "DELETE public.account (id)=(2)",
    ]
    assert rows(db) == [(1, "Ann", 10)]
    assert [op for op, *_ in audit(db, changed)] == ["INSERT", "INSERT", "DELETE"]


def test_renamed_and_dropped_columns(db: Db, engine: sa.Engine) -> None:
    db.run("create table note (id int primary key, heading text, tag text)")
    db.run("select audit.enable_tracking('public.note')")
    db.run("insert into note values (1, 'a', 't1'), (2, 'b', 't2')")
    txid = in_transaction(engine, "truncate note")
    db.run("alter table note rename column heading to title")
    db.run("alter table note drop column tag")
    with Session(engine) as session:
        plan = revert_transaction(session, txid)
        session.commit()
    assert str(plan).splitlines() == [
        'INSERT public.note (id)=(1): id=1, title="a" [not written, column dropped since: '
        'tag="t1"]',
        'INSERT public.note (id)=(2): id=2, title="b" [not written, column dropped since: '
        'tag="t2"]',
    ]
    assert rows(db, "note") == [(1, "a"), (2, "b")]


def test_partitioned_layout(engine: sa.Engine, db_url: str) -> None:
    run_online(engine, lambda op: op.install_audit(partitioned={"interval": "1 month"}))
    with connect(db_url) as db:
        db.run(ACCOUNT)
        db.run("select audit.enable_tracking('public.account')")
        db.run("insert into account values (1, 'Ann', 10), (2, 'Bob', 20)")
        txid = in_transaction(
            engine, "update account set balance = 0", "truncate account",
            "insert into account values (3, 'Cy', 30)",
        )  # fmt: skip
        with Session(engine) as session:
            plan = revert_transaction(session, txid)
            session.commit()
        assert [w.action for w in plan.writes] == ["DELETE", "INSERT", "INSERT", "UPDATE", "UPDATE"]
        assert rows(db) == [(1, "Ann", 10), (2, "Bob", 20)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "hyper_audit_alembic", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_cli_revert(db: Db, db_url: str, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10)")
    txid = in_transaction(engine, "truncate account")
    done = cli("revert", "--url", db_url, "--transaction", str(txid), "--dry-run")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        'INSERT public.account (id)=(1): id=1, name="Ann", balance=10\n'
        "dry run: 1 row would be written, nothing written\n"
    )
    assert rows(db) == []
    done = cli("revert", "--url", db_url, "--transaction", str(txid), "--actor", "ops")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        'INSERT public.account (id)=(1): id=1, name="Ann", balance=10\nwrote 1 row (committed)\n'
    )
    assert rows(db) == [(1, "Ann", 10)]
    assert db.one("select actor from audit.record_version order by id desc limit 1") == "ops"
    # Refused: one line, with the fix.
    db.run("create table item (id int primary key)")
    db.run("insert into item values (1)")
    db.run("select audit.enable_tracking('public.item')")
    txid = in_transaction(engine, "truncate item")
    done = cli("revert", "--url", db_url, "--transaction", str(txid))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"error: revert: transaction {txid} truncated public.item (audit row "
        f"{truncate_id(db, txid, 'item')}), which the trail cannot undo: the audit trail of "
        "public.item is not complete: it does not record the rows the table held when "
        "tracking began; nothing written. A snapshot of the table makes later TRUNCATEs "
        "reversible: op.enable_tracking(..., snapshot=True) in a migration, or call "
        "audit.snapshot('public.item')\n"
    )
