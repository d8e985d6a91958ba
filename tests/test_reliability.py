"""Completeness under load and faults: concurrent writers, killed clients, a crashed
server, migrations that fail, upgrade/downgrade cycles, backup and restore.

Every check compares the exact audit rows with what the clients know was committed.
"""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy as sa
from alembic_project import ACCOUNT_MODELS, Project, migration_body
from audit_helpers import (
    Db,
    apply_sql,
    catalog_snapshot,
    connect,
    extra_database,
    record_id,
    run_online,
)
from sqlalchemy.orm import Session

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.runtime.history import history
from hyper_audit_alembic.sqltext import qualified_name


def raw_connect(url: str) -> Any:
    parsed = sa.engine.make_url(url)
    return psycopg2.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database
    )


# --- Concurrent writers -------------------------------------------------------------------

WRITERS = 8
SECONDS = 5.0  # per run: once untracked, once tracked
MAX_TRANSACTIONS = 3000  # per writer and run, whichever comes first
ROLLBACK_NOTE = "ROLLED BACK"

WORKLOAD_TABLES = """
    create table acct (id int primary key, bal int not null, note text);
    create table pair (a int, b text, n int not null, note text, primary key (b, a));
    create sequence wseq;
"""

# Every statement returns nextval('wseq') from RETURNING: it is computed after the row was
# written (and after any wait for another transaction's lock or unique-key check), while
# the row's lock is held, so per record its order is the order of the changes.
STATEMENTS = {
    ("acct", "insert"): "insert into acct as t values (%(k0)s, %(v)s, %(note)s)",
    ("acct", "upsert"): "insert into acct as t values (%(k0)s, %(v)s, %(note)s)"
    " on conflict (id) do update set bal = t.bal + excluded.bal, note = excluded.note",
    ("acct", "update"): "update acct as t set bal = bal + %(v)s, note = %(note)s where id = %(k0)s",
    ("acct", "delete"): "delete from acct as t where id = %(k0)s",
    ("pair", "insert"): "insert into pair as t values (%(k0)s, %(k1)s, %(v)s, %(note)s)",
    ("pair", "upsert"): "insert into pair as t values (%(k0)s, %(k1)s, %(v)s, %(note)s)"
    " on conflict (b, a) do update set n = t.n + excluded.n, note = excluded.note",
    ("pair", "update"): "update pair as t set n = n + %(v)s, note = %(note)s"
    " where a = %(k0)s and b = %(k1)s",
    ("pair", "delete"): "delete from pair as t where a = %(k0)s and b = %(k1)s",
}
RETURNING = " returning nextval('wseq'), t.xmax = 0, to_jsonb(t)"
KEYS = {
    "acct": [(i,) for i in range(16)],
    "pair": [(a, b) for a in range(4) for b in ("x", "Zoë", "東京")],
}
KINDS = ["insert", "upsert", "upsert", "update", "update", "delete"]


@dataclass
class Change:
    seq: int
    table: str
    key: tuple[Any, ...]
    kind: str
    row: dict[str, Any]  # the new row; the old one for a delete
    inserted: bool


@dataclass
class Outcome:
    committed: list[Change] = field(default_factory=list)
    transactions: int = 0
    commits: int = 0
    rollbacks: int = 0  # on purpose
    savepoint_rollbacks: int = 0  # on purpose
    duplicate_keys: int = 0  # plain inserts of a key that exists, rolled back to a savepoint
    errors: Counter[str] = field(default_factory=Counter)  # any other error, by SQLSTATE


