"""Issue 12 (Trust): no role can silence, distort or escalate through the audit trail.

The red-team half of issue 12: every attack below is run as the role that has exactly the
rights it names (table owner, holder of the TRIGGER privilege, DML-only writer with the
default TEMP right, type owner, role with CREATE on a schema in a writer's search_path),
against the audit trail installed by a superuser the way a migration installs it. Each test
asserts what a user relies on: the exact audit rows, the role's rights afterwards.

Every attack here succeeded against audit schema version 2 (the tests were written first,
as strict xfails, and lost their marks as version 3 closed each hole); tests/test_upgrades.py
runs the write-path attacks again on a database upgraded from the frozen version 2.

Classes (as numbered in the issue):
1. text that a table owner or TRIGGER holder wrote is executed by the audit owner;
2. the writer's session (types, schemas, custom settings) decides what is recorded;
3. nondeterministic collations on primary keys;
4. output settings (extra_float_digits, bytea_output, TimeZone, DateStyle, IntervalStyle);
5. a type owner's cast to json stops every write;
6. logical replication subscribers.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa
from audit_helpers import Db, connect, record_id, run_online

from hyper_audit_alembic import record_id as package_record_id
from hyper_audit_alembic.devtools.throwaway_postgres import FAST_SETTINGS, ThrowawayPostgres
from hyper_audit_alembic.migration.catalog import read_audit_state
from hyper_audit_alembic.migration.options import TrackingOptions

MakeRole = Callable[[], str]

ISSUE = "issue 12: "


@pytest.fixture
def db(db_url: str, engine: sa.Engine) -> Iterator[Db]:
    """The test's database with the audit trail installed (as a superuser, by a migration)."""
    with connect(db_url) as db:
        run_online(engine, lambda op: op.install_audit())
        yield db


@pytest.fixture
def make_role(db: Db) -> Iterator[MakeRole]:
    """Fresh login roles (cluster-wide: unique names, dropped afterwards)."""
    made: list[str] = []

    def make() -> str:
        name = f"r_{uuid.uuid4().hex[:12]}"
        db.run(f"create role {name} login")
        made.append(name)
        return name

    yield make
    db.run("reset role; reset all")
    for name in reversed(made):
        db.run(f"drop owned by {name} cascade; drop role {name}")


def track(engine: sa.Engine, table: str, **options: Any) -> None:
    """op.enable_tracking(table, **options) in a migration."""
    run_online(engine, lambda op: op.enable_tracking(table, **options))


def rows_of(db: Db, table: str | None = None) -> list[tuple[Any, ...]]:
    """(op, record_id, old_record_id, record, old_record) of every audit row, in order."""
    return [
        (op, rid, old_rid, rec, old_rec)
        for op, rid, old_rid, _, _, name, rec, old_rec in db.audit_rows()
        if table is None or name == table
    ]


def is_superuser(db: Db, role: str) -> bool:
    return bool(db.one("select rolsuper from pg_roles where rolname = %s", [role]))


def outcome(db: Db, statement: str) -> str | None:
    """None when ``statement`` succeeds, else its SQLSTATE and message."""
    try:
        db.run(statement)
    except psycopg2.Error as exc:
        return f"{exc.pgcode}: {exc.diag.message_primary}"
    return None


# ======================================================================================
# Class 1: a table owner's or TRIGGER holder's text run by the audit owner
# ======================================================================================


def alter_squatted(db: Db, table: str = "account", *, taken: str | None) -> None:
    """Add a column to ``table``, one of whose audit trigger names another trigger holds:
    the event trigger re-syncs its audit triggers. Where the held name is one the table's
    tracking uses (``taken``), it cannot make that audit trigger and refuses, as
    duplicate_object (42710), naming the trigger; a name of the other tracking level is
    free, and the ALTER goes through."""
    altered = outcome(db, f"alter table {table} add column z int")
    if taken is None:
        assert altered is None, altered
    else:
        code, message, _ = squat_refused(f"public.{table}", taken)
        assert altered == f"{code}: {message}"


# audit.set_tracking_options cuts pg_get_triggerdef() at its last ' EXECUTE FUNCTION f('
# and executes the rest: arguments holding that text end the cut inside themselves.
CUT = " EXECUTE FUNCTION suppress_redundant_updates_trigger("


def squat(name: str, table: str, payload: str, *, event: str = "insert") -> str:
    """A trigger under an audit trigger's name whose arguments smuggle ``payload`` in."""
    arguments = ", ".join(
        "'" + arg.replace("'", "''") + "'" for arg in (f"); {payload}; --", "", "x" + CUT)
    )
    return (
        f"create trigger {name} after {event} on {table} for each statement"
        f" execute function suppress_redundant_updates_trigger({arguments})"
    )


@pytest.fixture
def owned_account(db: Db, engine: sa.Engine, make_role: MakeRole) -> str:
    """public.account, tracked, owned by a fresh role (the application ran its migrations)."""
    owner = make_role()
    db.run("create table account (id int primary key, name text)")
    track(engine, "account")
    db.run(f"alter table account owner to {owner}")
    return owner


@pytest.mark.parametrize(
    "name", ["audit_insert", "audit_update", "audit_delete", "audit_key_change"]
)
def test_owner_squatting_an_audit_trigger_name_does_not_become_superuser(
    db: Db, owned_account: str, name: str
) -> None:
    owner = owned_account
    db.run(f"set role {owner}")
    db.run(f"drop trigger {name} on account")
    db.run(squat(name, "account", f"alter role {owner} superuser"))
    alter_squatted(db, taken=name)  # the event trigger re-syncs the table's audit triggers
    db.run("reset role")
    assert not is_superuser(db, owner)


# Payload shapes: dollar quotes, a forged audit row, silencing the trail, reading it.
PAYLOADS = {
    "forged_row": (
        "insert into audit.record_version (op, table_oid, table_schema, table_name)"
        " values ($q$TRUNCATE$q$, 1, $q$public$q$, $q$forged$q$)"
    ),
    "silence": (
        "create function audit.mute() returns trigger language plpgsql"
        " as $m$ begin return null; end $m$;"
        " create trigger mute before insert on audit.record_version for each row"
        " execute function audit.mute()"
    ),
    "read_grant": (
        "grant usage on schema audit to {owner}; grant select on audit.record_version to {owner}"
    ),
    "quoted_create_role": 'create role "x\'; --" superuser',
}


@pytest.mark.parametrize("shape", sorted(PAYLOADS))
def test_owner_trigger_arguments_are_never_executed(db: Db, owned_account: str, shape: str) -> None:
    owner = owned_account
    db.run("insert into account values (1, 'a')")
    db.run(f"set role {owner}")
    db.run("drop trigger audit_insert on account")
    db.run(squat("audit_insert", "account", PAYLOADS[shape].format(owner=owner)))
    alter_squatted(db, taken="audit_insert")
    db.run("reset role")
    db.run("update account set name = 'b'")
    try:
        found = (
            db.rows("select table_name::text from audit.record_version where op = 'TRUNCATE'"),
            [(op, rec) for op, _, _, rec, _ in rows_of(db)][-1],
            db.one("select has_table_privilege(%s, 'audit.record_version', 'select')", [owner]),
            db.rows("select rolname::text from pg_roles where rolname like 'x%%--'"),
        )
        assert found == ([], ("UPDATE", {"id": 1, "name": "b"}), False, [])
    finally:
        for (name,) in db.rows("select rolname::text from pg_roles where rolname like 'x%%--'"):
            db.run(f'drop role "{name}"')


