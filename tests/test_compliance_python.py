"""Issue 15, the Python side: seal(), verify() and redact(), the REDACT row in the history
API and the time machine, and the seal / verify / redact commands.

Real PostgreSQL (audit schema version 5). Each test checks exact results: the link a seal
wrote, the report a verification gives (the first failure and why), the audit rows a
redaction left. ``compliance_reference`` recomputes every hash from the documented
definition, independently of the SQL, and the tests assert it finds the stored ones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_helpers import SUPABASE_AUTH, Db, connect, record_id, run_online
from compliance_reference import ZERO, canonical_rows, leaf, link_text, recompute, segment_hash
from compliance_reference import multirange_ids as id_ranges
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hyper_audit_alembic import (
    Operation,
    RedactResult,
    SealResult,
    VerifyReport,
    as_of,
    audit_context,
    column_history,
    diff,
    history,
    redact,
    restore,
    revert_transaction,
    seal,
    sql,
    table_as_of,
    verify,
)
from hyper_audit_alembic.runtime.compliance import LinkCheck, VerifyFailure
from hyper_audit_alembic.runtime.compliance.verify import ANCHOR_MISSING, MAC_MISMATCH, NO_MAC
from hyper_audit_alembic.runtime.history import describe_redaction, render_versions

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class Base(DeclarativeBase):
    pass


class Account(Base):
    """Attribute names that differ from the column names: the audit rows hold columns."""

    __tablename__ = "account"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    email_address: Mapped[str | None] = mapped_column("email")
    phone_number: Mapped[str | None] = mapped_column("phone")


@pytest.fixture
def db(engine: sa.Engine, db_url: str) -> Iterator[Db]:
    """The test's database with the audit schema and a tracked public.account."""
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run(
            "create table account (id int primary key, name text not null, email text, phone text)"
        )
        db.run("select audit.enable_tracking('public.account')")
        yield db


def last_id(db: Db) -> int:
    return int(db.one("select coalesce(max(id), 0) from audit.record_version"))


def chain_hash(db: Db, link_id: int) -> str:
    return bytes(
        db.one("select chain_hash from audit.seal_log where link_id = %s", [link_id])
    ).hex()


def segment_ids(db: Db, segment_id: int) -> str:
    return str(
        db.one("select ids::text from audit.seal_segment where segment_id = %s", [segment_id])
    )


def assert_reference_agrees(db: Db, report: VerifyReport | None = None) -> None:
    """The independent recomputation finds every stored hash (and verify's returned ones)."""
    reference = recompute(db)
    assert reference.chain and reference.chain == reference.stored_chain
    assert reference.segments and reference.segments == reference.expected_segments
    assert reference.rows == dict(db.rows("select segment_id, row_count from audit.seal_segment"))
    if report is not None:
        assert {c.link_id: c.chain_hash for c in report.links if c.link_id is not None} == (
            reference.chain
        )


def later_than(session: Session) -> Any:
    """A time after every committed change (the clock, not the transaction's start)."""
    return session.scalar(sa.text("select clock_timestamp()"))


def write_some(db: Db) -> None:
    db.run("insert into account values (7, 'Ann', 'ann@example.org', '+1 555 0100')")
    db.run("insert into account values (8, 'Bob', 'bob@example.org', null)")
    db.run("update account set name = 'Anne' where id = 7")
    db.run("update account set email = 'anne@example.org' where id = 7")


# --- seal() and verify() ----------------------------------------------------------------