def writer(url: str, number: int, start: threading.Barrier, seconds: float) -> Outcome:
    rng = random.Random(number)
    outcome = Outcome()
    conn = raw_connect(url)
    try:
        start.wait()
        deadline = time.monotonic() + seconds
        while outcome.transactions < MAX_TRANSACTIONS and time.monotonic() < deadline:
            outcome.transactions += 1
            roll_back = rng.random() < 0.15
            ops = sorted(
                (table, rng.choice(KEYS[table]), rng.choice(KINDS))
                for table in rng.choices(["acct", "pair"], k=rng.randint(1, 4))
            )  # one global order of keys: no deadlock by construction
            done: list[Change] = []
            try:
                with conn.cursor() as cur:
                    for table, key, kind in ops:
                        undo = rng.random() < 0.1
                        note = ROLLBACK_NOTE if roll_back or undo else f"w{number} {kind} ü"
                        params = {"v": rng.randint(1, 9), "note": note}
                        params.update({f"k{i}": v for i, v in enumerate(key)})
                        cur.execute("savepoint s")
                        try:
                            cur.execute(STATEMENTS[table, kind] + RETURNING, params)
                        except psycopg2.errors.UniqueViolation:
                            cur.execute("rollback to savepoint s")
                            outcome.duplicate_keys += 1
                            continue
                        found = cur.fetchall()
                        if undo:
                            cur.execute("rollback to savepoint s")
                            outcome.savepoint_rollbacks += 1
                            continue
                        cur.execute("release savepoint s")
                        for seq, inserted, row in found:
                            done.append(Change(seq, table, key, kind, row, inserted))
                if roll_back:
                    conn.rollback()
                    outcome.rollbacks += 1
                else:
                    conn.commit()
                    outcome.commits += 1
                    outcome.committed += done
            except psycopg2.Error as error:
                conn.rollback()
                outcome.errors[error.pgcode or type(error).__name__] += 1
    finally:
        conn.close()
    return outcome


def run_workload(url: str) -> list[Outcome]:
    start = threading.Barrier(WRITERS)
    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(writer, url, n, start, SECONDS) for n in range(WRITERS)]
        return [future.result() for future in futures]


def record_key(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["id"],) if table == "acct" else (row["a"], row["b"])


def expected_histories(
    changes: list[Change],
) -> tuple[dict[tuple[Any, ...], list[tuple[Any, ...]]], dict[tuple[Any, ...], Any]]:
    """Per record, the audit rows the committed changes call for, and its last state."""
    by_record: dict[tuple[Any, ...], list[Change]] = defaultdict(list)
    for change in changes:
        by_record[(change.table, *change.key)].append(change)
    histories, final = {}, {}
    for record, found in by_record.items():
        state = None
        rows: list[tuple[Any, ...]] = []
        for change in sorted(found, key=lambda c: c.seq):
            if change.kind == "delete":
                assert change.row == state, (record, change)  # the client log is whole
                rows.append(("DELETE", None, state))
                state = None
                continue
            assert change.kind != "insert" or state is None, (record, change)
            assert change.kind != "update" or state is not None, (record, change)
            assert change.kind != "upsert" or change.inserted == (state is None)
            rows.append(("INSERT" if state is None else "UPDATE", change.row, state))
            state = change.row
        histories[record] = rows
        final[record] = state
    return histories, final


