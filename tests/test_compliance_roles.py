"""Issue 15 as every role: who may seal, verify and redact, and what a caller's session
state cannot change.

By default only the audit owner can call the functions of the seal chain or read its
tables (SQLSTATE 42501 for every other role). The documented grants (usage on schema
audit and execute on one function: the redactor's, the sealer's, the verifier's) are
enough for that one function and give nothing else. A caller's session state (a
search_path led by a schema it owns holding look-alikes of pg_catalog's functions and
operators, pg_temp objects, output and parsing settings, planner settings, its own actor
and context) changes neither what seal/redact/verify compute nor what they write: their
hashes equal those an auditor computes (here in Python) from the canonical text, and
verify reports the same under defaults.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from audit_helpers import Db, connect, run_online
from compliance_reference import canonical_texts, segment_hash_of_texts

#: What each role is granted (the documented grants; {role} is the role).
GRANTS = {
    "nobody": [],
    "writer": [
        "grant select, insert, update, delete, truncate on public.person to {role}",
    ],
    "reader": [
        "grant usage on schema audit to {role}",
        "grant select on audit.record_version to {role}",
    ],
    "redactor": [
        "grant usage on schema audit to {role}",
        "grant execute on function audit.redact(regclass, jsonb, text[], text) to {role}",
    ],
    "sealer": [
        "grant usage on schema audit to {role}",
        "grant execute on function audit.seal() to {role}",
    ],
    "verifier": [
        "grant usage on schema audit to {role}",
        "grant execute on function audit.verify(bigint, bigint) to {role}",
    ],
}

#: A call of each function of the seal chain (the name PostgreSQL's error gives).
CALLS = {
    "seal": "select * from audit.seal()",
    "verify": "select * from audit.verify()",
    "redact": "select * from audit.redact('public.person', '{\"id\": 1}', '{email}', 'why')",
    "set_seal_mac": "select audit.set_seal_mac(1, sha256(''::bytea))",
    "note_expiry": "select audit.note_expiry('public.person')",
    "segment_state": "select * from audit.segment_state(1, ''::bytea)",
    "append_seal_link": "select audit.append_seal_link(2, 'seal', '{}')",
    "lock_seal_chain": "select audit.lock_seal_chain()",
    "seal_link_text": "select audit.seal_link_text(1)",
}
ALLOWED = {"redactor": "redact", "sealer": "seal", "verifier": "verify"}
SEAL_TABLES = ("seal_log", "seal_segment", "seal_salt")
AUDIT_TABLE_WRITES = (
    "insert into audit.record_version (op, table_oid, table_schema, table_name)"
    " values ('TRUNCATE', 1, 's', 't')",
    "update audit.record_version set record = '{}'",
    "delete from audit.record_version",
    "truncate audit.record_version",
)


@pytest.fixture
def db(engine: sa.Engine, db_url: str) -> Iterator[Db]:
    """The audit schema installed; public.person tracked, with rows, sealed (link 1)."""
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run(
            "create table public.person (id int primary key, name text, email text,"
            " seen timestamptz, score float8, span interval, blob bytea)"
        )
        db.run("select audit.enable_tracking('public.person')")
        db.run(
            "insert into person values"
            " (1, 'Ann', 'erase-me-4711@example.org', '2024-02-29 23:30+05:45', 0.1,"
            " '1 day 2 hours', '\\x00ff'), (2, 'Bob', 'bob@example.org', null, 1e-300, null, null)"
        )
        db.run("update person set name = 'Anne', score = 1.0/3 where id = 1")
        db.run("select * from audit.seal()")
        yield db


@pytest.fixture
def roles(db: Db) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    made = {kind: f"{kind}_{suffix}" for kind in (*GRANTS, "hostile")}
    for kind, role in made.items():
        db.run(f"create role {role} login")
        for grant in GRANTS.get(kind, []):
            db.run(grant.format(role=role))
    yield made
    for role in made.values():
        db.run(f"drop owned by {role} cascade; drop role {role}")


def as_role(db_url: str, role: str) -> Db:
    return Db(sa.make_url(db_url).set(username=role).render_as_string(hide_password=False))


def denied(db: Db, statement: str) -> tuple[str, str]:
    error = db.error(statement)
    return error.pgcode, error.diag.message_primary


def seal_state(db: Db) -> list[Any]:
    return [db.rows(f"select * from audit.{table} order by 1") for table in SEAL_TABLES] + [
        db.rows("select * from audit.record_version order by id")
    ]


# --- by default: nobody ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nobody", "writer", "reader"])
def test_by_default_no_role_but_the_owner_uses_the_seal_chain(
    db: Db, db_url: str, roles: dict[str, str], kind: str
) -> None:
    before = seal_state(db)
    role = as_role(db_url, roles[kind])
    try:
        for name, call in CALLS.items():
            expected = "schema audit" if kind != "reader" else f"function {name}"
            assert denied(role, call) == ("42501", f"permission denied for {expected}"), name
        for table in SEAL_TABLES:
            expected = "schema audit" if kind != "reader" else f"table {table}"
            assert denied(role, f"select * from audit.{table}") == (
                "42501", f"permission denied for {expected}")  # fmt: skip
    finally:
        role.close()
    assert seal_state(db) == before
    # Not by a grant to PUBLIC either: only the owner (and the roles this test granted)
    # holds these rights.
    granted = list(roles.values())
    for signature in (
        "audit.seal()", "audit.verify(bigint, bigint)",
        "audit.redact(regclass, jsonb, text[], text)", "audit.set_seal_mac(bigint, bytea)",
        "audit.note_expiry(regclass)", "audit.segment_state(bigint, bytea)",
        "audit.append_seal_link(bigint, text, jsonb)", "audit.lock_seal_chain()",
        "audit.seal_link_text(bigint)",
    ):  # fmt: skip
        assert (
            db.one(
                "select count(*) from pg_proc p, aclexplode(coalesce(p.proacl,"
                " acldefault('f', p.proowner))) a where p.oid = %s::regprocedure"
                " and a.grantee <> p.proowner and (a.grantee = 0"
                " or a.grantee::regrole::text <> all (%s))",
                [signature, granted],
            )
            == 0
        ), signature
    for table in SEAL_TABLES:
        assert db.one(
            "select count(*) from pg_class c, aclexplode(coalesce(c.relacl,"
            " acldefault('r', c.relowner))) a where c.oid = %s::regclass"
            " and a.grantee <> c.relowner", [f"audit.{table}"]) == 0, table  # fmt: skip


# --- the documented grants -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redactor", "sealer", "verifier"])
def test_a_documented_grant_gives_its_function_and_nothing_else(
    db: Db, db_url: str, roles: dict[str, str], kind: str
) -> None:
    role_name = roles[kind]
    role = as_role(db_url, role_name)
    try:
        for name, call in CALLS.items():
            if name != ALLOWED[kind]:
                assert denied(role, call) == ("42501", f"permission denied for function {name}")
        for table in SEAL_TABLES:
            assert denied(role, f"select * from audit.{table}") == (
                "42501", f"permission denied for table {table}")  # fmt: skip
        for statement in ("select * from audit.record_version", *AUDIT_TABLE_WRITES):
            assert denied(role, statement) == (
                "42501", "permission denied for table record_version"), statement  # fmt: skip
        assert denied(role, "select * from public.person") == (
            "42501", "permission denied for table person")  # fmt: skip
        if kind == "redactor":
            assert role.rows(CALLS["redact"]) == [(2, 2)]
        elif kind == "sealer":
            db.run("insert into person (id, name) values (3, 'Cy')")
            assert [row[:3] for row in role.rows(CALLS["seal"])] == [(2, 1, 1)]
        else:
            assert [row[:3] for row in role.rows(CALLS["verify"])] == [
                (1, "seal", "ok"), (None, "unsealed", "ok")]  # fmt: skip
    finally:
        role.close()
    if kind != "verifier":
        assert db.rows("select made_by from audit.seal_log where link_id = 2") == [(role_name,)]
    if kind == "redactor":
        assert db.rows("select actor from audit.record_version where op = 'REDACT'") == [
            (role_name,)
        ]
    assert [row[2] for row in db.rows("select * from audit.verify()")] == (
        ["ok", "ok"] if kind == "verifier" else
        ["redacted", "redacted", "ok"] if kind == "redactor" else ["ok", "ok", "ok"])  # fmt: skip


def test_execute_without_usage_on_the_schema_is_not_enough(
    db: Db, db_url: str, roles: dict[str, str]
) -> None:
    role_name = roles["nobody"]
    db.run(f"grant execute on function audit.redact(regclass, jsonb, text[], text) to {role_name}")
    role = as_role(db_url, role_name)
    try:
        assert denied(role, CALLS["redact"]) == ("42501", "permission denied for schema audit")
    finally:
        role.close()


# --- hostile session state ---------------------------------------------------------------


#: Look-alikes of what the functions use, in a schema the caller owns (first in its
#: search_path) and in pg_temp: each would change a hash or a row if it were called.
HOSTILE_OBJECTS = [
    "create schema evil",
    "create function evil.sha256(bytea) returns bytea language sql"
    " as $$ select pg_catalog.decode('deadbeef', 'hex') $$",
    "create function evil.convert_to(text, name) returns bytea language sql"
    " as $$ select pg_catalog.decode('00', 'hex') $$",
    "create function evil.to_jsonb(anyelement) returns jsonb language sql"
    " as $$ select '{\"forged\": true}'::jsonb $$",
    "create function evil.to_jsonb(text[]) returns jsonb language sql"
    " as $$ select '[\"forged\"]'::jsonb $$",
    "create function evil.encode(bytea, text) returns text language sql as $$ select 'ff' $$",
    "create function evil.gen_random_uuid() returns uuid language sql"
    " as $$ select '00000000-0000-0000-0000-000000000000'::uuid $$",
    "create function evil.now() returns timestamptz language sql"
    " as $$ select '2000-01-01 00:00+00'::timestamptz $$",
    "create function evil.minus(jsonb, text) returns jsonb language sql"
    " as $$ select '{}'::jsonb $$",
    "create operator evil.- (leftarg = jsonb, rightarg = text, function = evil.minus)",
    "create function evil.minus_all(jsonb, text[]) returns jsonb language sql as $$ select $1 $$",
    "create operator evil.- (leftarg = jsonb, rightarg = text[], function = evil.minus_all)",
    "create function evil.cat(bytea, bytea) returns bytea language sql as $$ select ''::bytea $$",
    "create operator evil.|| (leftarg = bytea, rightarg = bytea, function = evil.cat)",
    "create function evil.jcat(jsonb, jsonb) returns jsonb language sql"
    " as $$ select '{\"forged\": true}'::jsonb $$",
    "create operator evil.|| (leftarg = jsonb, rightarg = jsonb, function = evil.jcat)",
    "create function evil.text_eq(text, text) returns boolean language sql as $$ select true $$",
    "create operator evil.= (leftarg = text, rightarg = text, function = evil.text_eq)",
    "create temp table seal_salt (segment_id bigint, salt bytea)",
    "create temp table record_version (id bigint)",
    "create function pg_temp.sha256(bytea) returns bytea language sql"
    " as $$ select pg_catalog.decode('deadbeef', 'hex') $$",
]

#: A session's settings, set before its first call of a function (plans are cached per
#: session with the settings of their first parse).
HOSTILE_SETTINGS = {
    "search_path": "evil, pg_temp, pg_catalog, public",
    "TimeZone": "'Pacific/Chatham'",
    "DateStyle": "'SQL, DMY'",
    "IntervalStyle": "'sql_standard'",
    "extra_float_digits": "-15",
    "bytea_output": "'escape'",
    "standard_conforming_strings": "off",
    "quote_all_identifiers": "on",
    "array_nulls": "off",
    "transform_null_equals": "on",
    "enable_seqscan": "off",
    "enable_hashagg": "off",
    "enable_sort": "off",
    "work_mem": "'64kB'",
    "jit": "on",
    "jit_above_cost": "0",
    "row_security": "off",
    "hyper_audit.actor": "'not-the-redactor'",
    "hyper_audit.context": '\'{"ticket": "T-1", "redaction": {"columns": ["forged"]}}\'',
}


def hostile_session(db_url: str, role: str) -> Db:
    session = as_role(db_url, role)
    for statement in HOSTILE_OBJECTS:
        session.run(statement)
    for name, value in HOSTILE_SETTINGS.items():
        session.run(f"set {name} = {value}")
    assert bytes(session.one("select sha256(''::bytea)")) == b"\xde\xad\xbe\xef"
    return session


def canonical_hash(db: Db, segment: int) -> str:
    """sha256(salt || sha256(sha256(canonical text) || ...)) of a segment, computed in
    Python from the rows' canonical text read under the documented settings."""
    ids = [i for (i,) in db.rows(
        "select r.id from audit.seal_segment s, unnest(s.ids) g, audit.record_version r"
        " where s.segment_id = %s and r.id <@ g", [segment])]  # fmt: skip
    salt = bytes(db.one("select salt from audit.seal_salt where segment_id = %s", [segment]))
    return segment_hash_of_texts(salt, canonical_texts(db, ids))


