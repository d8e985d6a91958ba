"""The audit SQL against a real server: the rows it writes and the errors it gives.

Every expectation is the exact audit row or the exact error text of the behaviour
specification (shared/design/AUDIT_BEHAVIOUR.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from audit_helpers import NAMESPACE, SUPABASE_AUTH, Db, connect, record_id, run_online


@pytest.fixture
def bare_db(db_url: str) -> Iterator[Db]:
    """The test's database without the audit schema."""
    with connect(db_url) as db:
        yield db


@pytest.fixture
def db(engine: sa.Engine, bare_db: Db) -> Db:
    """The test's database with the audit schema installed (through op.install_audit())."""
    run_online(engine, lambda op: op.install_audit())
    return bare_db


def track(db: Db, table: str) -> int:
    db.run("select audit.enable_tracking(%s)", [table])
    return db.oid(table)


def account(db: Db) -> int:
    """The README's account table, tracked; returns its oid."""
    db.run("create table public.account (id int primary key, name text not null)")
    return track(db, "public.account")


# --- The stable record id ---------------------------------------------------------------


def test_record_id_test_vector(db: Db) -> None:
    expected = uuid.UUID("57ca384e-f24c-5af5-b361-a057aeac506c")
    assert uuid.UUID(db.one("""select audit.to_record_id(16439, '{id}', '{"id": 1}')""")) == (
        expected
    )
    assert uuid.uuid5(NAMESPACE, '["16439", "1"]') == expected
    assert record_id(16439, "1") == expected


def test_account_scenario(db: Db) -> None:
    oid = account(db)
    db.run("insert into public.account (id, name) values (1, 'Foo Barsworth')")
    db.run("update public.account set name = 'Foo Barsworthy' where id = 1")
    db.run("delete from public.account where id = 1")
    db.run("truncate public.account")

    rid = uuid.uuid5(uuid.UUID("fd62bc3d-8d6e-43c2-919c-802ba3762271"), f'["{oid}", "1"]')
    foo = {"id": 1, "name": "Foo Barsworth"}
    foo2 = {"id": 1, "name": "Foo Barsworthy"}
    assert db.audit_rows() == [
        ("INSERT", rid, None, oid, "public", "account", foo, None),
        ("UPDATE", rid, rid, oid, "public", "account", foo2, foo),
        ("DELETE", None, rid, oid, "public", "account", None, foo2),
        ("TRUNCATE", None, None, oid, "public", "account", None, None),
    ]
    # ts is the transaction time: never null, never going back.
    times = [ts for (ts,) in db.rows("select ts from audit.record_version order by id")]
    assert all(times) and times == sorted(times)


def test_composite_key_uses_column_number_order(db: Db) -> None:
    # The key is declared (a, b) but b is column 1: the id takes b first.
    db.run(
        "create table pairs (b text, note text, a int, primary key (a, b));"
        "insert into pairs values ('before', 'not recorded', 0)"
    )
    oid = track(db, "pairs")
    db.run("insert into pairs values ('x', 'n', 7)")
    assert db.audit_rows() == [
        ("INSERT", record_id(oid, "x", "7"), None, oid, "public", "pairs",
         {"a": 7, "b": "x", "note": "n"}, None),
    ]  # fmt: skip
    assert record_id(oid, "x", "7") != record_id(oid, "7", "x")


TEXT_KEYS = [
    "Zoë 東京",
    "Ärger; 'quoted' \"double\"",
    "tab\tnew\nline back\\slash \u0001 ctrl",
    "emoji 🦆 and \u2028 separator",
]


