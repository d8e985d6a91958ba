"""Issue 15, lawful erasure: ``audit.redact()`` on a real PostgreSQL.

Every expectation is exact: the audit rows after the redaction (record and old_record of
every version), the REDACT row, the redaction link of the seal chain, what
``audit.verify()`` reports, the error (SQLSTATE and text) for bad input. The "no trace"
tests search every table of the audit schema for the erased values (every column as
text), check that nothing kept for verification can confirm a guessed value, and read the
raw pages of the audit table's files (pageinspect) to find what VACUUM the erasure needs
before the bytes leave them: :data:`PRESCRIBED_VACUUM`, which docs/compliance.md
prescribes. Scenarios run on autocommit connections (each statement its own transaction).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from audit_helpers import Db, apply_sql, connect, extra_database, record_id, run_online
from compliance_reference import canonical_texts, segment_hash_of_texts
from psycopg2 import sql as pgsql

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

#: What the docs prescribe after a redaction for the erased bytes to leave the files of
#: the audit schema (and the statistics): measured below. A plain VACUUM frees the dead
#: row versions but leaves their bytes in the pages' free space; VACUUM FULL rewrites the
#: files; ANALYZE replaces the statistics (pg_statistic keeps sampled row images).
PRESCRIBED_VACUUM = (
    "vacuum (full, analyze) audit.record_version",
    "vacuum full audit.seal_salt",
)

EMAIL = "erase-me-4711@example.org"
BORN = "1984-02-29"  # low entropy: one of some 36,500 days


@pytest.fixture
def db(engine: sa.Engine, db_url: str) -> Iterator[Db]:
    """The test's database with the current audit schema installed."""
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        yield db


# --- helpers -------------------------------------------------------------------------------


def versions(db: Db, table: str | None = None) -> list[tuple[Any, ...]]:
    """(id, op, record_id, old_record_id, record, old_record) of every audit row, by id."""
    where = "" if table is None else " where table_oid = %s::regclass"
    rows = db.rows(
        "select id, op::text, record_id, old_record_id, record, old_record"
        " from audit.record_version" + where + " order by id",
        None if table is None else [table],
    )
    return [
        (i, op, rid and uuid.UUID(rid), old and uuid.UUID(old), rec, old_rec)
        for i, op, rid, old, rec, old_rec in rows
    ]


def redact(
    db: Db,
    table: str,
    key: dict[str, Any],
    columns: Sequence[str] | None,
    reason: str | None = "GDPR art. 17, request 2024-17",
) -> list[tuple[Any, ...]]:
    return db.rows(
        "select * from audit.redact(%s, %s::jsonb, %s::text[], %s)",
        [table, json.dumps(key), None if columns is None else list(columns), reason],
    )


def verify(db: Db) -> list[tuple[Any, ...]]:
    """audit.verify() without the chain hashes: (link, kind, status, rows, detail)."""
    return [(link, kind, status, n, detail) for link, kind, status, n, _, detail in
            db.rows("select * from audit.verify()")]  # fmt: skip


def seal(db: Db) -> int:
    ((link, _rows, _segments, _hash),) = db.rows("select * from audit.seal()")
    return int(link)


def error_of(db: Db, statement: str, params: Sequence[Any] | None = None) -> tuple[str, str]:
    error = db.error(statement, params)
    return error.pgcode, error.diag.message_primary


def audit_tables(db: Db) -> list[str]:
    """Every table of the audit schema (partitions too), qualified."""
    return [
        name
        for (name,) in db.rows(
            "select format('%I.%I', n.nspname, c.relname) from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'audit' and c.relkind in ('r', 'p') order by 1"
        )
    ]


def audit_state(db: Db) -> dict[str, list[str]]:
    """Every row of every table of the audit schema, as text: to tell nothing changed."""
    return {
        table: sorted(
            text
            for (text,) in db.rows(
                pgsql.SQL("select t::text from {} as t").format(pgsql.SQL(table))
            )
        )
        for table in audit_tables(db)
    }


def traces(db: Db, needle: str) -> dict[str, int]:
    """The tables of the audit schema with rows whose text (every column) holds needle."""
    found = {}
    for table in audit_tables(db):
        count = db.one(
            pgsql.SQL("select count(*) from only {} as t where strpos(t::text, %s) > 0").format(
                pgsql.SQL(table)
            ),
            [needle],
        )
        if count:
            found[table] = count
    return found


def canonical_text(db: Db, ids: Sequence[int]) -> list[str]:
    """The canonical text of audit rows (docs/compliance.md), read by the test itself."""
    return canonical_texts(db, list(ids))


def segment_ids(db: Db, segment: int) -> list[int]:
    return [i for (i,) in db.rows(
        "select r.id from audit.seal_segment s, unnest(s.ids) g, audit.record_version r"
        " where s.segment_id = %s and r.id <@ g order by r.id", [segment])]  # fmt: skip


