"""Seals in every layout of the history, and retention that stays honest (issue 15).

The seal chain (audit.seal(), audit.verify()) works the same over the plain table, the
partitioned layout and a TimescaleDB hypertable with compressed chunks, after a pg_dump and
restore, and over the rows of an adopted reference install. Retention drops history only
through audit.note_expiry(): audit.maintain_partitions() (partitioned layout) and the
audit-owned TimescaleDB job audit.apply_retention() write an 'expiry' link first, in the
same subtransaction, so verify reports those rows 'expired', never 'failed'; a partition or
chunk dropped by hand fails. Databases made partitioned (or given a TimescaleDB retention
policy) by an earlier release get this behaviour from the upgrade to version 5, online and
through offline SQL applied with psql.

The TimescaleDB tests are skipped where TimescaleDB is missing; the partitioned layout runs
the same SQL (note_expiry, the expiry links, verify) everywhere.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from audit_helpers import (
    Db,
    apply_sql,
    catalog_snapshot,
    connect,
    extra_database,
    offline_sql,
    run_online,
)

from hyper_audit_alembic import sql
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres
from hyper_audit_alembic.migration.statements import install_statements

# --- helpers -----------------------------------------------------------------------------

RELEASED_LAYOUTS = Path(__file__).parent / "released_layouts"


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    with connect(db_url) as db:
        yield db


def seal(db: Db) -> list[tuple[Any, ...]]:
    """(link, rows sealed, segments) of the new seal; [] when there was nothing to seal."""
    return db.rows("select link_id, rows_sealed, segments from audit.seal()")


def verify(db: Db) -> list[tuple[Any, ...]]:
    """(link, kind, status, rows verified, detail) per link, and the 'unsealed' row."""
    return db.rows("select link_id, kind, status, rows_verified, detail from audit.verify()")


def all_ok(links: int, rows: list[int], waiting: int = 0) -> list[tuple[Any, ...]]:
    """What verify says of an untouched chain of seal links."""
    assert len(rows) == links
    return [(n + 1, "seal", "ok", rows[n], None) for n in range(links)] + [
        (None, "unsealed", "ok", waiting, f"{waiting} rows not sealed yet")
    ]


def add_history(db: Db, *timestamps: str) -> None:
    """Audit rows written at the given times (as an old history would hold them)."""
    for n, ts in enumerate(timestamps):
        db.run(
            "insert into audit.record_version (record_id, op, ts, table_oid, table_schema,"
            " table_name, record) values (%s, 'INSERT', %s, 424242, 'public', 'old', %s)",
            [str(uuid.uuid4()), ts, json.dumps({"n": n})],
        )


def track_item(db: Db) -> None:
    db.run("create table public.item (id int primary key, v text)")
    db.run("select audit.enable_tracking('public.item')")


def write_items(db: Db, first: int, last: int) -> None:
    db.run(
        "insert into public.item select g, 'v' || g from generate_series(%s, %s) g",
        [first, last],
    )


def segments(db: Db) -> list[tuple[Any, ...]]:
    """(segment, link, ids, rows) of every segment."""
    return db.rows(
        "select segment_id, link_id, ids::text, row_count from audit.seal_segment"
        " order by segment_id"
    )


def expiry_bodies(db: Db) -> list[tuple[Any, ...]]:
    """(link, relation, rows, unsealed rows, segments) of every expiry link."""
    return db.rows(
        "select link_id, body ->> 'relation', (body ->> 'rows')::int,"
        " (body ->> 'unsealed_rows')::int, body -> 'segments'"
        " from audit.seal_log where kind = 'expiry' order by link_id"
    )


def every_row_sealed_once(db: Db) -> None:
    """Each audit row lies in exactly one segment, and the segments count them all."""
    assert (
        db.one(
            "select count(*) from audit.record_version r where (select count(*)"
            " from audit.seal_segment s, unnest(s.ids) g where r.id <@ g) <> 1"
        )
        == 0
    )
    assert db.one("select sum(row_count) from audit.seal_segment") == db.one(
        "select count(*) from audit.record_version"
    )


def install_partitioned(**options: Any) -> Any:
    def script(operations: Any) -> None:
        operations.install_audit(partitioned=options or True)

    return script


def set_partitioning(**options: Any) -> Any:
    def script(operations: Any) -> None:
        operations.set_audit_partitioning(**options)

    return script


def maintain(db: Db) -> list[tuple[Any, ...]]:
    return db.rows("select * from audit.maintain_partitions()")


# --- the partitioned layout --------------------------------------------------------------

#: Verify's detail for an expiry link of one partition of the test's old history.
MARCH = (
    "1 rows of audit.record_version_p20210301 (2021-03-15T10:00:00+00:00 to "
    "2021-03-15T10:00:00+00:00) removed by retention"
)
MAY = (
    "2 rows of audit.record_version_p20210501 (2021-05-02T00:00:00+00:00 to "
    "2021-05-03T00:00:00+00:00) removed by retention"
)


def partitioned_history(db: Db, engine: sa.Engine) -> None:
    """A partitioned install with old rows (March and May 2021, in their partitions) and
    three rows of now; sealed as link 1: segment 1 the old rows, segment 2 the new."""
    run_online(engine, install_partitioned())
    add_history(db, "2021-03-15 10:00+00", "2021-05-02 00:00+00", "2021-05-03 00:00+00")
    maintain(db)
    track_item(db)
    write_items(db, 1, 3)
    assert seal(db) == [(1, 6, 3)]
    assert segments(db) == [
        (1, 1, '{"[1,2)"}', 1),
        (2, 1, '{"[2,4)"}', 2),
        (3, 1, '{"[4,7)"}', 3),
    ]
    assert verify(db) == all_ok(1, [6])


@pytest.mark.parametrize("action", ["drop", "detach"])
def test_partition_retention_is_recorded_and_verifies_as_expired(
    action: str, db: Db, engine: sa.Engine
) -> None:
    partitioned_history(db, engine)
    write_items(db, 4, 4)  # not sealed yet: stays so

    run_online(engine, set_partitioning(retention="1 year", retention_action=action))
    done = "dropped" if action == "drop" else "detached"
    assert maintain(db) == [
        (done, "audit.record_version_p20210301", None),
        (done, "audit.record_version_p20210501", None),
    ]
    assert expiry_bodies(db) == [
        (2, "audit.record_version_p20210301", 1, 0, [{"rows": 1, "segment": 1}]),
        (3, "audit.record_version_p20210501", 2, 0, [{"rows": 2, "segment": 2}]),
    ]
    assert verify(db) == [
        (
            1,
            "seal",
            "expired",
            3,
            "segment 1: 1 rows removed by retention; segment 2: 2 rows removed by retention",
        ),
        (2, "expiry", "expired", 0, MARCH),
        (3, "expiry", "expired", 0, MAY),
        (None, "unsealed", "ok", 1, "1 row not sealed yet"),
    ]
    # The chain goes on: the next seal covers the row written since.
    assert seal(db) == [(4, 1, 1)]
    assert verify(db)[3:] == [
        (4, "seal", "ok", 1, None),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]


def test_a_segment_split_over_partitions_expires_in_part(db: Db, engine: sa.Engine) -> None:
    """Rows sealed while in the default partition move into two partitions; retention
    drops one: the segment is expired, its other rows left unverifiable, nothing failed."""
    run_online(engine, install_partitioned())
    add_history(db, "2021-03-15 10:00+00", "2021-05-02 00:00+00", "2021-05-03 00:00+00")
    assert seal(db) == [(1, 3, 1)]  # all three in the default partition: one segment
    assert maintain(db)[:2] == [
        ("drained", "audit.record_version_p20210301", 1),
        ("drained", "audit.record_version_p20210501", 2),
    ]
    assert verify(db) == all_ok(1, [3])
    db.run("drop table audit.record_version_p20210501")  # not retention: the log has no link
    assert verify(db) == [
        (1, "seal", "failed", 0, 'segment 1 (ids {"[1,4)"}): 2 rows missing (sealed 3, found 1)'),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]


def test_retention_of_part_of_a_segment_leaves_the_rest_unverifiable(
    db: Db, engine: sa.Engine
) -> None:
    run_online(engine, install_partitioned())
    add_history(db, "2021-03-15 10:00+00", "2021-05-02 00:00+00", "2021-05-03 00:00+00")
    assert seal(db) == [(1, 3, 1)]
    maintain(db)
    # Retention keeps May (less than the age), drops March.
    db.run("update audit.settings set retention = now() - timestamptz '2021-04-15 00:00+00'")
    assert maintain(db) == [("detached", "audit.record_version_p20210301", None)]
    assert verify(db) == [
        (
            1,
            "seal",
            "expired",
            0,
            "segment 1: 1 rows removed by retention, 2 rows left unverifiable",
        ),
        (2, "expiry", "expired", 0, MARCH),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]


def test_a_partition_dropped_by_hand_fails_verify(db: Db, engine: sa.Engine) -> None:
    partitioned_history(db, engine)
    db.run("drop table audit.record_version_p20210501")
    assert verify(db) == [
        (1, "seal", "failed", 4, 'segment 2 (ids {"[2,4)"}): 2 rows missing (sealed 2, found 0)'),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]
    # Detached by hand: the same (its rows are no longer in the history).
    db.run("alter table audit.record_version detach partition audit.record_version_p20210301")
    assert verify(db)[0] == (
        1,
        "seal",
        "failed",
        3,
        'segment 1 (ids {"[1,2)"}): 1 rows missing (sealed 1, found 0)',
    )


def test_a_forged_row_with_a_sealed_id_in_another_partition_fails(
    db: Db, engine: sa.Engine
) -> None:
    """The partitioned table's key is (id, ts): a copy of a sealed row under the same id
    and another time goes into another partition without touching a constraint."""
    partitioned_history(db, engine)
    db.run(
        "insert into audit.record_version select id, record_id, old_record_id, op,"
        " ts + interval '2 months', table_oid, table_schema, table_name, record, old_record,"
        " actor, context, transaction_id from audit.record_version where id = 1"
    )
    assert db.one("select count(*) from audit.record_version where id = 1") == 2
    assert verify(db) == [
        (1, "seal", "failed", 5, 'segment 1 (ids {"[1,2)"}): 1 rows added (sealed 1, found 2)'),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]


def test_a_drop_that_cannot_happen_takes_its_expiry_link_back(
    db: Db, db_url: str, engine: sa.Engine
) -> None:
    """The expiry link and the drop are one subtransaction: when the drop's lock is not
    granted, the run says postponed and the seal log holds no link for it."""
    partitioned_history(db, engine)
    run_online(engine, set_partitioning(retention="1 year", retention_action="drop"))
    db.run("alter function audit.maintain_partitions() set lock_timeout = '200ms'")
    with connect(db_url) as reader:
        reader.conn.autocommit = False
        reader.rows("select count(*) from audit.record_version")  # holds ACCESS SHARE
        assert maintain(db) == [("postponed", "audit.record_version_p20210301", None)]
        assert db.one("select count(*) from audit.seal_log") == 1
        reader.conn.rollback()
    assert [action for action, _, _ in maintain(db)] == ["dropped", "dropped"]
    assert [kind for _, kind, *_ in verify(db)] == ["seal", "expiry", "expiry", "unsealed"]


def test_plain_layout_seals_and_verifies(db: Db, engine: sa.Engine) -> None:
    run_online(engine, lambda op: op.install_audit())
    track_item(db)
    assert seal(db) == []
    assert verify(db) == [(None, "unsealed", "ok", 0, "0 rows not sealed yet")]
    write_items(db, 1, 5)
    assert seal(db) == [(1, 5, 1)]
    db.run("update public.item set v = 'w'")
    assert seal(db) == [(2, 5, 1)]
    assert verify(db) == all_ok(2, [5, 5])
    every_row_sealed_once(db)


# --- upgrades of an existing partitioned layout ------------------------------------------


def install_released_partitioned(engine: sa.Engine, url: str) -> None:
    """Audit schema version 4 made partitioned as release 4 did it (its SQL frozen in
    released_layouts/partitioned_4.sql), with old rows in their partitions."""
    from test_upgrades import install_released

    install_released(engine, 4)
    install = set(sql.install_statements())
    layout = [s for s in install_statements(None, {"interval": "1 month"}) if s not in install]
    with connect(url) as db:
        for statement in layout:
            db.run(statement)
        # Release 4's own partitioned.sql over this release's: its maintain_partitions().
        db.run((RELEASED_LAYOUTS / "partitioned_4.sql").read_text(encoding="utf-8"))
        assert "note_expiry" not in db.one(
            "select pg_get_functiondef('audit.maintain_partitions()'::regprocedure)"
        )
        add_history(db, "2021-03-15 10:00+00", "2021-05-02 00:00+00", "2021-05-03 00:00+00")
        maintain(db)
        track_item(db)
        write_items(db, 1, 3)


def layout_functions(db: Db) -> list[tuple[Any, ...]]:
    return [
        row
        for row in catalog_snapshot(db)["functions"]
        if row[1] in ("maintain_partitions", "create_partition", "partitions")
    ]


@pytest.fixture(scope="module")
def fresh_partitioned_functions(pg_server: ThrowawayPostgres) -> list[tuple[Any, ...]]:
    with extra_database(pg_server, f"fresh_{uuid.uuid4().hex[:12]}") as name:
        engine = sa.create_engine(pg_server.url(name))
        try:
            run_online(engine, install_partitioned(interval="1 month"))
            with connect(pg_server.url(name)) as fresh:
                return layout_functions(fresh)
        finally:
            engine.dispose()


def upgrade_online(engine: sa.Engine, pg_server: ThrowawayPostgres, name: str) -> None:
    run_online(engine, lambda op: op.upgrade_audit(from_version=4, to_version=sql.SCHEMA_VERSION))


def upgrade_offline(engine: sa.Engine, pg_server: ThrowawayPostgres, name: str) -> None:
    text = offline_sql(lambda op: op.upgrade_audit(from_version=4, to_version=sql.SCHEMA_VERSION))
    apply_sql(pg_server, name, text)


def install_over(engine: sa.Engine, pg_server: ThrowawayPostgres, name: str) -> None:
    run_online(engine, lambda op: op.install_audit())


UPGRADES = {"online": upgrade_online, "offline": upgrade_offline, "install": install_over}


@pytest.mark.parametrize("how", list(UPGRADES))
def test_upgrade_of_a_partitioned_layout_brings_the_recorded_retention(
    how: str,
    db: Db,
    db_url: str,
    engine: sa.Engine,
    pg_server: ThrowawayPostgres,
    fresh_partitioned_functions: list[tuple[Any, ...]],
) -> None:
    install_released_partitioned(engine, db_url)
    rows = db.audit_rows()
    name = sa.engine.make_url(db_url).database
    assert name is not None

    UPGRADES[how](engine, pg_server, name)

    assert db.one("select version from audit.schema_version") == sql.SCHEMA_VERSION
    assert db.audit_rows() == rows
    assert layout_functions(db) == fresh_partitioned_functions
    assert seal(db) == [(1, 6, 3)]
    run_online(engine, set_partitioning(retention="1 year", retention_action="drop"))
    assert [action for action, _, _ in maintain(db)] == ["dropped", "dropped"]
    assert verify(db) == [
        (
            1,
            "seal",
            "expired",
            3,
            "segment 1: 1 rows removed by retention; segment 2: 2 rows removed by retention",
        ),
        (2, "expiry", "expired", 0, MARCH),
        (3, "expiry", "expired", 0, MAY),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]


def test_offline_upgrade_of_a_partitioned_layout_equals_the_online_one(
    db: Db, db_url: str, engine: sa.Engine, pg_server: ThrowawayPostgres
) -> None:
    install_released_partitioned(engine, db_url)
    with extra_database(pg_server, f"offline_{uuid.uuid4().hex[:12]}") as name:
        other = sa.create_engine(pg_server.url(name))
        try:
            install_released_partitioned(other, pg_server.url(name))
        finally:
            other.dispose()
        upgrade_online(engine, pg_server, "")
        upgrade_offline(engine, pg_server, name)
        with connect(pg_server.url(name)) as offline:
            online = catalog_snapshot(db)
            assert catalog_snapshot(offline) == online
            assert online["schema_version"] == [(sql.SCHEMA_VERSION,)]


def test_downgrade_to_4_keeps_a_working_maintenance(db: Db, db_url: str, engine: sa.Engine) -> None:
    """Version 4 has no note_expiry: the maintenance of version 5 drops without it."""
    install_released_partitioned(engine, db_url)
    run_online(engine, lambda op: op.upgrade_audit(from_version=4, to_version=5))
    run_online(engine, lambda op: op.downgrade_audit(from_version=5, to_version=4))
    assert db.one("select to_regprocedure('audit.note_expiry(regclass)')") is None
    run_online(engine, set_partitioning(retention="1 year", retention_action="drop"))
    assert [action for action, _, _ in maintain(db)] == ["dropped", "dropped"]
    assert db.one("select count(*) from audit.record_version") == 3


# --- TimescaleDB: compressed chunks and the retention job ---------------------------------


@pytest.fixture
def ts_db(ts_url: str) -> Iterator[Db]:
    with connect(ts_url) as db:
        db.run("create extension timescaledb")
        yield db


#: Old rows in two daily chunks (13 on 2021-03-15, 17 on 2021-03-16).
OLD_HOURS = 30


def add_hourly_history(db: Db) -> None:
    db.run(
        "insert into audit.record_version (record_id, op, ts, table_oid, table_schema,"
        " table_name, record) select gen_random_uuid(), 'INSERT', timestamptz"
        " '2021-03-15 10:00+00' + g * interval '1 hour', 424242, 'public', 'old',"
        " jsonb_build_object('n', g) from generate_series(1, %s) g",
        [OLD_HOURS],
    )


def install_timescale(engine: sa.Engine, **options: Any) -> None:
    """op.install_audit(timescale=...); a retention job is paused in the same transaction
    (TimescaleDB's scheduler would run it at any moment): the tests run it with run_job."""

    def script(operations: Any) -> None:
        operations.install_audit(timescale={"chunk_interval": "1 day", **options})
        operations.execute(
            "select alter_job(job_id, scheduled => false) from timescaledb_information.jobs"
            " where proc_schema = 'audit' and proc_name = 'apply_retention'"
        )

    run_online(engine, script)


def chunks(db: Db) -> list[tuple[Any, ...]]:
    """(chunk, compressed) oldest first."""
    return db.rows(
        "select quote_ident(chunk_schema) || '.' || quote_ident(chunk_name), is_compressed"
        " from timescaledb_information.chunks where hypertable_schema = 'audit'"
        " and hypertable_name = 'record_version' order by range_start"
    )


def compress_old_chunks(db: Db) -> None:
    db.run(
        "alter table audit.record_version set (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'table_oid', timescaledb.compress_orderby = 'ts')"
    )
    db.run(
        "select compress_chunk(c) from show_chunks('audit.record_version',"
        " older_than => interval '1 year') c"
    )


def retention_job(db: Db) -> tuple[Any, ...]:
    (job,) = db.rows(
        "select job_id, config, schedule_interval::text, scheduled"
        " from timescaledb_information.jobs where proc_schema = 'audit'"
        " and proc_name = 'apply_retention'"
    )
    return job


def test_hypertable_seals_before_and_after_compression(ts_db: Db, ts_engine: sa.Engine) -> None:
    install_timescale(ts_engine)
    add_hourly_history(ts_db)
    track_item(ts_db)
    write_items(ts_db, 1, 3)
    assert seal(ts_db) == [(1, 33, 3)]  # one segment per chunk
    compress_old_chunks(ts_db)
    first, second, _ = chunks(ts_db)
    assert (first[1], second[1]) == (True, True)
    assert verify(ts_db) == all_ok(1, [33])

    # Rows arriving in a compressed chunk, sealed from it.
    db = ts_db
    db.run(
        "insert into audit.record_version (record_id, op, ts, table_oid, table_schema,"
        " table_name, record) values (gen_random_uuid(), 'INSERT', '2021-03-15 12:30+00',"
        " 424242, 'public', 'old', '{\"late\": true}')"
    )
    write_items(db, 4, 5)
    assert seal(db) == [(2, 3, 2)]
    assert verify(db) == all_ok(2, [33, 3])
    db.run(
        "select compress_chunk(c, if_not_compressed => true) from show_chunks("
        "'audit.record_version', older_than => interval '1 year') c"
    )
    assert verify(db) == all_ok(2, [33, 3])
    # Decompressed again: the same rows, the same hashes.
    db.run(
        "select decompress_chunk(c) from show_chunks('audit.record_version',"
        " older_than => interval '1 year') c"
    )
    assert verify(db) == all_ok(2, [33, 3])
    every_row_sealed_once(db)

    # A row changed inside a compressed chunk fails its segment.
    compress_old_chunks(db)
    db.run("update audit.record_version set record = '{\"n\": 99}' where id = 2")
    assert verify(db)[0] == (
        1,
        "seal",
        "failed",
        20,
        'segment 1 (ids {"[1,14)"}): rows changed (13 rows, the hash differs)',
    )


def test_hypertable_retention_job_records_each_chunk(ts_db: Db, ts_engine: sa.Engine) -> None:
    install_timescale(ts_engine, retention="1 year")
    job_id, config, schedule, scheduled = retention_job(ts_db)
    assert (config, schedule, scheduled) == ({"drop_after": "1 year"}, "1 day", False)
    add_hourly_history(ts_db)
    track_item(ts_db)
    write_items(ts_db, 1, 3)
    assert seal(ts_db) == [(1, 33, 3)]
    compress_old_chunks(ts_db)
    (first, _), (second, _), current = chunks(ts_db)

    ts_db.run(f"call run_job({int(job_id)})")

    assert chunks(ts_db) == [current]
    assert expiry_bodies(ts_db) == [
        (2, first, 13, 0, [{"rows": 13, "segment": 1}]),
        (3, second, 17, 0, [{"rows": 17, "segment": 2}]),
    ]
    assert verify(ts_db) == [
        (
            1,
            "seal",
            "expired",
            3,
            "segment 1: 13 rows removed by retention; segment 2: 17 rows removed by retention",
        ),
        (
            2,
            "expiry",
            "expired",
            0,
            f"13 rows of {first} (2021-03-15T11:00:00+00:00 to 2021-03-15T23:00:00+00:00)"
            " removed by retention",
        ),
        (
            3,
            "expiry",
            "expired",
            0,
            f"17 rows of {second} (2021-03-16T00:00:00+00:00 to 2021-03-16T16:00:00+00:00)"
            " removed by retention",
        ),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]
    # Nothing older left: a second run changes nothing.
    ts_db.run(f"call run_job({int(job_id)})")
    assert ts_db.one("select count(*) from audit.seal_log") == 3


def test_the_retention_job_runs_from_timescaledbs_scheduler(
    ts_db: Db, ts_engine: sa.Engine
) -> None:
    install_timescale(ts_engine, retention="1 year")
    add_hourly_history(ts_db)
    assert seal(ts_db) == [(1, 30, 2)]
    job_id = retention_job(ts_db)[0]
    ts_db.run(f"select alter_job({int(job_id)}, scheduled => true, next_start => now())")
    for _ in range(300):
        if ts_db.one("select count(*) from audit.seal_log") == 3:
            break
        time.sleep(0.1)
    assert [row[:3] for row in verify(ts_db)] == [
        (1, "seal", "expired"),
        (2, "expiry", "expired"),
        (3, "expiry", "expired"),
        (None, "unsealed", "ok"),
    ]
    assert ts_db.one("select count(*) from audit.record_version") == 0


def test_a_chunk_dropped_by_hand_fails_verify(ts_db: Db, ts_engine: sa.Engine) -> None:
    install_timescale(ts_engine)
    add_hourly_history(ts_db)
    assert seal(ts_db) == [(1, 30, 2)]
    compress_old_chunks(ts_db)
    (first, _), _ = chunks(ts_db)
    ts_db.run(f"drop table {first}")
    assert verify(ts_db) == [
        (
            1,
            "seal",
            "failed",
            17,
            'segment 1 (ids {"[1,14)"}): 13 rows missing (sealed 13, found 0)',
        ),
        (None, "unsealed", "ok", 0, "0 rows not sealed yet"),
    ]
    # drop_chunks() by hand: the same.
    ts_db.run("select drop_chunks('audit.record_version', older_than => interval '1 year')")
    assert verify(ts_db)[0] == (
        1,
        "seal",
        "failed",
        0,
        'segment 1 (ids {"[1,14)"}): 13 rows missing (sealed 13, found 0)',
    )


def test_the_retention_options_and_the_comparator_read_the_job(
    ts_db: Db, ts_engine: sa.Engine
) -> None:
    from alembic_project import autogenerate

    install_timescale(ts_engine, retention="1 year")
    metadata = sa.MetaData()
    with ts_engine.connect() as connection:
        same = autogenerate(
            connection, metadata, hyper_audit={"timescale": {"retention": "12 mons"}}
        )
        other = autogenerate(
            connection, metadata, hyper_audit={"timescale": {"retention": "2 years"}}
        )
    assert same == ([], [])
    assert other[0] == [
        "op.set_audit_timescale_policy(retention='2 years', existing_retention='1 year')"
    ]
    run_online(ts_engine, lambda op: op.set_audit_timescale_policy(retention="2 years"))
    assert retention_job(ts_db)[1:3] == ({"drop_after": "2 years"}, "1 day")
    run_online(ts_engine, lambda op: op.set_audit_timescale_policy(retention=None))
    assert (
        ts_db.rows(
            "select proc_name from timescaledb_information.jobs"
            " where proc_schema = 'audit' or proc_name = 'policy_retention'"
        )
        == []
    )


def install_released_timescale(engine: sa.Engine, url: str) -> None:
    """Audit schema version 4 as a hypertable with TimescaleDB's retention policy, as
    op.install_audit(timescale={"retention": "1 year"}) of release 4 made it (paused, in
    the same transaction, so that it drops nothing while the test looks)."""
    from test_upgrades import install_released

    install_released(engine, 4)
    with connect(url) as db:
        db.run(
            "select alter_job(add_retention_policy('audit.record_version',"
            " drop_after => interval '1 year', schedule_interval => interval '6 hours'),"
            " scheduled => false)"
        )
        add_hourly_history(db)


@pytest.mark.parametrize("how", ["online", "offline"])
def test_upgrade_turns_timescaledbs_retention_policy_into_the_job(
    how: str, ts_db: Db, ts_url: str, ts_engine: sa.Engine, ts_server: ThrowawayPostgres
) -> None:
    install_released_timescale(ts_engine, ts_url)
    name = sa.engine.make_url(ts_url).database
    assert name is not None

    (upgrade_online if how == "online" else upgrade_offline)(ts_engine, ts_server, name)

    assert (
        ts_db.one(
            "select count(*) from timescaledb_information.jobs where proc_name = 'policy_retention'"
        )
        == 0
    )
    job_id, config, schedule, scheduled = retention_job(ts_db)
    assert (config, schedule, scheduled) == ({"drop_after": "1 year"}, "06:00:00", False)
    assert seal(ts_db) == [(1, 30, 1)]  # one chunk of 7 days (release 4's default)
    ts_db.run(f"call run_job({int(job_id)})")
    assert [row[:3] for row in verify(ts_db)] == [
        (1, "seal", "expired"),
        (2, "expiry", "expired"),
        (None, "unsealed", "ok"),
    ]


def test_offline_upgrade_of_a_hypertable_equals_the_online_one(
    ts_db: Db, ts_url: str, ts_engine: sa.Engine, ts_server: ThrowawayPostgres
) -> None:
    install_released_timescale(ts_engine, ts_url)
    with extra_database(ts_server, f"offline_{uuid.uuid4().hex[:12]}") as name:
        with connect(ts_server.url(name)) as offline:
            offline.run("create extension timescaledb")
            other = sa.create_engine(ts_server.url(name))
            try:
                install_released_timescale(other, ts_server.url(name))
            finally:
                other.dispose()
            upgrade_online(ts_engine, ts_server, "")
            upgrade_offline(ts_engine, ts_server, name)
            assert catalog_snapshot(offline) == catalog_snapshot(ts_db)
            assert retention_job(offline)[1:] == retention_job(ts_db)[1:]


def test_downgrade_gives_timescaledbs_retention_policy_back(
    ts_db: Db, ts_url: str, ts_engine: sa.Engine
) -> None:
    install_released_timescale(ts_engine, ts_url)
    run_online(ts_engine, lambda op: op.upgrade_audit(from_version=4, to_version=5))
    run_online(ts_engine, lambda op: op.downgrade_audit(from_version=5, to_version=4))
    assert ts_db.rows(
        "select proc_name::text, config - 'hypertable_id', schedule_interval::text, scheduled"
        " from timescaledb_information.jobs where proc_schema = 'audit'"
        " or hypertable_name = 'record_version'"
    ) == [("policy_retention", {"drop_after": "1 year"}, "06:00:00", False)]
    assert ts_db.one("select to_regprocedure('audit.apply_retention(integer, jsonb)')") is None


def test_uninstall_keeping_history_keeps_the_retention_asked_for(
    ts_db: Db, ts_engine: sa.Engine
) -> None:
    install_timescale(ts_engine, retention="1 year")
    run_online(ts_engine, lambda op: op.uninstall_audit(keep_history=True))
    assert ts_db.rows(
        "select proc_name::text, config - 'hypertable_id', scheduled"
        " from timescaledb_information.jobs where proc_schema = 'audit'"
        " or hypertable_name = 'record_version'"
    ) == [("policy_retention", {"drop_after": "1 year"}, False)]
    # A later install makes it the job again.
    run_online(ts_engine, lambda op: op.install_audit())
    assert retention_job(ts_db)[1:] == ({"drop_after": "1 year"}, "1 day", False)


# --- pg_dump and restore -----------------------------------------------------------------


def dump(server: ThrowawayPostgres, name: str, target: Path) -> None:
    assert server.bin_dir is not None
    done = subprocess.run(
        [
            str(server.bin_dir / "pg_dump"),
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            server.user,
            "-Fc",
            "-f",
            str(target),
            name,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def restore(server: ThrowawayPostgres, name: str, source: Path) -> None:
    assert server.bin_dir is not None
    done = subprocess.run(
        [
            str(server.bin_dir / "pg_restore"),
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            server.user,
            "--exit-on-error",
            "-d",
            name,
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def sealed_state(db: Db) -> list[tuple[Any, ...]]:
    """The chain and what verify recomputes of it."""
    return db.rows(
        "select l.link_id, l.chain_hash, v.chain_hash, v.status, v.rows_verified"
        " from audit.seal_log l join audit.verify() v using (link_id) order by l.link_id"
    )


def test_seals_survive_pg_dump_and_restore(
    db: Db, db_url: str, engine: sa.Engine, pg_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    run_online(engine, lambda op: op.install_audit())
    track_item(db)
    write_items(db, 1, 5)
    db.run("update public.item set v = 'w' where id <= 2")
    assert seal(db) == [(1, 7, 1)]
    db.run("delete from public.item where id = 5")
    assert seal(db) == [(2, 1, 1)]
    before = sealed_state(db)
    name = sa.engine.make_url(db_url).database
    assert name is not None
    dump(pg_server, name, tmp_path / "audit.dump")

    with extra_database(pg_server, f"restored_{uuid.uuid4().hex[:12]}") as restored_name:
        restore(pg_server, restored_name, tmp_path / "audit.dump")
        with connect(pg_server.url(restored_name)) as restored:
            # The tracked table has another oid there: the canonical text leaves it out.
            assert restored.one("select 'public.item'::regclass::oid") != db.one(
                "select 'public.item'::regclass::oid"
            )
            assert sealed_state(restored) == before
            assert verify(restored) == all_ok(2, [7, 1])
            write_items(restored, 10, 11)
            assert seal(restored) == [(3, 2, 1)]
            assert verify(restored) == all_ok(3, [7, 1, 2])
            every_row_sealed_once(restored)


def test_seals_of_a_hypertable_survive_pg_dump_and_restore(
    ts_db: Db, ts_url: str, ts_engine: sa.Engine, ts_server: ThrowawayPostgres, tmp_path: Path
) -> None:
    install_timescale(ts_engine, retention="1 year")
    add_hourly_history(ts_db)
    track_item(ts_db)
    write_items(ts_db, 1, 3)
    assert seal(ts_db) == [(1, 33, 3)]
    compress_old_chunks(ts_db)
    before = sealed_state(ts_db)
    name = sa.engine.make_url(ts_url).database
    assert name is not None
    dump(ts_server, name, tmp_path / "audit.dump")

    with extra_database(ts_server, f"restored_{uuid.uuid4().hex[:12]}") as restored_name:
        with connect(ts_server.url(restored_name)) as restored:
            restored.run("create extension timescaledb")
            restored.run("select timescaledb_pre_restore()")
            restore(ts_server, restored_name, tmp_path / "audit.dump")
            restored.run("select timescaledb_post_restore()")
            assert [compressed for _, compressed in chunks(restored)] == [True, True, False]
            assert sealed_state(restored) == before
            assert verify(restored) == all_ok(1, [33])
            write_items(restored, 10, 11)
            assert seal(restored) == [(2, 2, 1)]
            assert verify(restored) == all_ok(2, [33, 2])
            # The retention job came along (paused, as it was): it records what it drops.
            job_id, config, _, scheduled = retention_job(restored)
            assert (config, scheduled) == ({"drop_after": "1 year"}, False)
            restored.run(f"call run_job({int(job_id)})")
            assert [row[2] for row in verify(restored)] == [
                "expired",
                "ok",
                "expired",
                "expired",
                "ok",
            ]


# --- adoption of a reference install -------------------------------------------------------


def test_adoption_seals_the_rows_of_the_reference_install(db: Db, engine: sa.Engine) -> None:
    from test_adoption import build_reference, write_later

    build_reference(db, "plain")
    reference_rows = db.one("select count(*) from audit.record_version")
    run_online(engine, lambda op: op.adopt_audit())
    # The reference keeps no transaction ids: its rows have none.
    assert db.one("select count(*) from audit.record_version where transaction_id is null") == (
        reference_rows
    )

    assert seal(db) == [(1, reference_rows, 1)]
    assert verify(db) == all_ok(1, [reference_rows])
    write_later(db)
    assert seal(db) == [(2, 2, 1)]
    assert verify(db) == all_ok(2, [reference_rows, 2])
    every_row_sealed_once(db)