def test_concurrent_writers_leave_exactly_the_committed_changes(
    engine: sa.Engine, db_url: str
) -> None:
    with connect(db_url) as db:
        db.run(WORKLOAD_TABLES)
        untracked = run_workload(db_url)
        db.run("truncate acct, pair")
        run_online(
            engine,
            lambda op: (
                op.install_audit(),
                op.enable_tracking("acct"),
                op.enable_tracking("pair"),
            ),
        )
        tracked = run_workload(db_url)

        # Tracking introduced no error: neither run had any but the planned duplicate keys
        # (no deadlock, no serialization failure, nothing else).
        assert [dict(o.errors) for o in untracked] == [{}] * WRITERS
        assert [dict(o.errors) for o in tracked] == [{}] * WRITERS

        committed = [change for outcome in tracked for change in outcome.committed]
        histories, final = expected_histories(committed)
        oids = {"acct": db.oid("acct"), "pair": db.oid("pair")}
        audited: dict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
        audit_rows = db.audit_rows()
        for op, rid, old_rid, oid, schema, table, rec, old_rec in audit_rows:
            assert (oid, schema) == (oids[table], "public")
            key = record_key(table, rec if rec is not None else old_rec)
            text_key = [str(value) for value in key]
            assert rid == (None if rec is None else record_id(oid, *text_key))
            assert old_rid == (None if old_rec is None else record_id(oid, *text_key))
            audited[(table, *key)].append((op, rec, old_rec))
        assert len(audit_rows) == len(committed)
        assert dict(audited) == histories
        assert not any(ROLLBACK_NOTE in str(row) for row in audit_rows)
        # And the tables hold the last state of each record.
        for table in ("acct", "pair"):
            live = {
                (table, *record_key(table, row)): row
                for (row,) in db.rows(f"select to_jsonb(t) from {table} t")
            }
            assert live == {k: v for k, v in final.items() if k[0] == table and v is not None}

        totals = {
            name: sum(getattr(o, name) for o in tracked)
            for name in ("transactions", "commits", "rollbacks", "savepoint_rollbacks")
        }
        print(
            f"\n{WRITERS} writers x {SECONDS} s tracked: {totals}, "
            f"{len(audit_rows)} audit rows compared with {len(committed)} committed changes, "
            f"duplicate keys refused {sum(o.duplicate_keys for o in tracked)} (tracked) / "
            f"{sum(o.duplicate_keys for o in untracked)} (untracked, "
            f"{sum(o.transactions for o in untracked)} transactions)"
        )
        assert totals["rollbacks"] > 0 and totals["savepoint_rollbacks"] > 0


# --- Killed mid-write ---------------------------------------------------------------------

SLOW_ROW = """
    create table acct (id int primary key, bal int not null, note text);
    insert into acct values (1, 10, 'committed');
    create function slow_statement() returns trigger language plpgsql as $$
    begin
        if current_setting('test.sleep', true) = 'on' then perform pg_sleep(60); end if;
        return null;
    end $$;
    -- Fires after the audit triggers (statement triggers after row triggers, each kind in
    -- name order): when it sleeps, the statement's audit rows are written.
    create trigger zz_slow_statement after insert on acct
        for each statement execute function slow_statement();
"""


def wait_for(condition: Callable[[], bool], what: str) -> None:
    for _ in range(600):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def slow_acct(engine: sa.Engine, db_url: str) -> Iterator[Db]:
    with connect(db_url) as db:
        db.run(SLOW_ROW)
        run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("acct")))
        db.run("update acct set bal = 11 where id = 1")
        yield db


def test_terminated_mid_statement_leaves_neither_change_nor_audit_row(slow_acct: Db) -> None:
    db = slow_acct
    before_rows = db.audit_rows()
    before_seq = db.one("select last_value from audit.record_version_id_seq")
    victim = psycopg2.connect(db.conn.dsn)
    pid = victim.info.backend_pid
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with victim.cursor() as cur:
                cur.execute("set test.sleep = on")
                cur.execute("update acct set bal = 99, note = 'lost' where id = 1")
                cur.execute(
                    "insert into acct select g, g, 'lost' from generate_series(2, 1000) as g"
                )
        except BaseException as error:  # the thread reports what it got
            failure.append(error)

    thread = threading.Thread(target=write)
    thread.start()
    wait_for(
        lambda: db.one("select wait_event = 'PgSleep' from pg_stat_activity where pid = %s", [pid]),
        "the writer to sleep in its trigger",
    )
    # The audit rows of the update and of 999 inserted rows were written in its transaction.
    assert db.one("select last_value from audit.record_version_id_seq") - before_seq == 1000
    assert db.one("select pg_terminate_backend(%s)", [pid]) is True
    thread.join(10)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], psycopg2.OperationalError)
    victim.close()

    assert db.rows("select id, bal, note from acct") == [(1, 11, "committed")]
    assert db.audit_rows() == before_rows