def chain_hashes(db: Db) -> list[tuple[int, bytes, bytes]]:
    """(link, stored chain hash, chain hash recomputed in Python from seal_link_text)."""
    previous = bytes(32)
    found = []
    for link, stored, text in db.rows(
        "select link_id, chain_hash, audit.seal_link_text(link_id) from audit.seal_log"
        " order by link_id"
    ):
        previous = hashlib.sha256(previous + text.encode()).digest()
        found.append((link, bytes(stored), previous))
    return found


def test_hostile_session_state_changes_nothing_seal_redact_and_verify_compute(
    db: Db, db_url: str, roles: dict[str, str]
) -> None:
    hostile = roles["hostile"]
    for kind in ("redactor", "sealer", "verifier"):
        for grant in GRANTS[kind]:
            db.run(grant.format(role=hostile))
    db.run(f"grant create on database {db.conn.info.dbname} to {hostile}")
    db.run(
        "insert into person (id, name, email) values (3, 'Cy', 'cy@example.org'), (4, 'Di', null)"
    )
    session = hostile_session(db_url, hostile)
    try:
        assert [row[:3] for row in session.rows("select * from audit.seal()")] == [(2, 2, 1)]
        assert session.rows(
            "select * from audit.redact('public.person', '{\"id\": 1}', '{email,seen}', 'erasure')"
        ) == [(3, 2)]
        hostile_verify = session.rows("select * from audit.verify()")
    finally:
        session.close()

    # Under the documented defaults, as the owner: the same report, the same hashes.
    assert db.rows("select * from audit.verify()") == hostile_verify
    assert [(link, status) for link, _, status, *_ in hostile_verify] == [
        (1, "redacted"), (2, "ok"), (3, "redacted"), (None, "ok")]  # fmt: skip
    for link, stored, recomputed in chain_hashes(db):
        assert stored == recomputed, link
    for (segment,) in db.rows("select segment_id from audit.seal_segment order by 1"):
        expected = bytes(
            db.one("select hash from audit.seal_segment where segment_id = %s", [segment])
        ).hex()
        if segment == 1:  # redacted: the redaction link holds its hash now
            ((body,),) = db.rows("select body from audit.seal_log where link_id = 3")
            (change,) = body["segments"]
            assert change["segment"] == 1 and change["old_hash"] == expected
            expected = change["new_hash"]
        assert canonical_hash(db, segment) == expected, segment
    # What it wrote: the REDACT row's context is the caller's object with the real
    # "redaction" (the forged one replaced); its actor the one the caller set (by design,
    # as for every audit row); the link names the table as the catalog does.
    assert db.rows(
        "select actor, context from audit.record_version where op = 'REDACT'"
    ) == [("not-the-redactor", {"ticket": "T-1", "redaction": {
        "columns": ["email", "seen"], "reason": "erasure", "link": 3, "rows": 2}})]  # fmt: skip
    ((body,),) = db.rows("select body from audit.seal_log where link_id = 3")
    assert (body["table"], body["columns"], body["rows"]) == ("public.person", ["email", "seen"], 2)
    assert db.rows("select made_by from audit.seal_log order by link_id") == [
        (db.one("select session_user::text"),),
        ("not-the-redactor",),
        ("not-the-redactor",),
    ]
    ((salt_count, distinct),) = db.rows(
        "select count(*), count(distinct salt) from audit.seal_salt"
    )
    assert salt_count == distinct == 2
    assert db.rows(
        "select record - 'seen', old_record - 'seen' from audit.record_version"
        " where record_id = (select record_id from audit.record_version where op = 'REDACT')"
        " and op::text <> 'REDACT' order by id"
    )[0][0] == {"id": 1, "name": "Ann", "score": 0.1, "span": "1 day 02:00:00", "blob": "\\x00ff"}