def test_text_keys_hash_jsonb_text_form(db: Db) -> None:
    db.run("create table labels (code text primary key, n int)")
    oid = track(db, "labels")
    for key in TEXT_KEYS:
        db.run("insert into labels values (%s, 1)", [key])
    db.run("update labels set n = 2 where code = %s", [TEXT_KEYS[0]])
    ids = [record_id(oid, key) for key in TEXT_KEYS]
    assert len(set(ids)) == len(TEXT_KEYS)
    first = TEXT_KEYS[0]
    assert db.audit_rows() == [
        *[("INSERT", rid, None, oid, "public", "labels", {"code": key, "n": 1}, None)
          for rid, key in zip(ids, TEXT_KEYS, strict=True)],
        ("UPDATE", ids[0], ids[0], oid, "public", "labels", {"code": first, "n": 2},
         {"code": first, "n": 1}),
    ]  # fmt: skip
    # The same ids as the database computes from the jsonb text form of the key.
    for key, rid in zip(TEXT_KEYS, ids, strict=True):
        computed = db.one(
            "select audit.to_record_id(%s, '{code}', jsonb_build_object('code', %s::text))",
            [oid, key],
        )
        assert uuid.UUID(computed) == rid


def test_non_text_key_types_use_their_text_form(db: Db) -> None:
    db.run(
        "create table measures (day date, ok boolean, amount numeric(6, 2), n int,"
        " primary key (day, ok, amount))"
    )
    oid = track(db, "measures")
    db.run("insert into measures values ('2024-02-29', true, 12.5, 1)")
    (row,) = db.audit_rows()
    assert row[1] == record_id(oid, "2024-02-29", "true", "12.50")


BAD_AUDIT_ROWS = [
    "(null, null, 'INSERT', 1, 's', 't', '{}', null)",
    "(gen_random_uuid(), null, 'INSERT', 1, 's', 't', null, null)",
    "(gen_random_uuid(), null, 'DELETE', 1, 's', 't', null, '{}')",
    "(null, gen_random_uuid(), 'DELETE', 1, 's', 't', null, null)",
    "(gen_random_uuid(), null, 'UPDATE', 1, 's', 't', '{}', null)",
    "(gen_random_uuid(), null, 'TRUNCATE', 1, 's', 't', '{}', null)",
    "(null, null, 'DELETE', 1, 's', 't', null, '{}')",
]


def test_record_version_checks(db: Db) -> None:
    for bad_row in BAD_AUDIT_ROWS:
        error = db.error(
            "insert into audit.record_version (record_id, old_record_id, op, table_oid,"
            f" table_schema, table_name, record, old_record) values {bad_row}"
        )
        assert error.pgcode == "23514", bad_row  # check_violation
    assert db.audit_rows() == []


# --- Upserts, several rows, key changes -----------------------------------------------------


def test_upsert_writes_insert_then_update(db: Db) -> None:
    db.run("create table token (id serial primary key, customer_id int unique, token text)")
    oid = track(db, "token")
    upsert = (
        "insert into token (customer_id, token) values (42, %s)"
        " on conflict (customer_id) do update set token = excluded.token"
    )
    db.run(upsert, ["first"])
    db.run(upsert, ["second"])
    db.run("insert into token (customer_id, token) values (42, 'x') on conflict do nothing")
    rid = record_id(oid, "1")
    first = {"id": 1, "customer_id": 42, "token": "first"}
    second = {"id": 1, "customer_id": 42, "token": "second"}
    assert db.audit_rows() == [
        ("INSERT", rid, None, oid, "public", "token", first, None),
        ("UPDATE", rid, rid, oid, "public", "token", second, first),
    ]