def test_seal_then_verify(db: Db, engine: sa.Engine) -> None:
    write_some(db)
    with Session(engine) as session:
        sealed = seal(session)
        session.rollback()  # the caller commits: nothing sealed
    assert db.one("select count(*) from audit.seal_log") == 0
    with engine.begin() as connection:
        sealed = seal(connection)
    assert sealed == SealResult(1, 4, 1, chain_hash(db, 1), keyed=False)
    assert db.one("select mac from audit.seal_log where link_id = 1") is None
    with engine.begin() as connection:
        assert seal(connection) is None  # nothing new
        report = verify(connection)
    assert report == VerifyReport(
        ok=True, links_verified=1, rows_verified=4, first_failure=None, redactions=0,
        expiries=0, chain_hash=sealed.chain_hash, unsealed_rows=0, keyed=False, not_keyed=(),
        links=(
            LinkCheck(1, "seal", "ok", 4, sealed.chain_hash, None),
            LinkCheck(None, "unsealed", "ok", 0, None, "0 rows not sealed yet"),
        ),
    )  # fmt: skip
    assert report.summary() == (
        f"4 rows in 1 link verified (0 redactions, 0 expiries); latest chain hash "
        f"{sealed.chain_hash}"
    )
    db.run("insert into account values (9, 'Cy', null, null)")
    db.run("delete from account where id = 8")
    with Session(engine) as session:
        assert verify(session).unsealed_rows == 2
        second = seal(session)
        session.commit()
    assert second == SealResult(2, 2, 1, chain_hash(db, 2), keyed=False)
    with Session(engine) as session:
        report = verify(session)
        assert (report.ok, report.links_verified, report.rows_verified) == (True, 2, 6)
        assert verify(session, from_link=2).rows_verified == 2
        assert verify(session, to_link=1).links == (
            LinkCheck(1, "seal", "ok", 4, sealed.chain_hash, None),
        )
    assert_reference_agrees(db, report)
    # The chain as documented: link k hashes link k-1's chain hash and its text.
    first = hashlib.sha256(ZERO + link_text(db, 1).encode()).hexdigest()
    assert first == sealed.chain_hash
    assert hashlib.sha256(bytes.fromhex(first) + link_text(db, 2).encode()).hexdigest() == (
        second.chain_hash
    )


@pytest.mark.parametrize(
    "tamper, failure",
    [
        (
            'update audit.record_version set record = record || \'{"name": "Eve"}\' where id = 3',
            "segment 1 (ids {ids}): rows changed (4 rows, the hash differs)",
        ),
        (
            "delete from audit.record_version where id = 2",
            "segment 1 (ids {ids}): 1 rows missing (sealed 4, found 3)",
        ),
        (
            "alter table audit.record_version drop constraint record_version_pkey;"
            " insert into audit.record_version (id, record_id, op, ts, table_oid, table_schema,"
            " table_name, record) select id, record_id, op, ts, table_oid, table_schema,"
            " table_name, record from audit.record_version where id = 2",
            "segment 1 (ids {ids}): 1 rows added (sealed 4, found 5)",
        ),
        (
            "update audit.record_version set id = -1 where id = 1;"
            " update audit.record_version set id = 1 where id = 2;"
            " update audit.record_version set id = 2 where id = -1",
            "segment 1 (ids {ids}): rows changed (4 rows, the hash differs)",
        ),
        (
            "update audit.seal_log set made_by = 'someone else' where link_id = 1",
            "link 1 was edited: its stored chain hash is not the hash of its content and the "
            "previous link's",
        ),
    ],
    ids=["update", "delete", "insert-same-id", "reorder", "edit-link"],
)
def test_verify_catches_tampering(db: Db, engine: sa.Engine, tamper: str, failure: str) -> None:
    write_some(db)
    with engine.begin() as connection:
        seal(connection)
    ids = segment_ids(db, 1)
    db.run(tamper)
    with engine.connect() as connection:
        report = verify(connection)
    expected = VerifyFailure(1, "seal", failure.format(ids=ids))
    assert (report.ok, report.first_failure) == (False, expected)
    assert report.summary() == f"FAILED: link 1 (seal): {expected.detail}"


def test_a_row_forged_between_sealed_ids_is_added(db: Db, engine: sa.Engine) -> None:
    db.run("insert into account values (1, 'A', null, null)")
    db.run("begin; insert into account values (2, 'B', null, null); rollback")  # an id gap
    db.run("insert into account values (3, 'C', null, null)")
    with engine.begin() as connection:
        seal(connection)
    assert segment_ids(db, 1) == '{"[1,2)","[3,4)"}'
    db.run(
        "insert into audit.record_version (id, record_id, op, ts, table_oid, table_schema,"
        " table_name, record) select 2, record_id, op, ts, table_oid, table_schema,"
        " table_name, record from audit.record_version where id = 1"
    )
    with engine.connect() as connection:
        report = verify(connection)
    assert report.first_failure == VerifyFailure(
        None,
        "unsealed",
        "1 row in no seal that a seal should have covered (added; the first has id 2)",
    )
    assert report.summary() == (
        "FAILED: audit rows in no seal: 1 row in no seal that a seal should have covered "
        "(added; the first has id 2)"
    )


