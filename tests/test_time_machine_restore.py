"""Issue 14, items 2, 3 and 6: restore(), undelete(), revert_transaction(), revert_context().

Each test checks the table row for row after the restore or revert, and the audit rows the
restore itself wrote (with the caller's actor and context). Real PostgreSQL; writes go
through a SQLAlchemy Session, checks through an autocommit psycopg2 connection.
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
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hyper_audit_alembic import (
    ConflictError,
    RowWrite,
    WritePlan,
    audit_context,
    history,
    restore,
    revert_context,
    revert_transaction,
    undelete,
)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    balance: Mapped[int] = mapped_column(default=0)


@pytest.fixture
def db(engine: sa.Engine, db_url: str) -> Iterator[Db]:
    """The test's database with the audit schema and a tracked public.account."""
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run("create table account (id int primary key, name text not null, balance int)")
        db.run("select audit.enable_tracking('public.account')")
        yield db


def rows(db: Db, table: str = "account") -> list[tuple[Any, ...]]:
    return db.rows(f"select * from {table} order by 1, 2")


def audit(db: Db, after: int = 0) -> list[tuple[Any, ...]]:
    """(op, record, old_record, actor, context) of the audit rows with id > after."""
    return db.rows(
        "select op::text, record, old_record, actor, context from audit.record_version"
        " where id > %s order by id",
        [after],
    )


def last_id(db: Db) -> int:
    return int(db.one("select coalesce(max(id), 0) from audit.record_version"))


def test_restore_to_a_version_is_an_audited_update(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10)")
    first = last_id(db)
    db.run("update account set name = 'Anne', balance = 20 where id = 1")
    db.run("update account set balance = 30 where id = 1")
    before = last_id(db)
    with Session(engine) as session:
        loaded = session.get(Account, 1)
        assert loaded is not None and loaded.balance == 30
        with audit_context(session, actor="user:7", request_id="r-9"):
            plan = restore(session, Account, 1, to=first)
            assert loaded.balance == 10  # the loaded object was expired, reads the row again
            session.commit()
    assert plan == WritePlan(
        (RowWrite("UPDATE", "public.account", {"id": 1}, {"name": "Ann", "balance": 10},
                  {"id": 1, "name": "Anne", "balance": 30}, first),),
        (),
        written=True,
    )  # fmt: skip
    assert str(plan) == 'UPDATE public.account (id)=(1): name: "Anne" -> "Ann", balance: 30 -> 10'
    assert rows(db) == [(1, "Ann", 10)]
    assert audit(db, before) == [
        ("UPDATE", {"id": 1, "name": "Ann", "balance": 10},
         {"id": 1, "name": "Anne", "balance": 30}, "user:7", {"request_id": "r-9"}),
    ]  # fmt: skip


def test_restore_to_a_time_and_undelete(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10)")
    when = db.one("select now()")
    db.run("update account set balance = 20 where id = 1")
    db.run("delete from account where id = 1")
    before = last_id(db)
    with Session(engine) as session:
        with pytest.raises(ValueError) as refused:
            restore(session, Account, 1, to=before)
        assert str(refused.value) == (
            f"restore: audit row {before} deleted public.account (id)=(1), so it holds no row "
            "to put back: use undelete() for the row it deleted, or an earlier version"
        )
        plan = undelete(session, Account, 1)
        session.commit()
    assert str(plan) == 'INSERT public.account (id)=(1): id=1, name="Ann", balance=20'
    assert rows(db) == [(1, "Ann", 20)]
    assert audit(db, before) == [
        ("INSERT", {"id": 1, "name": "Ann", "balance": 20}, None, db.one("select current_user"),
         None)
    ]  # fmt: skip
    with Session(engine) as session:
        restore(session, Account, 1, to=when)
        with pytest.raises(ValueError) as refused:
            undelete(session, Account, 1)
        session.commit()
        assert str(refused.value).startswith(
            "undelete: public.account (id)=(1) is not deleted: its last version (audit row "
        )
    assert rows(db) == [(1, "Ann", 10)]


