"""Support for the TimescaleDB tests: the server that preloads it, fresh databases on it, and
the layout of the audit hypertable (shared by test_timescale*.py, test_adoption.py and
test_context.py; the fixtures built on these live in conftest.py).

Where TimescaleDB is not installed for the server's PostgreSQL (as in CI), starting such a
server skips the test that asked for it, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from audit_helpers import Db, apply_sql, missing_server_extension

from hyper_audit_alembic.devtools.throwaway_postgres import (
    FAST_SETTINGS,
    ThrowawayPostgres,
)

#: Audit schema version 2's index of transaction ids (steps/2.sql), on every layout: not
#: unique, so create_hypertable keeps it (on each chunk); lookups by transaction need no ts.
TRANSACTION_ID_INDEX = (
    "CREATE INDEX record_version_transaction_id ON audit.record_version USING btree"
    " (transaction_id) WHERE (transaction_id IS NOT NULL)"
)

#: The indexes of audit.record_version on a hypertable: composite with ts second, no BRIN.
HYPERTABLE_INDEXES = [
    "CREATE INDEX record_version_old_record_id ON audit.record_version USING btree"
    " (old_record_id, ts) WHERE (old_record_id IS NOT NULL)",
    "CREATE INDEX record_version_record_id ON audit.record_version USING btree"
    " (record_id, ts) WHERE (record_id IS NOT NULL)",
    "CREATE INDEX record_version_table_oid ON audit.record_version USING btree (table_oid, ts)",
    TRANSACTION_ID_INDEX,
]


def missing_timescaledb() -> str | None:
    """Why the TimescaleDB tests cannot run here, or None when they can."""
    return missing_server_extension("TimescaleDB", "timescaledb", "timescaledb.so")


def timescale_server(**settings: str) -> Iterator[ThrowawayPostgres]:
    """A server that preloads timescaledb (for a fixture to yield from); skips the test
    where TimescaleDB is missing."""
    missing = missing_timescaledb()
    if missing:
        pytest.skip(missing)
    all_settings = {
        **FAST_SETTINGS,
        "shared_preload_libraries": "timescaledb",
        "timescaledb.telemetry_level": "off",
        **settings,
    }
    with ThrowawayPostgres(settings=all_settings) as server:
        yield server


_counter = 0


@contextmanager
def fresh_database(server: ThrowawayPostgres) -> Iterator[str]:
    """A new database on ``server`` (without the extension created); yields its URL."""
    global _counter
    _counter += 1
    name = f"ts_test_{_counter}"
    apply_sql(server, "postgres", f"create database {name}")
    try:
        yield server.url(name)
    finally:
        apply_sql(server, "postgres", f"drop database {name} with (force)")


def record_version_indexes(db: Db) -> list[str]:
    return [
        row[0]
        for row in db.rows(
            "select pg_get_indexdef(indexrelid) from pg_index"
            " where indrelid = 'audit.record_version'::regclass order by 1"
        )
    ]