def test_keyed_seals(db: Db, engine: sa.Engine) -> None:
    write_some(db)
    with engine.begin() as connection:
        sealed = seal(connection, key=KEY)
    assert sealed is not None and sealed.keyed
    stored = bytes(db.one("select mac from audit.seal_log where link_id = 1"))
    assert stored == hmac.new(KEY, bytes.fromhex(sealed.chain_hash), hashlib.sha256).digest()
    with engine.connect() as connection:
        assert verify(connection, key=KEY).ok
        wrong = verify(connection, key=OTHER_KEY)
    assert wrong.first_failure == VerifyFailure(1, "seal", MAC_MISMATCH)
    assert wrong.links[0].mac_ok is False
    # A seal made without the key is covered by none yet.
    db.run("insert into account values (9, 'Cy', null, null)")
    with engine.begin() as connection:
        seal(connection)
        report = verify(connection, key=KEY)
    assert (report.ok, report.not_keyed, [c.mac_ok for c in report.links]) == (
        True, (2,), [True, None, None]
    )  # fmt: skip


def rehash_everything(db: Db) -> None:
    """What a superuser without the key can do after editing sealed rows: recompute every
    segment's hash (under its salt) and every link's chain hash."""
    canon = canonical_rows(db)
    for segment_id, ids, salt in db.rows(
        "select s.segment_id, s.ids::text, t.salt from audit.seal_segment s"
        " join audit.seal_salt t using (segment_id)"
    ):
        leaves = [
            leaf(c)
            for first, last in id_ranges(ids)
            for row_id in range(first, last + 1)
            for c in sorted(canon.get(row_id, ()), key=leaf)
        ]
        rebuilt = segment_hash(bytes(salt), leaves)
        db.run(
            "update audit.seal_segment set hash = %s where segment_id = %s", [rebuilt, segment_id]
        )
    previous = ZERO
    for (link_id,) in db.rows("select link_id from audit.seal_log order by link_id"):
        previous = hashlib.sha256(previous + link_text(db, link_id).encode()).digest()
        db.run("update audit.seal_log set chain_hash = %s where link_id = %s", [previous, link_id])


def test_a_rebuilt_chain_passes_the_recomputation_but_not_the_key(
    db: Db, engine: sa.Engine
) -> None:
    """A superuser edits a sealed row and recomputes every hash of the chain (the segment's,
    under its salt; every link's): only the key tells."""
    write_some(db)
    with engine.begin() as connection:
        seal(connection, key=KEY)
    db.run("insert into account values (9, 'Cy', null, null)")
    with engine.begin() as connection:
        seal(connection, key=KEY)
    db.run(
        'update audit.record_version set record = record || \'{"email": "x@evil"}\' where id = 1'
    )
    rehash_everything(db)
    with engine.connect() as connection:
        assert verify(connection).ok  # the recomputation alone cannot tell
        keyed = verify(connection, key=KEY)
    assert (keyed.ok, keyed.first_failure) == (False, VerifyFailure(1, "seal", MAC_MISMATCH))
    # Erasing the macs too leaves a chain the key covers nowhere: reported, not proven (the
    # chain hash kept elsewhere is what tells then).
    db.run("update audit.seal_log set mac = null")
    with engine.connect() as connection:
        unkeyed = verify(connection, key=KEY)
    assert (unkeyed.ok, unkeyed.not_keyed, unkeyed.first_failure) == (
        False,
        (1, 2),
        VerifyFailure(None, "seal", NO_MAC),
    )
    assert str(unkeyed.first_failure) == f"the chain: {NO_MAC}"


def test_an_anchor_kept_elsewhere_catches_a_chain_rewritten_without_the_key(
    db: Db, engine: sa.Engine, db_url: str
) -> None:
    """Rewrite a sealed row and every hash after it (no key involved): only the chain hash
    kept elsewhere tells; verify(anchor=...) and verify --anchor check it."""
    write_some(db)
    with engine.begin() as connection:
        first = seal(connection)
    assert first is not None
    with engine.connect() as connection:
        assert verify(connection, anchor=first.chain_hash).ok
        assert verify(connection, anchor="\\x" + first.chain_hash.upper()).ok
    db.run("update audit.record_version set actor = 'forged' where id = 1")
    rehash_everything(db)
    with engine.connect() as connection:
        assert verify(connection).ok
        cut = verify(connection, anchor=first.chain_hash)
    assert (cut.ok, cut.first_failure) == (False, VerifyFailure(None, "anchor", ANCHOR_MISSING))
    assert cli("verify", "--url", db_url, "--anchor", first.chain_hash).returncode == 1
    with pytest.raises(ValueError) as bad, engine.connect() as connection:
        verify(connection, anchor="abc")
    assert str(bad.value) == (
        "verify: anchor must be a chain hash (64 hex digits, as seal printed it), got 'abc'"
    )


