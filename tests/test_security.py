"""Nobody rewrites history: look-alike objects, trigger switches, reader grants, hostile
names through autogenerate.

Covered elsewhere: an application role is refused on every touch of the audit trail and
cannot call the trigger functions (test_audit_sql); awkward names through the ops online
and offline (test_ops, test_offline).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic_project import Project, migration_body
from audit_helpers import (
    AWKWARD_NAMES,
    Db,
    apply_sql,
    awkward_oid,
    catalog_snapshot,
    connect,
    extra_database,
    record_id,
    run_online,
)
from psycopg2 import sql as pgsql
from sqlalchemy.orm import Session

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.runtime.history import history

ROOT = Path(__file__).resolve().parents[1]
SECURITY_PAGE = ROOT / "docs" / "security-model.md"
REFERENCE_SQL = ROOT / "benchmarks" / "reference_design.sql"


@pytest.fixture
def db(db_url: str, engine: sa.Engine) -> Iterator[Db]:
    """The test's database with the audit trail installed and public.account tracked."""
    with connect(db_url) as db:
        db.run("create table account (id int primary key, name text, tags text[], doc jsonb)")
        run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("account")))
        yield db


@pytest.fixture
def role(db: Db) -> Iterator[str]:
    """A fresh login role (roles are cluster-wide: the name is unique, dropped after)."""
    name = f"r_{uuid.uuid4().hex[:12]}"
    db.run(f"create role {name} login")
    yield name
    db.run(f"reset role; reset search_path; drop owned by {name} cascade; drop role {name}")


# --- The search_path attack -------------------------------------------------------------

# Look-alikes of every function and operator the audit code calls, each better matching or
# equal to the real one, in public, in the role's own schema and in pg_temp. Each one logs
# its call (as whoever runs it) and then behaves like the original, so that a call would go
# unnoticed but for the log.
CALL_LOG = """
create table mallory.calls (fn text, by_user text);
grant insert on mallory.calls to public;
create function mallory.log(fn text) returns void language sql
    as $$ insert into mallory.calls values (fn, current_user) $$;
grant execute on function mallory.log(text) to public;
"""

LOOK_ALIKES = """
create function {s}.to_jsonb(r public.account) returns jsonb language plpgsql as $$
    begin perform mallory.log('to_jsonb(account)'); return pg_catalog.to_jsonb(r); end $$;
create function {s}.to_jsonb(r anyelement) returns jsonb language plpgsql as $$
    begin perform mallory.log('to_jsonb(anyelement)'); return pg_catalog.to_jsonb(r); end $$;
create function {s}.jsonb_build_array(t text) returns jsonb language plpgsql as $$
    begin perform mallory.log('jsonb_build_array'); return pg_catalog.jsonb_build_array(t); end $$;
create function {s}.agg_step(acc jsonb, t text) returns jsonb language plpgsql as $$
    begin perform mallory.log('jsonb_agg');
    return coalesce(acc, '[]') operator(pg_catalog.||) pg_catalog.to_jsonb(t); end $$;
create aggregate {s}.jsonb_agg(text) (sfunc = {s}.agg_step, stype = jsonb);
create function {s}.unnest(a text[]) returns setof text language plpgsql as $$
    begin perform mallory.log('unnest'); return query select pg_catalog.unnest(a); end $$;
create function {s}.uuid_generate_v5(n uuid, t varchar) returns uuid language plpgsql as $$
    begin perform mallory.log('uuid_generate_v5(uuid, varchar)');
    return '00000000-0000-0000-0000-000000000000'; end $$;
create function {s}.uuid_v5(n uuid, t text) returns uuid language plpgsql as $$
    begin perform mallory.log('uuid_v5'); return '00000000-0000-0000-0000-000000000000'; end $$;
create function {s}.concat_jsonb(a jsonb, b jsonb) returns jsonb language plpgsql as $$
    begin perform mallory.log('jsonb || jsonb'); return a operator(pg_catalog.||) b; end $$;
create operator {s}.|| (leftarg = jsonb, rightarg = jsonb, function = {s}.concat_jsonb);
create function {s}.field_text(a jsonb, b text) returns text language plpgsql as $$
    begin perform mallory.log('jsonb ->> text'); return a operator(pg_catalog.->>) b; end $$;
create operator {s}.->> (leftarg = jsonb, rightarg = text, function = {s}.field_text);
create function {s}.text_ne(a text, b text) returns boolean language plpgsql as $$
    begin perform mallory.log('text <> text'); return a operator(pg_catalog.<>) b; end $$;
create operator {s}.<> (leftarg = text, rightarg = text, function = {s}.text_ne);
create function {s}.text_eq(a text, b text) returns boolean language plpgsql as $$
    begin perform mallory.log('text = text'); return a operator(pg_catalog.=) b; end $$;
create operator {s}.= (leftarg = text, rightarg = text, function = {s}.text_eq);
"""