def segment_hash(salt: bytes, texts: Sequence[str]) -> str:
    """sha256(salt || sha256(sha256(text) || ...)), as an auditor's own tool computes it."""
    return segment_hash_of_texts(salt, list(texts))


def salt_of(db: Db, segment: int) -> bytes:
    return bytes(db.one("select salt from audit.seal_salt where segment_id = %s", [segment]))


def link_body(db: Db, link: int) -> tuple[str, dict[str, Any]]:
    ((kind, body),) = db.rows("select kind, body from audit.seal_log where link_id = %s", [link])
    return kind, body


def person(db: Db) -> int:
    """public.person, tracked; Ann (1) with the values to erase, Bob (2) and others."""
    db.run("create table public.person (id int primary key, name text, email text, born date)")
    db.run("select audit.enable_tracking('public.person')")
    return db.oid("public.person")


# --- what a redaction erases ---------------------------------------------------------------


def test_redact_removes_the_columns_from_every_version_of_the_record_only(db: Db) -> None:
    """SNAPSHOT, UPDATE and DELETE rows, record and old_record: exactly those keys go, from
    that record; the REDACT row and the redaction link say who, why, which columns."""
    db.run("create table public.person (id int primary key, name text, email text, phone text)")
    db.run(
        "insert into person values (1, 'Ann', 'ann@example.org', '555-0101'),"
        " (2, 'Bob', 'bob@example.org', '555-0102')"
    )
    db.run("select audit.enable_tracking('public.person')")
    assert db.rows("select * from audit.snapshot_batch('public.person', null)") == [(2, True)]
    db.run("update person set name = 'Anne', phone = '555-0199' where id = 1")
    db.run("update person set name = 'Bobby' where id = 2")
    db.run("delete from person where id = 1")
    assert seal(db) == 1
    old_salt = salt_of(db, 1)
    sealed_hash = bytes(db.one("select hash from audit.seal_segment where segment_id = 1")).hex()
    oid = db.oid("public.person")
    r1, r2 = record_id(oid, "1"), record_id(oid, "2")
    bob = {"id": 2, "name": "Bob", "email": "bob@example.org", "phone": "555-0102"}
    bobby = {**bob, "name": "Bobby"}

    db.run("""set hyper_audit.context = '{"ticket": "T-9", "redaction": "forged"}'""")
    assert redact(db, "public.person", {"id": 1}, ["email", "phone"]) == [(2, 3)]
    db.run("reset hyper_audit.context")

    assert versions(db) == [
        (1, "SNAPSHOT", r1, None, {"id": 1, "name": "Ann"}, None),
        (2, "SNAPSHOT", r2, None, bob, None),
        (3, "UPDATE", r1, r1, {"id": 1, "name": "Anne"}, {"id": 1, "name": "Ann"}),
        (4, "UPDATE", r2, r2, bobby, bob),
        (5, "DELETE", None, r1, None, {"id": 1, "name": "Anne"}),
        (6, "REDACT", r1, None, None, None),
    ]
    me = db.one("select session_user::text")
    assert db.rows(
        "select actor, context, table_schema::text, table_name::text, table_oid::bigint"
        " from audit.record_version where id = 6"
    ) == [(me, {"ticket": "T-9", "redaction": {
        "columns": ["email", "phone"], "reason": "GDPR art. 17, request 2024-17",
        "link": 2, "rows": 3}}, "public", "person", oid)]  # fmt: skip
    # The link: which segment changed, from the hash as sealed to the hash of its rows now
    # under a new salt (recomputed here as an auditor would); the old salt is gone.
    new_salt = salt_of(db, 1)
    assert new_salt != old_salt and len(new_salt) == 32
    new_hash = segment_hash(new_salt, canonical_text(db, [1, 2, 3, 4, 5]))
    assert link_body(db, 2) == ("redaction", {
        "table": "public.person", "record_ids": [str(r1)], "columns": ["email", "phone"],
        "reason": "GDPR art. 17, request 2024-17", "rows": 3, "audit_row": 6,
        "segments": [{"segment": 1, "old_hash": sealed_hash, "new_hash": new_hash}]})  # fmt: skip
    assert db.rows("select made_by from audit.seal_log where link_id = 2") == [(me,)]
    assert db.rows("select segment_id from audit.seal_salt") == [(1,)]
    assert verify(db) == [
        (1, "seal", "redacted", 5, "segment 1 redacted (see the redaction links)"),
        (2, "redaction", "redacted", 3,
         "3 rows of public.person redacted (email, phone): GDPR art. 17, request 2024-17"),
        (None, "unsealed", "ok", 1, "1 row not sealed yet"),
    ]  # fmt: skip

    # Again: nothing left to erase; the request is recorded all the same (0 rows).
    erased = versions(db)
    assert redact(db, "public.person", {"id": 1}, ["email"]) == [(3, 0)]
    assert versions(db)[:6] == erased
    assert versions(db)[6][1:4] == ("REDACT", r1, None)
    assert link_body(db, 3)[1]["segments"] == []
    assert salt_of(db, 1) == new_salt