def test_owner_cannot_forge_tracking_options_through_a_squatted_trigger(
    db: Db, owned_account: str
) -> None:
    owner = owned_account
    db.run("insert into account values (1, 'a')")
    db.run(f"set role {owner}")
    db.run("drop trigger audit_insert on account")
    db.run(
        "create trigger audit_insert after insert on account for each statement"
        " execute function suppress_redundant_updates_trigger('id', '', 'exclude=name')"
    )
    alter_squatted(db, taken="audit_insert")
    db.run("reset role")
    db.run("update account set name = 'b'")
    assert [(op, rec, old) for op, _, _, rec, old in rows_of(db)][-1] == (
        "UPDATE",
        {"id": 1, "name": "b"},
        {"id": 1, "name": "a"},
    )


@pytest.fixture
def trigger_holder(db: Db, engine: sa.Engine, make_role: MakeRole) -> str:
    """A role holding only TRIGGER (and usage) on the superuser-owned tables below."""
    holder = make_role()
    db.run(
        "create table account (id int primary key, name text);"
        # Row-level tracking (deferrable key): the statement trigger names are free.
        "create table ledger (id int primary key deferrable, name text);"
        "create table fresh (id int primary key, name text);"
        f"grant trigger on account, ledger, fresh to {holder}"
    )
    track(engine, "account")
    track(engine, "ledger")
    return holder


@pytest.mark.parametrize(
    ("table", "name"),
    [("account", "audit_row_change"), ("ledger", "audit_insert"), ("ledger", "audit_key_change")],
)
def test_trigger_holder_squatting_a_free_audit_name_gains_nothing(
    db: Db, trigger_holder: str, table: str, name: str
) -> None:
    db.run(f"set role {trigger_holder}")
    db.run(squat(name, table, f"alter role {trigger_holder} superuser"))
    db.run("reset role")
    alter_squatted(db, table, taken=None)  # its owner changes it later; the name is free
    assert not is_superuser(db, trigger_holder)


@pytest.mark.parametrize("options", [{}, {"exclude": ["name"]}, {"skip_unchanged": True}])
def test_enable_tracking_over_a_squatted_name_runs_nothing_of_the_squatter(
    db: Db, engine: sa.Engine, trigger_holder: str, options: dict[str, Any]
) -> None:
    db.run(f"set role {trigger_holder}")
    db.run(squat("audit_insert", "fresh", f"alter role {trigger_holder} superuser"))
    db.run("reset role")
    with pytest.raises(sa.exc.DBAPIError) as raised:
        track(engine, "fresh", **options)
    assert error_of(raised.value.orig) == squat_refused("public.fresh", "audit_insert")
    assert not is_superuser(db, trigger_holder)


def test_trigger_holder_cannot_touch_or_imitate_audit_triggers(db: Db, trigger_holder: str) -> None:
    # What PostgreSQL refuses already, and must keep refusing: the audit functions cannot
    # be attached by anyone else, and existing audit triggers are the owner's to change.
    db.run(f"set role {trigger_holder}")
    refused = {
        "create trigger mine after insert on account for each statement"
        " execute function audit.record_row_change('id')":
            ("42501", "permission denied for schema audit"),
        "create trigger mine after truncate on account for each statement"
        " execute function audit.record_truncate()":
            ("42501", "permission denied for schema audit"),
        "drop trigger audit_insert on account": ("42501", "must be owner of relation account"),
        "alter trigger audit_insert on account rename to gone":
            ("42501", "must be owner of table account"),
        "alter table account disable trigger audit_insert":
            ("42501", "must be owner of table account"),
        "create trigger audit_insert after insert on account for each statement"
        " execute function suppress_redundant_updates_trigger()":
            ("42710", 'trigger "audit_insert" for relation "account" already exists'),
    }  # fmt: skip
    for statement, expected in refused.items():
        error = db.error(statement)
        assert (error.pgcode, error.diag.message_primary) == expected, statement
    db.run("reset role")
    db.run("insert into account values (1, 'a')")
    assert [row[0] for row in rows_of(db)] == ["INSERT"]


def squat_refused(
    table: str, name: str, function: str = "suppress_redundant_updates_trigger()"
) -> tuple[str, str, str]:
    """The refusal of a table whose audit trigger name another trigger holds (42710)."""
    return (
        "42710",
        f"audit.enable_tracking: table {table} has a trigger {name} that runs {function},"
        " not the audit trail's function",
        f"Rename or drop trigger {name} on {table} (its owner can), then track {table} again.",
    )


def error_of(error: psycopg2.Error) -> tuple[str | None, str | None, str | None]:
    return (error.pgcode, error.diag.message_primary, error.diag.message_hint)


def user_triggers(db: Db, table: str) -> list[tuple[str, str, str]]:
    """(name, function, enabled) of a table's triggers, by name."""
    return db.rows(
        "select tgname::text, tgfoid::regproc::text, tgenabled::text from pg_trigger"
        " where tgrelid = %s::regclass and not tgisinternal order by tgname",
        [table],
    )


STATEMENT_TRIGGERS = [
    (name, function, "O")
    for name, function in [
        ("audit_delete", "audit.record_row_change"),
        ("audit_insert", "audit.record_row_change"),
        ("audit_key_change", "audit.record_key_change"),
        ("audit_truncate", "audit.record_truncate"),
        ("audit_update", "audit.record_row_change"),
    ]
]


@pytest.mark.parametrize("name", ["audit_insert", "audit_key_change", "audit_truncate"])
def test_owner_squatted_name_is_refused_naming_it_and_kept(
    db: Db, owned_account: str, name: str
) -> None:
    # The event trigger refuses the owner's ALTER TABLE with an error that names the
    # table, the trigger and the fix; the owner's trigger is neither run nor dropped, and
    # renaming it lets the audit triggers come back whole.
    owner = owned_account
    db.run(f"set role {owner}")
    db.run(f"drop trigger {name} on account")
    event = "truncate" if name == "audit_truncate" else "insert"
    db.run(squat(name, "account", f"alter role {owner} superuser", event=event))
    error = db.error("alter table account add column z int")
    assert error_of(error) == squat_refused("public.account", name)
    db.run(f"alter trigger {name} on account rename to mine")
    db.run("alter table account add column z int")
    db.run("reset role")
    assert not is_superuser(db, owner)
    triggers = user_triggers(db, "account")
    assert ("mine", "suppress_redundant_updates_trigger", "O") in triggers
    assert [t for t in triggers if t[0] != "mine"] == STATEMENT_TRIGGERS
    db.run("drop trigger mine on account")  # (it cannot run on an insert)
    db.run("insert into account values (1, 'a', 2)")
    assert [(op, rec) for op, _, _, rec, _ in rows_of(db)] == [
        ("INSERT", {"id": 1, "name": "a", "z": 2})
    ]


@pytest.mark.parametrize("options", [{}, {"skip_unchanged": True}, {"on_replica": True}])
def test_enable_tracking_refuses_a_squatted_name_and_drops_nothing(
    db: Db, engine: sa.Engine, trigger_holder: str, options: dict[str, Any]
) -> None:
    db.run(f"set role {trigger_holder}")
    db.run(squat("audit_truncate", "fresh", "select 1", event="truncate"))
    db.run("reset role")
    with pytest.raises(sa.exc.DBAPIError) as raised:
        track(engine, "fresh", **options)
    assert error_of(raised.value.orig) == squat_refused("public.fresh", "audit_truncate")
    # Nothing made, nothing of the holder's dropped (the migration's transaction rolled back).
    assert user_triggers(db, "fresh") == [
        ("audit_truncate", "suppress_redundant_updates_trigger", "O")
    ]


