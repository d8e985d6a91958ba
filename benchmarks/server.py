"""The throwaway PostgreSQL the benchmark measures on, and the few calls that talk to it.

Default durability on purpose (fsync, synchronous_commit and full_page_writes on; every
other setting as initdb leaves it): the numbers are what a user's server pays, not a
test server tuned for speed. Plain psycopg2 in autocommit, so each statement is timed
with its own commit.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg2  # type: ignore[import-untyped]

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

#: A psycopg2 connection (psycopg2 ships no type hints).
Connection = Any


def benchmark_server() -> ThrowawayPostgres:
    """The server every part runs on (not started): default durability."""
    return ThrowawayPostgres(settings={})  # {} keeps fsync, synchronous_commit, ... on


def timescale_server() -> ThrowawayPostgres:
    """A second server with TimescaleDB preloaded, for the hypertable layout."""
    return ThrowawayPostgres(
        settings={
            "shared_preload_libraries": "timescaledb",
            "timescaledb.telemetry_level": "off",
        }
    )


def connect(server: ThrowawayPostgres, dbname: str) -> Connection:
    conn = psycopg2.connect(host=server.host, port=server.port, user=server.user, dbname=dbname)
    conn.autocommit = True
    return conn


def execute(conn: Connection, sql: str, args: Any = None) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        if cur.description is not None:
            return cur.fetchall()
        return cur.rowcount


def scalar(conn: Connection, sql: str, args: Any = None) -> Any:
    rows = execute(conn, sql, args)
    return rows[0][0]


def recreate_database(server: ThrowawayPostgres, dbname: str) -> None:
    with contextlib.closing(connect(server, "postgres")) as admin:
        execute(admin, f'drop database if exists "{dbname}" with (force)')
        execute(admin, f'create database "{dbname}"')


def drop_database(server: ThrowawayPostgres, dbname: str) -> None:
    """Drop a part's database when it is done with it: frees the disk space."""
    with contextlib.closing(connect(server, "postgres")) as admin:
        execute(admin, f'drop database if exists "{dbname}" with (force)')