def test_redact_the_whole_row_image(db: Db) -> None:
    oid = person(db)
    db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}'), (2, 'Bob', null, null)")
    db.run("update person set name = 'Anne' where id = 1")
    db.run("delete from person where id = 1")
    r1, r2 = record_id(oid, "1"), record_id(oid, "2")
    assert redact(db, "public.person", {"id": 1}, None, "erasure") == [(1, 3)]
    assert versions(db) == [
        (1, "INSERT", r1, None, {}, None),
        (2, "INSERT", r2, None, {"id": 2, "name": "Bob", "email": None, "born": None}, None),
        (3, "UPDATE", r1, r1, {}, {}),
        (4, "DELETE", None, r1, None, {}),
        (5, "REDACT", r1, None, None, None),
    ]
    assert db.one("select context from audit.record_version where id = 5") == {
        "redaction": {"columns": None, "reason": "erasure", "link": 1, "rows": 3}
    }
    # Nothing was sealed: a redaction link without segments, verified as such.
    assert link_body(db, 1)[1]["segments"] == []
    assert verify(db) == [
        (
            1,
            "redaction",
            "redacted",
            3,
            "3 rows of public.person redacted (the whole row): erasure",
        ),
        (None, "unsealed", "ok", 5, "5 rows not sealed yet"),
    ]


def key_change_history(db: Db) -> dict[int, uuid.UUID]:
    """Record A: inserted as 1, moved to 2, then to 3; key 1 and key 2 used again later by
    records B and C (the scenario of test_history's key changes, and one more)."""
    db.run("create table public.account (id int primary key, name text)")
    db.run("select audit.enable_tracking('public.account')")
    db.run("insert into account values (1, 'a')")  # 1: A
    db.run("update account set id = 2, name = 'b' where id = 1")  # 2: A 1 -> 2
    db.run("update account set name = 'c' where id = 2")  # 3: A
    db.run("update account set id = 3 where id = 2")  # 4: A 2 -> 3
    db.run("insert into account values (1, 'B')")  # 5: B takes key 1
    db.run("update account set name = 'd' where id = 3")  # 6: A
    db.run("insert into account values (2, 'C')")  # 7: C takes key 2
    db.run("update account set name = 'C2' where id = 2")  # 8: C
    oid = db.oid("public.account")
    return {k: record_id(oid, str(k)) for k in (1, 2, 3)}


def names_left(db: Db) -> list[tuple[int, Any, Any]]:
    return [
        (i, rec and rec.get("name"), old and old.get("name"))
        for i, op, _, _, rec, old in versions(db, "public.account")
        if op != "REDACT"
    ]


def test_redact_follows_the_record_through_its_key_changes(db: Db) -> None:
    """Redacting key 3 erases A under keys 1, 2 and 3 (both record ids of each key change),
    and leaves B and C alone although they hold keys A held before."""
    r = key_change_history(db)
    assert redact(db, "public.account", {"id": 3}, ["name"]) == [(1, 5)]
    assert names_left(db) == [
        (1, None, None), (2, None, None), (3, None, None), (4, None, None),
        (5, "B", None), (6, None, None), (7, "C", None), (8, "C2", "C"),
    ]  # fmt: skip
    assert versions(db, "public.account")[:4] == [
        (1, "INSERT", r[1], None, {"id": 1}, None),
        (2, "UPDATE", r[2], r[1], {"id": 2}, {"id": 1}),
        (3, "UPDATE", r[2], r[2], {"id": 2}, {"id": 2}),
        (4, "UPDATE", r[3], r[2], {"id": 3}, {"id": 2}),
    ]
    assert link_body(db, 1)[1]["record_ids"] == sorted(str(r[k]) for k in (1, 2, 3))
    assert versions(db)[-1][:4] == (9, "REDACT", r[3], None)


@pytest.mark.parametrize(
    ("key", "erased"),
    [
        (1, [1, 2, 3, 4, 5, 6]),  # A and B held key 1; A followed to 2 and 3, not C
        (2, [1, 2, 3, 4, 6, 7, 8]),  # A and C held key 2; not B
    ],
)
def test_a_key_held_by_two_records_erases_both_and_no_third(
    db: Db, key: int, erased: list[int]
) -> None:
    key_change_history(db)
    before = {i: (rec, old) for i, _, _, _, rec, old in versions(db)}
    assert redact(db, "public.account", {"id": key}, ["name"]) == [(1, len(erased))]
    for i, _, _, _, rec, old in versions(db, "public.account")[:8]:
        if i in erased:
            assert "name" not in (rec or {}) and "name" not in (old or {}), i
        else:
            assert (rec, old) == before[i], i