def test_disable_tracking_leaves_a_trigger_under_an_audit_name_alone(
    db: Db, engine: sa.Engine, trigger_holder: str
) -> None:
    # account is tracked statement by statement: audit_row_change is free, and the holder's
    # trigger under it is the holder's data.
    db.run(f"set role {trigger_holder}")
    db.run(squat("audit_row_change", "account", "select 1"))
    db.run("reset role")
    run_online(engine, lambda op: op.disable_tracking("account"))
    assert user_triggers(db, "account") == [
        ("audit_row_change", "suppress_redundant_updates_trigger", "O")
    ]


def test_trigger_holder_cannot_forge_options_of_a_row_level_table(
    db: Db, trigger_holder: str
) -> None:
    # ledger is tracked row by row (audit_row_change); audit_insert sorts first and is free.
    db.run("insert into ledger values (1, 'a')")
    db.run(f"set role {trigger_holder}")
    db.run(
        "create trigger audit_insert after insert on ledger for each statement execute function"
        " suppress_redundant_updates_trigger('id', '', 'exclude=name', 'skip_unchanged')"
    )
    db.run("reset role")
    db.run("alter table ledger add column z int")  # its owner changes it: the event trigger
    db.run("update ledger set name = 'b'")
    db.run("update ledger set name = 'b'")
    assert [(op, rec) for op, _, _, rec, _ in rows_of(db)] == [
        ("INSERT", {"id": 1, "name": "a"}),
        ("UPDATE", {"id": 1, "name": "b", "z": None}),
        ("UPDATE", {"id": 1, "name": "b", "z": None}),
    ]


def test_renamed_audit_trigger_is_still_the_audits(db: Db, owned_account: str) -> None:
    # An audit trigger the owner renamed is known by its function: made anew under its
    # name, never kept beside a new one (which would record every update twice).
    owner = owned_account
    db.run(f"set role {owner}")
    db.run("alter trigger audit_update on account rename to my_update")
    db.run("alter table account add column z int")
    db.run("reset role")
    assert user_triggers(db, "account") == STATEMENT_TRIGGERS
    db.run("insert into account values (1, 'a')")
    db.run("update account set name = 'b'")
    assert [op for op, *_ in rows_of(db)] == ["INSERT", "UPDATE"]


def test_owner_names_and_comments_are_never_executed(db: Db, owned_account: str) -> None:
    # Everything of the owner's that goes into a re-made trigger (table and key column
    # names, the comment on audit_truncate) is quoted from the catalog, never pasted.
    owner = owned_account
    payload = f"'); alter role {owner} superuser; --"
    db.run("insert into account values (1, 'a')")
    db.run(f"grant create on schema public to {owner}")  # to rename its table
    db.run(f"set role {owner}")
    db.run(f"comment on trigger audit_truncate on account is $q${payload}$q$")
    db.run(f'alter table account rename column id to "{payload}"')  # the event trigger runs
    db.run(f'alter table account rename to "{payload}"')
    db.run("reset role")
    assert not is_superuser(db, owner)
    table = '"' + payload.replace('"', '""') + '"'
    assert [(name, bytes(args)) for name, args in db.rows(
        "select tgname::text, tgargs from pg_trigger where tgrelid = %s::regclass"
        " and tgname = 'audit_insert'", [table]
    )] == [("audit_insert", payload.encode() + b"\x00")]  # fmt: skip
    assert (
        db.one(
            "select obj_description(oid, 'pg_trigger') from pg_trigger"
            " where tgrelid = %s::regclass and tgname = 'audit_truncate'",
            [table],
        )
        == payload
    )
    db.run(f"update {table} set name = 'b'")
    oid = db.oid(table)
    assert rows_of(db)[-1] == (
        "UPDATE", record_id(oid, "1"), record_id(oid, "1"),
        {payload: 1, "name": "b"}, {payload: 1, "name": "a"},
    )  # fmt: skip


# ======================================================================================
# Class 2: the writer's session decides what is recorded
# ======================================================================================


@pytest.fixture
def writer(db: Db, engine: sa.Engine, make_role: MakeRole) -> str:
    """A role with only DML rights on the tracked tables t (int key) and u (text key), and
    the TEMP right every role has by default."""
    role = make_role()
    db.run(
        "create table t (id int primary key, name text);"
        "create table u (k text primary key, v int);"
        f"grant select, insert, update, delete, truncate on t, u to {role}"
    )
    track(engine, "t")
    track(engine, "u")
    db.run("insert into t values (1, 'a'), (2, 'b'); insert into u values ('alice', 1), ('bob', 2)")
    db.run("truncate audit.record_version")
    return role


def expected_key_change_rows(db: Db) -> list[tuple[Any, ...]]:
    """The rows of ``update t set id = id + 10`` over (1, 'a'), (2, 'b'), as the reference
    design writes them: each new row under its new key's id, its old row under the old."""
    oid = db.oid("t")
    return [
        ("UPDATE", record_id(oid, str(i + 10)), record_id(oid, str(i)),
         {"id": i + 10, "name": n}, {"id": i, "name": n})
        for i, n in ((1, "a"), (2, "b"))
    ]  # fmt: skip


def sorted_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=repr)


# Shadows of the type name `text` under which every key compares equal or is cut short.
TEXT_SHADOWS = {
    "pg_temp_domain_bool": ("create domain pg_temp.text as pg_catalog.bool", "pg_temp"),
    "pg_temp_domain_varchar1": ("create domain pg_temp.text as pg_catalog.varchar(1)", "pg_temp"),
    "own_schema_first": (
        "create schema {role}_s; create domain {role}_s.text as pg_catalog.bool",
        "{role}_s, pg_catalog, public",
    ),
    "pg_temp_first_in_path": (
        "create domain pg_temp.text as pg_catalog.bool;"
        " create domain pg_temp.int4 as pg_catalog.int2;"
        " create domain pg_temp.record_image_ne as pg_catalog.bool",
        "pg_temp, pg_catalog, public",
    ),
}


@pytest.mark.parametrize("shadow", sorted(TEXT_SHADOWS))
def test_writer_shadowing_text_cannot_silence_key_changes(db: Db, writer: str, shadow: str) -> None:
    create, path = (part.format(role=writer) for part in TEXT_SHADOWS[shadow])
    db.run(f"grant create on database {db.conn.info.dbname} to {writer}")
    db.run(f"set role {writer}")
    db.run(create)
    if path != "pg_temp":
        db.run(f"set search_path = {path}")
    db.run("update public.t set id = id + 10")
    db.run("reset search_path; reset role; discard temp")
    assert sorted_rows(rows_of(db)) == sorted_rows(expected_key_change_rows(db))


def test_writer_shadowing_text_cannot_merge_a_single_key_change(db: Db, writer: str) -> None:
    db.run(f"set role {writer}")
    db.run("create domain pg_temp.text as pg_catalog.varchar(1)")
    db.run("update u set k = 'anna' where k = 'alice'")
    db.run("reset role; discard temp")
    oid = db.oid("u")
    assert rows_of(db) == [
        ("UPDATE", record_id(oid, "anna"), record_id(oid, "alice"),
         {"k": "anna", "v": 1}, {"k": "alice", "v": 1}),
    ]  # fmt: skip