def test_bad_keys_and_bounds(db: Db, engine: sa.Engine) -> None:
    with engine.connect() as connection:
        with pytest.raises(ValueError) as short:
            seal(connection, key=b"short")
        assert str(short.value) == (
            "seal: the key holds 5 byte(s), a key needs at least 16 (e.g. head -c 32 "
            "/dev/urandom > seal.key)"
        )
        with pytest.raises(TypeError) as text_key:
            verify(connection, key="a text key of 32 characters....")  # type: ignore[arg-type]
        assert str(text_key.value) == (
            "verify: key must be bytes (e.g. open('seal.key', 'rb').read()), got str"
        )
        with pytest.raises(ValueError) as bounds:
            verify(connection, from_link=3, to_link=2)
        assert str(bounds.value) == "verify: from_link 3 is after to_link 2"
        assert verify(connection) == VerifyReport(
            True, 0, 0, None, 0, 0, None, 0, False, (),
            (LinkCheck(None, "unsealed", "ok", 0, None, "0 rows not sealed yet"),),
        )  # fmt: skip


# --- redact() -----------------------------------------------------------------------------


def every_audit_text(db: Db) -> str:
    """Every row of every table of schema audit, as text (to search for erased values)."""
    tables = db.rows(
        "select format('%I.%I', n.nspname, c.relname) from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'audit' and c.relkind in ('r', 'p')"
    )
    return "\n".join(
        str(row) for (table,) in tables for row in db.rows(f"select t::text from {table} t")
    )


def test_redact_by_model_with_attribute_names(db: Db, engine: sa.Engine) -> None:
    write_some(db)
    with engine.begin() as connection:
        seal(connection)
    before = last_id(db)
    rid = record_id(db.oid("public.account"), "7")
    with Session(engine) as session:
        with audit_context(session, actor="dpo", ticket="T-12"):
            result = redact(
                session, Account, 7, columns=["email_address", "phone"], reason="erasure request"
            )
        session.commit()
    assert result == RedactResult(2, 3, "public.account", {"id": 7}, ("email", "phone"))
    # Every version of record 7 lost both values; record 8 kept its own.
    assert db.rows(
        "select id, op::text, record, old_record from audit.record_version order by id"
    ) == [
        (1, "INSERT", {"id": 7, "name": "Ann"}, None),
        (2, "INSERT", {"id": 8, "name": "Bob", "email": "bob@example.org", "phone": None}, None),
        (3, "UPDATE", {"id": 7, "name": "Anne"}, {"id": 7, "name": "Ann"}),
        (4, "UPDATE", {"id": 7, "name": "Anne"}, {"id": 7, "name": "Anne"}),
        (before + 1, "REDACT", None, None),
    ]
    assert db.rows(
        "select record_id::text, actor, context from audit.record_version where id = %s",
        [before + 1],
    ) == [
        (str(rid), "dpo", {"ticket": "T-12", "redaction": {
            "columns": ["email", "phone"], "reason": "erasure request", "link": 2, "rows": 3}}),
    ]  # fmt: skip
    for erased in ("ann@example.org", "anne@example.org", "555 0100"):
        assert erased not in every_audit_text(db)
    # verify still passes, and says a redaction changed the sealed rows.
    with engine.connect() as connection:
        report = verify(connection)
    assert (report.ok, report.first_failure, report.redactions, report.rows_verified) == (
        True, None, 1, 4
    )  # fmt: skip
    assert [(c.link_id, c.kind, c.status) for c in report.links] == [
        (1, "seal", "redacted"), (2, "redaction", "redacted"), (None, "unsealed", "ok")
    ]  # fmt: skip
    assert report.links[1].detail == (
        "3 rows of public.account redacted (email, phone): erasure request"
    )
    assert report.summary().startswith("4 rows in 2 links verified (1 redaction, 0 expiries)")
    assert_reference_agrees(db, report)
    # Anything else that changes a sealed row after the redaction still fails.
    db.run('update audit.record_version set record = record || \'{"name": "X"}\' where id = 2')
    with engine.connect() as connection:
        failed = verify(connection)
    assert failed.first_failure == VerifyFailure(
        1, "seal", f"segment 1 (ids {segment_ids(db, 1)}): rows changed (4 rows, the hash differs)"
    )