def test_a_row_changed_outside_the_trail_is_a_conflict(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10)")
    first = last_id(db)
    db.run("update account set balance = 20 where id = 1")
    db.run("alter table account disable trigger user")
    db.run("update account set name = 'Zed', balance = 99 where id = 1")
    db.run("alter table account enable trigger user")
    before = last_id(db)
    with Session(engine) as session:
        with pytest.raises(ConflictError) as conflict:
            restore(session, Account, 1, to=first)
        assert str(conflict.value) == (
            "restore: public.account (id)=(1): differs from its last recorded version (audit "
            f"row {before}): changed outside the audit trail (name, balance); nothing "
            "written: pass force=True to overwrite it"
        )
        assert [(c.columns, c.key) for c in conflict.value.conflicts] == [
            (("name", "balance"), {"id": 1})
        ]
        session.commit()
    assert rows(db) == [(1, "Zed", 99)]  # nothing written
    assert last_id(db) == before
    with Session(engine) as session:
        dry = restore(session, Account, 1, to=first, dry_run=True)
        assert [str(c) for c in dry.conflicts] == [str(conflict.value.conflicts[0])]
        assert not dry.written
        plan = restore(session, Account, 1, to=first, force=True)
        session.commit()
    assert plan.written and plan.conflicts == dry.conflicts
    assert rows(db) == [(1, "Ann", 10)]


def test_excluded_columns_are_neither_compared_nor_restored(db: Db, engine: sa.Engine) -> None:
    db.run("create table vault (id int primary key, label text, secret text default 'dflt')")
    db.run("select audit.enable_tracking('public.vault', '{secret}', false, false)")
    db.run("insert into vault values (1, 'a', 's1')")
    first = last_id(db)
    db.run("update vault set label = 'b', secret = 's2' where id = 1")
    db.run("update vault set secret = 's3' where id = 1")  # recorded without the secret
    with Session(engine) as session:
        restore(session, "public.vault", 1, to=first)
        session.commit()
    assert rows(db, "vault") == [(1, "a", "s3")]
    db.run("delete from vault where id = 1")
    with Session(engine) as session:
        undelete(session, "vault", 1)
        session.commit()
    assert rows(db, "vault") == [(1, "a", "dflt")]  # the default: never recorded


def test_key_changes_composite_and_text_keys(db: Db, engine: sa.Engine) -> None:
    db.run("create schema shop")
    db.run(
        'create table shop."Line Item" (order_id int, code text, qty int, '
        "primary key (order_id, code))"
    )
    db.run("""select audit.enable_tracking('shop."Line Item"')""")
    db.run("""insert into shop."Line Item" values (10, 'a b"ü', 1)""")
    first = last_id(db)
    db.run("""update shop."Line Item" set code = 'c', qty = 2 where order_id = 10""")
    db.run("""update shop."Line Item" set qty = 3 where order_id = 10""")
    before = last_id(db)
    with Session(engine) as session:
        # Found by its key now, put back with the key it had.
        plan = restore(session, 'shop."Line Item"', (10, "c"), to=first)
        session.commit()
    assert str(plan) == (
        'UPDATE shop."Line Item" (order_id, code)=(10, c): code: "c" -> "a b\\"ü", qty: 3 -> 1'
    )
    assert rows(db, 'shop."Line Item"') == [(10, 'a b"ü', 1)]
    assert [(op, rec, old) for op, rec, old, _, _ in audit(db, before)] == [
        ("UPDATE", {"order_id": 10, "code": 'a b"ü', "qty": 1},
         {"order_id": 10, "code": "c", "qty": 3}),
    ]  # fmt: skip
    db.run("""delete from shop."Line Item" """)
    with Session(engine) as session:
        undelete(session, 'shop."Line Item"', {"order_id": 10, "code": "c"})  # an earlier key
        session.commit()
    assert rows(db, 'shop."Line Item"') == [(10, 'a b"ü', 1)]