def test_schema_planter_cannot_silence_an_innocent_writers_key_changes(
    db: Db, writer: str, make_role: MakeRole
) -> None:
    planter = make_role()
    db.run(f"create schema shared; grant usage, create on schema shared to {planter}, {writer}")
    db.run(f"set role {planter}")
    db.run("create domain shared.text as pg_catalog.bool")
    db.run(f"set role {writer}")
    db.run("set search_path = shared, pg_catalog, public")
    db.run("update t set id = id + 10")
    db.run("reset search_path; reset role")
    assert sorted_rows(rows_of(db)) == sorted_rows(expected_key_change_rows(db))


def test_writer_look_alikes_in_pg_temp_change_nothing(db: Db, writer: str) -> None:
    # What the audit code resolves inside its pinned functions: pg_temp comes last there,
    # and pg_temp functions and operators are never found unqualified. Type shadows of
    # jsonb, uuid, name, oid and the audit's enum; functions and operators named like
    # the ones the triggers call. Keys and values unchanged: this passes today.
    db.run(f"set role {writer}")
    db.run(
        "create domain pg_temp.jsonb as pg_catalog.text;"
        "create domain pg_temp.uuid as pg_catalog.text;"
        "create domain pg_temp.name as pg_catalog.text;"
        "create type pg_temp.operation as enum ('x');"
        "create function pg_temp.to_jsonb(anyelement) returns pg_catalog.jsonb language sql"
        " as $$ select '{}'::pg_catalog.jsonb $$;"
        "create function pg_temp.jsonb_build_array(pg_catalog.text, pg_catalog.text)"
        " returns pg_catalog.jsonb language sql as $$ select '[]'::pg_catalog.jsonb $$;"
        "create function pg_temp.no(pg_catalog.text, pg_catalog.text) returns bool"
        " language sql as $$ select false $$;"
        "create operator pg_temp.<> (leftarg = pg_catalog.text, rightarg = pg_catalog.text,"
        " function = pg_temp.no);"
        "create operator pg_temp.= (leftarg = pg_catalog.text, rightarg = pg_catalog.text,"
        " function = pg_temp.no);"
        "set search_path = pg_temp, public, pg_catalog"
    )
    db.run("insert into t values (3, 'c')")
    db.run("update t set name = name || '!'")
    db.run("update u set k = k || 'x' where k = 'bob'")
    db.run("delete from t where id = 3")
    db.run("reset search_path; reset role; discard temp")
    t, u = db.oid("t"), db.oid("u")
    assert rows_of(db) == [
        ("INSERT", record_id(t, "3"), None, {"id": 3, "name": "c"}, None),
        *[
            ("UPDATE", record_id(t, str(i)), record_id(t, str(i)),
             {"id": i, "name": n + "!"}, {"id": i, "name": n})
            for i, n in ((1, "a"), (2, "b"), (3, "c"))
        ],
        ("UPDATE", record_id(u, "bobx"), record_id(u, "bob"),
         {"k": "bobx", "v": 2}, {"k": "bob", "v": 2}),
        ("DELETE", None, record_id(t, "3"), None, {"id": 3, "name": "c!"}),
    ]  # fmt: skip


def marker(db: Db, depth: int = 1) -> str:
    return f"audit.key_change_{db.oid('t')}_{depth}"


@pytest.mark.parametrize("shape", ["set_config_local", "set_local", "inside_the_update"])
def test_writer_forging_the_key_change_marker_cannot_drop_an_update(
    db: Db, writer: str, shape: str
) -> None:
    name = marker(db)
    db.run(f"set role {writer}")
    db.run("begin")
    db.run("update t set name = 'z' where id = 1")
    db.run("update t set name = 'a' where id = 1")
    if shape == "set_local":
        db.run(f'set local "{name}" = 1')
        db.run("update t set name = 'z' where id = 1")
    elif shape == "set_config_local":
        db.run("select set_config(%s, '1', true)", [name])
        db.run("update t set name = 'z' where id = 1")
    elif shape == "inside_the_update":
        db.run(
            "update t set name = 'z' where id = 1 and set_config(%s, '1', true) is not null",
            [name],
        )
    else:
        db.run("update t set name = 'z' where id = 1")
    db.run("commit")
    db.run("reset role; reset all")
    one = record_id(db.oid("t"), "1")
    a, z = {"id": 1, "name": "a"}, {"id": 1, "name": "z"}
    assert rows_of(db) == [
        ("UPDATE", one, one, z, a),
        ("UPDATE", one, one, a, z),
        ("UPDATE", one, one, z, a),
    ]


def test_writer_forging_a_future_marker_cannot_add_wrong_pairs(db: Db, writer: str) -> None:
    db.run("delete from t; insert into t values (12, 'b'); insert into t values (11, 'a')")
    db.run("truncate audit.record_version")
    db.run(f"set role {writer}")
    db.run("select set_config(%s, '9000000000000000000', false)", [marker(db)])
    db.run("update t set id = id + 1")  # 12 -> 13 first (heap order), then 11 -> 12
    db.run("reset role; reset all")
    oid = db.oid("t")
    assert sorted_rows(rows_of(db)) == sorted_rows([
        ("UPDATE", record_id(oid, "13"), record_id(oid, "12"),
         {"id": 13, "name": "b"}, {"id": 12, "name": "b"}),
        ("UPDATE", record_id(oid, "12"), record_id(oid, "11"),
         {"id": 12, "name": "a"}, {"id": 11, "name": "a"}),
    ])  # fmt: skip


def test_writer_forging_a_nested_marker_cannot_drop_an_update(db: Db, writer: str) -> None:
    name = marker(db, depth=2)
    db.run(f"set role {writer}")
    # The writer's own temporary table, whose trigger updates t: t's triggers at depth 2.
    db.run(
        "create temp table poke (name text);"
        "create function pg_temp.poke() returns trigger language plpgsql as"
        " $$ begin update public.t set name = new.name where id = 1; return null; end $$;"
        "create trigger poke after insert on pg_temp.poke for each row"
        " execute function pg_temp.poke()"
    )
    db.run("begin")
    db.run("insert into pg_temp.poke values ('z'), ('a')")
    db.run("select set_config(%s, '1', true)", [name])
    db.run("insert into pg_temp.poke values ('z')")
    db.run("commit")
    db.run("reset role")
    one = record_id(db.oid("t"), "1")
    a, z = {"id": 1, "name": "a"}, {"id": 1, "name": "z"}
    assert rows_of(db) == [
        ("UPDATE", one, one, z, a),
        ("UPDATE", one, one, a, z),
        ("UPDATE", one, one, z, a),
    ]


def test_the_key_change_condition_stays_inlined(db: Db, writer: str) -> None:
    # The condition is a plain SQL function (no SET clause) so the planner inlines it into
    # the WHEN clause: no function call per updated row. Inlined calls are not counted.
    db.run("set track_functions = 'all'")
    db.run("begin")
    db.run("update t set id = id + 10")
    db.run("update u set v = v + 1")
    called = db.rows(
        "select funcname::text, calls from pg_stat_xact_user_functions"
        " where schemaname = 'audit' order by 1"
    )
    db.run("commit")
    db.run("reset track_functions")
    assert called == [("record_key_change", 2), ("record_row_change", 2)]
    # Its body names nothing the writer's session could resolve otherwise.
    assert db.rows(
        "select distinct p.prosrc from pg_proc p where p.pronamespace = 'audit'::regnamespace"
        " and p.proname like 'key\\_changed\\_%' order by 1"
    ) == [
        ("select pg_catalog.record_image_ne(row((old_row).id), row((new_row).id))",),
        ("select pg_catalog.record_image_ne(row((old_row).k), row((new_row).k))",),
    ]


