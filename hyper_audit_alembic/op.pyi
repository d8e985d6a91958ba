# Alembic's op directives plus the ones the hyper_audit plugin registers.
from collections.abc import Iterable, Mapping
from types import EllipsisType
from typing import Literal

from alembic.op import *  # noqa: F403

def install_audit(
    *,
    timescale: Mapping[str, str | None] | bool | None = None,
    partitioned: Mapping[str, str | int | None] | bool | None = None,
) -> None:
    """Install the audit schema: audit.record_version, its functions and triggers.

    timescale={"chunk_interval": ..., "compress_after": ..., "retention": ...} or
    partitioned={"interval": ..., "premake": ..., "retention": ..., "retention_action": ...}
    choose how the history is kept for years.
    """

def uninstall_audit(*, keep_history: bool = False, drop_history: bool = False) -> None:
    """Stop all tracking and remove the audit functions; history only by explicit choice."""

def upgrade_audit(*, from_version: int, to_version: int) -> None:
    """Upgrade the audit schema between released versions; history and tracking stay."""

def downgrade_audit(*, from_version: int, to_version: int) -> None:
    """Take the audit schema back to an earlier version; recorded rows and values stay."""

def adopt_audit() -> None:
    """Take over an existing supa_audit / hyper_audit install: rows, ids, tracked tables."""

def unadopt_audit() -> None:
    """Refuses with an error: an adoption cannot be undone (the message says what to do)."""

def enable_tracking(
    table_name: str,
    *,
    schema: str | None = None,
    exclude: Iterable[str] = (),
    skip_unchanged: bool = False,
    on_replica: bool = False,
) -> None:
    """Record every INSERT, UPDATE, DELETE and TRUNCATE of a table. Idempotent.

    exclude: columns never recorded; skip_unchanged: no audit row for an UPDATE that changes
    no recorded column; on_replica: also record the changes a logical replication subscriber
    applies (row-level ENABLE ALWAYS triggers). Without options, a tracked table keeps its
    options.
    """

def alter_tracking(
    table_name: str,
    *,
    schema: str | None = None,
    exclude: Iterable[str] = (),
    skip_unchanged: bool = False,
    on_replica: bool = False,
    existing_exclude: Iterable[str] = (),
    existing_skip_unchanged: bool = False,
    existing_on_replica: bool = False,
) -> None:
    """Track a table with these options instead of the existing_ ones."""

def disable_tracking(table_name: str, *, schema: str | None = None) -> None:
    """Stop recording changes of a table; its history stays. Idempotent."""

def set_audit_timescale_policy(
    *,
    chunk_interval: str | EllipsisType = ...,
    compress_after: str | EllipsisType | None = ...,
    retention: str | EllipsisType | None = ...,
    existing_chunk_interval: str | EllipsisType | None = ...,
    existing_compress_after: str | EllipsisType | None = ...,
    existing_retention: str | EllipsisType | None = ...,
) -> None:
    """Change the TimescaleDB options of the audit hypertable; None removes a policy."""

def convert_audit_to_hypertable(
    *,
    chunk_interval: str | None = None,
    compress_after: str | None = None,
    retention: str | None = None,
) -> None:
    """Make a plain audit table a TimescaleDB hypertable, keeping every row."""

def set_audit_partitioning(
    *,
    interval: str | EllipsisType = ...,
    premake: int | EllipsisType = ...,
    retention: str | EllipsisType | None = ...,
    retention_action: Literal["detach", "drop"] | EllipsisType = ...,
    existing_interval: str | EllipsisType = ...,
    existing_premake: int | EllipsisType = ...,
    existing_retention: str | EllipsisType | None = ...,
    existing_retention_action: Literal["detach", "drop"] | EllipsisType = ...,
) -> None:
    """Change the settings of the partitioned audit table (applied by maintain_partitions)."""
