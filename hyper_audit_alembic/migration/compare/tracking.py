"""Which tables to track: the table-level comparator.

For each table Alembic compares: enable tracking of a flagged table that is not tracked
(adding ``op.install_audit()`` first when nothing is installed), disable it for one
whose flag was removed or that is dropped (never for one tracked by hand: that is a
warning with the fix), change the options of one whose flag asks for others, and re-read
the key columns of one whose primary key changed. The ops go into the table's
``ModifyTableOps``; :mod:`.placement` moves them to the top level afterwards.

A flag's ``{"snapshot": True}`` asks for a complete trail: ``snapshot=True`` on the
``op.enable_tracking()`` of a table that exists already (a table created by the same
migration is empty, and tracking an empty table marks its trail complete), and
``op.enable_tracking(..., snapshot=True)`` for a tracked table whose trail is not
complete (tracked before the flag asked, or before audit schema version 4). Once the
snapshot ran, the trail is complete and nothing more is proposed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.operations.ops import ModifyTableOps
from alembic.util import CommandError, PriorityDispatchResult, warn
from sqlalchemy import Table

from ..ops import AlterTrackingOp, DisableTrackingOp, EnableTrackingOp, ResyncTrackingOp
from ..options import NO_OPTIONS
from .run import AutogenerateRun, log, run_of

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.runtime.plugins import Plugin


def setup(plugin: Plugin) -> None:
    plugin.add_autogenerate_comparator(compare_table_tracking, "table", "audit")


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
    run = run_of(autogen_context)
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
        key = (metadata_table.schema, metadata_table.name)
        options = run.options[key]
        # A table the migration creates is empty: tracking it marks its trail complete.
        snapshot = key in run.snapshot and conn_table is not None
        modify_table_ops.ops.append(
            EnableTrackingOp(
                tname,
                schema=schema,
                exclude=options.exclude,
                skip_unchanged=options.skip_unchanged,
                on_replica=options.on_replica,
                snapshot=snapshot,
            )
        )
        log.info("Detected tracking enabled for table %r%s", shown, " with a snapshot" * snapshot)
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
    if (
        tracked
        and wanted
        and metadata_table is not None
        and (metadata_table.schema, metadata_table.name) in run.snapshot
        and (real_schema, tname) not in run.state.complete
    ):
        _add_snapshot(modify_table_ops, tname, schema)
        log.info("Detected snapshot wanted for table %r", shown)
    return PriorityDispatchResult.CONTINUE


def _add_snapshot(modify_table_ops: ModifyTableOps, tname: str, schema: str | None) -> None:
    """``op.enable_tracking(..., snapshot=True)`` for a tracked table (undone by
    ``op.enable_tracking(...)``: the SNAPSHOT rows are history and stay); the re-sync
    proposed for it, if any, takes the snapshot instead."""
    for proposed in modify_table_ops.ops:
        if type(proposed) is ResyncTrackingOp:
            proposed.snapshot = True
            return
    modify_table_ops.ops.append(ResyncTrackingOp(tname, schema=schema, snapshot=True))


def _options_differ(
    run: AutogenerateRun, metadata_table: Table | None, real_schema: str, tname: str
) -> bool:
    if metadata_table is None:
        return False
    wanted = run.options.get((metadata_table.schema, metadata_table.name), NO_OPTIONS)
    return wanted != run.state.options_of(real_schema, tname)