def test_the_redact_row_in_the_history_api(db: Db, engine: sa.Engine) -> None:
    write_some(db)
    with Session(engine) as session:
        when = session.scalar(sa.text("select now()"))
        versions = history(session, Account, 7)
        assert versions[0].record is not None and "email" in versions[0].record
        redact(session, Account, {"id": 7}, columns=["email"], reason="asked by the customer")
        # The rows the session had loaded hold the erased values no more.
        assert versions[0].record == {"id": 7, "name": "Ann", "phone": "+1 555 0100"}
        session.commit()
    with Session(engine) as session:
        versions = history(session, Account, 7)
        assert [v.op for v in versions] == [
            Operation.INSERT, Operation.UPDATE, Operation.UPDATE, Operation.REDACT
        ]  # fmt: skip
        redacted = versions[-1]
        assert (redacted.changes, redacted.values) == ({}, None)
        assert redacted.redaction == {
            "columns": ["email"], "reason": "asked by the customer", "link": 1, "rows": 3
        }  # fmt: skip
        assert describe_redaction(redacted) == (
            f"REDACT by {redacted.actor}: columns email — asked by the customer"
        )
        table = render_versions(versions, ("id", "name", "email", "phone"))
        assert re.split(r"\s{2,}", table.splitlines()[-1]) == [
            str(redacted.ts), "REDACT", str(redacted.actor),
            "redacted columns email — asked by the customer",
        ]  # fmt: skip
        # The erased column is in no version's changes (the email change shows as none).
        assert [d.changes for d in diff(session, Account, 7)] == [
            {"id": (None, 7), "name": (None, "Ann"), "phone": (None, "+1 555 0100")},
            {"name": ("Ann", "Anne")},
            {},
            {},
        ]
        assert [(c.version_id, c.new) for c in column_history(session, Account, "name")] == [
            (1, "Ann"), (2, "Bob"), (3, "Anne")
        ]  # fmt: skip
        assert column_history(session, Account, "email_address")[0].version_id == 2
        # as_of passes over the REDACT (it changed the trail, not the row).
        later = session.scalar(sa.text("select now()"))
        assert as_of(session, Account, 7, later) == {
            "id": 7, "name": "Anne", "phone": "+1 555 0100"
        }  # fmt: skip
        assert as_of(session, Account, 7, when) is not None
        # restore() puts back a version without the erased column: it keeps today's value.
        first = versions[0].id
        plan = restore(session, Account, 7, to=first)
        session.commit()
    assert db.rows("select * from account where id = 7") == [
        (7, "Ann", "anne@example.org", "+1 555 0100")
    ]
    assert str(plan) == 'UPDATE public.account (id)=(7): name: "Anne" -> "Ann"'
    # A revert of the redaction's transaction has nothing to undo, and says why.
    txid = db.one(
        "select transaction_id::text::bigint from audit.record_version where op = 'REDACT'"
    )
    with Session(engine) as session:
        with pytest.raises(ValueError) as refused:
            revert_transaction(session, txid)
    assert str(refused.value) == (
        f"revert: transaction {txid} only redacted values in the audit trail (REDACT rows): "
        "it changed no row to undo, and erased values cannot be put back"
    )
    # A later REDACT of a record is no conflict for reverting an earlier change of it.
    db.run("update account set name = 'Robert' where id = 8")
    change = db.one("select transaction_id::text::bigint from audit.record_version"
                    " where id = (select max(id) from audit.record_version)")  # fmt: skip
    with Session(engine) as session:
        redact(session, Account, 8, columns=["email"], reason="erasure")
        plan = revert_transaction(session, change)
        session.commit()
    assert str(plan) == 'UPDATE public.account (id)=(8): name: "Robert" -> "Bob"'
    assert db.rows("select * from account where id = 8") == [(8, "Bob", "bob@example.org", None)]


def test_table_as_of_passes_over_a_redact(db: Db, engine: sa.Engine) -> None:
    db.run("call audit.snapshot('public.account')")
    write_some(db)
    with Session(engine) as session:
        redact(session, Account, 7, columns=["email"], reason="asked by the customer")
        session.commit()
    with Session(engine) as session:
        assert [r.values for r in table_as_of(session, Account, later_than(session))] == [
            {"id": 7, "name": "Anne", "phone": "+1 555 0100"},
            {"id": 8, "name": "Bob", "email": "bob@example.org", "phone": None},
        ]