def test_a_column_is_erased_under_its_older_names_only_where_it_had_them(db: Db) -> None:
    """email renamed to mail (the event trigger records it); then a new column named email.
    Redacting mail erases email from the rows before the rename and mail after, and leaves
    the new email column's values; redacting email erases only the new column's."""
    db.run("create table public.member (id int primary key, email text, nick text)")
    db.run("select audit.enable_tracking('public.member')")
    db.run(f"insert into member values (1, '{EMAIL}', 'ann'), (2, 'bob@example.org', 'bob')")
    db.run("alter table member rename column email to mail")
    db.run("update member set mail = 'ann2@example.org' where id = 1")  # 3
    db.run("alter table member add column email text")
    db.run("update member set email = 'new-column' where id = 1")  # 4
    assert db.rows(
        "select kind, old_name::text, new_name::text, before_id from audit.column_change"
    ) == [("rename", "email", "mail", 2)]
    db.run("begin")
    assert redact(db, "public.member", {"id": 1}, ["mail"]) == [(1, 3)]
    assert [(i, rec, old) for i, _, _, _, rec, old in versions(db)][:4] == [
        (1, {"id": 1, "nick": "ann"}, None),
        (2, {"id": 2, "nick": "bob", "email": "bob@example.org"}, None),
        (3, {"id": 1, "nick": "ann"}, {"id": 1, "nick": "ann"}),
        (4, {"id": 1, "nick": "ann", "email": "new-column"},
         {"id": 1, "nick": "ann", "email": None}),
    ]  # fmt: skip
    db.run("rollback")
    assert redact(db, "public.member", {"id": 1}, ["email"]) == [(1, 1)]
    assert [(i, rec, old) for i, _, _, _, rec, old in versions(db)][:4] == [
        (1, {"id": 1, "nick": "ann", "email": EMAIL}, None),
        (2, {"id": 2, "nick": "bob", "email": "bob@example.org"}, None),
        (3, {"id": 1, "nick": "ann", "mail": "ann2@example.org"},
         {"id": 1, "nick": "ann", "mail": EMAIL}),
        (4, {"id": 1, "nick": "ann", "mail": "ann2@example.org"},
         {"id": 1, "nick": "ann", "mail": "ann2@example.org"}),
    ]  # fmt: skip


def test_a_rename_not_seen_yet_is_caught_up_and_a_dropped_column_is_named_as_dropped(
    db: Db,
) -> None:
    """Without the event trigger (a non-superuser install) a rename is seen by the next
    enable_tracking: redact sees it first. A column dropped since is named as it was."""
    db.run("create table public.login (id int primary key, secret text, pin text)")
    db.run("select audit.enable_tracking('public.login')")
    db.run("insert into login values (1, 'hunter2-4711', '4711')")
    db.run("alter event trigger audit_follow_primary_key_changes disable")
    db.run("alter table login rename column secret to password")
    db.run("alter table login drop column pin")
    db.run("alter event trigger audit_follow_primary_key_changes enable")
    db.run("update login set password = 'x' where id = 1")
    assert db.rows("select count(*) from audit.column_change") == [(0,)]
    assert redact(db, "public.login", {"id": 1}, ["password", "pin"]) == [(1, 2)]
    assert [(i, rec, old) for i, _, _, _, rec, old in versions(db)] == [
        (1, {"id": 1}, None),
        (2, {"id": 1}, {"id": 1}),
        (3, None, None),
    ]
    assert db.rows(
        "select kind, old_name::text, new_name::text from audit.column_change order by id"
    ) == [("rename", "secret", "password"), ("drop", "pin", None)]