def test_oauth_scenario_keeps_every_superseded_token(db: Db) -> None:
    db.run(
        "create table access_token (id serial primary key, customer_id int unique not null,"
        " token text not null, expires_at timestamptz not null);"
        "create table refresh_token (id serial primary key,"
        " access_token_id int unique not null references access_token (id),"
        " token text not null, expires_at timestamptz not null)"
    )
    track(db, "access_token")
    track(db, "refresh_token")
    login = """
        begin;
        insert into access_token (customer_id, token, expires_at)
            values (7, %(access)s, '2030-01-01')
            on conflict (customer_id) do update
            set token = excluded.token, expires_at = excluded.expires_at;
        insert into refresh_token (access_token_id, token, expires_at)
            select id, %(refresh)s, '2030-02-01' from access_token where customer_id = 7
            on conflict (access_token_id) do update
            set token = excluded.token, expires_at = excluded.expires_at;
        commit;
    """
    for n in range(3):
        db.run(login, {"access": f"a{n}", "refresh": f"r{n}"})  # type: ignore[arg-type]
    assert db.one("select count(*) from access_token") == 1
    assert db.one("select count(*) from refresh_token") == 1
    assert db.rows(
        "select table_name::text, op::text, record ->> 'token', old_record ->> 'token'"
        " from audit.record_version order by id"
    ) == [
        ("access_token", "INSERT", "a0", None),
        ("refresh_token", "INSERT", "r0", None),
        ("access_token", "UPDATE", "a1", "a0"),
        ("refresh_token", "UPDATE", "r1", "r0"),
        ("access_token", "UPDATE", "a2", "a1"),
        ("refresh_token", "UPDATE", "r2", "r1"),
    ]


def test_one_audit_row_per_affected_row(db: Db) -> None:
    oid = account(db)
    db.run("insert into account values (1, 'a'), (2, 'b'), (3, 'c')")
    db.run("update account set name = upper(name) where id >= 2")
    db.run("delete from account where id <> 2")
    assert [(op, rid) for op, rid, *_ in db.audit_rows()] == [
        ("INSERT", record_id(oid, "1")),
        ("INSERT", record_id(oid, "2")),
        ("INSERT", record_id(oid, "3")),
        ("UPDATE", record_id(oid, "2")),
        ("UPDATE", record_id(oid, "3")),
        ("DELETE", None),
        ("DELETE", None),
    ]
    assert sorted(row[2] for row in db.audit_rows()[-2:]) == sorted(
        [record_id(oid, "1"), record_id(oid, "3")]
    )
    # One statement, one transaction: its rows share the transaction time.
    assert db.one("select count(distinct ts) from audit.record_version where op = 'INSERT'") == 1


def test_update_of_the_key_gives_two_ids(db: Db) -> None:
    oid = account(db)
    db.run("insert into account values (1, 'a')")
    db.run("update account set id = 10 where id = 1")
    assert db.audit_rows()[-1] == (
        "UPDATE", record_id(oid, "10"), record_id(oid, "1"), oid, "public", "account",
        {"id": 10, "name": "a"}, {"id": 1, "name": "a"},
    )  # fmt: skip


# --- enable_tracking / disable_tracking ----------------------------------------------------


#: The triggers of a tracked table with a plain primary key (functions/enable_tracking_keys.sql).
STATEMENT_LEVEL_TRIGGERS = [
    "audit_delete",
    "audit_insert",
    "audit_key_change",
    "audit_truncate",
    "audit_update",
]


def audit_triggers(db: Db, table: str) -> list[str]:
    return [
        name
        for (name,) in db.rows(
            "select tgname::text from pg_trigger where tgrelid = %s::regclass"
            " and not tgisinternal order by tgname",
            [table],
        )
    ]


def test_enable_tracking_is_idempotent(db: Db) -> None:
    oid = account(db)
    triggers = audit_triggers(db, "account")
    assert triggers == STATEMENT_LEVEL_TRIGGERS
    track(db, "account")
    assert audit_triggers(db, "account") == triggers
    db.run("insert into account values (1, 'a')")
    assert db.audit_rows() == [
        ("INSERT", record_id(oid, "1"), None, oid, "public", "account",
         {"id": 1, "name": "a"}, None),
    ]  # fmt: skip


def test_rows_before_tracking_are_not_recorded(db: Db) -> None:
    db.run("create table account (id int primary key, name text not null)")
    db.run("insert into account values (1, 'old')")
    oid = track(db, "account")
    db.run("update account set name = 'new'")
    assert [row[0] for row in db.audit_rows()] == ["UPDATE"]
    assert db.audit_rows()[0][1] == record_id(oid, "1")