def test_redact_refusals(db: Db, engine: sa.Engine) -> None:
    write_some(db)
    with Session(engine) as session:
        with pytest.raises(ValueError) as unknown:
            redact(session, Account, 7, columns=["email_adress"], reason="r")
        assert str(unknown.value) == (
            "redact: Account has no column 'email_adress' (its columns: id, name, email, phone)"
        )
        with pytest.raises(ValueError) as no_reason:
            redact(session, Account, 7, reason=" ")
        assert str(no_reason.value) == (
            "redact: give the reason (reason='erasure request #123'): the REDACT audit row "
            "records why"
        )
        with pytest.raises(ValueError) as bad_key:
            redact(session, Account, (7, 8), reason="r")
        assert str(bad_key.value) == (
            "redact: the key of public.account has 1 column(s) (id), got 2 value(s)"
        )
        with pytest.raises(sa.exc.DBAPIError) as nothing:
            redact(session, "public.account", {"id": 99}, reason="r")
        assert str(nothing.value.orig).splitlines()[0] == (
            'audit.redact(public.account): no audit row has the record of key {"id": 99}; '
            "nothing was redacted"
        )


def test_only_a_granted_role_may_redact_seal_or_verify(db: Db, engine: sa.Engine) -> None:
    write_some(db)
    role = f"app_{uuid.uuid4().hex[:12]}"
    db.run(f"create role {role} login")
    try:
        db.run(f"grant select, insert, update, delete on account to {role}")
        db.run(f"grant usage on schema audit to {role}")
        with Session(engine) as session:
            session.execute(sa.text(f"set role {role}"))
            for call in (
                lambda: redact(session, Account, 7, reason="r"),
                lambda: seal(session),
                lambda: verify(session),
            ):
                with pytest.raises(sa.exc.ProgrammingError) as denied:
                    call()
                assert "permission denied for function" in str(denied.value.orig)
                session.rollback()
                session.execute(sa.text(f"set role {role}"))
        db.run("grant execute on function audit.redact(regclass, jsonb, text[], text) to " + role)
        with Session(engine) as session:
            session.execute(sa.text(f"set role {role}"))
            assert redact(session, Account, 8, reason="erasure").rows_redacted == 1
            session.commit()
        assert db.one("select actor from audit.record_version where op = 'REDACT'") == role
        # The whole row image went: the audit row keeps its record id, not a value.
        assert db.rows("select record, old_record from audit.record_version where id = 2") == [
            ({}, None)
        ]
    finally:
        db.run(f"drop owned by {role} cascade; drop role {role}")


def test_partitioned_layout(engine: sa.Engine, db_url: str) -> None:
    run_online(engine, lambda op: op.install_audit(partitioned={"interval": "1 month"}))
    with connect(db_url) as db:
        db.run(
            "create table account (id int primary key, name text not null, email text, phone text)"
        )
        db.run("select audit.enable_tracking('public.account')")
        write_some(db)
        with engine.begin() as connection:
            sealed = seal(connection, key=KEY)
        assert sealed == SealResult(1, 4, 1, chain_hash(db, 1), True)
        with Session(engine) as session:
            assert redact(session, Account, 7, columns=["phone"], reason="r").rows_redacted == 3
            session.commit()
        with engine.connect() as connection:
            report = verify(connection, key=KEY)
        assert (report.ok, report.rows_verified, report.redactions) == (True, 4, 1)
        assert_reference_agrees(db, report)