# uuid-ossp lives in public, so its (uuid, text) signature is taken there.
UUID_OSSP_TWIN = """
create function mallory.uuid_generate_v5(n uuid, t text) returns uuid language plpgsql as $$
    begin perform mallory.log('uuid_generate_v5(uuid, text)');
    return '00000000-0000-0000-0000-000000000000'; end $$;
"""

TEMP_LOOK_ALIKES = """
create function pg_temp.to_jsonb(r public.account) returns jsonb language plpgsql as $$
    begin perform mallory.log('pg_temp.to_jsonb'); return pg_catalog.to_jsonb(r); end $$;
create table pg_temp.record_version (like public.account);
create table pg_temp.pg_trigger (tgname name, tgrelid oid);
"""


def test_look_alike_functions_and_operators_never_run(db: Db, role: str) -> None:
    db.run(
        f"grant usage, create on schema public to {role};"
        f"grant select, insert, update, delete, truncate on account to {role};"
        f"create schema mallory authorization {role}"
    )
    db.run("insert into account values (0, 'probe')")
    db.run(f"set role {role}")
    db.run(CALL_LOG + LOOK_ALIKES.format(s="mallory") + UUID_OSSP_TWIN)
    db.run(LOOK_ALIKES.format(s="public"))
    db.run(TEMP_LOOK_ALIKES)
    db.run("set search_path = mallory, public, pg_temp, pg_catalog")

    # The attack is armed: in the role's own session the look-alikes win.
    db.run("select to_jsonb(a), jsonb_build_array(a.name) || '[]'::jsonb from account a")
    db.run("select pg_temp.to_jsonb(null::public.account), '{}'::jsonb ->> 'x'")
    db.run("select uuid_generate_v5(gen_random_uuid(), 'x'), 'a'::text <> 'b', 'a'::text = 'b'")
    db.run("select jsonb_agg(x), to_jsonb(1) from unnest('{a}'::text[]) as x")
    armed = {fn for (fn,) in db.rows("select distinct fn from mallory.calls")}
    assert armed == {
        "to_jsonb(account)",
        "to_jsonb(anyelement)",
        "jsonb_build_array",
        "jsonb || jsonb",
        "pg_temp.to_jsonb",
        "jsonb ->> text",
        "uuid_generate_v5(uuid, text)",
        "text <> text",
        "text = text",
        "jsonb_agg",
        "unnest",
    }
    db.run("truncate mallory.calls")

    # Its writes, through every trigger path.
    db.run("insert into account values (1, 'Eve', '{a,b}', '{\"k\": [1, \"x\"]}')")
    db.run("update account set name = 'Eve 2', tags = '{c}' where id = 1")
    db.run(
        "insert into account values (1, 'Eve 3', null, null)"
        " on conflict (id) do update set name = excluded.name"
    )
    db.run("insert into account values (2, 'Zoë', '{}', '[]')")
    db.run("delete from account where id = 2")
    db.run("truncate account")
    db.run("reset role; reset search_path")

    assert db.rows("select fn, by_user from mallory.calls") == []
    oid = db.oid("account")
    one, two = record_id(oid, "1"), record_id(oid, "2")
    v1 = {"id": 1, "name": "Eve", "tags": ["a", "b"], "doc": {"k": [1, "x"]}}
    v2 = {"id": 1, "name": "Eve 2", "tags": ["c"], "doc": {"k": [1, "x"]}}
    v3 = {**v2, "name": "Eve 3"}
    zoe = {"id": 2, "name": "Zoë", "tags": [], "doc": []}
    probe = {"id": 0, "name": "probe", "tags": None, "doc": None}
    assert [(row[0], row[1], row[2], row[6], row[7]) for row in db.audit_rows()] == [
        ("INSERT", record_id(oid, "0"), None, probe, None),
        ("INSERT", one, None, v1, None),
        ("UPDATE", one, one, v2, v1),
        ("UPDATE", one, one, v3, v2),
        ("INSERT", two, None, zoe, None),
        ("DELETE", None, two, None, zoe),
        ("TRUNCATE", None, None, None, None),
    ]
    assert {row[3:6] for row in db.audit_rows()} == {(oid, "public", "account")}


