"""Autogenerate comparison: the flagged tables against the database's audit state.

A schema-level comparator (first in line) hides the ``audit`` schema from Alembic's own
table comparison and keeps the first place for ``install_audit``; a table-level
comparator finds the tracking to enable or disable (adding the install in that first
place when the audit schema is missing), and a last schema-level comparator lifts those
operations out of the table's ``ModifyTableOps`` to the top level: ``enable_tracking``
right after the table's create or alter block, ``disable_tracking`` right before it (and
so before a ``drop_table``). Downgrades mirror that, and with ``render_as_batch=True`` no
audit operation lands inside a ``with op.batch_alter_table(...)`` block.

Each finding is logged at INFO like Alembic's own ("Detected added table 'account'"),
through a logger under ``alembic``, so the ``[logger_alembic]`` of every alembic.ini shows it.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alembic.operations import MigrateOperation
from alembic.operations.ops import ModifyTableOps
from alembic.util import CommandError, PriorityDispatchResult, warn
from sqlalchemy import Table

from . import sql
from .catalog import NO_OPTIONS, AuditState, TrackingOptions, read_audit_state
from .flag import describe, flagged_by, is_flagged, owning_mappers, tracking_options
from .layouts import (
    UNCHANGED,
    SetAuditTimescalePolicyOp,
    _AlterLayoutOp,
    compare_layout,
    declared_install_options,
)
from .lifecycle import AdoptAuditOp, UpgradeAuditOp
from .ops import (
    AlterTrackingOp,
    DisableTrackingOp,
    EnableTrackingOp,
    InstallAuditOp,
    _TrackingOp,
)

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps

AUDIT_SCHEMA = "audit"
PLUGIN_NAME = "hyper_audit"

#: Beside Alembic's own ``alembic.autogenerate.compare.tables``: shown wherever Alembic's are.
log = logging.getLogger("alembic.autogenerate.compare.hyper_audit")


@dataclass
class _Run:
    """What one autogenerate run learned, read once and shared by every table."""

    state: AuditState
    default_schema: str
    flagged: dict[tuple[str | None, str], Table]
    described: dict[tuple[str | None, str], str]
    flagged_by: dict[tuple[str | None, str], str]
    #: The options each flagged table's flag asks for.
    options: dict[tuple[str | None, str], TrackingOptions]
    # Where op.install_audit() goes if a table comparator finds a table to track.
    install_into: UpgradeOps | None = None
    #: op.install_audit()'s layout options, as env.py declares them (layouts.py).
    install_options: dict[str, Any] = field(default_factory=dict)
    install_at: int = 0
    install_added: bool = False

    def need_installed(self) -> None:
        """Put op.install_audit() first (once) when the audit schema is not installed."""
        if self.state.installed or self.install_added or self.install_into is None:
            return
        self.install_into.ops.insert(self.install_at, InstallAuditOp(**self.install_options))
        self.install_added = True
        log.info("Detected audit schema install")


_runs: weakref.WeakKeyDictionary[AutogenContext, _Run] = weakref.WeakKeyDictionary()


class ResyncTrackingOp(EnableTrackingOp):
    """``op.enable_tracking`` for a tracked table whose primary key changed.

    Written as ``op.enable_tracking(...)`` both ways: undoing a re-sync is not to stop
    tracking.
    """

    def reverse(self) -> EnableTrackingOp:  # type: ignore[override]  # on purpose
        return EnableTrackingOp(self.table_name, schema=self.schema)


def _metadata_tables(autogen_context: AutogenContext) -> list[Table]:
    return list(autogen_context.sorted_tables)


def _run(autogen_context: AutogenContext) -> _Run:
    found = _runs.get(autogen_context)
    if found is not None:
        return found
    dialect = autogen_context.dialect
    assert dialect is not None
    tables = _metadata_tables(autogen_context)
    owners = owning_mappers(tables)
    flagged_tables = [t for t in tables if is_flagged(t, owners.get(t))]
    if dialect.name != "postgresql":
        if flagged_tables:
            names = ", ".join(describe(t, owners.get(t)) for t in flagged_tables)
            raise CommandError(
                f"hyper_audit: {names} flagged for auditing, but the database is "
                f"{dialect.name!r}; the audit trail needs PostgreSQL. Run autogenerate "
                f"against PostgreSQL, or remove the __audited__ flags."
            )
        state = AuditState()
        default_schema = ""
    else:
        assert autogen_context.connection is not None
        state = read_audit_state(autogen_context.connection)
        default_schema = str(dialect.default_schema_name)
    found = _Run(
        state=state,
        default_schema=default_schema,
        flagged={(t.schema, t.name): t for t in flagged_tables},
        described={(t.schema, t.name): describe(t, owners.get(t)) for t in flagged_tables},
        flagged_by={(t.schema, t.name): flagged_by(t, owners.get(t)) for t in flagged_tables},
        options={(t.schema, t.name): tracking_options(t, owners.get(t)) for t in flagged_tables},
        install_options=declared_install_options(autogen_context.opts),
    )
    _runs[autogen_context] = found
    return found


def compare_audit_schema(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Reserve the first place for op.install_audit(); hide the audit schema.

    Whether the install is needed is decided by the table comparator: exactly when it
    enables tracking of some table (after Alembic's include_schemas, include_name and
    include_object filters had their say), so the two can never disagree.
    """
    run = _run(autogen_context)
    # The audit schema's own objects are ours, and extensions' schemas (TimescaleDB keeps
    # the audit chunks in one) are theirs: never compared, never dropped.
    schemas.discard(AUDIT_SCHEMA)
    schemas.difference_update(run.state.extension_schemas)
    run.install_into = upgrade_ops
    run.install_at = len(upgrade_ops.ops)
    lifecycle_op = _lifecycle_op(run.state)
    if lifecycle_op is not None:
        # First, where op.install_audit() would go; it brings the current version.
        upgrade_ops.ops.insert(run.install_at, lifecycle_op)
        run.install_added = True
        if isinstance(lifecycle_op, UpgradeAuditOp):
            log.info(
                "Detected audit schema upgrade from version %d to %d",
                lifecycle_op.from_version,
                lifecycle_op.to_version,
            )
        else:
            log.info("Detected audit schema of the reference design, to adopt")
    if run.state.installed:
        # The layout options env.py declares against the database's (layouts.py).
        found = len(upgrade_ops.ops)
        compare_layout(autogen_context, upgrade_ops)
        for layout_op in upgrade_ops.ops[found:]:
            if isinstance(layout_op, _AlterLayoutOp):
                log.info(
                    "Detected audit %s options changed: %s",
                    "TimescaleDB"
                    if isinstance(layout_op, SetAuditTimescalePolicyOp)
                    else "partitioning",
                    ", ".join(n for n in layout_op.names if layout_op.new[n] is not UNCHANGED),
                )
    return PriorityDispatchResult.CONTINUE