def test_renamed_and_dropped_columns(db: Db, engine: sa.Engine) -> None:
    db.run("create table note (id int primary key, title text, tag text)")
    db.run("select audit.enable_tracking('public.note')")
    db.run("insert into note values (1, 'a', 't1')")
    first = last_id(db)
    db.run("update note set title = 'b', tag = 't2' where id = 1")
    db.run("alter table note rename column title to heading")
    db.run("alter table note drop column tag")
    with Session(engine) as session:
        plan = restore(session, "note", 1, to=first)
        session.commit()
    assert plan.writes[0].dropped == {"tag": "t1"}
    assert str(plan) == (
        'UPDATE public.note (id)=(1): heading: "b" -> "a" '
        '[not written, column dropped since: tag="t1"]'
    )
    assert rows(db, "note") == [(1, "a")]


def test_revert_a_transaction_across_tables(db: Db, engine: sa.Engine) -> None:
    db.run("create table line (id int primary key, account_id int references account, v text)")
    db.run("select audit.enable_tracking('public.line')")
    db.run("insert into account values (1, 'Ann', 10), (2, 'Bob', 20), (3, 'Cy', 30)")
    db.run("insert into line values (1, 1, 'x')")
    start = {"account": rows(db), "line": rows(db, "line")}
    before = last_id(db)
    with Session(engine) as session:
        session.execute(sa.text("insert into account values (4, 'Dee', 40)"))
        session.execute(sa.text("insert into line values (2, 4, 'y')"))
        session.execute(sa.text("update account set balance = 11 where id = 1"))
        session.execute(sa.text("update account set id = 22 where id = 2"))  # a key change
        session.execute(sa.text("update account set balance = 222 where id = 22"))
        session.execute(sa.text("delete from line where id = 1"))
        session.execute(sa.text("delete from account where id = 3"))
        txid = session.scalar(sa.text("select pg_current_xact_id()::text::bigint"))
        session.commit()
    changed = last_id(db)
    assert rows(db) == [(1, "Ann", 11), (4, "Dee", 40), (22, "Bob", 222)]
    with Session(engine) as session:
        plan = revert_transaction(session, txid, dry_run=True)
        assert not plan.written
        assert str(plan).splitlines() == [
            'INSERT public.account (id)=(3): id=3, name="Cy", balance=30',
            'INSERT public.line (id)=(1): id=1, account_id=1, v="x"',
            "UPDATE public.account (id)=(22): balance: 222 -> 20",
            "UPDATE public.account (id)=(22): id: 22 -> 2",
            "UPDATE public.account (id)=(1): balance: 11 -> 10",
            "DELETE public.line (id)=(2)",
            "DELETE public.account (id)=(4)",
        ]
        assert list(plan.by_table()) == ["public.account", "public.line"]
        assert last_id(db) == changed  # nothing written by the dry run
        with audit_context(session, actor="admin", reason="revert"):
            done = revert_transaction(session, txid)
        session.commit()
    assert done.writes == plan.writes and done.written
    assert {"account": rows(db), "line": rows(db, "line")} == start
    reverted = audit(db, changed)
    assert [(op, actor, context) for op, _, _, actor, context in reverted] == [
        (op, "admin", {"reason": "revert"})
        for op in ("INSERT", "INSERT", "UPDATE", "UPDATE", "UPDATE", "DELETE", "DELETE")
    ]
    assert before < changed


def test_revert_conflicts_write_nothing(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10), (2, 'Bob', 20)")
    with Session(engine) as session:
        session.execute(sa.text("update account set balance = balance + 1"))
        txid = session.scalar(sa.text("select pg_current_xact_id()::text::bigint"))
        session.commit()
    (row_1,) = db.rows(
        "select id from audit.record_version where transaction_id::text::bigint = %s"
        " and record ->> 'id' = '1'",
        [txid],
    )
    db.run("update account set name = 'Bobby' where id = 2")  # later, someone else
    later = last_id(db)
    later_txid = db.one(
        "select transaction_id::text::bigint from audit.record_version where id = %s", [later]
    )
    db.run("alter table account disable trigger user")
    db.run("update account set balance = 5 where id = 1")  # outside the trail
    db.run("alter table account enable trigger user")
    with Session(engine) as session:
        with pytest.raises(ConflictError) as conflict:
            revert_transaction(session, txid)
        session.commit()
    assert [str(c) for c in conflict.value.conflicts] == [
        f"public.account (id)=(2): changed later by audit row {later} (UPDATE by "
        f"{db.one('select current_user')}, transaction {later_txid})",
        f"public.account (id)=(1): differs from what audit row {row_1[0]} left: changed "
        "outside the audit trail (balance)",
    ]
    assert str(conflict.value) == (
        f"revert transaction {txid}: {conflict.value.conflicts[0]} (and 1 more in "
        ".conflicts); nothing written: undo the later changes first, or restore() the rows "
        "one by one"
    )
    assert rows(db) == [(1, "Ann", 5), (2, "Bobby", 21)]
    assert last_id(db) == later
    with Session(engine) as session:
        plan = revert_transaction(session, txid, dry_run=True)
    assert plan.conflicts == conflict.value.conflicts