# A type of the application's, and functions of its own that convert it to json and jsonb,
# noting who runs them.
MOOD = """
create type app.mood as enum ('ok', 'bad');
create table app.calls (by_user text, superuser boolean);
grant insert on app.calls to public;
create function app.mood_json(m app.mood) returns json language plpgsql as $$
    begin insert into app.calls select current_user,
    (select rolsuper from pg_catalog.pg_roles where rolname = current_user);
    return pg_catalog.to_json('cast:' || m::text); end $$;
create function app.mood_jsonb(m app.mood) returns jsonb language plpgsql as $$
    begin insert into app.calls select current_user,
    (select rolsuper from pg_catalog.pg_roles where rolname = current_user);
    return pg_catalog.to_jsonb('cast:' || m::text); end $$;
"""


def _refused_cast(role: str, target: str) -> tuple[str, str, str]:
    function = f"app.mood_{target}(app.mood)"
    return (
        "42501",
        f"the cast (app.mood as {target}) uses the function {function} owned by {role},"
        " not a superuser: the audit triggers would run it with their owner's rights",
        "While the audit trail is installed, a cast to json or jsonb may only use a function"
        f" owned by a superuser: drop the cast (drop cast (app.mood as {target})) or have a"
        f" superuser own {function}.",
    )


def test_a_cast_to_json_cannot_run_a_writers_code_with_the_audits_rights(
    db: Db, role: str, engine: sa.Engine
) -> None:
    # The application owns its tables (migrations ran as it); the audit was installed by a
    # superuser. to_jsonb() converts a value of a non-built-in type with its cast to json,
    # when one exists, and the owner of a type may create one: inside the security-definer
    # trigger it would run as the audit's owner. The event trigger refuses such a cast.
    superuser = db.one("select current_user::text")
    db.run(f"create schema app authorization {role}")
    db.run(f"set role {role}")
    db.run(MOOD + "create table app.diary (id int primary key, mood app.mood)")
    for target in ("json", "jsonb"):
        error = db.error(
            f"create cast (app.mood as {target}) with function app.mood_{target}(app.mood)"
        )
        assert (
            error.pgcode,
            error.diag.message_primary,
            error.diag.message_hint,
        ) == _refused_cast(role, target)
    db.run("reset role")
    assert db.rows("select castsource from pg_cast where castsource = 'app.mood'::regtype") == []
    # A superuser's cast converts the values, as the reference records them; it cannot be
    # handed over to the role afterwards.
    db.run(
        "alter function app.mood_json(app.mood) owner to current_user;"
        "create cast (app.mood as json) with function app.mood_json(app.mood)"
    )
    error = db.error(f"alter function app.mood_json(app.mood) owner to {role}")
    assert (error.pgcode, error.diag.message_primary) == _refused_cast(role, "json")[:2]
    run_online(engine, lambda op: op.enable_tracking("diary", schema="app"))
    db.run(REFERENCE_SQL.read_text(encoding="utf-8"))
    db.run("select audit_reference.enable_tracking('app.diary')")
    db.run(f"set role {role}")
    db.run("insert into app.diary values (1, 'ok'); update app.diary set mood = 'bad'")
    db.run("reset role")
    assert (superuser, True) in db.rows("select distinct by_user, superuser from app.calls")
    assert [(row[0], row[6], row[7]) for row in db.audit_rows()] == [
        ("INSERT", {"id": 1, "mood": "cast:ok"}, None),
        ("UPDATE", {"id": 1, "mood": "cast:bad"}, {"id": 1, "mood": "cast:ok"}),
    ]
    assert db.rows(
        "select op::text, record, old_record from audit_reference.record_version order by id"
    ) == [(row[0], row[6], row[7]) for row in db.audit_rows()]