# --- The command line --------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "hyper_audit_alembic", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_cli_seal_verify_redact(db: Db, db_url: str, tmp_path: Path) -> None:
    write_some(db)
    key_file = tmp_path / "seal.key"
    key_file.write_bytes(KEY)
    done = cli("seal", "--url", db_url, "--key-file", str(key_file))
    link_hash = chain_hash(db, 1)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "sealed link 1: 4 rows in 1 segment, keyed\n"
        f"chain hash {link_hash}\n"
        "keep this hash elsewhere (a ticket, a log): verify shows the latest one to compare\n"
    )
    done = cli("seal", "--url", db_url)
    assert (done.returncode, done.stdout) == (
        0, "nothing to seal: every committed audit row is sealed already\n"
    )  # fmt: skip
    done = cli("verify", "--url", db_url, "--key-file", str(key_file))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"4 rows in 1 link verified (0 redactions, 0 expiries); latest chain hash {link_hash}\n"
    )
    done = cli(
        "redact", "--url", db_url, "--table", "public.account", "--key", '{"id": 7}',
        "--column", "email", "--column", "phone", "--reason", "erasure request 12",
        "--actor", "dpo",
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        'redacted email, phone of public.account {"id": 7} in 3 audit rows; link 2\n'
    )
    assert db.one("select actor from audit.record_version where op = 'REDACT'") == "dpo"
    done = cli("verify", "--url", db_url, "--key-file", str(key_file))
    assert (done.returncode, done.stdout.splitlines()) == (
        0,
        [
            f"4 rows in 2 links verified (1 redaction, 0 expiries); latest chain hash "
            f"{chain_hash(db, 2)}",
            "1 audit row not sealed yet (seal covers them)",
            "link 2 not keyed yet: the key covers the chain up to link 1 (the next seal "
            "--key-file covers them)",
        ],
    )
    done = cli("history", "--url", db_url, "account", "7")
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0] == "account (id) = (7): 3 changes, 1 redaction"
    assert re.split(r"\s{2,}", lines[-1])[1:] == [
        "REDACT", "dpo", "redacted columns email, phone — erasure request 12"
    ]  # fmt: skip
    done = cli("diff", "--url", db_url, "account", "7")
    redacted_at = db.one("select ts from audit.record_version where op = 'REDACT'")
    assert done.stdout.splitlines()[-2:] == [
        f"version {last_id(db)} REDACT {redacted_at} by dpo",
        "  redacted columns email, phone — erasure request 12",
    ]
    done = cli("verify", "--url", db_url, "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["links"][1] == {
        "link_id": 2, "kind": "redaction", "status": "redacted", "rows_verified": 3,
        "chain_hash": chain_hash(db, 2),
        "detail": "3 rows of public.account redacted (email, phone): erasure request 12",
        "mac_ok": None,
    }  # fmt: skip
    # Tampering: exit 1 and the first failure.
    db.run("delete from audit.record_version where id = 2")
    done = cli("verify", "--url", db_url)
    assert (done.returncode, done.stderr) == (1, "")
    assert done.stdout == (
        f"FAILED: link 1 (seal): segment 1 (ids {segment_ids(db, 1)}): 1 rows missing "
        "(sealed 4, found 3)\n"
    )
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(OTHER_KEY)
    done = cli("verify", "--url", db_url, "--to", "1", "--key-file", str(wrong))
    assert done.returncode == 1
    assert done.stdout.splitlines()[0] == (
        f"FAILED: link 1 (seal): segment 1 (ids {segment_ids(db, 1)}): 1 rows missing "
        "(sealed 4, found 3)"
    )