def test_redact_follows_the_record_across_a_dump_and_restore(
    db: Db, db_url: str, pg_server: ThrowawayPostgres
) -> None:
    """pg_dump and restore give the table a new oid (and its records new record ids); the
    rows from before keep the old ones, under the names the columns had then."""
    old_oid = person(db)
    db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}'), (2, 'Bob', 'b@x', null)")
    db.run("alter table person rename column email to mail")  # recorded under the old oid
    db.run("update person set name = 'Anne' where id = 1")
    seal(db)
    dump = subprocess.run(
        [str(pg_server.bin_dir / "pg_dump"), "-h", pg_server.host, "-p", str(pg_server.port),
         "-U", pg_server.user, "-d", sa.make_url(db_url).database or ""],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    restored = f"restored_{uuid.uuid4().hex[:12]}"
    with extra_database(pg_server, restored), connect(pg_server.url(restored)) as new:
        apply_sql(pg_server, restored, dump)
        new_oid = new.oid("public.person")
        assert new_oid != old_oid
        new.run("update person set name = 'Ann B.' where id = 1")
        seal(new)
        assert redact(new, "public.person", {"id": 1}, ["mail", "born"]) == [(3, 3)]
        old_r1, new_r1 = record_id(old_oid, "1"), record_id(new_oid, "1")
        assert [(i, op, rid, rec, old) for i, op, rid, _, rec, old in versions(new)] == [
            (1, "INSERT", old_r1, {"id": 1, "name": "Ann"}, None),
            (2, "INSERT", record_id(old_oid, "2"),
             {"id": 2, "name": "Bob", "email": "b@x", "born": None}, None),
            (3, "UPDATE", old_r1, {"id": 1, "name": "Anne"}, {"id": 1, "name": "Ann"}),
            (4, "UPDATE", new_r1, {"id": 1, "name": "Ann B."}, {"id": 1, "name": "Anne"}),
            (5, "REDACT", new_r1, None, None),
        ]  # fmt: skip
        assert link_body(new, 3)[1]["record_ids"] == sorted([str(old_r1), str(new_r1)])
        assert traces(new, EMAIL) == traces(new, BORN) == {}
        assert [row[2] for row in verify(new)] == ["redacted", "redacted", "redacted", "ok"]


# --- verify after a redaction ------------------------------------------------------------


def test_verify_reports_the_redaction_and_still_catches_tampering(db: Db) -> None:
    oid = person(db)
    db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}'), (2, 'Bob', null, null)")
    assert seal(db) == 1  # segment 1: ids 1-2
    db.run("update person set name = 'Anne' where id = 1")
    assert seal(db) == 2  # segment 2: id 3
    db.run("create table public.other (id int primary key, v text)")
    db.run("select audit.enable_tracking('public.other')")
    db.run("insert into other values (1, 'x'), (2, 'y')")
    assert seal(db) == 3  # segment 3: ids 4-5
    assert redact(db, "public.person", {"id": 1}, ["email", "born"], "erasure") == [(4, 2)]
    assert [s["segment"] for s in link_body(db, 4)[1]["segments"]] == [1, 2]
    assert seal(db) == 5  # the REDACT row
    assert verify(db) == [
        (1, "seal", "redacted", 2, "segment 1 redacted (see the redaction links)"),
        (2, "seal", "redacted", 1, "segment 2 redacted (see the redaction links)"),
        (3, "seal", "ok", 2, None),
        (4, "redaction", "redacted", 2, "2 rows of public.person redacted (email, born): erasure"),
        (5, "seal", "ok", 1, None),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]
    assert versions(db, "public.person")[0][4] == {"id": 1, "name": "Ann"}
    assert record_id(oid, "1") == versions(db)[0][2]

    # A superuser changes another column of a redacted row: that is tampering.
    db.run('update audit.record_version set record = record || \'{"name": "Eve"}\' where id = 1')
    ids = db.one("select ids::text from audit.seal_segment where segment_id = 1")
    assert verify(db)[0] == (
        1,
        "seal",
        "failed",
        0,
        f"segment 1 (ids {ids}): rows changed (2 rows, the hash differs)",
    )
    assert [row[2] for row in verify(db)[1:]] == ["redacted", "ok", "redacted", "ok", "ok"]


def test_redact_refuses_when_a_segment_of_the_record_fails_verification(db: Db) -> None:
    """Rehashing a tampered segment would launder the tampering: nothing changes."""
    person(db)
    db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}'), (2, 'Bob', null, null)")
    seal(db)
    db.run('update audit.record_version set record = record || \'{"name": "Eve"}\' where id = 2')
    before = audit_state(db)
    assert error_of(
        db, "select * from audit.redact('public.person', '{\"id\": 1}', '{email}', 'erasure')"
    ) == (
        "XX001",
        "audit.redact(public.person): segment 1 of seal link 1 fails verification before the"
        " redaction; nothing was redacted",
    )
    assert audit_state(db) == before
    # A row of the segment missing, or an edited redaction, stop it too.
    db.run("update audit.record_version set record = record - 'name' || '{\"name\": \"Bob\"}'"
           " where id = 2")  # fmt: skip
    assert verify(db)[0][2] == "ok"
    db.run("delete from audit.record_version where id = 2")
    assert error_of(
        db, "select * from audit.redact('public.person', '{\"id\": 1}', '{email}', 'erasure')"
    )[0] == ("XX001")


# --- bad input ------------------------------------------------------------------------------