CONTEXTS = [
    ("not json", "22023", "audit.redact(public.person): the setting hyper_audit.context is not"
     " JSON; set it to a JSON object or leave it empty"),
    ('["a", "list"]', "22023", "audit.redact(public.person): the setting hyper_audit.context"
     ' is a JSON array, not an object: the REDACT audit row\'s context is that object with its'
     ' "redaction" added'),
    ('"text"', "22023", "audit.redact(public.person): the setting hyper_audit.context is a JSON"
     ' string, not an object: the REDACT audit row\'s context is that object with its'
     ' "redaction" added'),
]  # fmt: skip


@pytest.mark.parametrize(("context", "sqlstate", "message"), CONTEXTS)
def test_a_context_that_is_no_json_object_stops_the_redaction_before_anything_changes(
    db: Db, db_url: str, roles: dict[str, str], context: str, sqlstate: str, message: str
) -> None:
    before = seal_state(db)
    role = as_role(db_url, roles["redactor"])
    try:
        role.run("select set_config('hyper_audit.context', %s, false)", [context])
        assert denied(role, CALLS["redact"]) == (sqlstate, message)
        assert seal_state(db) == before
        # JSON null is no context: the REDACT row's context is the redaction alone.
        role.run("select set_config('hyper_audit.context', 'null', false)")
        assert role.rows(CALLS["redact"]) == [(2, 2)]
    finally:
        role.close()
    assert db.one("select context from audit.record_version where op = 'REDACT'") == {
        "redaction": {"columns": ["email"], "reason": "why", "link": 2, "rows": 2}
    }


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_redact_refuses_an_older_snapshot(
    db: Db, db_url: str, roles: dict[str, str], isolation: str
) -> None:
    """Under REPEATABLE READ a row of the record committed after the transaction's snapshot
    would keep its value: the redaction refuses, and changes nothing."""
    role = as_role(db_url, roles["redactor"])
    try:
        role.run(f"begin isolation level {isolation}")
        role.run("select 1")
        db.run("update person set email = 'ann3@example.org' where id = 1")  # committed now
        assert denied(role, CALLS["redact"]) == (
            "25000",
            f"audit.redact(public.person): run it in a READ COMMITTED transaction, not"
            f" {isolation}: rows committed after this transaction's snapshot would keep their"
            " values",
        )
        role.run("rollback")
        assert role.rows(CALLS["redact"]) == [(2, 3)]
    finally:
        role.close()
    assert db.rows(
        "select count(*) from audit.record_version where strpos(record::text || "
        "coalesce(old_record::text, ''), 'example.org') > 0 and record->>'id' = '1'"
    ) == [(0,)]