def test_tracking_is_refused_while_a_writers_cast_to_json_exists(
    db_url: str, engine: sa.Engine
) -> None:
    # The cast existed before a superuser installed the audit. The table reaches the type
    # through a domain over an array of a composite type: to_jsonb() would call the cast.
    role = f"r_{uuid.uuid4().hex[:12]}"
    with connect(db_url) as db:
        db.run(f"create role {role} login; create schema app authorization {role}")
        try:
            db.run(f"set role {role}")
            db.run(
                MOOD + "create cast (app.mood as json) with function app.mood_json(app.mood);"
                "create type app.feeling as (at timestamptz, mood app.mood);"
                "create domain app.feelings as app.feeling[];"
                "create table app.diary (id int primary key, note text, days app.feelings)"
            )
            db.run("reset role")
            run_online(engine, lambda op: op.install_audit())
            with pytest.raises(sa.exc.DBAPIError) as refused:
                run_online(engine, lambda op: op.enable_tracking("diary", schema="app"))
            error = refused.value.orig
            assert (
                error.pgcode,  # type: ignore[union-attr]
                error.diag.message_primary,  # type: ignore[union-attr]
                error.diag.message_hint,  # type: ignore[union-attr]
            ) == (
                "42501",
                "audit.enable_tracking: column days of table app.diary is converted to json"
                " with the cast (app.mood as json), whose function app.mood_json(app.mood) is"
                f" owned by {role}, not a superuser: the audit triggers would run it with their"
                " owner's rights",
                "Drop the cast (drop cast (app.mood as json)) or have a superuser own"
                " app.mood_json(app.mood), then track app.diary again.",
            )
            assert (
                db.rows("select tgname from pg_trigger where tgrelid = 'app.diary'::regclass") == []
            )
            # The fix the hint names.
            db.run("alter function app.mood_json(app.mood) owner to current_user")
            run_online(engine, lambda op: op.enable_tracking("diary", schema="app"))
            db.run(
                "insert into app.diary"
                " values (1, 'x', array[row('2026-01-01Z', 'ok')]::app.feeling[])"
            )
            assert db.audit_rows()[-1][6] == {
                "id": 1,
                "note": "x",
                "days": [{"at": "2026-01-01T00:00:00+00:00", "mood": "cast:ok"}],
            }
        finally:
            db.run(f"reset role; drop owned by {role} cascade; drop role {role}")


# --- Switching the triggers off -----------------------------------------------------------


def audit_triggers(db: Db) -> list[tuple[str, str]]:
    """The audit triggers of account: (name, function), whatever the trigger design."""
    return db.rows(
        "select t.tgname::text, t.tgfoid::regprocedure::text from pg_trigger t"
        " join pg_proc p on p.oid = t.tgfoid"
        " where t.tgrelid = 'account'::regclass and p.pronamespace = 'audit'::regnamespace"
        " order by 1"
    )


def test_a_writer_cannot_switch_the_triggers_off(db: Db, role: str) -> None:
    db.run(f"grant select, insert, update, delete, truncate on account to {role}")
    db.run(
        "create function noop() returns trigger language plpgsql as $$ begin return null; end $$"
    )
    triggers = audit_triggers(db)
    assert triggers
    db.run(f"set role {role}")
    refused = {
        "set session_replication_role = replica":
            'permission denied to set parameter "session_replication_role"',
        "alter table account disable trigger all": "must be owner of table account",
        "alter table account disable trigger user": "must be owner of table account",
        "create trigger a before insert on account for each row execute function noop()":
            "permission denied for table account",
        "create rule r as on insert to account do instead nothing":
            "must be owner of table account",
        "alter table account rename to account_gone": "must be owner of table account",
    }  # fmt: skip
    for name, _ in triggers:
        refused[f"alter table account disable trigger {name}"] = "must be owner of table account"
        refused[f"drop trigger {name} on account"] = "must be owner of relation account"
    for statement, message in refused.items():
        error = db.error(statement)
        assert (error.pgcode, error.diag.message_primary) == ("42501", message), statement
    db.run("insert into account (id) values (1)")
    db.run("reset role")
    assert audit_triggers(db) == triggers
    assert [row[0] for row in db.audit_rows()] == ["INSERT"]