def test_cli_refusals(db: Db, db_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    short = tmp_path / "short.key"
    short.write_bytes(b"0123456789")
    for command in ("seal", "verify"):
        done = cli(command, "--url", db_url, "--key-file", str(empty))
        assert (done.returncode, done.stdout, done.stderr) == (
            1, "", f"error: --key-file {empty}: the file is empty; a key needs at least 16 "
            f"(e.g. head -c 32 /dev/urandom > {empty})\n",
        )  # fmt: skip
    done = cli("seal", "--url", db_url, "--key-file", str(short))
    assert done.stderr == (
        f"error: --key-file {short}: it holds 10 byte(s); a key needs at least 16 "
        f"(e.g. head -c 32 /dev/urandom > {short})\n"
    )
    done = cli("seal", "--url", db_url, "--key-file", str(tmp_path / "nope"))
    assert done.stderr == f"error: --key-file {tmp_path / 'nope'}: no such file\n"
    done = cli("redact", "--url", db_url, "--table", "account", "--key", "7", "--reason", "r")
    assert done.stderr == (
        "error: --key 7: give the primary key as a JSON object by column name, e.g. "
        "--key '{\"id\": 7}'\n"
    )
    done = cli("redact", "--url", db_url, "--table", "account", "--key", '{"id": 7}',
               "--column", "nope", "--reason", "r")  # fmt: skip
    assert done.stderr == (
        "error: redact: public.account has no column 'nope' (its columns: id, name, email, phone)\n"
    )
    done = cli(
        "redact", "--url", db_url, "--table", "nosuch", "--key", '{"id": 7}', "--reason", "r"
    )
    assert (done.returncode, done.stderr) == (
        1, "error: redact: no such table: nosuch (audit.redact() finds the record through "
        "the table as it is now)\n"
    )  # fmt: skip


def test_an_older_audit_schema_is_one_line(db: Db, engine: sa.Engine, db_url: str) -> None:
    run_online(engine, lambda op: op.downgrade_audit(from_version=sql.SCHEMA_VERSION, to_version=4))
    older = (
        "this database has no {function}: its audit trail is older than audit schema "
        "version 5 (or not installed); upgrade it (op.upgrade_audit() in a migration)"
    )
    with Session(engine) as session:
        with pytest.raises(ValueError) as refused:
            redact(session, Account, 7, reason="r")
    assert str(refused.value) == "redact: " + older.format(
        function="audit.redact(regclass, jsonb, text[], text)"
    )
    for command, function in (("seal", "audit.seal()"), ("verify", "audit.verify(bigint, bigint)")):
        done = cli(command, "--url", db_url)
        assert (done.returncode, done.stdout, done.stderr) == (
            1, "", f"error: {command}: {older.format(function=function)}\n"
        )  # fmt: skip


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_asyncio_and_other_drivers(db: Db, db_url: str, driver: str) -> None:
    """bytea comes back as bytes or memoryview depending on the driver: the same results."""
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    write_some(db)
    url = sa.engine.make_url(db_url).set(drivername=f"postgresql+{driver}")

    async def run() -> tuple[SealResult | None, VerifyReport, RedactResult]:
        engine = create_async_engine(url)
        try:
            async with AsyncSession(engine) as session:
                sealed = await session.run_sync(seal, key=KEY)
                redacted = await session.run_sync(redact, Account, 7, columns=["phone"], reason="r")
                await session.commit()
                report = await session.run_sync(verify, key=KEY)
            return sealed, report, redacted
        finally:
            await engine.dispose()

    sealed, report, redacted = asyncio.run(run())
    assert sealed == SealResult(1, 4, 1, chain_hash(db, 1), True)
    assert redacted == RedactResult(2, 3, "public.account", {"id": 7}, ("phone",))
    assert (report.ok, report.rows_verified, report.redactions, report.not_keyed) == (
        True, 4, 1, (2,)
    )  # fmt: skip


def test_the_canonical_text_of_supabase_auth_columns(engine: sa.Engine, db_url: str) -> None:
    """Columns beyond the design's (Supabase's auth_uid, auth_role) join the canonical text
    as one object of those not null, only where there is one: the reference agrees."""
    with connect(db_url) as db:
        db.run(SUPABASE_AUTH)
        run_online(engine, lambda op: op.install_audit())
        db.run(
            "create table account (id int primary key, name text not null, email text, phone text)"
        )
        db.run("select audit.enable_tracking('public.account')")
        db.run(
            "begin; select set_config('request.jwt.claim.sub', %s, true);"
            " insert into account values (1, 'Ann', null, null); commit",
            [str(uuid.UUID(int=7))],
        )
        db.run("insert into account values (2, 'Bob', null, null)")
        auth = db.rows("select auth_uid::text, auth_role from audit.record_version order by id")
        assert auth == [(str(uuid.UUID(int=7)), None), (None, None)]
        canon = canonical_rows(db)
        assert json.loads(canon[1][0])[-1] == {"auth_uid": str(uuid.UUID(int=7))}
        assert len(json.loads(canon[2][0])) == 12  # no extra element: all of them null
        with engine.begin() as connection:
            seal(connection)
        with engine.connect() as connection:
            report = verify(connection)
        assert (report.ok, report.rows_verified) == (True, 2)
        assert_reference_agrees(db, report)


def test_the_commands_from_the_plain_wheel(db: Db, db_url: str, plain_python: Path) -> None:
    """What a user installs (the wheel alone, no greenlet), in a fresh interpreter."""
    write_some(db)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(plain_python), "-m", "hyper_audit_alembic", *args],
            capture_output=True, text=True, env=environment, cwd=plain_python.parents[2],
            timeout=120,
        )  # fmt: skip

    sealed = run("seal", "--url", db_url)
    assert (sealed.returncode, sealed.stderr) == (0, "")
    assert sealed.stdout.splitlines()[0] == "sealed link 1: 4 rows in 1 segment"
    redacted = run("redact", "--url", db_url, "--table", "account", "--key", '{"id": 8}',
                   "--column", "email", "--reason", "erasure")  # fmt: skip
    assert redacted.stdout == 'redacted email of public.account {"id": 8} in 1 audit row; link 2\n'

    verified = run("verify", "--url", db_url)
    assert verified.stderr == ""
    assert (verified.returncode, verified.stdout.splitlines()[0]) == (
        0,
        f"4 rows in 2 links verified (1 redaction, 0 expiries); latest chain hash "
        f"{chain_hash(db, 2)}",
    )


def test_verify_after_a_whole_row_redaction(db: Db, engine: sa.Engine) -> None:
    write_some(db)
    with engine.begin() as connection:
        seal(connection)
    with Session(engine) as session:
        assert redact(session, Account, 8, reason="erasure").columns is None
        session.commit()
    with engine.connect() as connection:
        report = verify(connection)
    assert (report.ok, report.redactions) == (True, 1)
    assert report.links[1].detail == "1 rows of public.account redacted (the whole row): erasure"