BAD_INPUT = [
    (("public.person", {"id": 1}, ["email"], None),
     "22023", "audit.redact(public.person): say why (reason => '...'): the REDACT audit row"
     " records it"),
    (("public.person", {"id": 1}, ["email"], "  "),
     "22023", "audit.redact(public.person): say why (reason => '...'): the REDACT audit row"
     " records it"),
    (("public.person", {"id": 1}, ["email", "nope"], "r"),
     "42703", "audit.redact(public.person): the table has no column nope (columns are named"
     " as in the table)"),
    (("public.person", {"id": 1}, ["Email"], "r"),
     "42703", 'audit.redact(public.person): the table has no column "Email" (columns are'
     " named as in the table)"),
    (("public.person", {"id": 1}, [], "r"),
     "22023", "audit.redact(public.person): columns is a list of column names, or null for"
     " the whole row"),
    (("public.person", {"id": 99}, ["email"], "r"),
     "P0002", 'audit.redact(public.person): no audit row has the record of key {"id": 99};'
     " nothing was redacted"),
    (("public.person", {"name": "Ann"}, None, "r"),
     "22023", 'audit.redact(public.person): the key is the primary-key columns (id) as a JSON'
     ' object, such as {"id": "value"}, not {"name": "Ann"}'),
    (("public.person", {"id": None}, None, "r"),
     "22023", 'audit.redact(public.person): the key is the primary-key columns (id) as a JSON'
     ' object, such as {"id": "value"}, not {"id": null}'),
    (("shop.line", {"order_id": 1}, None, "r"),
     "22023", "audit.redact(shop.line): the key is the primary-key columns (order_id, code)"
     ' as a JSON object, such as {"code": "value", "order_id": "value"}, not'
     ' {"order_id": 1}'),
    (("public.loose", {"id": 1}, None, "r"),
     "22023", "audit.redact(public.loose): the table has no primary key, so its audit rows"
     " have no record ids to find a record by"),
    (('"Mixed Case"."we""ird"', {"id": 1}, ["v"], "r"),
     "42703", 'audit.redact("Mixed Case"."we""ird"): the table has no column v (columns are'
     " named as in the table)"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "sqlstate", "message"), BAD_INPUT)
def test_bad_input_gets_one_line_and_changes_nothing(
    db: Db, call: tuple[Any, ...], sqlstate: str, message: str
) -> None:
    person(db)
    db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}')")
    db.run("create schema shop")
    db.run(
        "create table shop.line (order_id int, code text, note text, primary key (order_id, code))"
    )
    db.run("create table public.loose (id int, v text)")
    db.run('create schema "Mixed Case"')
    db.run('create table "Mixed Case"."we""ird" (id int primary key, w text)')
    seal(db)
    before = audit_state(db)
    table, key, columns, reason = call
    error = db.error(
        "select * from audit.redact(%s, %s::jsonb, %s::text[], %s)",
        [table, json.dumps(key), columns, reason],
    )
    assert (error.pgcode, error.diag.message_primary) == (sqlstate, message)
    assert "\n" not in message
    assert audit_state(db) == before


# --- no trace ------------------------------------------------------------------------------


def test_no_trace_of_the_erased_values_in_the_audit_schema(db: Db) -> None:
    """After the redaction no table of the audit schema holds the erased values (every
    column as text), and nothing kept can confirm a guessed value: the segment's old salt
    is gone (seal_salt holds the new one only) and no row's digest is stored."""
    person(db)
    db.run("insert into person select g, 'n' || g, 'p' || g || '@example.org',"
           " date '1970-01-01' + g from generate_series(2, 50) g")  # fmt: skip
    db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}')")
    db.run("update person set name = 'Anne' where id = 1")
    db.run("update person set born = null where id = 1")  # BORN in old_record only
    seal(db)
    (segment,) = [s for (s,) in db.rows("select segment_id from audit.seal_segment")]
    members = segment_ids(db, segment)
    old_texts = canonical_text(db, members)
    old_salt = salt_of(db, segment)
    old_leaves = [hashlib.sha256(t.encode()).hexdigest() for t in old_texts if EMAIL in t]
    assert len(old_leaves) == 3
    for needle in (EMAIL, BORN):
        assert traces(db, needle) == {"audit.record_version": 3}

    assert redact(db, "public.person", {"id": 1}, ["email", "born"]) == [(2, 3)]
    for needle in (EMAIL, BORN, old_salt.hex(), *old_leaves):
        assert traces(db, needle) == {}, needle
    assert [(s, bytes(salt)) for s, salt in db.rows("select * from audit.seal_salt")] == [
        (segment, salt_of(db, segment))
    ]
    assert salt_of(db, segment) != old_salt
    # The digests kept: the hash as sealed (seal_segment), the old and new hashes (the
    # link). A guess put back into the rows as they are now matches none of them under any
    # salt kept; only the deleted salt would confirm it.
    kept = {bytes(h).hex() for (h,) in db.rows("select hash from audit.seal_segment")}
    kept |= {s[k] for s in link_body(db, 2)[1]["segments"] for k in ("old_hash", "new_hash")}
    salts = [bytes(s) for (s,) in db.rows("select salt from audit.seal_salt")]
    assert all(segment_hash(salt, old_texts) not in kept for salt in salts)
    assert segment_hash(old_salt, old_texts) in kept  # what deleting the salt prevents
    assert segment_hash(salt_of(db, segment), canonical_text(db, members)) in kept


# --- the bytes in the files: what VACUUM it takes --------------------------------------------