def test_functions_that_run_as_their_owner_pin_the_search_path(db: Db) -> None:
    definer = dict(
        db.rows(
            "select p.oid::regprocedure::text, p.proconfig from pg_proc p"
            " where p.pronamespace = 'audit'::regnamespace and p.prosecdef"
        )
    )
    # The trigger functions run as their owner, and nothing else does but the event
    # trigger's function, the snapshot (version 4: it writes audit rows; it checks that
    # the acting role owns the table or is the audit owner) and what version 5 lets a
    # granted sealer, verifier or redactor do without rights on the audit tables (their
    # helpers run as the caller: only these call them). On a Citus cluster the audit
    # trigger function is audit.citus_row_change (test_citus.py).
    assert {function for _, function in audit_triggers(db)} | {
        "audit.citus_row_change()",
        "audit.follow_primary_key_changes()",
        "audit.snapshot_batch(regclass,integer)",
        "audit.seal()",
        "audit.verify(bigint,bigint)",
        "audit.set_seal_mac(bigint,bytea)",
        "audit.redact(regclass,jsonb,text[],text)",
    } == set(definer)
    for name, config in definer.items():
        assert "search_path=pg_catalog, pg_temp" in config, name
    # What anyone may execute: only functions that run as the caller.
    public = db.rows(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'audit'::regnamespace"
        " and exists (select from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))"
        " a where a.grantee = 0 and a.privilege_type = 'EXECUTE')"
    )
    assert ("audit.uuid_v5(uuid,text)",) in public
    assert not [name for (name,) in public if name in definer]
    assert not [name for (name,) in public if "tracking" in name]
    assert (
        db.rows(
            "select c.relname::text from pg_class c where c.relnamespace = 'audit'::regnamespace"
            " and exists (select from aclexplode(coalesce(c.relacl, acldefault('r', c.relowner)))"
            " a where a.grantee = 0)"
        )
        == []
    )


# --- The reader's grants ------------------------------------------------------------------

READER_GRANTS = [
    "grant usage on schema audit to auditor;",
    "grant select on audit.record_version to auditor;",
]


@pytest.mark.parametrize(
    "granted", [(), (0,), (1,), (0, 1)], ids=["none", "usage", "select", "both"]
)
def test_the_documented_reader_grants_are_exactly_enough(
    pg_server: ThrowawayPostgres, db: Db, role: str, granted: tuple[int, ...]
) -> None:
    page = SECURITY_PAGE.read_text(encoding="utf-8")
    assert "```sql\n" + "\n".join(READER_GRANTS) + "\n```" in page
    db.run("insert into account (id, name) values (1, 'a'); update account set name = 'b'")
    for index in granted:
        db.run(READER_GRANTS[index].replace("auditor", role))
    db.run(f"set role {role}")
    if granted != (0, 1):
        error = db.error("select count(*) from audit.record_version")
        expected = "schema audit" if 0 not in granted else "table record_version"
        assert (error.pgcode, error.diag.message_primary) == (
            "42501",
            f"permission denied for {expected}",
        )
        return
    assert db.one("select count(*) from audit.record_version") == 2
    for statement in (
        "insert into audit.record_version (op, table_oid, table_schema, table_name)"
        " values ('TRUNCATE', 1, 's', 't')",
        "update audit.record_version set record = '{}'",
        "delete from audit.record_version",
        "truncate audit.record_version",
        "select audit.disable_tracking('account')",
    ):
        assert db.error(statement).pgcode == "42501", statement
    db.run("reset role")
    # The package's history lookup needs nothing more.
    reader = sa.create_engine(
        sa.make_url(pg_server.url(str(db.conn.info.dbname))).set(username=role)
    )
    try:
        with Session(reader) as session:
            assert session.execute(sa.text("select current_user")).scalar() == role
            found = history(session, "public.account", 1)
            assert [(v.op, v.record["name"]) for v in found] == [("INSERT", "a"), ("UPDATE", "b")]
    finally:
        reader.dispose()