def test_client_gone_mid_transaction_leaves_neither_change_nor_audit_row(slow_acct: Db) -> None:
    db = slow_acct
    before_rows = db.audit_rows()
    victim = psycopg2.connect(db.conn.dsn)
    pid = victim.info.backend_pid
    with victim.cursor() as cur:
        cur.execute("update acct set bal = 99, note = 'lost' where id = 1")
        cur.execute("insert into acct select g, g, 'lost' from generate_series(2, 400) as g")
        cur.execute("delete from acct where id = 2")
    # The client vanishes without a word: its socket is shut, no rollback, no goodbye.
    socket.socket(fileno=victim.fileno()).shutdown(socket.SHUT_RDWR)
    wait_for(
        lambda: db.one("select count(*) from pg_stat_activity where pid = %s", [pid]) == 0,
        "the server to notice the client is gone",
    )
    assert db.rows("select id, bal, note from acct") == [(1, 11, "committed")]
    assert db.audit_rows() == before_rows


CRASH_WRITERS = 4


@pytest.mark.pg
def test_a_crashed_server_keeps_every_committed_audit_row() -> None:
    """``pg_ctl stop -m immediate`` mid-load, on a server with default durability."""
    with ThrowawayPostgres(settings={}) as server:
        done = server.psql("postgres", "-c", "create database crash")
        assert done.returncode == 0, done.stderr
        url = server.url("crash")
        engine = sa.create_engine(url)
        try:
            run_online(
                engine, lambda op: op.execute("create table acct (id int primary key, bal int)")
            )
            run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("acct")))
        finally:
            engine.dispose()

        acknowledged: list[list[int]] = [[] for _ in range(CRASH_WRITERS)]
        in_doubt: list[int] = []
        start = threading.Barrier(CRASH_WRITERS + 1)

        def write(number: int) -> None:
            conn = raw_connect(url)
            start.wait()
            key = number * 1_000_000
            try:
                while True:
                    key += 1
                    with conn.cursor() as cur:
                        cur.execute("insert into acct values (%s, 0)", [key])
                        cur.execute("update acct set bal = 1 where id = %s", [key])
                    conn.commit()
                    acknowledged[number].append(key)
            except psycopg2.Error:
                in_doubt.append(key)  # the commit may or may not have reached the WAL

        # A transaction open at the crash: it must leave nothing.
        open_txn = raw_connect(url)
        with open_txn.cursor() as cur:
            cur.execute("insert into acct values (-1, 0); update acct set bal = 5 where id = -1")
        threads = [threading.Thread(target=write, args=(n,)) for n in range(CRASH_WRITERS)]
        for thread in threads:
            thread.start()
        start.wait()
        wait_for(lambda: all(len(keys) >= 50 for keys in acknowledged), "commits before crash")
        server.restart(mode="immediate")
        for thread in threads:
            thread.join(10)
        open_txn.close()
        assert len(in_doubt) == CRASH_WRITERS

        with connect(url) as db:
            oid = db.oid("acct")
            present = {key for (key,) in db.rows("select id from acct")}
            assert db.rows("select count(*) from acct where bal <> 1") == [(0,)]
            acked = {key for keys in acknowledged for key in keys}
            assert acked <= present
            assert present - acked <= set(in_doubt)
            expected = []
            for key in sorted(present):
                rid = record_id(oid, str(key))
                expected += [
                    ("INSERT", rid, None, {"id": key, "bal": 0}, None),
                    ("UPDATE", rid, rid, {"id": key, "bal": 1}, {"id": key, "bal": 0}),
                ]
            found = sorted(
                (row for row in db.audit_rows()),
                key=lambda row: ((row[6] or row[7])["id"], row[0] != "INSERT"),
            )
            assert [(r[0], r[1], r[2], r[6], r[7]) for r in found] == expected
            print(f"\ncrash: {len(acked)} acknowledged commits, {len(expected)} audit rows kept")