def physical_relations(db: Db) -> list[str]:
    """The files of audit.record_version (partitions, chunks and compressed chunks), their
    TOAST tables and every index of them, and those of audit.seal_salt."""
    heaps = [  # partitions, or a TimescaleDB hypertable's chunks (they inherit)
        rel
        for (rel,) in db.rows(
            "with recursive tree (oid) as (select 'audit.record_version'::regclass::oid"
            " union select i.inhrelid from pg_inherits i join tree t on i.inhparent = t.oid)"
            " select c.oid::regclass::text from tree t join pg_class c on c.oid = t.oid"
            " where c.relkind = 'r' order by 1"
        )
    ]
    if db.one("select to_regclass('_timescaledb_catalog.chunk') is not null"):
        heaps += [
            rel
            for (rel,) in db.rows(
                "select format('%I.%I', cc.schema_name, cc.table_name)"
                " from _timescaledb_catalog.chunk c"
                " join _timescaledb_catalog.chunk cc on cc.id = c.compressed_chunk_id"
            )
        ]
    heaps.append("audit.seal_salt")
    toasts = [
        rel
        for (rel,) in db.rows(
            "select reltoastrelid::regclass::text from pg_class"
            " where oid = any (%s::regclass[]) and reltoastrelid <> 0",
            [heaps],
        )
    ]
    indexes = [
        rel
        for (rel,) in db.rows(
            "select indexrelid::regclass::text from pg_index where indrelid = any (%s::regclass[])",
            [heaps + toasts],
        )
    ]
    return heaps + toasts + indexes


def pages_holding(db: Db, needle: bytes) -> dict[str, int]:
    """How many raw pages of each file hold the bytes (pageinspect's get_raw_page)."""
    found = {}
    for rel in physical_relations(db):
        count = db.one(
            "select count(*) from generate_series(0,"
            " pg_relation_size(%s::regclass) / current_setting('block_size')::int - 1) b"
            " where position(%s::bytea in get_raw_page(%s, b::int)) > 0",
            [rel, needle, rel],
        )
        if count:
            found[rel] = count
    return found


def statistics_holding(db: Db, needle: str) -> int:
    return int(db.one(
        "select count(*) from pg_statistic s where (s.starelid = 'audit.record_version'::regclass"
        " or s.starelid in (select relid from pg_partition_tree('audit.record_version')))"
        " and strpos(s::text, %s) > 0", [needle]))  # fmt: skip


def test_a_plain_vacuum_leaves_the_bytes_in_the_pages_vacuum_full_removes_them(db: Db) -> None:
    """Measured: the redaction's UPDATE leaves the old row versions (dead); a plain VACUUM
    removes them from the table (no tuple holds them) but not their bytes: the page's free
    space keeps them. VACUUM FULL writes new files. ANALYZE replaces the statistics, whose
    histogram held the value. Hence PRESCRIBED_VACUUM."""
    db.run("create extension pageinspect")
    person(db)
    db.run("alter table person add column notes text")
    db.run("insert into person select g, 'n' || g, 'p' || g || '@example.org',"
           " date '1970-01-01' + g from generate_series(2, 30) g")  # fmt: skip
    db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}')")
    # A large version, the last on its page: after the whole-row redaction the new row
    # versions are smaller, so the compacted page does not overwrite all of its bytes.
    db.run(f"update person set notes = '{'z' * 1500}' where id = 1")
    seal(db)
    old_salt = salt_of(db, 1)
    db.run("analyze audit.record_version")
    assert statistics_holding(db, EMAIL) == 1
    assert pages_holding(db, EMAIL.encode()) != {}
    assert pages_holding(db, old_salt) == {"audit.seal_salt": 1}

    assert redact(db, "public.person", {"id": 1}, None) == [(2, 2)]
    assert traces(db, EMAIL) == {}
    assert list(pages_holding(db, EMAIL.encode())) == ["audit.record_version"]  # dead rows

    db.run("vacuum audit.record_version")
    db.run("vacuum audit.seal_salt")
    # No tuple holds the value any more, yet a page does, and the statistics do.
    assert db.one(
        "select count(*) from generate_series(0, pg_relation_size('audit.record_version')"
        " / current_setting('block_size')::int - 1) b,"
        " heap_page_items(get_raw_page('audit.record_version', b::int)) i"
        " where position(%s::bytea in i.t_data) > 0", [EMAIL.encode()]) == 0  # fmt: skip
    assert list(pages_holding(db, EMAIL.encode())) == ["audit.record_version"]
    assert statistics_holding(db, EMAIL) == 1

    for statement in PRESCRIBED_VACUUM:
        db.run(statement)
    for needle in (EMAIL.encode(), BORN.encode(), old_salt):
        assert pages_holding(db, needle) == {}, needle
    assert statistics_holding(db, EMAIL) == 0
    assert verify(db)[0][2] == "redacted"


