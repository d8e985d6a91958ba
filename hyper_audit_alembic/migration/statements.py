"""The SQL each audit operation emits, assembled from the files of :mod:`hyper_audit_alembic.sql`.

Every value an operation was given goes into a template of ``sql/`` (``sql.filled``), as
a SQL literal quoted by SQLAlchemy; every decision that needs the database's state is made
by the emitted SQL when it runs, so an operation emits the same text online and in
offline (``--sql``) mode. No SQL is written here, only which files run in which order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import sql
from ..sqltext import qualified_name
from .catalog import TRACKED_BY_MIGRATION
from .options import PARTITION_DEFAULTS, UNCHANGED, TimescaleOptions

#: The lookup indexes of a plain audit table that sql/indexes.sql makes again, composite
#: with ts, when the table becomes a hypertable (a test checks them against a plain
#: install's indexes).
MANAGED_INDEXES = (
    "record_version_ts",
    "record_version_record_id",
    "record_version_old_record_id",
    "record_version_table_oid",
)


def track_table(
    table_name: str,
    schema: str | None,
    *,
    exclude: list[str] | None,
    skip_unchanged: bool | None,
    on_replica: bool | None,
) -> str:
    """The DO block of op.enable_tracking() / op.alter_tracking(): its checks, then the
    call (sql/track_table.sql). None: the option is not passed (the table keeps its own)."""
    return sql.filled(
        "track_table",
        {
            "target": qualified_name(table_name, schema),
            "exclude": exclude,
            "skip_unchanged": skip_unchanged,
            "on_replica": on_replica,
            "tracked_by_migration": TRACKED_BY_MIGRATION,
        },
    )


def snapshot_table(table_name: str, schema: str | None) -> str:
    """The DO block of op.enable_tracking(..., snapshot=True) after the tracking: one
    SNAPSHOT audit row per row the table holds (sql/snapshot_table.sql)."""
    return sql.filled("snapshot_table", {"target": qualified_name(table_name, schema)})


def untrack_table(table_name: str, schema: str | None) -> str:
    """The DO block of op.disable_tracking(): its checks, then the call
    (sql/untrack_table.sql)."""
    return sql.filled("untrack_table", {"target": qualified_name(table_name, schema)})


def uninstall_statements(keep_history: bool, drop_history: bool) -> list[str]:
    """op.uninstall_audit(): refuse if history exists (unless told what to do with it),
    remove the functions, drop the history unless it is kept."""
    steps = [] if keep_history or drop_history else ["refuse_if_history"]
    steps += ["retention_to_policy", "remove_functions"]
    if not keep_history:
        steps.append("drop_history")
    return [statement for step in steps for statement in sql.statements(step)]


def _timescale_block(caller: str, phase: str, options: TimescaleOptions) -> str:
    return sql.filled(
        "timescale_policy",
        {
            "caller": caller,
            "phase": phase,
            **options.placeholders(),
            "managed_indexes": list(MANAGED_INDEXES),
        },
    )


def _timescale_around(body: list[str]) -> list[str]:
    """The statements between the plan function's creation and its removal."""
    create, drop = sql.statements("timescale_plan")
    return [create, *body, drop]


def _partition_settings(
    caller: str, installing: bool, values: Mapping[str, Any]
) -> dict[str, sql.Value]:
    filled: dict[str, sql.Value] = {"caller": caller, "installing": installing}
    for name in PARTITION_DEFAULTS:
        given = name in values and values[name] is not UNCHANGED
        filled[f"set_{name}"] = given
        filled[name] = values[name] if given else None
    return filled


def partitioned_refresh() -> str:
    """The block that runs partitioned.sql again where the partitioned layout is in use
    (sql/partitioned_refresh.sql): an upgrade replays functions/ only, and the layout's
    functions (audit.maintain_partitions()) change with the audit schema too."""
    return sql.filled("partitioned_refresh", {"definitions": list(sql.statements("partitioned"))})


def upgrade_statements(from_version: int, to_version: int) -> list[str]:
    """op.upgrade_audit(): the steps and functions (sql.upgrade_statements()), then, when it
    ends at the current version, the partitioned layout's functions where it is in use."""
    upgrade = sql.upgrade_statements(from_version, to_version)
    if upgrade and to_version == sql.SCHEMA_VERSION:
        return [*upgrade, partitioned_refresh()]
    return upgrade


def install_statements(
    timescale: TimescaleOptions | None, partitioned: Mapping[str, Any] | None
) -> list[str]:
    """op.install_audit(): the install (sql.install_statements()) in the layout asked for.

    Without options over an existing partitioned layout, it brings the layout's functions
    up to date too (:func:`partitioned_refresh`), as an upgrade does."""
    caller = "op.install_audit"
    install = sql.install_statements()  # every step, the indexes, every function
    if partitioned is not None:
        settings = _partition_settings(caller, True, {**PARTITION_DEFAULTS, **partitioned})
        return [
            *sql.statements("partitioned_check"),
            *install,
            *sql.statements("partitioned"),
            sql.filled("partitioned_settings", settings),
            *sql.statements("partitioned_convert"),
        ]
    if timescale is not None:
        # A plain audit table is converted before the install, with the chunk interval;
        # a new one is created and converted by the install (indexes.sql); then the policies.
        return _timescale_around(
            [
                _timescale_block(caller, "install", timescale),
                *install,
                _timescale_block(caller, "policy", timescale),
            ],
        )
    return [*install, partitioned_refresh()]


def timescale_policy_statements(caller: str, options: TimescaleOptions) -> list[str]:
    """op.set_audit_timescale_policy(): the options given, the others left as they are."""
    return _timescale_around([_timescale_block(caller, "policy", options)])


def partitioning_statements(caller: str, new: Mapping[str, Any]) -> list[str]:
    """op.set_audit_partitioning(): the settings given, the others left as they are."""
    return [sql.filled("partitioned_settings", _partition_settings(caller, False, new))]


def convert_to_hypertable_statements(caller: str, options: TimescaleOptions) -> list[str]:
    """op.convert_audit_to_hypertable(): the conversion, the indexes, the policies."""
    # indexes.sql, run after the conversion, makes the lookup indexes (composite with
    # ts) the way a fresh install has them.
    return _timescale_around(
        [
            _timescale_block(caller, "convert", options),
            *sql.statements("indexes"),
            _timescale_block(caller, "policy", options),
        ],
    )