# --- Migrations that fail -----------------------------------------------------------------

FIRST = '''"""first"""
from alembic import op
import sqlalchemy as sa

revision = "a1"
down_revision = None


def upgrade() -> None:
    op.install_audit()
    op.create_table("account", sa.Column("id", sa.Integer, primary_key=True))
    op.enable_tracking("account")


def downgrade() -> None:
    op.disable_tracking("account")
    op.drop_table("account")
    op.uninstall_audit(keep_history=True)
'''

SECOND = '''"""second: fails partway"""
from alembic import op
import sqlalchemy as sa

revision = "b2"
down_revision = "a1"


def upgrade() -> None:
    op.disable_tracking("account")
    op.create_table("ledger", sa.Column("id", sa.Integer, primary_key=True))
    op.enable_tracking("ledger")
    op.create_table("ledger_line", sa.Column("id", sa.Integer, primary_key=True))
    op.enable_tracking("ledger_lines")  # a typo: the table it meant was created above


def downgrade() -> None:
    pass
'''

LEDGER_HINT = (
    "Create the table before this step (op.create_table() earlier in this migration or in an"
    " earlier one), or correct the table name and schema given to op.enable_tracking()."
)


def test_a_migration_that_fails_partway_changes_nothing(
    pg_server: ThrowawayPostgres, db_url: str, tmp_path: Path
) -> None:
    project = Project.create(tmp_path, db_url)
    (project.versions / "a1_first.py").write_text(FIRST)
    (project.versions / "b2_second.py").write_text(SECOND)
    offline_name = f"offline_{uuid.uuid4().hex[:12]}"
    with (
        connect(db_url) as online,
        extra_database(pg_server, offline_name),
        connect(pg_server.url(offline_name)) as offline,
    ):
        project.upgrade("a1")
        apply_sql(pg_server, offline_name, project.upgrade("a1", sql=True))
        for db in (online, offline):
            db.run("insert into account values (1)")
        before = catalog_snapshot(online)
        assert catalog_snapshot(offline) == before
        history_before = online.audit_rows()

        with pytest.raises(sa.exc.DBAPIError) as failed:
            project.upgrade("head")
        error = failed.value.orig
        assert error.pgcode == "42P01"  # type: ignore[union-attr]
        assert error.diag.message_primary == (  # type: ignore[union-attr]
            "op.enable_tracking: table ledger_lines does not exist"
        )
        assert error.diag.message_hint == LEDGER_HINT  # type: ignore[union-attr]
        done = pg_server.psql(offline_name, input=project.upgrade("a1:head", sql=True))
        assert done.returncode != 0
        assert (
            f"ERROR:  op.enable_tracking: table ledger_lines does not exist\nHINT:  {LEDGER_HINT}\n"
        ) in done.stderr

        for db in (online, offline):
            assert catalog_snapshot(db) == before
            assert db.rows("select version_num from alembic_version") == [("a1",)]
            # account is still tracked: the disable_tracking step was undone too.
            db.run("insert into account values (2)")
        assert [row[0] for row in online.audit_rows()] == ["INSERT", "INSERT"]
        assert online.audit_rows()[0] == history_before[0]
        assert offline.normalized_audit_rows() == online.normalized_audit_rows()


def test_a_failing_step_after_install_audit_rolls_the_install_back(
    pg_server: ThrowawayPostgres, db_url: str, tmp_path: Path
) -> None:
    project = Project.create(tmp_path, db_url)
    (project.versions / "a1_first.py").write_text(
        FIRST.replace('op.enable_tracking("account")', 'op.execute("select 1 / 0")')
    )
    with connect(db_url) as db:
        before = catalog_snapshot(db)
        with pytest.raises(sa.exc.DBAPIError) as failed:
            project.upgrade()
        assert failed.value.orig.pgcode == "22012"  # type: ignore[union-attr]
        assert catalog_snapshot(db) == before
        assert db.one("select to_regnamespace('audit') is null")