def test_writer_cannot_reach_the_key_change_hand_off(db: Db, writer: str) -> None:
    # The hand-off from audit_key_change to audit_update is a table only the audit owner
    # writes and reads (the setting version 2 used is ignored: the tests above), also for
    # a writer that was given the audit schema's usage.
    statements = (
        "insert into audit.key_change_state values (pg_backend_pid(), 1, 1, 1)",
        "update audit.key_change_state set first_id = 1",
        "select * from audit.key_change_state",
        "delete from audit.key_change_state",
    )
    db.run(f"set role {writer}")
    refused = [outcome(db, statement) for statement in statements]
    db.run("reset role")
    db.run(f"grant usage on schema audit to {writer}")
    db.run(f"set role {writer}")
    refused_with_usage = [outcome(db, statement) for statement in statements]
    db.run("reset role")
    assert refused == ["42501: permission denied for schema audit"] * 4
    assert refused_with_usage == ["42501: permission denied for table key_change_state"] * 4


def test_writer_actor_and_context_settings_are_recorded_by_design(db: Db, writer: str) -> None:
    # The documented exception: a writer names its own actor and context.
    db.run(f"set role {writer}")
    db.run("begin")
    db.run(
        "select set_config('hyper_audit.actor', 'alice@app', true),"
        " set_config('hyper_audit.context', '{\"request\": 7}', true)"
    )
    db.run("update t set name = 'z' where id = 1")
    db.run("commit")
    db.run("reset role")
    assert db.rows("select actor, context from audit.record_version") == [
        ("alice@app", {"request": 7})
    ]


# ======================================================================================
# Class 3: nondeterministic collations on keys
# ======================================================================================


@pytest.fixture
def ci_tables(db: Db, engine: sa.Engine) -> Db:
    db.run(
        "create collation ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);"
        "create domain ci_text as text collate ci;"
        "create table users (email text collate ci primary key, n int);"
        "create table users_d (email ci_text primary key, n int);"
        "create table members (org text collate ci, email text collate ci, n int,"
        " primary key (org, email));"
        "create table tagged (tags text[] collate ci primary key, n int);"
        "create collation ai (provider = icu, locale = 'und-u-ks-level1', deterministic = false);"
        "create table names (name text collate ai primary key, n int)"
    )
    for table in ("users", "users_d", "members", "tagged", "names"):
        track(engine, table)
    db.run(
        "insert into users values ('a@x', 1), ('b@x', 2);"
        "insert into users_d values ('a@x', 1), ('b@x', 2);"
        "insert into members values ('org', 'a@x', 1), ('org', 'b@x', 2);"
        "insert into tagged values ('{a}', 1), ('{b}', 2);"
        "insert into names values ('rene', 1), ('zoe', 2)"
    )
    db.run("truncate audit.record_version")
    return db


# (table, statement, the (old key, new key) text pairs it changes)
CI_CASES: dict[str, tuple[str, str, list[tuple[tuple[str, ...], tuple[str, ...]]]]] = {
    "single_key_multi_row": (
        "users", "update users set email = upper(email)",
        [(("a@x",), ("A@X",)), (("b@x",), ("B@X",))],
    ),
    "single_key_one_row": (
        "users", "update users set email = upper(email) where n = 1", [(("a@x",), ("A@X",))],
    ),
    "domain_key_multi_row": (
        "users_d", "update users_d set email = upper(email)",
        [(("a@x",), ("A@X",)), (("b@x",), ("B@X",))],
    ),
    "composite_key_multi_row": (
        "members", "update members set org = upper(org), email = upper(email)",
        [(("org", "a@x"), ("ORG", "A@X")), (("org", "b@x"), ("ORG", "B@X"))],
    ),
    "composite_key_one_row": (
        "members", "update members set email = upper(email) where n = 2",
        [(("org", "b@x"), ("org", "B@X"))],
    ),
    "accent_only_multi_row": (
        "names", "update names set name = replace(name collate \"C\", 'e', 'é')",
        [(("rene",), ("réné",)), (("zoe",), ("zoé",))],
    ),
    "accent_only_one_row": (
        "names", "update names set name = 'Zoé' where n = 2", [(("zoe",), ("Zoé",))],
    ),
    "array_key_multi_row": (
        "tagged", "update tagged set tags = array[upper(tags[1])]",
        [(('["a"]',), ('["A"]',)), (('["b"]',), ('["B"]',))],
    ),
}  # fmt: skip

CI_KEYS = {
    "users": ["email"],
    "users_d": ["email"],
    "members": ["org", "email"],
    "tagged": ["tags"],
    "names": ["name"],
}


@pytest.mark.parametrize("case", sorted(CI_CASES))
def test_case_only_key_changes_under_a_nondeterministic_collation(ci_tables: Db, case: str) -> None:
    db = ci_tables
    table, statement, pairs = CI_CASES[case]
    db.run(statement)
    oid = db.oid(table)

    def key_texts(record: dict[str, Any]) -> tuple[str, ...]:
        """What ``jsonb ->> column`` gives for each key column of ``record``."""
        return tuple(
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            for value in (record[column] for column in CI_KEYS[table])
        )

    # One audit row per changed row, under the ids of its new and of its old key text
    # (which differ), as the reference design writes them.
    found = [
        (op, rid, old_rid, key_texts(old), key_texts(rec))
        for op, rid, old_rid, rec, old in rows_of(db)
    ]
    assert sorted(found) == sorted(
        ("UPDATE", record_id(oid, *new), record_id(oid, *old), old, new) for old, new in pairs
    )


def test_case_changes_of_values_and_deterministic_keys_are_recorded(ci_tables: Db) -> None:
    # Controls, passing today: a non-key column under the same collation, and an update
    # whose key text really changes beyond case.
    db = ci_tables
    db.run("update users set n = n + 10")
    db.run("update users set email = email || '.org' where n = 11")
    oid = db.oid("users")
    a, b = record_id(oid, "a@x"), record_id(oid, "b@x")
    assert rows_of(db) == [
        ("UPDATE", a, a, {"email": "a@x", "n": 11}, {"email": "a@x", "n": 1}),
        ("UPDATE", b, b, {"email": "b@x", "n": 12}, {"email": "b@x", "n": 2}),
        ("UPDATE", record_id(oid, "a@x.org"), a,
         {"email": "a@x.org", "n": 11}, {"email": "a@x", "n": 11}),
    ]  # fmt: skip


# ======================================================================================
# Class 4: output settings change the record
# ======================================================================================

HOSTILE_SETTINGS = {
    "extra_float_digits": "-15",
    "bytea_output": "escape",
    "TimeZone": "Asia/Kathmandu",
    "DateStyle": "SQL, DMY",
    "IntervalStyle": "iso_8601",
}

# (column type, literal, the setting that changed its recorded text before audit schema
# version 3, or None)
VALUE_CASES = {
    "float8": ("float8", "149.99", "extra_float_digits"),
    "float4": ("float4", "149.99", "extra_float_digits"),
    "float8_array": ("float8[]", "'{149.99}'", "extra_float_digits"),
    "point": ("point", "'(149.99,0.5)'", "extra_float_digits"),
    "bytea": ("bytea", "'\\x6162'::bytea", "bytea_output"),
    "timestamptz": ("timestamptz", "'2026-01-01 00:00Z'", "TimeZone"),
    "tstzrange": ("tstzrange", "'[2026-01-01 00:00Z,2026-01-02 00:00Z)'", "TimeZone"),
    "interval": ("interval", "'1 day 2 hours'", "IntervalStyle"),
    "daterange": ("daterange", "'[2026-01-01,2026-02-01)'", "DateStyle"),
    "tsrange": ("tsrange", "'[2026-01-01,2026-01-02)'", "DateStyle"),
    "bytea_array": ("bytea[]", "array['\\x6162'::bytea]", "bytea_output"),
    "timestamptz_array": ("timestamptz[]", "array['2026-01-01 00:00Z'::timestamptz]", "TimeZone"),
    "interval_array": ("interval[]", "array['1 day 2 hours'::interval]", "IntervalStyle"),
    "float4_range_bound": ("numrange", "numrange(1.5, 2.25)", None),
    # Recorded in a fixed (XSD) form before version 3 already.
    "numeric": ("numeric", "149.990", None),
    "date": ("date", "'2026-01-31'", None),
    "timestamp": ("timestamp", "'2026-01-31 10:00:00.5'", None),
    "time": ("time", "'10:00:00.25'", None),
    "timetz": ("timetz", "'10:00:00+02'", None),
    "int8": ("int8", "9007199254740993", None),
}