# --- Hostile names through autogenerate ---------------------------------------------------


def _models_source() -> str:
    lines = [
        "from sqlalchemy import Integer, MetaData, Table, Column, Text",
        "from sqlalchemy.orm import DeclarativeBase",
        "",
        "",
        "class Base(DeclarativeBase):",
        "    pass",
        "",
        "",
    ]
    for number, (schema, table) in enumerate(AWKWARD_NAMES):
        lines += [
            f"class Model{number}(Base):",
            f"    __table__ = Table({table!r}, Base.metadata,",
            "        Column('id', Integer, primary_key=True, autoincrement=False),",
            "        Column('v', Text),",
            f"        schema={schema!r})",
            "    __audited__ = True",
            "",
            "",
        ]
    return "\n".join(lines)


def _create_schemas(db: Db) -> None:
    for schema in sorted({s for s, _ in AWKWARD_NAMES if s}):
        db.run(pgsql.SQL("create schema {}").format(pgsql.Identifier(schema)))


def _write_rows(db: Db) -> None:
    for schema, table in AWKWARD_NAMES:
        name = pgsql.Identifier(*([schema] if schema else []), table)
        db.run(pgsql.SQL("insert into {} values (1, {})").format(name, pgsql.Literal(table)))
        db.run(pgsql.SQL("update {} set v = 'changed'").format(name))


def _expected_rows(db: Db) -> list[tuple[Any, ...]]:
    rows = []
    for schema, table in AWKWARD_NAMES:
        oid = awkward_oid(db, schema, table)
        rid = record_id(oid, "1")
        new, changed = {"id": 1, "v": table}, {"id": 1, "v": "changed"}
        rows += [
            ("INSERT", rid, None, oid, schema or "public", table, new, None),
            ("UPDATE", rid, rid, oid, schema or "public", table, changed, new),
        ]
    return rows


def test_hostile_names_through_autogenerate_online_and_offline(
    pg_server: ThrowawayPostgres, db_url: str, tmp_path: Path
) -> None:
    offline_name = f"offline_{uuid.uuid4().hex[:12]}"
    with (
        connect(db_url) as online,
        extra_database(pg_server, offline_name),
        connect(pg_server.url(offline_name)) as offline,
    ):
        for db in (online, offline):
            _create_schemas(db)
        project = Project.create(tmp_path, db_url, _models_source())
        project.set_include_schemas(True)
        text = project.revision("hostile names")
        upgrade = migration_body(text, "upgrade")
        assert upgrade[0] == "op.install_audit()"
        enable_lines = [line for line in upgrade if line.startswith("op.enable_tracking(")]
        assert sorted(enable_lines) == sorted(
            f"op.enable_tracking({table!r}" + (f", schema={schema!r})" if schema else ")")
            for schema, table in AWKWARD_NAMES
        )
        for schema, table in AWKWARD_NAMES:  # each table is tracked after it is created
            create = upgrade.index(f"op.create_table({table!r},")
            track = upgrade.index(
                f"op.enable_tracking({table!r}" + (f", schema={schema!r})" if schema else ")")
            )
            assert create < track
        assert sorted(
            line for line in migration_body(text, "downgrade") if "tracking" in line
        ) == sorted(line.replace("enable", "disable") for line in enable_lines)

        project.upgrade()
        apply_sql(pg_server, offline_name, project.upgrade(sql=True))
        assert project.check() == "No new upgrade operations detected.\n"
        for db in (online, offline):
            _write_rows(db)
            assert db.audit_rows() == _expected_rows(db)
        assert catalog_snapshot(online) == catalog_snapshot(offline)