MODELS = ACCOUNT_MODELS


def test_upgrade_downgrade_cycles_leave_no_leftovers_and_keep_history(
    db_url: str, tmp_path: Path
) -> None:
    project = Project.create(tmp_path, db_url, MODELS)
    project.revision("accounts")
    with connect(db_url) as db:
        base = catalog_snapshot(db)
        up: list[Any] = []
        down: list[Any] = []
        for cycle in range(3):
            project.upgrade()
            up.append(catalog_snapshot(db))
            db.run("insert into account values (%s, 'a')", [cycle])
            project.downgrade("base")
            down.append(catalog_snapshot(db))
        assert up[0] == up[1] == up[2]
        assert down[0] == down[1] == down[2]

        # What stays at base is the history (and uuid-ossp): nothing else was left behind.
        def added(kind: str) -> set[tuple[Any, ...]]:
            return {row[:2] for row in down[0][kind]} - {row[:2] for row in base[kind]}

        assert added("schemas") == {("audit", "postgres")}
        assert added("extensions") == {("uuid-ossp", "public")}
        assert added("types") == {("audit", "operation")}
        assert added("relations") == {
            ("audit", "record_version"), ("audit", "record_version_id_seq"),
            ("audit", "record_version_pkey"), ("audit", "record_version_record_id"),
            ("audit", "record_version_old_record_id"), ("audit", "record_version_ts"),
            ("audit", "record_version_table_oid"), ("audit", "record_version_transaction_id"),
        }  # fmt: skip
        assert {schema for schema, _ in added("functions")} == {"public"}  # uuid-ossp's
        assert down[0]["triggers"] == down[0]["event_triggers"] == []
        assert [(row[0], row[6]) for row in db.audit_rows()] == [
            ("INSERT", {"id": cycle, "name": "a"}) for cycle in range(3)
        ]

        # Only tracking toggled: up/down cycles of a migration that just stops tracking.
        project.upgrade()
        project.set_models(MODELS.replace("__audited__ = True", "__audited__ = False"))
        text = project.revision("stop auditing")
        assert migration_body(text, "upgrade") == ["op.disable_tracking('account')"]
        tracked, untracked = catalog_snapshot(db), None
        for cycle in range(3):
            project.upgrade()
            untracked = untracked or catalog_snapshot(db)
            assert catalog_snapshot(db) == untracked
            db.run("insert into account values (%s, 'untracked')", [10 + cycle])
            project.downgrade("-1")
            assert catalog_snapshot(db) == tracked
            db.run("insert into account values (%s, 'tracked')", [20 + cycle])
        assert [(row[0], row[6]) for row in db.audit_rows()] == [
            *(("INSERT", {"id": cycle, "name": "a"}) for cycle in range(3)),
            *(("INSERT", {"id": 20 + cycle, "name": "tracked"}) for cycle in range(3)),
        ]


# --- Backup and restore -------------------------------------------------------------------


def _acl(text: str | None, owner: str, default: str) -> tuple[str, ...]:
    """An ACL as a sorted tuple; NULL (never granted or revoked) as its default."""
    if text is None:
        text = default.replace("$", owner)
    return tuple(sorted(text.strip("{}").split(",")))


DEFAULT_ACLS = {"r": "{$=arwdDxt/$}", "S": "{$=rwU/$}", "i": None}