@pytest.mark.parametrize("layout", ["plain", "partitioned"])
def test_after_the_prescribed_vacuum_no_file_holds_the_erased_bytes(
    engine: sa.Engine, db_url: str, layout: str
) -> None:
    """Rows on full pages, a TOASTed record, in the plain and the partitioned layout."""
    install = (lambda op: op.install_audit()) if layout == "plain" else (
        lambda op: op.install_audit(partitioned=True))  # fmt: skip
    run_online(engine, install)
    with connect(db_url) as db:
        db.run("create extension pageinspect")
        person(db)
        db.run("alter table person add column notes text")
        db.run("insert into person select g, 'n' || g, 'p' || g || '@example.org',"
               " date '1970-01-01' + g from generate_series(2, 200) g")  # fmt: skip
        db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}')")
        db.run("insert into person select g, 'n' || g, 'p' || g || '@example.org',"
               " date '1970-01-01' + g from generate_series(201, 400) g")  # fmt: skip
        # random hex does not compress: the TOASTed record holds the values as they are
        db.run("update person set notes = %s where id = 1", [secrets.token_hex(2000)])
        seal(db)
        old_salt = salt_of(db, 1)
        found = pages_holding(db, EMAIL.encode())
        assert any("pg_toast" in rel for rel in found) and len(found) == 2, found
        assert redact(db, "public.person", {"id": 1}, ["email", "born"]) == [(2, 2)]
        for statement in PRESCRIBED_VACUUM:
            db.run(statement)
        for needle in (EMAIL.encode(), BORN.encode(), old_salt):
            assert pages_holding(db, needle) == {}, needle
        assert traces(db, EMAIL) == traces(db, BORN) == {}
        assert [row[2] for row in verify(db)] == ["redacted", "redacted", "ok"]


# --- TimescaleDB: a compressed chunk ---------------------------------------------------------


def test_redaction_inside_a_compressed_chunk_leaves_no_trace(
    ts_engine: sa.Engine, ts_url: str
) -> None:
    """The rows sit in a compressed chunk (its internal table's TOAST holds the values):
    the redaction decompresses the batch, verify reports it, the prescribed VACUUM leaves
    no file of the hypertable (chunk, compressed chunk, TOAST, indexes) holding them."""
    with connect(ts_url) as db:
        db.run("create extension timescaledb")
        db.run("create extension pageinspect")
        run_online(ts_engine, lambda op: op.install_audit())
        oid = person(db)
        db.run("insert into person select g, 'n' || g, 'p' || g || '@example.org',"
               " date '1970-01-01' + g from generate_series(2, 200) g")  # fmt: skip
        db.run(f"insert into person values (1, 'Ann', '{EMAIL}', '{BORN}')")
        db.run("update person set name = 'Anne' where id = 1")
        seal(db)
        old_salt = salt_of(db, 1)
        db.run(
            "alter table audit.record_version set (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'table_oid', timescaledb.compress_orderby = 'ts')"
        )
        db.run("select compress_chunk(c) from show_chunks('audit.record_version') c")
        assert db.rows("select is_compressed from timescaledb_information.chunks") == [(True,)]
        found = pages_holding(db, EMAIL.encode())
        compressed = db.one(
            "select format('%I.%I', cc.schema_name, cc.table_name)::regclass::oid"
            " from _timescaledb_catalog.chunk c"
            " join _timescaledb_catalog.chunk cc on cc.id = c.compressed_chunk_id"
        )
        toast = db.one("select reltoastrelid::regclass::text from pg_class where oid = %s",
                       [compressed])  # fmt: skip
        assert found == {toast: 1}, found

        assert redact(db, "public.person", {"id": 1}, ["email", "born"]) == [(2, 2)]
        r1 = record_id(oid, "1")
        assert [(op, rec, old) for _, op, rid, _, rec, old in versions(db) if rid == r1] == [
            ("INSERT", {"id": 1, "name": "Ann"}, None),
            ("UPDATE", {"id": 1, "name": "Anne"}, {"id": 1, "name": "Ann"}),
            ("REDACT", None, None),
        ]
        assert verify(db) == [
            (1, "seal", "redacted", 201, "segment 1 redacted (see the redaction links)"),
            (2, "redaction", "redacted", 2,
             "2 rows of public.person redacted (email, born): GDPR art. 17, request 2024-17"),
            (None, "unsealed", "ok", 1, "1 row not sealed yet"),
        ]  # fmt: skip
        assert traces(db, EMAIL) == {}
        assert db.one("select count(*) from audit.record_version r where strpos(r::text, %s) > 0",
                      [EMAIL]) == 0  # fmt: skip
        for statement in PRESCRIBED_VACUUM:
            db.run(statement)
        for needle in (EMAIL.encode(), BORN.encode(), old_salt):
            assert pages_holding(db, needle) == {}, needle
        assert [row[2] for row in verify(db)] == ["redacted", "redacted", "ok"]
