"""Where the tracking ops go in the migration: beside the table's block, never inside it.

A schema-level comparator, last in line, once Alembic's table comparison has put each
table's ``ModifyTableOps`` in place: ``disable_tracking`` right before the table's block
(and so before a ``drop_table``), the others right after it. Downgrades, made by
reversing the list, mirror it, and with ``render_as_batch=True`` no audit operation lands
inside a ``with op.batch_alter_table(...)`` block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.operations import MigrateOperation
from alembic.operations.ops import ModifyTableOps
from alembic.util import DispatchPriority, PriorityDispatchResult

from ..ops import DisableTrackingOp, TrackingOp

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
    return PriorityDispatchResult.CONTINUE