def test_a_seal_in_a_repeatable_read_transaction_misses_no_row(
    db: Db, db_url: str, roles: dict[str, str]
) -> None:
    """The sealer's snapshot may be older than its seal: a row committed after it, or by a
    transaction running at it (with a lower id than rows sealed), is sealed by the next
    seal, once."""
    for grant in GRANTS["sealer"]:
        db.run(grant.format(role=roles["redactor"]))
    role = as_role(db_url, roles["redactor"])
    with connect(db_url) as long_running:
        try:
            long_running.run("begin")
            long_running.run("insert into person (id, name) values (3, 'Cy')")  # id 4
            db.run("insert into person (id, name) values (4, 'Di')")  # id 5
            role.run("begin isolation level repeatable read")
            role.run("select 1")  # the snapshot: Cy's transaction running
            long_running.run("commit")
            db.run("insert into person (id, name) values (5, 'Ed')")  # id 6, after it
            assert [row[:3] for row in role.rows("select * from audit.seal()")] == [(2, 1, 1)]
            role.run("commit")
            assert [row[:3] for row in role.rows("select * from audit.seal()")] == [(3, 2, 1)]
        finally:
            role.close()
    assert [(row[0], row[2], row[3]) for row in db.rows("select * from audit.verify()")] == [
        (1, "ok", 3), (2, "ok", 1), (3, "ok", 2), (None, "ok", 0)]  # fmt: skip
    assert db.rows(
        "select s.link_id, r.id from audit.seal_segment s, unnest(s.ids) g,"
        " audit.record_version r where r.id <@ g order by r.id"
    ) == [(1, 1), (1, 2), (1, 3), (3, 4), (2, 5), (3, 6)]