def test_disable_tracking_is_idempotent(db: Db) -> None:
    account(db)
    db.take_notices()
    db.run("select audit.disable_tracking('account')")
    assert audit_triggers(db, "account") == []
    assert db.take_notices() == []
    db.run("select audit.disable_tracking('account')")
    assert db.take_notices() == ["NOTICE:  audit.disable_tracking: public.account was not tracked"]
    db.run("insert into account values (1, 'a'); update account set name = 'b'; truncate account")
    assert db.audit_rows() == []
    # Tracking can start again afterwards.
    track(db, "account")
    db.run("insert into account values (2, 'c')")
    assert [row[0] for row in db.audit_rows()] == ["INSERT"]


def test_disable_tracking_of_a_table_never_tracked(db: Db) -> None:
    db.run('create schema xyz; create table xyz."Other" (id int primary key)')
    db.run("""select audit.disable_tracking('xyz."Other"')""")
    assert db.take_notices() == ['NOTICE:  audit.disable_tracking: xyz."Other" was not tracked']


def test_table_without_primary_key_is_refused(db: Db) -> None:
    db.run('create schema xyz; create table xyz."No Key" (id int unique, v text)')
    error = db.error("""select audit.enable_tracking('xyz."No Key"')""")
    assert error.pgcode == "42P16"  # invalid_table_definition
    assert error.diag.message_primary == (
        'audit.enable_tracking: table xyz."No Key" has no primary key'
    )
    assert error.diag.message_hint == (
        'Add a primary key to xyz."No Key": the audit trail identifies each record by its'
        " primary key."
    )
    assert audit_triggers(db, 'xyz."No Key"') == []


NOT_TABLES = [
    ("create view v_account as select * from account", "v_account", "a view"),
    ("create materialized view m_account as select * from account", "m_account",
     "a materialized view"),
    ("create table parted (id int primary key) partition by range (id)", "parted",
     "a partitioned table"),
    ("create extension postgres_fdw; create server elsewhere foreign data wrapper"
     " postgres_fdw; create foreign table remote (id int) server elsewhere", "remote",
     "a foreign table"),
    ("create sequence counter", "counter", "not an ordinary table"),
    ("create type pair as (a int, b int)", "pair", "not an ordinary table"),
]  # fmt: skip


def test_only_ordinary_tables_can_be_tracked(db: Db) -> None:
    db.run("create table account (id int primary key, name text)")
    for setup, name, what in NOT_TABLES:
        db.run(setup)
        error = db.error("select audit.enable_tracking(%s)", [name])
        assert error.pgcode == "42809", name  # wrong_object_type
        assert error.diag.message_primary == f"audit.enable_tracking: public.{name} is {what}"
        assert error.diag.message_hint == (
            "Only ordinary tables can be tracked: track the table that stores the rows."
        )
    assert db.one("select count(*) from pg_trigger where not tgisinternal") == 0


def test_a_partition_can_be_tracked(db: Db) -> None:
    db.run(
        "create table parted (id int primary key, v text) partition by range (id);"
        "create table parted_low partition of parted for values from (0) to (100)"
    )
    oid = track(db, "parted_low")
    db.run("insert into parted values (5, 'x')")
    assert db.audit_rows() == [
        ("INSERT", record_id(oid, "5"), None, oid, "public", "parted_low",
         {"id": 5, "v": "x"}, None),
    ]  # fmt: skip


def test_missing_table_is_an_error(db: Db) -> None:
    for function in ("enable_tracking", "disable_tracking"):
        error = db.error(f"select audit.{function}('no_such_table')")
        assert error.pgcode == "42P01"  # undefined_table
        assert error.diag.message_primary == 'relation "no_such_table" does not exist'


def test_schema_off_the_search_path(db: Db) -> None:
    db.run('create schema xyz; create table xyz."Members" (id int primary key, "Name" text)')
    oid = track(db, 'xyz."Members"')
    db.run("""insert into xyz."Members" values (1, 'M')""")
    assert db.audit_rows() == [
        ("INSERT", record_id(oid, "1"), None, oid, "xyz", "Members",
         {"id": 1, "Name": "M"}, None),
    ]  # fmt: skip