def hostile(db: Db) -> None:
    for name, value in HOSTILE_SETTINGS.items():
        db.run("select set_config(%s, %s, false)", [name, value])


@pytest.mark.parametrize("case", list(VALUE_CASES))
def test_writer_output_settings_do_not_change_recorded_values(
    db: Db, engine: sa.Engine, case: str
) -> None:
    column_type, literal, _ = VALUE_CASES[case]
    db.run(f"create table v (id int primary key, x {column_type})")
    track(engine, "v")
    db.run(f"insert into v values (1, {literal})")  # default settings
    hostile(db)
    db.run(f"insert into v values (2, {literal})")
    db.run("reset all")
    default, under_hostile = (rec["x"] for _, _, _, rec, _ in rows_of(db))
    assert under_hostile == default


def test_skip_unchanged_is_not_fooled_by_float_digits(db: Db, engine: sa.Engine) -> None:
    db.run("create table price (id int primary key, amount float8)")
    track(engine, "price", skip_unchanged=True)
    db.run("insert into price values (1, 149.99)")
    db.run("set extra_float_digits = -15")
    db.run("update price set amount = 149.98")
    db.run("reset all")
    assert [(op, rec) for op, _, _, rec, _ in rows_of(db)] == [
        ("INSERT", {"id": 1, "amount": 149.99}),
        ("UPDATE", {"id": 1, "amount": 149.98}),
    ]


# (key type, literal, the key's value for the Python API's record_id(), the setting that
# changed the id before audit schema version 3, or None)
KEY_CASES: dict[str, tuple[str, str, Any, str | None]] = {
    "float8": ("float8", "149.99", "149.99", "extra_float_digits"),
    "float4": ("float4", "149.99", "149.99", "extra_float_digits"),
    "bytea": ("bytea", "'\\x6162'::bytea", b"ab", "bytea_output"),
    "timestamptz": (
        "timestamptz", "'2026-01-01 00:00Z'",
        dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "TimeZone",
    ),
    "interval": ("interval", "'1 day 2 hours'", "1 day 02:00:00", "IntervalStyle"),
    "tsrange": ("tsrange", "'[2026-01-01,2026-01-02)'",
                '["2026-01-01 00:00:00","2026-01-02 00:00:00")', "DateStyle"),
    "numeric": ("numeric(8,3)", "149.99", "149.990", None),
    "date": ("date", "'2026-01-31'", dt.date(2026, 1, 31), None),
    "timestamp": ("timestamp", "'2026-01-31 10:00:00.5'",
                  dt.datetime(2026, 1, 31, 10, 0, 0, 500000), None),
    "text": ("text", "'Zoë'", "Zoë", None),
}  # fmt: skip


@pytest.mark.parametrize("case", list(KEY_CASES))
def test_writer_output_settings_do_not_change_record_ids(
    db: Db, engine: sa.Engine, case: str
) -> None:
    key_type, literal, key_value, _ = KEY_CASES[case]
    db.run(f"create table k (k {key_type} primary key, v int)")
    track(engine, "k")
    oid = db.oid("k")
    expected = package_record_id(oid, key_value)
    db.run(f"insert into k values ({literal}, 1)")  # default settings
    db.run("delete from k")
    hostile(db)
    db.run(f"insert into k values ({literal}, 2)")
    db.run("update k set v = 3")
    db.run("reset all")
    ids = [(op, rid, old) for op, rid, old, _, _ in rows_of(db)]
    assert ids == [
        ("INSERT", expected, None),
        ("DELETE", None, expected),
        ("INSERT", expected, None),
        ("UPDATE", expected, expected),
    ]


def test_float_key_changes_are_seen_whatever_the_float_digits(db: Db, engine: sa.Engine) -> None:
    db.run("create table fk (k float8 primary key, v int)")
    track(engine, "fk")
    db.run("insert into fk values (149.5, 1), (249.5, 2)")
    db.run("truncate audit.record_version")
    db.run("set extra_float_digits = -15")
    db.run("update fk set k = k + 0.25")  # 1e+02 and 2e+02 before and after
    db.run("reset all")
    oid = db.oid("fk")
    assert sorted_rows(rows_of(db)) == sorted_rows([
        ("UPDATE", record_id(oid, new), record_id(oid, old), {"k": float(new), "v": v},
         {"k": float(old), "v": v})
        for old, new, v in (("149.5", "149.75", 1), ("249.5", "249.75", 2))
    ])  # fmt: skip


@pytest.mark.parametrize("rows", ["one_row", "several_rows"])
def test_key_changes_under_hostile_settings_get_canonical_ids(
    db: Db, engine: sa.Engine, rows: str
) -> None:
    # The rows audit_key_change writes (record_key_change) are rendered under the same
    # canonical settings as the statement trigger's.
    db.run("create table fb (f float8, b bytea, at timestamptz, v int, primary key (f, b, at))")
    track(engine, "fb")
    db.run(
        "insert into fb values (149.5, '\\x01', '2026-01-01 00:00Z', 1),"
        " (249.5, '\\x02', '2026-01-01 00:00Z', 2)"
    )
    db.run("truncate audit.record_version")
    hostile(db)
    where = " where v = 1" if rows == "one_row" else ""
    db.run(f"update fb set f = f + 0.25, at = at + interval '1 hour'{where}")
    db.run("reset all")
    oid = db.oid("fb")
    hour = dt.timedelta(hours=1)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    expected = [
        ("UPDATE", package_record_id(oid, f + 0.25, b, start + hour),
         package_record_id(oid, f, b, start),
         {"f": f + 0.25, "b": "\\x" + b.hex(), "at": "2026-01-01T01:00:00+00:00", "v": v},
         {"f": f, "b": "\\x" + b.hex(), "at": "2026-01-01T00:00:00+00:00", "v": v})
        for f, b, v in ((149.5, b"\x01", 1), (249.5, b"\x02", 2))
        if rows == "several_rows" or v == 1
    ]  # fmt: skip
    assert sorted_rows(rows_of(db)) == sorted_rows(expected)


# ======================================================================================
# Class 5: a type owner's cast to json
# ======================================================================================


@pytest.fixture
def type_owner(db: Db, engine: sa.Engine, make_role: MakeRole) -> str:
    """A role owning the types of superuser-owned tracked tables."""
    role = make_role()
    db.run(f"create schema app authorization {role}; grant usage on schema app to public")
    db.run(f"set role {role}")
    db.run(
        "create type app.mood as enum ('ok', 'bad', 'meh');"
        "create type app.span as range (subtype = int4);"
        "create type app.feeling as (mood app.mood, n int);"
        "create domain app.dmood as app.mood"
    )
    db.run("reset role")
    db.run(
        "create table diary (id int primary key, mood app.mood);"
        "create table spans (id int primary key, s app.span);"
        "create table moods (id int primary key, f app.feeling[]);"
        "create table dmoods (id int primary key, m app.dmood);"
        "create table keyed (k app.mood primary key, v int)"
    )
    for table in ("diary", "spans", "moods", "dmoods", "keyed"):
        track(engine, table)
    return role