def test_revert_context_and_truncate(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10)")
    with Session(engine) as session:
        with audit_context(session, actor="u", request_id="r-1"):
            session.add(Account(id=2, name="Bob", balance=1))
            session.commit()
            account = session.get(Account, 1)
            assert account is not None
            account.balance = 99
            session.commit()
        with audit_context(session, actor="u", request_id="r-2"):
            session.add(Account(id=3, name="Cy", balance=3))
            session.commit()
    with Session(engine) as session:
        plan = revert_context(session, {"request_id": "r-1"})
        session.commit()
    assert [w.action for w in plan.writes] == ["UPDATE", "DELETE"]
    assert rows(db) == [(1, "Ann", 10), (3, "Cy", 3)]
    with Session(engine) as session:
        session.execute(sa.text("truncate account"))
        txid = session.scalar(sa.text("select pg_current_xact_id()::text::bigint"))
        session.commit()
    # The table was tracked while empty, so its trail is complete: the TRUNCATE reverts
    # (tests/test_time_machine_truncate.py has the rest).
    with Session(engine) as session:
        plan = revert_transaction(session, txid)
        session.commit()
    assert [w.action for w in plan.writes] == ["INSERT", "INSERT"]
    assert rows(db) == [(1, "Ann", 10), (3, "Cy", 3)]


def test_partitioned_layout(engine: sa.Engine, db_url: str) -> None:
    run_online(engine, lambda op: op.install_audit(partitioned={"interval": "1 month"}))
    with connect(db_url) as db:
        db.run("create table account (id int primary key, name text not null, balance int)")
        db.run("select audit.enable_tracking('public.account')")
        db.run("insert into account values (1, 'Ann', 10)")
        first = last_id(db)
        with Session(engine) as session:
            session.execute(sa.text("update account set balance = 20 where id = 1"))
            session.execute(sa.text("insert into account values (2, 'Bob', 2)"))
            txid = session.scalar(sa.text("select pg_current_xact_id()::text::bigint"))
            session.commit()
        with Session(engine) as session:
            revert_transaction(session, txid)
            session.commit()
        assert rows(db) == [(1, "Ann", 10)]
        db.run("delete from account where id = 1")
        with Session(engine) as session:
            undelete(session, Account, 1)
            session.commit()
        assert rows(db) == [(1, "Ann", 10)]
        assert [v.op for v in history(Session(engine), Account, 1)][-1] == "INSERT"
        assert first > 0