# --- Supabase -----------------------------------------------------------------------------

def test_supabase_auth_columns(engine: sa.Engine, bare_db: Db) -> None:
    db = bare_db
    db.run(SUPABASE_AUTH)
    run_online(engine, lambda op: op.install_audit())
    assert db.rows(
        "select column_name::text, data_type::text, column_default::text"
        " from information_schema.columns where table_schema = 'audit'"
        " and table_name = 'record_version' and column_name like 'auth%' order by 1"
    ) == [("auth_role", "text", "auth.role()"), ("auth_uid", "uuid", "auth.uid()")]

    oid = account(db)
    alice = uuid.UUID("0b7c8c4a-6a59-4d8e-9d6f-3f1d2a2b1c01")
    db.run("set request.jwt.claim.sub = %s", [str(alice)])
    db.run("set request.jwt.claim.role = 'authenticated'")
    db.run("insert into account values (1, 'a')")
    db.run("set request.jwt.claim.sub = ''")
    db.run("set request.jwt.claim.role = 'service_role'")
    db.run("update account set name = 'b'")
    db.run("delete from account")
    db.run("truncate account")
    assert db.rows(
        "select op::text, auth_uid, auth_role, table_oid::bigint"
        " from audit.record_version order by id"
    ) == [
        ("INSERT", str(alice), "authenticated", oid),
        ("UPDATE", None, "service_role", oid),
        ("DELETE", None, "service_role", oid),
        ("TRUNCATE", None, "service_role", oid),
    ]


@pytest.mark.parametrize(
    "auth",
    [
        "",
        "create schema auth; create function auth.uid() returns text language sql"
        " as $$ select '' $$; create function auth.role() returns text language sql"
        " as $$ select '' $$;",
        "create schema auth; create function auth.uid() returns uuid language sql"
        " as $$ select null::uuid $$;",
    ],
    ids=["no-auth", "uid-not-uuid", "no-role"],
)
def test_no_auth_columns_without_supabase_functions(
    engine: sa.Engine, bare_db: Db, auth: str
) -> None:
    if auth:
        bare_db.run(auth)
    run_online(engine, lambda op: op.install_audit())
    assert bare_db.rows(
        "select column_name::text from information_schema.columns where table_schema = 'audit'"
        " and table_name = 'record_version' order by ordinal_position"
    ) == [(column,) for column in
          ("id", "record_id", "old_record_id", "op", "ts", "table_oid", "table_schema",
           "table_name", "record", "old_record", "actor", "context",
           "transaction_id")]  # fmt: skip


# --- Transactions and privileges ------------------------------------------------------------


def test_rollback_leaves_no_audit_row(db: Db) -> None:
    oid = account(db)
    db.conn.autocommit = False
    db.run("insert into account values (1, 'a')")
    db.run("truncate account")
    db.conn.rollback()
    db.run("insert into account values (2, 'b')")
    db.run("savepoint s")
    db.run("insert into account values (3, 'c')")
    db.run("rollback to savepoint s")
    db.conn.commit()
    db.conn.autocommit = True
    assert db.audit_rows() == [
        ("INSERT", record_id(oid, "2"), None, oid, "public", "account",
         {"id": 2, "name": "b"}, None),
    ]  # fmt: skip


@pytest.fixture
def app_role(db: Db) -> Iterator[str]:
    """A login role with rights on the account table only."""
    role = f"app_{uuid.uuid4().hex[:10]}"
    db.run(
        "create table account (id serial primary key, name text not null);"
        f"create role {role} login;"
        f"grant select, insert, update, delete on account to {role};"
        f"grant usage on sequence account_id_seq to {role}"
    )
    yield role
    db.run(f"reset role; drop owned by {role}; drop role {role}")


def test_app_role_without_audit_rights_is_audited(db: Db, app_role: str) -> None:
    oid = track(db, "account")
    db.run(f"set role {app_role}")
    db.run("insert into account (name) values ('a')")
    db.run("update account set name = 'b'")
    db.run("delete from account")
    db.run("reset role")
    rid = record_id(oid, "1")
    assert [row[:3] for row in db.audit_rows()] == [
        ("INSERT", rid, None),
        ("UPDATE", rid, rid),
        ("DELETE", None, rid),
    ]