def effective_acls(snapshot: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The snapshot with each ACL as the rights it gives.

    pg_dump writes no GRANT/REVOKE for an ACL that equals the default (a revoke from
    public on a table, or its grant back on a function), so the restored catalog has NULL
    where the source has the same rights spelled out.
    """
    result = dict(snapshot)
    result["schemas"] = sorted(
        (name, owner, _acl(acl, owner, "{$=UC/$}")) for name, owner, acl in snapshot["schemas"]
    )
    result["relations"] = sorted(
        (schema, name, kind, owner)
        + ((_acl(acl, owner, DEFAULT_ACLS[kind]),) if DEFAULT_ACLS.get(kind, "") else (acl,))
        for schema, name, kind, acl, owner in snapshot["relations"]
    )
    result["functions"] = sorted(
        (*row[:8], _acl(row[8], row[9], "{=X/$,$=X/$}"), row[9]) for row in snapshot["functions"]
    )
    return result


def test_plain_pg_dump_restored_with_psql(
    pg_server: ThrowawayPostgres, engine: sa.Engine, db_url: str
) -> None:
    with connect(db_url) as db:
        db.run("create table account (id int primary key, name text)")
        run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("account")))
        db.run(
            "insert into account values (1, 'before dump'), (2, 'Zoë');"
            "update account set name = 'dumped' where id = 1; delete from account where id = 2"
        )
        old_oid = db.oid("account")
        source_rows = db.rows("select * from audit.record_version order by id")
        source = catalog_snapshot(db)

    assert pg_server.bin_dir is not None
    dump = subprocess.run(
        [
            str(pg_server.bin_dir / "pg_dump"), "-h", pg_server.host, "-p", str(pg_server.port),
            "-U", pg_server.user, "-d", sa.make_url(db_url).database or "",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    restored = f"restored_{uuid.uuid4().hex[:12]}"
    with extra_database(pg_server, restored), connect(pg_server.url(restored)) as db:
        apply_sql(pg_server, restored, dump)
        # The same rows, ids and record ids; the load itself fired no trigger.
        assert db.rows("select * from audit.record_version order by id") == source_rows
        # Triggers, event trigger, functions, grants: all there.
        assert effective_acls(catalog_snapshot(db)) == effective_acls(source)
        new_oid = db.oid("account")
        assert new_oid != old_oid

        db.run("update account set name = 'after restore' where id = 1")  # still tracked
        # The event trigger is live: it refuses to leave a tracked table without its key.
        refused = db.error("alter table account drop constraint account_pkey")
        assert refused.pgcode == "42P16"
        assert refused.diag.message_primary == (
            "table public.account is tracked by the audit trail and must keep a primary key"
        )
        db.run("delete from account where id = 1")
        r_old, r_new = record_id(old_oid, "1"), record_id(new_oid, "1")
        assert [(row[0], row[1], row[2], row[3]) for row in db.audit_rows()] == [
            ("INSERT", r_old, None, old_oid),
            ("INSERT", record_id(old_oid, "2"), None, old_oid),
            ("UPDATE", r_old, r_old, old_oid),
            ("DELETE", None, record_id(old_oid, "2"), old_oid),
            ("UPDATE", r_new, r_new, new_oid),
            ("DELETE", None, r_new, new_oid),
        ]
        assert (
            db.one("select min(id) from audit.record_version where table_oid = %s", [new_oid])
            > (source_rows[-1][0])
        )
        # A later migration's install over the restored schema keeps everything.
        restored_engine = sa.create_engine(pg_server.url(restored))
        try:
            run_online(restored_engine, lambda op: op.install_audit())
            # The package's lookup follows the record across the oid change.
            with Session(restored_engine) as session:
                found = history(session, qualified_name("account", "public"), 1)
                assert [(v.op, v.table_oid, v.record_id, v.old_record_id) for v in found] == [
                    ("INSERT", old_oid, r_old, None),
                    ("UPDATE", old_oid, r_old, r_old),
                    ("UPDATE", new_oid, r_new, r_new),
                    ("DELETE", new_oid, None, r_new),
                ]
        finally:
            restored_engine.dispose()
        assert len(db.audit_rows()) == 6