def test_timescale_layout(ts_engine: sa.Engine, ts_url: str) -> None:
    with ts_engine.begin() as connection:
        connection.exec_driver_sql("create extension if not exists timescaledb")
    run_online(ts_engine, lambda op: op.install_audit(timescale={"chunk_interval": "1 day"}))
    with connect(ts_url) as db:
        db.run("create table account (id int primary key, name text not null, balance int)")
        db.run("select audit.enable_tracking('public.account')")
        db.run("insert into account values (1, 'Ann', 10)")
        first = last_id(db)
        db.run("update account set name = 'X' where id = 1")
        with Session(ts_engine) as session:
            restore(session, Account, 1, to=first)
            session.commit()
        assert rows(db) == [(1, "Ann", 10)]
        with Session(ts_engine) as session:
            session.execute(sa.text("delete from account"))
            txid = session.scalar(sa.text("select pg_current_xact_id()::text::bigint"))
            session.commit()
        with Session(ts_engine) as session:
            revert_transaction(session, txid)
            session.commit()
        assert rows(db) == [(1, "Ann", 10)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "hyper_audit_alembic", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_cli_restore_and_revert(db: Db, db_url: str) -> None:
    db.run("insert into account values (1, 'Ann', 10)")
    first = last_id(db)
    db.run("update account set balance = 20 where id = 1")
    done = cli("restore", "--url", db_url, "account", "1", "--to", str(first), "--dry-run")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "UPDATE public.account (id)=(1): balance: 20 -> 10\n"
        "dry run: 1 row would be written, nothing written\n"
    )
    assert rows(db) == [(1, "Ann", 20)]
    before = last_id(db)
    done = cli("restore", "--url", db_url, "account", "1", "--to", str(first), "--actor", "ops")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "UPDATE public.account (id)=(1): balance: 20 -> 10\nwrote 1 row (committed)\n"
    )
    assert rows(db) == [(1, "Ann", 10)]
    assert [(op, actor) for op, _, _, actor, _ in audit(db, before)] == [("UPDATE", "ops")]
    txid = db.one("select transaction_id::text::bigint from audit.record_version where id = %s",
                  [last_id(db)])  # fmt: skip
    done = cli("revert", "--url", db_url, "--transaction", str(txid), "--reason", "oops")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "UPDATE public.account (id)=(1): balance: 10 -> 20\nwrote 1 row (committed)\n"
    )
    assert rows(db) == [(1, "Ann", 20)]
    assert audit(db, last_id(db) - 1)[0][4] == {"reason": "oops"}
    db.run("delete from account")
    done = cli("restore", "--url", db_url, "account", "1")  # no --to: undelete
    assert (
        done.stdout.splitlines()[0]
        == 'INSERT public.account (id)=(1): id=1, name="Ann", balance=20'
    )
    assert rows(db) == [(1, "Ann", 20)]
    # One-line errors.
    db.run("alter table account disable trigger user")
    db.run("update account set name = 'Zed'")
    db.run("alter table account enable trigger user")
    done = cli("restore", "--url", db_url, "account", "1", "--to", str(first))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "error: restore: public.account (id)=(1): differs from its last recorded version "
        f"(audit row {last_id(db)}): changed outside the audit trail (name); nothing "
        "written: pass force=True to overwrite it\n"
    )
    done = cli("restore", "--url", db_url, "account", "1", "--to", "2024-05-01")
    assert (done.returncode, done.stderr) == (
        1, "error: --to 2024-05-01: give the time zone too, e.g. 2024-05-01+00:00\n"
    )  # fmt: skip
    done = cli("revert", "--url", db_url)
    assert (done.returncode, done.stderr) == (
        1, "error: revert needs --transaction N or --context key=value (one of them)\n"
    )  # fmt: skip
    done = cli("revert", "--url", db_url, "--context", "request_id=nope")
    assert (done.returncode, done.stderr) == (
        1, 'error: revert: no audit rows for context {"request_id": "nope"}: nothing to revert\n'
    )  # fmt: skip


def test_a_truncate_since_is_a_conflict_of_the_table(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'Ann', 10)")
    with Session(engine) as session:
        session.execute(sa.text("update account set balance = 11"))
        txid = session.scalar(sa.text("select pg_current_xact_id()::text::bigint"))
        session.commit()
    db.run("truncate account")
    truncate_id = last_id(db)
    truncate_txid = db.one(
        "select transaction_id::text::bigint from audit.record_version where id = %s",
        [truncate_id],
    )
    with Session(engine) as session:
        plan = revert_transaction(session, txid, dry_run=True)
        with pytest.raises(ConflictError) as conflict:
            revert_transaction(session, txid)
    assert [str(c) for c in plan.conflicts] == [
        f"public.account: changed later by audit row {truncate_id} (TRUNCATE by "
        f"{db.one('select current_user')}, transaction {truncate_txid})"
    ]
    assert conflict.value.conflicts == plan.conflicts
    assert rows(db) == []