def test_app_role_cannot_touch_the_audit_trail(db: Db, app_role: str) -> None:
    track(db, "account")
    db.run("insert into account (name) values ('a')")
    trigger_functions = [
        name
        for (name,) in db.rows(
            "select distinct tgfoid::regprocedure::text from pg_trigger"
            " where tgrelid = 'account'::regclass and not tgisinternal"
        )
    ]
    assert trigger_functions
    forbidden = [
        "select * from audit.record_version",
        "insert into audit.record_version (op, table_oid, table_schema, table_name)"
        " values ('TRUNCATE', 1, 's', 't')",
        "update audit.record_version set record = '{}'",
        "delete from audit.record_version",
        "truncate audit.record_version",
        "select audit.enable_tracking('account')",
        "select audit.disable_tracking('account')",
        *(f"select {name}" for name in trigger_functions),
    ]
    for schema_usage in (False, True):
        if schema_usage:  # Even with usage on the schema, each object is closed.
            db.run(f"grant usage on schema audit to {app_role}")
        db.run(f"set role {app_role}")
        for statement in forbidden:
            error = db.error(statement)
            assert error.pgcode == "42501", (statement, error)  # insufficient_privilege
            assert error.diag.message_primary.startswith("permission denied for "), statement
        db.run("reset role")
    assert audit_triggers(db, "account") == STATEMENT_LEVEL_TRIGGERS
    assert len(db.audit_rows()) == 1


# --- Primary-key changes of a tracked table ------------------------------------------------


@pytest.fixture
def keyed(db: Db) -> int:
    db.run("create table keyed (id int primary key, code text not null unique, v int)")
    return track(db, "keyed")


def test_key_replaced_in_one_statement(db: Db, keyed: int) -> None:
    db.run("insert into keyed values (1, 'one', 0)")
    db.run("alter table keyed drop constraint keyed_pkey, add primary key (code)")
    db.run("update keyed set v = 1")
    db.run("insert into keyed values (2, 'two', 0)")
    assert [row[:3] for row in db.audit_rows()] == [
        ("INSERT", record_id(keyed, "1"), None),
        ("UPDATE", record_id(keyed, "one"), record_id(keyed, "one")),
        ("INSERT", record_id(keyed, "two"), None),
    ]
    db.run("alter table keyed drop constraint keyed_pkey, add primary key (id, code)")
    db.run("delete from keyed where id = 2")
    assert db.audit_rows()[-1][:3] == ("DELETE", None, record_id(keyed, "2", "two"))


def test_key_column_renamed(db: Db, keyed: int) -> None:
    db.run("alter table keyed rename column id to keyed_id")
    db.run("insert into keyed values (3, 'three', 0)")
    db.run("update keyed set keyed_id = 4")
    assert [row[:3] for row in db.audit_rows()] == [
        ("INSERT", record_id(keyed, "3"), None),
        ("UPDATE", record_id(keyed, "4"), record_id(keyed, "3")),
    ]


@pytest.mark.parametrize(
    "statement",
    ["alter table keyed drop constraint keyed_pkey", "alter table keyed drop column id"],
)
def test_dropping_the_key_of_a_tracked_table_is_refused(db: Db, keyed: int, statement: str) -> None:
    error = db.error(statement)
    assert error.pgcode == "42P16"
    assert error.diag.message_primary == (
        "table public.keyed is tracked by the audit trail and must keep a primary key"
    )
    assert error.diag.message_hint == (
        "Call audit.disable_tracking('public.keyed') (op.disable_tracking in a migration) first,"
        " or replace the key in the same ALTER TABLE statement."
    )
    assert db.one("select count(*) from pg_constraint where conname = 'keyed_pkey'") == 1
    # The way out the hint gives works.
    db.run("select audit.disable_tracking('keyed')")
    db.run(statement)