def place_tracking_ops(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Lift the tracking operations out of the tables' ``ModifyTableOps``.

    Runs last, once Alembic's table comparison has put each table's ``ModifyTableOps``
    in place. A ``ModifyTableOps`` renders as a ``with op.batch_alter_table(...)`` block
    under ``render_as_batch=True``, which is no place for an audit operation: each goes
    to the top level, ``disable_tracking`` right before the table's block (tracking stops
    before the table changes or is dropped), the others right after it (tracking starts,
    or re-reads the key, once the table is created or altered). The downgrade, made by
    reversing this list, mirrors it.
    """
    placed: list[MigrateOperation] = []
    for upgrade_op in upgrade_ops.ops:
        tracking = (
            [o for o in upgrade_op.ops if isinstance(o, _TrackingOp)]
            if isinstance(upgrade_op, ModifyTableOps)
            else []
        )
        if not tracking:
            placed.append(upgrade_op)
            continue
        assert isinstance(upgrade_op, ModifyTableOps)
        upgrade_op.ops = [o for o in upgrade_op.ops if not isinstance(o, _TrackingOp)]
        placed += [o for o in tracking if isinstance(o, DisableTrackingOp)]
        if not upgrade_op.is_empty():
            placed.append(upgrade_op)
        placed += [o for o in tracking if not isinstance(o, DisableTrackingOp)]
    upgrade_ops.ops[:] = placed
    return PriorityDispatchResult.CONTINUE


def _lifecycle_op(state: AuditState) -> MigrateOperation | None:
    """op.adopt_audit() over the reference design, op.upgrade_audit() over an older version."""
    if state.reference:
        return AdoptAuditOp()
    if not state.installed or state.version is None or state.version == sql.SCHEMA_VERSION:
        return None
    if state.version > sql.SCHEMA_VERSION:
        raise CommandError(
            f"hyper_audit: the database's audit schema is version {state.version}, newer than "
            f"the version {sql.SCHEMA_VERSION} this release of hyper_audit_alembic installs. "
            f"Upgrade hyper_audit_alembic to the release that installed it before running "
            f"autogenerate against this database."
        )
    return UpgradeAuditOp(state.version, sql.SCHEMA_VERSION)


def _untracking_advice(schema: str | None, tname: str, shown: str) -> str:
    call = f"op.disable_tracking({tname!r}" + (f", schema={schema!r})" if schema else ")")
    return (
        f"hyper_audit: table {shown} is tracked by the audit trail, but no model flags it for "
        f"auditing and no migration enabled its tracking (audit.enable_tracking() was called "
        f"outside the migrations). Autogenerate leaves it tracked. To keep it tracked, flag "
        f"its model (__audited__ = True, or info={{'audited': True}} on a Table); to stop "
        f"tracking it, write {call} in a migration."
    )


def compare_table_tracking(
    autogen_context: AutogenContext,
    modify_table_ops: ModifyTableOps,
    schema: str | None,
    tname: str,
    conn_table: Table | None,
    metadata_table: Table | None,
) -> PriorityDispatchResult:
    """Enable tracking of a flagged table, disable it for one no longer flagged."""
    if autogen_context.dialect is None or autogen_context.dialect.name != "postgresql":
        return PriorityDispatchResult.CONTINUE
    run = _run(autogen_context)
    real_schema = schema or run.default_schema
    shown = tname if schema is None else f"{schema}.{tname}"  # as Alembic's messages show it
    tracked = run.state.is_tracked(real_schema, tname)
    # Tracked by the reference design's triggers: op.adopt_audit() moves it to ours.
    adopted = (real_schema, tname) in run.state.reference_tracked
    wanted = (
        metadata_table is not None and (metadata_table.schema, metadata_table.name) in run.flagged
    )
    if wanted and not tracked and not adopted:
        assert metadata_table is not None
        if not metadata_table.primary_key.columns:
            key = (metadata_table.schema, metadata_table.name)
            raise CommandError(
                f"hyper_audit: {run.described[key]} is flagged for auditing but has no primary "
                f"key. The audit trail identifies each record by its primary key: add one "
                f"(primary_key=True on its id column), or remove {run.flagged_by[key]}."
            )
        run.need_installed()
        options = run.options[(metadata_table.schema, metadata_table.name)]
        modify_table_ops.ops.append(
            EnableTrackingOp(
                tname,
                schema=schema,
                exclude=options.exclude,
                skip_unchanged=options.skip_unchanged,
                on_replica=options.on_replica,
            )
        )
        log.info("Detected tracking enabled for table %r", shown)
    elif (tracked or adopted) and not wanted:
        if metadata_table is None or (real_schema, tname) in run.state.marked:
            # The table goes, or its flag was removed: tracking stops (undone with the
            # options it had).
            existing = run.state.options_of(real_schema, tname)
            modify_table_ops.ops.append(
                DisableTrackingOp(
                    tname,
                    schema=schema,
                    exclude=existing.exclude,
                    skip_unchanged=existing.skip_unchanged,
                    on_replica=existing.on_replica,
                )
            )
            log.info("Detected tracking disabled for table %r", shown)
        else:
            # Tracked by hand: reported, not silently untracked.
            warn(_untracking_advice(schema, tname, shown))
    elif tracked and _options_differ(run, metadata_table, real_schema, tname):
        # One op that changes the options (and re-reads the key columns); undone by the old.
        assert metadata_table is not None
        options = run.options[(metadata_table.schema, metadata_table.name)]
        existing = run.state.options_of(real_schema, tname)
        modify_table_ops.ops.append(
            AlterTrackingOp(
                tname,
                schema=schema,
                exclude=options.exclude,
                skip_unchanged=options.skip_unchanged,
                on_replica=options.on_replica,
                existing_exclude=existing.exclude,
                existing_skip_unchanged=existing.skip_unchanged,
                existing_on_replica=existing.on_replica,
            )
        )
        log.info("Detected tracking options changed for table %r", shown)
    elif tracked and conn_table is not None:
        # The triggers carry the key column names. A key changed without the event
        # trigger (it needs a superuser) leaves them stale: enable_tracking re-reads it.
        key_columns = {column.name for column in conn_table.primary_key.columns}
        if key_columns and key_columns != set(run.state.tracked[(real_schema, tname)]):
            modify_table_ops.ops.append(ResyncTrackingOp(tname, schema=schema))
            log.info("Detected tracking key columns changed for table %r", shown)
    return PriorityDispatchResult.CONTINUE


def _options_differ(run: _Run, metadata_table: Table | None, real_schema: str, tname: str) -> bool:
    if metadata_table is None:
        return False
    wanted = run.options.get((metadata_table.schema, metadata_table.name), NO_OPTIONS)
    return wanted != run.state.options_of(real_schema, tname)
