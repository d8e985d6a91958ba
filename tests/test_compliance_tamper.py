"""A superuser tampers with sealed history in every way; audit.verify() catches each (issue 15).

One chain of three seal links over a tracked table (plain layout), then, each in its own
transaction that is rolled back afterwards: a sealed row updated, deleted, forged (inside a
sealed id range, and below the last seal's ids outside any range), two rows' ids swapped,
a segment's hash / row count / ids edited, a salt replaced, a link's body or chain hash
edited, a link deleted. Verify names the link that fails and why, exactly, and the links
nobody touched stay 'ok'. A partition or chunk dropped by hand is in
test_compliance_layouts.py.

Then the long transaction: rows of a transaction still running when a seal is made are
sealed by a later seal, once, whatever their ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from audit_helpers import Db, connect, run_online

# --- the sealed history --------------------------------------------------------------------


def seal(db: Db) -> list[tuple[Any, ...]]:
    return db.rows("select link_id, rows_sealed, segments from audit.seal()")


def verify(db: Db) -> list[tuple[Any, ...]]:
    return db.rows("select link_id, kind, status, rows_verified, detail from audit.verify()")


def write(db: Db, statement: str) -> None:
    db.run(statement)


def burn_an_id(db: Db) -> None:
    """A rolled-back write: its audit id is never used."""
    db.run("begin")
    db.run("insert into public.item values (1000, 'rolled back')")
    db.run("rollback")


@pytest.fixture
def sealed(db_url: str, engine: sa.Engine) -> Iterator[Db]:
    """Three seal links:
    link 1, segment 1: ids 1-5 (items 1-5 inserted);
    link 2, segment 2: ids 7, 9, 10 (id 6 and id 8 rolled back);
    link 3, segment 3: ids 11-12 (items 1 and 2 updated).
    """
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run("create table public.item (id int primary key, v text)")
        db.run("select audit.enable_tracking('public.item')")
        db.run("insert into public.item select g, 'v' || g from generate_series(1, 5) g")
        assert seal(db) == [(1, 5, 1)]
        burn_an_id(db)
        db.run("insert into public.item values (6, 'v6')")
        burn_an_id(db)
        db.run("insert into public.item values (7, 'v7'), (8, 'v8')")
        assert seal(db) == [(2, 3, 1)]
        db.run("update public.item set v = 'changed' where id in (1, 2)")
        assert seal(db) == [(3, 2, 1)]
        assert db.rows("select segment_id, ids::text from audit.seal_segment order by 1") == [
            (1, '{"[1,6)"}'),
            (2, '{"[7,8)","[9,11)"}'),
            (3, '{"[11,13)"}'),
        ]
        assert verify(db) == UNTOUCHED
        yield db


LINK_1_OK = (1, "seal", "ok", 5, None)
LINK_2_OK = (2, "seal", "ok", 3, None)
LINK_3_OK = (3, "seal", "ok", 2, None)
ALL_SEALED = (None, "unsealed", "ok", 0, "0 rows not sealed yet")
UNTOUCHED = [LINK_1_OK, LINK_2_OK, LINK_3_OK, ALL_SEALED]

SEGMENT_1 = 'segment 1 (ids {"[1,6)"}): '
SEGMENT_2 = 'segment 2 (ids {"[7,8)","[9,11)"}): '


def edited(link: int, rows: int) -> tuple[Any, ...]:
    return (
        link,
        "seal",
        "failed",
        rows,
        f"link {link} was edited: its stored chain hash is not the hash of its content and "
        "the previous link's",
    )


#: Each tamper (SQL run as the superuser) and what verify says after it.
TAMPERS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "update a sealed row's record": (
        """update audit.record_version set record = '{"id": 3, "v": "forged"}' where id = 3""",
        [(1, "seal", "failed", 0, SEGMENT_1 + "rows changed (5 rows, the hash differs)"),
         LINK_2_OK, LINK_3_OK, ALL_SEALED],
    ),
    "update a sealed row's actor": (
        "update audit.record_version set actor = 'someone else' where id = 10",
        [LINK_1_OK, (2, "seal", "failed", 0, SEGMENT_2 + "rows changed (3 rows, the hash differs)"),
         LINK_3_OK, ALL_SEALED],
    ),
    "update a sealed row's time": (
        "update audit.record_version set ts = ts - interval '1 day' where id = 12",
        [LINK_1_OK, LINK_2_OK,
         (3, "seal", "failed", 0,
          'segment 3 (ids {"[11,13)"}): rows changed (2 rows, the hash differs)'),
         ALL_SEALED],
    ),
    "delete a sealed row": (
        "delete from audit.record_version where id = 9",
        [LINK_1_OK, (2, "seal", "failed", 0, SEGMENT_2 + "1 rows missing (sealed 3, found 2)"),
         LINK_3_OK, ALL_SEALED],
    ),
    "insert a forged row with an id inside a sealed range": (
        "alter table audit.record_version drop constraint record_version_pkey;"
        " insert into audit.record_version select * from audit.record_version where id = 3",
        [(1, "seal", "failed", 0, SEGMENT_1 + "1 rows added (sealed 5, found 6)"),
         LINK_2_OK, LINK_3_OK, ALL_SEALED],
    ),
    "insert a forged row below the last seal's ids, outside any range": (
        "insert into audit.record_version (id, record_id, op, table_oid, table_schema,"
        " table_name, record) select 8, record_id, op, table_oid, table_schema, table_name,"
        """ '{"id": 6, "v": "forged"}' from audit.record_version where id = 7""",
        [LINK_1_OK, LINK_2_OK, LINK_3_OK,
         (None, "unsealed", "failed", 1,
          "1 row in no seal that a seal should have covered (added; the first has id 8)")],
    ),
    "insert a forged row between two seals": (
        "insert into audit.record_version (id, record_id, op, table_oid, table_schema,"
        " table_name, record) select 6, record_id, op, table_oid, table_schema, table_name,"
        """ '{"id": 6, "v": "forged"}' from audit.record_version where id = 7""",
        [LINK_1_OK, LINK_2_OK, LINK_3_OK,
         (None, "unsealed", "failed", 1,
          "1 row in no seal that a seal should have covered (added; the first has id 6)")],
    ),
    # Above every sealed id, but dated before the last seal began: the next seal would
    # never take it (its rows begin at the last seal's floor), so it is not "not sealed
    # yet" but added.
    "insert a forged row above the sealed ids, dated before the last seal": (
        "insert into audit.record_version (id, record_id, op, ts, table_oid, table_schema,"
        " table_name, record) select 100, record_id, op, ts - interval '1 day', table_oid,"
        """ table_schema, table_name, '{"id": 1, "v": "forged"}' from audit.record_version"""
        " where id = 1",
        [LINK_1_OK, LINK_2_OK, LINK_3_OK,
         (None, "unsealed", "failed", 1,
          "1 row in no seal that a seal should have covered (added; the first has id 100)")],
    ),
    "swap the ids of two rows of a segment": (
        "update audit.record_version set id = -2 where id = 2;"
        " update audit.record_version set id = 2 where id = 4;"
        " update audit.record_version set id = 4 where id = -2",
        [(1, "seal", "failed", 0, SEGMENT_1 + "rows changed (5 rows, the hash differs)"),
         LINK_2_OK, LINK_3_OK, ALL_SEALED],
    ),
    "swap the ids of two rows of two links": (
        "update audit.record_version set id = -3 where id = 3;"
        " update audit.record_version set id = 3 where id = 9;"
        " update audit.record_version set id = 9 where id = -3",
        [(1, "seal", "failed", 0, SEGMENT_1 + "rows changed (5 rows, the hash differs)"),
         (2, "seal", "failed", 0, SEGMENT_2 + "rows changed (3 rows, the hash differs)"),
         LINK_3_OK, ALL_SEALED],
    ),
    "edit a segment's hash": (
        "update audit.seal_segment set hash = sha256('forged') where segment_id = 2",
        [LINK_1_OK, edited(2, 0), LINK_3_OK, ALL_SEALED],
    ),
    "edit a segment's row count": (
        "update audit.seal_segment set row_count = 2 where segment_id = 2",
        [LINK_1_OK, edited(2, 0), LINK_3_OK, ALL_SEALED],
    ),
    "edit a segment's ids": (
        """update audit.seal_segment set ids = '{"[7,11)"}' where segment_id = 2""",
        [LINK_1_OK, edited(2, 3), LINK_3_OK, ALL_SEALED],
    ),
    "replace a segment's salt": (
        "update audit.seal_salt set salt = sha256('guessed') where segment_id = 1",
        [(1, "seal", "failed", 0, SEGMENT_1 + "rows changed (5 rows, the hash differs)"),
         LINK_2_OK, LINK_3_OK, ALL_SEALED],
    ),
    "edit a link's body": (
        """update audit.seal_log set body = body || '{"max_id": 4}' where link_id = 1""",
        [edited(1, 5), LINK_2_OK, LINK_3_OK, ALL_SEALED],
    ),
    "edit a link's author": (
        "update audit.seal_log set made_by = 'auditor' where link_id = 3",
        [LINK_1_OK, LINK_2_OK, edited(3, 2), ALL_SEALED],
    ),
    "edit a link's chain hash": (
        "update audit.seal_log set chain_hash = sha256('forged') where link_id = 2",
        [LINK_1_OK, edited(2, 3), LINK_3_OK, ALL_SEALED],
    ),
    "delete a link": (
        "delete from audit.seal_log where link_id = 2",
        [LINK_1_OK,
         (2, None, "failed", 0, "link 2 is missing from the seal log"),
         (3, "seal", "failed", 2, "link 3 cannot be checked: the link before it is missing"),
         ALL_SEALED],
    ),
    "delete a link and its segments": (
        "delete from audit.seal_salt where segment_id = 2;"
        " delete from audit.seal_segment where link_id = 2;"
        " delete from audit.seal_log where link_id = 2",
        [LINK_1_OK,
         (2, None, "failed", 0, "link 2 is missing from the seal log"),
         (3, "seal", "failed", 2, "link 3 cannot be checked: the link before it is missing"),
         (None, "unsealed", "failed", 3,
          "3 rows in no seal that a seal should have covered (added; the first has id 7)")],
    ),
    "delete the last link, leaving its segments": (
        "delete from audit.seal_log where link_id = 3",
        [LINK_1_OK, LINK_2_OK,
         (3, None, "failed", 0, "link 3 is missing from the seal log (its segments remain)"),
         (None, "unsealed", "ok", 2, "2 rows not sealed yet")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_verify_catches_each_tamper_at_its_link(sealed: Db, tamper: str) -> None:
    statement, expected = TAMPERS[tamper]
    db = sealed
    db.run("begin")
    try:
        db.run(statement)
        assert verify(db) == expected
    finally:
        db.run("rollback")
    assert verify(db) == UNTOUCHED


def test_the_chain_hash_of_the_last_link_shows_a_chain_cut_short(sealed: Db) -> None:
    """Deleting the last link with everything it sealed leaves a shorter chain that holds:
    its rows read as not sealed yet. Only the head kept elsewhere shows it (the CLI prints
    it; a keyed seal's mac cannot be made without the key): verify's last chain hash is
    no longer that head."""
    db = sealed
    head = db.one("select chain_hash from audit.verify() where link_id = 3")
    db.run(
        "delete from audit.seal_salt where segment_id = 3;"
        " delete from audit.seal_segment where link_id = 3;"
        " delete from audit.seal_log where link_id = 3"
    )
    assert verify(db) == [
        LINK_1_OK,
        LINK_2_OK,
        (None, "unsealed", "ok", 2, "2 rows not sealed yet"),
    ]
    assert head not in [hash_ for (hash_,) in db.rows("select chain_hash from audit.verify()")]


def test_a_sealed_row_changed_and_its_segment_rehashed_breaks_the_chain(sealed: Db) -> None:
    """The superuser recomputes the segment's hash with its salt: the link's text changes,
    so the link fails; recomputing the link's chain hash too moves the failure to the next
    link, and so on to the last, whose hash no longer matches the head kept elsewhere."""
    db = sealed
    db.run("""update audit.record_version set record = '{"id": 3, "v": "forged"}' where id = 3""")
    db.run(
        "update audit.seal_segment s set hash = x.hash from audit.seal_salt t,"
        " audit.segment_state(1, t.salt) x where s.segment_id = 1 and t.segment_id = 1"
    )
    assert verify(db) == [edited(1, 5), LINK_2_OK, LINK_3_OK, ALL_SEALED]
    db.run(
        "update audit.seal_log set chain_hash = sha256(decode(repeat('00', 32), 'hex')"
        " || convert_to(audit.seal_link_text(1), 'UTF8')) where link_id = 1"
    )
    assert verify(db) == [LINK_1_OK, edited(2, 3), LINK_3_OK, ALL_SEALED]


# --- the long transaction ----------------------------------------------------------------


@pytest.fixture
def tracked(db_url: str, engine: sa.Engine) -> Iterator[Db]:
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run("create table public.item (id int primary key, v text)")
        db.run("select audit.enable_tracking('public.item')")
        yield db


def every_row_sealed_once(db: Db) -> None:
    assert db.rows(
        "select r.id, (select count(*) from audit.seal_segment s, unnest(s.ids) g"
        " where r.id <@ g) from audit.record_version r order by r.id"
    ) == [(id_, 1) for (id_,) in db.rows("select id from audit.record_version order by id")]
    assert db.one("select sum(row_count) from audit.seal_segment") == db.one(
        "select count(*) from audit.record_version"
    )


def test_a_long_transactions_rows_are_sealed_once_after_it_commits(
    tracked: Db, db_url: str
) -> None:
    db = tracked
    db.run("insert into public.item values (1, 'a'), (2, 'b')")  # ids 1, 2
    with connect(db_url) as long:
        long.conn.autocommit = False
        long.run("insert into public.item values (100, 'long'), (101, 'long')")  # ids 3, 4
        db.run("insert into public.item values (3, 'c')")  # id 5
        # The long transaction's rows are not visible: sealed later, by its transaction id.
        assert seal(db) == [(1, 3, 1)]
        pending = db.one("select body -> 'pending' from audit.seal_log where link_id = 1")
        long_xid = long.one("select pg_current_xact_id()::text")
        assert long_xid in pending
        assert db.one("select ids::text from audit.seal_segment") == '{"[1,3)","[5,6)"}'
        long.run("insert into public.item values (102, 'long')")  # id 6
        db.run("insert into public.item values (4, 'd')")  # id 7
        assert seal(db) == [(2, 1, 1)]
        assert verify(db)[-1] == (None, "unsealed", "ok", 0, "0 rows not sealed yet")
        long.conn.commit()
    # Its rows are below the last seal's ids, and waiting: not added.
    assert verify(db) == [
        (1, "seal", "ok", 3, None),
        (2, "seal", "ok", 1, None),
        (None, "unsealed", "ok", 3, "3 rows not sealed yet"),
    ]
    assert seal(db) == [(3, 3, 1)]
    assert db.one("select ids::text from audit.seal_segment where link_id = 3") == (
        '{"[3,5)","[6,7)"}'
    )
    db.run("insert into public.item values (5, 'e')")
    assert seal(db) == [(4, 1, 1)]
    assert seal(db) == []
    every_row_sealed_once(db)
    assert verify(db) == [
        (1, "seal", "ok", 3, None),
        (2, "seal", "ok", 1, None),
        (3, "seal", "ok", 3, None),
        (4, "seal", "ok", 1, None),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]


def test_a_transaction_that_writes_only_after_a_seal_began_is_sealed_once(
    tracked: Db, db_url: str
) -> None:
    """Running (but without a transaction id) when the seal reads the running
    transactions; its rows, written later, carry its start time, before that seal."""
    db = tracked
    db.run("insert into public.item values (1, 'a')")
    with connect(db_url) as late:
        late.conn.autocommit = False
        late.run("select 1")  # begun: its rows will carry this start time
        assert seal(db) == [(1, 1, 1)]
        late.run("insert into public.item values (100, 'late')")
        db.run("insert into public.item values (2, 'b')")
        assert seal(db) == [(2, 1, 1)]
        late.conn.commit()
    assert seal(db) == [(3, 1, 1)]
    every_row_sealed_once(db)
    assert [status for _, _, status, _, _ in verify(db)] == ["ok"] * 4


def test_a_seal_inside_a_writing_transaction_leaves_its_own_rows_for_the_next(
    tracked: Db,
) -> None:
    db = tracked
    db.run("insert into public.item values (1, 'a')")
    db.run("begin")
    db.run("insert into public.item values (2, 'b')")
    assert seal(db) == [(1, 1, 1)]
    db.run("commit")
    assert seal(db) == [(2, 1, 1)]
    every_row_sealed_once(db)
    assert verify(db)[-1] == (None, "unsealed", "ok", 0, "0 rows not sealed yet")