CAST_CASES = {
    # (the type owner's cast, the superuser's write afterwards, its recorded record)
    "enum_json_to_json": (
        "create cast (app.mood as json) with function pg_catalog.to_json(anyelement)",
        "insert into diary values (1, 'ok')", {"id": 1, "mood": "ok"},
    ),
    "enum_key": (
        "create cast (app.mood as json) with function pg_catalog.to_json(anyelement)",
        "insert into keyed values ('ok', 1)", {"k": "ok", "v": 1},
    ),
    "range_json": (
        "create cast (app.span as json) with function pg_catalog.to_json(anyelement)",
        "insert into spans values (1, '[1,3)')", {"id": 1, "s": "[1,3)"},
    ),
    "enum_in_array_of_composite": (
        "create cast (app.mood as json) with function pg_catalog.to_json(anyelement)",
        "insert into moods values (1, array[row('ok', 1)]::app.feeling[])",
        {"id": 1, "f": [{"mood": "ok", "n": 1}]},
    ),
    "enum_under_domain": (
        "create cast (app.mood as json) with function pg_catalog.to_json(anyelement)",
        "insert into dmoods values (1, 'ok')", {"id": 1, "m": "ok"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CAST_CASES))
def test_type_owner_cast_to_json_cannot_stop_writes(db: Db, type_owner: str, case: str) -> None:
    cast, write, record = CAST_CASES[case]
    db.run(f"set role {type_owner}")
    cast_type = cast.removeprefix("create cast (").split(" as ")[0]
    # The event trigger refuses the polymorphic function (42501); were the cast made ...
    assert outcome(db, cast) == _polymorphic_cast_refused(cast_type, "json")
    db.run("reset role")
    # ... the superuser's write succeeds and is recorded as it happened.
    assert outcome(db, write) is None
    assert [(op, rec) for op, _, _, rec, _ in rows_of(db)] == [("INSERT", record)]


def _polymorphic_cast_refused(type_name: str, target: str) -> str:
    return (
        f"42501: the cast ({type_name} as {target}) uses the function to_{target}(anyelement),"
        f" which is polymorphic: to_jsonb() in the audit triggers cannot call it, and every"
        f" write of a tracked table using {type_name} would fail"
    )


@pytest.mark.parametrize(
    ("cast", "refusal"),
    [
        (
            "create cast (app.mood as jsonb) with function pg_catalog.to_jsonb(anyelement)",
            _polymorphic_cast_refused("app.mood", "jsonb"),
        ),
        ("create cast (app.mood as json) with inout", None),
        (
            "create cast (app.feeling as json) with function pg_catalog.to_json(anyelement)",
            _polymorphic_cast_refused("app.feeling", "json"),
        ),
    ],
    ids=["enum_jsonb", "enum_json_inout", "composite_json"],
)
def test_type_owner_casts_that_to_jsonb_ignores_change_nothing(
    db: Db, type_owner: str, cast: str, refusal: str | None
) -> None:
    # to_jsonb() looks up casts to json only, only with a function, and never for
    # composite types: these casts cannot reach the audit triggers (passes today). The
    # event trigger refuses a polymorphic function all the same (insufficient_privilege).
    db.run(f"set role {type_owner}")
    assert outcome(db, cast) == refusal
    db.run("reset role")
    db.run("insert into moods values (1, array[row('ok', 1)]::app.feeling[])")
    db.run("insert into diary values (1, 'ok')")
    assert [rec for _, _, _, rec, _ in rows_of(db)] == [
        {"id": 1, "f": [{"mood": "ok", "n": 1}]},
        {"id": 1, "mood": "ok"},
    ]


def test_type_owner_cast_to_text_cannot_hide_enum_key_changes(db: Db, type_owner: str) -> None:
    db.run("insert into keyed values ('ok', 1), ('bad', 2)")
    db.run("truncate audit.record_version")
    db.run(f"set role {type_owner}")
    db.run(
        "create function app.same(app.mood) returns text language sql immutable"
        " as $$ select 'same' $$;"
    )
    assert outcome(db, "create cast (app.mood as text) with function app.same(app.mood)") is None
    db.run("reset role")
    db.run("update keyed set k = case k when 'ok' then 'meh'::app.mood else k end, v = v + 10")
    oid = db.oid("keyed")
    assert sorted_rows(rows_of(db)) == sorted_rows([
        ("UPDATE", record_id(oid, "meh"), record_id(oid, "ok"),
         {"k": "meh", "v": 11}, {"k": "ok", "v": 1}),
        ("UPDATE", record_id(oid, "bad"), record_id(oid, "bad"),
         {"k": "bad", "v": 12}, {"k": "bad", "v": 2}),
    ])  # fmt: skip


POLYMORPHIC_CAST_REFUSED = (
    "42501",
    "the cast (app.mood as json) uses the function to_json(anyelement), which is polymorphic:"
    " to_jsonb() in the audit triggers cannot call it, and every write of a tracked table"
    " using app.mood would fail",
    "While the audit trail is installed, a cast to json or jsonb needs a function owned by a"
    " superuser that takes app.mood itself: drop the cast (drop cast (app.mood as json)).",
)


@pytest.mark.parametrize("how", ["", " as assignment", " as implicit"])
def test_type_owner_polymorphic_json_cast_is_refused_exactly(
    db: Db, type_owner: str, how: str
) -> None:
    db.run(f"set role {type_owner}")
    error = db.error(
        f"create cast (app.mood as json) with function pg_catalog.to_json(anyelement){how}"
    )
    assert error_of(error) == POLYMORPHIC_CAST_REFUSED
    db.run("reset role")
    assert db.one("select count(*) from pg_cast where castsource = 'app.mood'::regtype") == 0


def test_enable_tracking_refuses_a_polymorphic_json_cast_made_before(
    db: Db, engine: sa.Engine, type_owner: str
) -> None:
    # A cast the event trigger did not see (made before the audit was installed, or while
    # a superuser had event triggers off): tracking a table that would use it is refused.
    db.run("set session_replication_role = replica")  # no event triggers fire
    db.run("create cast (app.mood as json) with function pg_catalog.to_json(anyelement)")
    db.run("reset session_replication_role")
    db.run("create table later (id int primary key, moods app.mood[])")
    with pytest.raises(sa.exc.DBAPIError) as raised:
        track(engine, "later")
    assert error_of(raised.value.orig) == (
        "42501",
        "audit.enable_tracking: column moods of table public.later is converted to json with"
        " the cast (app.mood as json), whose function to_json(anyelement) is polymorphic:"
        " to_jsonb() in the audit triggers cannot call it, so every write of the table would"
        " fail",
        "Drop the cast (drop cast (app.mood as json)) or use a function that takes app.mood"
        " itself, owned by a superuser, then track public.later again.",
    )
    db.run("drop cast (app.mood as json)")


def test_install_names_a_polymorphic_json_cast_made_before(
    db: Db, engine: sa.Engine, type_owner: str
) -> None:
    # One the event trigger did not see (or that an earlier version let pass): a tracked
    # table using the type fails on every write, so installing or upgrading names it.
    db.run("set session_replication_role = replica")  # no event triggers fire
    db.run("create cast (app.mood as json) with function pg_catalog.to_json(anyelement)")
    db.run("reset session_replication_role")
    notices = run_online(engine, lambda op: op.install_audit())
    assert [n.strip() for n in notices if "polymorphic" in n] == [
        "WARNING:  install_audit: the cast (app.mood as json) uses the polymorphic function"
        " to_json(anyelement): every write of a tracked table using app.mood fails\n"
        "HINT:  Drop the cast (drop cast (app.mood as json))."
    ]
    db.run("drop cast (app.mood as json)")


# ======================================================================================
# Class 6: logical replication
# ======================================================================================


@pytest.fixture(scope="module")
def logical_server() -> Iterator[ThrowawayPostgres]:
    """A server of its own with wal_level = logical (the session server has the default
    'replica', and wal_level needs a restart)."""
    with ThrowawayPostgres(settings={**FAST_SETTINGS, "wal_level": "logical"}) as server:
        yield server


@pytest.fixture
def replicated(logical_server: ThrowawayPostgres) -> Iterator[tuple[Db, Db, sa.Engine]]:
    """public.account published by one database and subscribed to by another, the
    subscriber with the audit trail installed. Yields (publisher, subscriber, the
    subscriber's engine)."""
    suffix = uuid.uuid4().hex[:10]
    pub_name, sub_name, slot = f"pub_{suffix}", f"sub_{suffix}", f"slot_{suffix}"
    with connect(logical_server.url("postgres")) as admin:
        admin.run(f"create database {pub_name}; ")
        admin.run(f"create database {sub_name}")
        engine = sa.create_engine(logical_server.url(sub_name))
        try:
            with (
                connect(logical_server.url(pub_name)) as pub,
                connect(logical_server.url(sub_name)) as sub,
            ):
                for side in (pub, sub):
                    side.run("create table account (id int primary key, name text)")
                pub.run("create publication p for table account")
                # A subscription to the same cluster cannot create its slot itself.
                pub.run("select pg_create_logical_replication_slot(%s, 'pgoutput')", [slot])
                run_online(engine, lambda op: op.install_audit())
                sub.run(
                    f"create subscription s connection 'host={logical_server.host}"
                    f" port={logical_server.port} user={logical_server.user}"
                    f" dbname={pub_name}' publication p"
                    f" with (create_slot = false, slot_name = '{slot}', copy_data = false)"
                )
                try:
                    yield pub, sub, engine
                finally:
                    sub.run("alter subscription s disable")
                    sub.run("alter subscription s set (slot_name = none)")
                    sub.run("drop subscription s")
                    pub.run("select pg_drop_replication_slot(%s)", [slot])
        finally:
            engine.dispose()
            admin.run(f"drop database {pub_name} with (force)")
            admin.run(f"drop database {sub_name} with (force)")


def replicate(pub: Db, sub: Db) -> None:
    """The publisher's scenario, waited for on the subscriber."""
    pub.run("insert into account values (1, 'a'), (2, 'b')")
    pub.run("update account set name = 'c' where id = 1")
    pub.run("delete from account where id = 2")
    deadline = time.monotonic() + 20
    while sub.rows("select id, name from account order by id") != [(1, "c")]:
        assert time.monotonic() < deadline, "the subscriber did not catch up"
        time.sleep(0.05)


def test_subscriber_records_nothing_unless_asked(replicated: tuple[Db, Db, sa.Engine]) -> None:
    # The apply worker runs with session_replication_role = replica: ordinary (ENABLE)
    # triggers do not fire, so a subscriber tracked the usual way records no audit row for
    # replicated changes (the publisher's own trail has them). Documented default.
    pub, sub, engine = replicated
    run_online(engine, lambda op: op.enable_tracking("account"))
    replicate(pub, sub)
    assert sub.rows(
        "select tgenabled::text from pg_trigger where tgrelid = 'account'::regclass"
        " and not tgisinternal group by 1"
    ) == [("O",)]
    assert rows_of(sub) == []
    sub.run("insert into account values (3, 'local')")  # local writes are recorded
    assert [op for op, *_ in rows_of(sub)] == ["INSERT"]


def test_subscriber_records_replicated_changes_when_asked(
    replicated: tuple[Db, Db, sa.Engine],
) -> None:
    pub, sub, engine = replicated
    run_online(engine, lambda op: op.enable_tracking("account", on_replica=True))
    replicate(pub, sub)
    oid = sub.oid("account")
    one, two = record_id(oid, "1"), record_id(oid, "2")
    assert sorted_rows(rows_of(sub)) == sorted_rows([
        ("INSERT", one, None, {"id": 1, "name": "a"}, None),
        ("INSERT", two, None, {"id": 2, "name": "b"}, None),
        ("UPDATE", one, one, {"id": 1, "name": "c"}, {"id": 1, "name": "a"}),
        ("DELETE", None, two, None, {"id": 2, "name": "b"}),
    ])  # fmt: skip
    # Kept when the table's triggers are made anew (the event trigger after ALTER TABLE).
    sub.run("alter table account add column z int")
    assert sub.rows(
        "select distinct tgenabled::text from pg_trigger"
        " where tgrelid = 'account'::regclass and not tgisinternal"
    ) == [("A",)]


def test_subscriber_records_truncate_and_options_when_asked(
    replicated: tuple[Db, Db, sa.Engine],
) -> None:
    pub, sub, engine = replicated
    run_online(
        engine,
        lambda op: op.enable_tracking("account", exclude=["name"], on_replica=True),
    )
    replicate(pub, sub)
    pub.run("truncate account")
    deadline = time.monotonic() + 20
    while sub.rows("select id from account"):
        assert time.monotonic() < deadline, "the subscriber did not catch up"
        time.sleep(0.05)
    assert [(op, rec, old) for op, _, _, rec, old in rows_of(sub)][-2:] == [
        ("DELETE", None, {"id": 2}),
        ("TRUNCATE", None, None),
    ]
    # Back without on_replica: statement-level ENABLE triggers again, nothing recorded.
    run_online(engine, lambda op: op.alter_tracking("account", existing_on_replica=True))
    assert user_triggers(sub, "account") == STATEMENT_TRIGGERS
    pub.run("insert into account values (5, 'e')")
    while sub.rows("select id from account") != [(5,)]:
        assert time.monotonic() < deadline + 20, "the subscriber did not catch up"
        time.sleep(0.05)
    assert [op for op, *_ in rows_of(sub)][-1] == "TRUNCATE"


def test_on_replica_is_kept_row_level_and_read_back(db: Db, engine: sa.Engine) -> None:
    db.run("create table account (id int primary key, name text)")
    track(engine, "account", on_replica=True)
    always = [
        ("audit_row_change", "audit.record_row_change", "A"),
        ("audit_truncate", "audit.record_truncate", "A"),
    ]
    assert user_triggers(db, "account") == always
    assert (
        bytes(db.one("select tgargs from pg_trigger where tgname = 'audit_row_change'"))
        == b"id\x00\x00on_replica\x00"
    )
    with engine.connect() as connection:
        state = read_audit_state(connection)
    assert state.options_of("public", "account") == TrackingOptions(on_replica=True)
    # Kept by whatever makes the triggers anew: the event trigger, op.enable_tracking
    # without options.
    db.run("alter table account add column z int")
    track(engine, "account")
    assert user_triggers(db, "account") == always
    # Local writes are recorded once each.
    db.run("insert into account values (1, 'a', 1)")
    db.run("update account set name = 'b'")
    assert [op for op, *_ in rows_of(db)] == ["INSERT", "UPDATE"]
