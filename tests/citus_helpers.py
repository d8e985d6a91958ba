"""Support for the Citus tests: a cluster of a coordinator and two workers on this machine
(three throwaway servers preloading citus), and fresh databases on it.

Where Citus is not installed for the server's PostgreSQL (as in CI), starting the cluster
skips the test that asked for it, with the reason (like timescale_helpers.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pytest
from audit_helpers import missing_server_extension

from hyper_audit_alembic.devtools.throwaway_postgres import (
    FAST_SETTINGS,
    ThrowawayPostgres,
)

#: Server settings of each node: citus preloaded; shard counts small so that a test's
#: statements touch several shards of each worker quickly.
CITUS_SETTINGS = {
    **FAST_SETTINGS,
    "shared_preload_libraries": "citus",
    "citus.shard_count": "4",
    "max_connections": "60",
    "max_prepared_transactions": "20",
    # The nodes connect to each other as the server account, whose HOME may be root's.
    "citus.node_conninfo": "sslmode=disable",
}


def missing_citus() -> str | None:
    """Why the Citus tests cannot run here, or None when they can."""
    return missing_server_extension("Citus", "citus", "citus.so")


def run_sql(server: ThrowawayPostgres, dbname: str, text: str) -> str:
    """Run SQL with psql on one node (stopping at the first error); its output."""
    done = server.psql(dbname, "-A", "-t", input=text)
    if done.returncode != 0:
        raise AssertionError(f"psql on port {server.port} failed:\n{done.stderr}")
    return done.stdout


@dataclass
class CitusCluster:
    """A coordinator and two workers, each a throwaway server preloading citus."""

    coordinator: ThrowawayPostgres
    workers: list[ThrowawayPostgres] = field(default_factory=list)
    _databases: int = 0

    @property
    def nodes(self) -> list[ThrowawayPostgres]:
        return [self.coordinator, *self.workers]

    def create_database(self) -> str:
        """A new database on every node with citus created, the workers added: its name."""
        self._databases += 1
        name = f"citus_test_{self._databases}"
        for node in self.nodes:
            run_sql(node, "postgres", f"create database {name}")
            run_sql(node, name, "create extension citus")
        run_sql(
            self.coordinator,
            name,
            f"select citus_set_coordinator_host('127.0.0.1', {self.coordinator.port});\n"
            + "".join(
                f"select citus_add_node('127.0.0.1', {worker.port});\n" for worker in self.workers
            ),
        )
        return name

    def drop_database(self, name: str) -> None:
        for node in self.nodes:
            run_sql(node, "postgres", f"drop database if exists {name} with (force)")


def citus_cluster() -> Iterator[CitusCluster]:
    """A running cluster (for a fixture to yield from); skips where Citus is missing."""
    missing = missing_citus()
    if missing:
        pytest.skip(missing)
    with ExitStack() as stack:
        servers = [
            stack.enter_context(ThrowawayPostgres(settings=dict(CITUS_SETTINGS))) for _ in range(3)
        ]
        yield CitusCluster(servers[0], servers[1:])


@contextmanager
def fresh_citus_database(cluster: CitusCluster) -> Iterator[str]:
    """A new database on every node of ``cluster``; yields its URL on the coordinator."""
    name = cluster.create_database()
    try:
        yield cluster.coordinator.url(name)
    finally:
        cluster.drop_database(name)
