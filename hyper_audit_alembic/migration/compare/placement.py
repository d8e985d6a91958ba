"""Where the tracking ops go in the migration: beside the table's block, never inside it.

A schema-level comparator, last in line, once Alembic's table comparison has put each
table's ``ModifyTableOps`` in place: ``disable_tracking`` right before the table's block
(and so before a ``drop_table``), the others right after it. Downgrades, made by
reversing the list, mirror it, and with ``render_as_batch=True`` no audit operation lands
inside a ``with op.batch_alter_table(...)`` block.

It also orders the upgrade of the audit schema before the snapshots it makes possible:
PostgreSQL cannot write the label SNAPSHOT (added by the upgrade to version 4) in the
transaction that added it, so an ``op.upgrade_audit()`` to version 4 followed by a
snapshot is written ``commit=True`` (the upgrade commits, the snapshot runs after).
An ``op.adopt_audit()`` adds the label too: its snapshots are left to the next
autogenerate (the table is tracked and its trail not complete, so it proposes them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.operations import MigrateOperation
from alembic.operations.ops import ModifyTableOps
from alembic.util import DispatchPriority, PriorityDispatchResult

from ..ops import AdoptAuditOp, DisableTrackingOp, EnableTrackingOp, TrackingOp, UpgradeAuditOp
from .run import log

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps
    from alembic.runtime.plugins import Plugin


def setup(plugin: Plugin) -> None:
    plugin.add_autogenerate_comparator(
        place_tracking_ops, "schema", "audit", priority=DispatchPriority.LAST
    )


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
            [o for o in upgrade_op.ops if isinstance(o, TrackingOp)]
            if isinstance(upgrade_op, ModifyTableOps)
            else []
        )
        if not tracking:
            placed.append(upgrade_op)
            continue
        assert isinstance(upgrade_op, ModifyTableOps)
        upgrade_op.ops = [o for o in upgrade_op.ops if not isinstance(o, TrackingOp)]
        placed += [o for o in tracking if isinstance(o, DisableTrackingOp)]
        if not upgrade_op.is_empty():
            placed.append(upgrade_op)
        placed += [o for o in tracking if not isinstance(o, DisableTrackingOp)]
    upgrade_ops.ops[:] = placed
    _order_snapshots(placed)
    return PriorityDispatchResult.CONTINUE


#: The audit schema version that adds the label SNAPSHOT.
SNAPSHOT_VERSION = 4


def _order_snapshots(placed: list[MigrateOperation]) -> None:
    """Commit the upgrade that adds the label SNAPSHOT before the snapshots that write it."""
    snapshots = [o for o in placed if isinstance(o, EnableTrackingOp) and o.snapshot]
    if not snapshots:
        return
    for lifecycle_op in placed:
        if (
            isinstance(lifecycle_op, UpgradeAuditOp)
            and lifecycle_op.from_version < SNAPSHOT_VERSION <= lifecycle_op.to_version
        ):
            lifecycle_op.commit = True
            log.info("Detected snapshot after the audit schema upgrade: the upgrade commits first")
        elif isinstance(lifecycle_op, AdoptAuditOp):
            for snapshot in snapshots:
                snapshot.snapshot = False
                log.info(
                    "Snapshot of table %r left to the next autogenerate: op.adopt_audit() "
                    "must commit first",
                    snapshot.table_name,
                )
