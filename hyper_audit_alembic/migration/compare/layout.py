"""The audit table's layout: the options env.py declares against the database's.

``context.configure(..., hyper_audit={"timescale": {...}})`` (or ``{"partitioned":
{...}}``) declares how ``audit.record_version`` keeps years of history. Over an installed
audit schema, this schema-level comparator (first in line, after :mod:`.lifecycle`)
proposes ``op.set_audit_timescale_policy()`` / ``op.set_audit_partitioning()`` for the
options that differ, and refuses with the fix when the declared layout is not the
table's (converting it is a migration to write by hand). With nothing installed,
``op.install_audit()`` carries the options (:mod:`.run`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alembic.util import CommandError, DispatchPriority, PriorityDispatchResult

from ..catalog import LayoutState, read_citus, read_layout
from ..ops import (
    AlterLayoutOp,
    DistributeAuditOp,
    SetAuditPartitioningOp,
    SetAuditTimescalePolicyOp,
)
from ..options import PARTITION_DEFAULTS, UNCHANGED, declared_citus, declared_layout
from .run import log, run_of

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps
    from alembic.runtime.plugins import Plugin


def setup(plugin: Plugin) -> None:
    plugin.add_autogenerate_comparator(
        compare_layout, "schema", "audit", priority=DispatchPriority.FIRST
    )


def compare_layout(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Propose the change of layout options that env.py declares; an error where the
    declared layout is not the database's."""
    if run_of(autogen_context).state.installed:
        found = len(upgrade_ops.ops)
        _propose_layout_changes(autogen_context, upgrade_ops)
        _propose_distribution(autogen_context, upgrade_ops)
        for layout_op in upgrade_ops.ops[found:]:
            if isinstance(layout_op, AlterLayoutOp):
                log.info(
                    "Detected audit %s options changed: %s",
                    "TimescaleDB"
                    if isinstance(layout_op, SetAuditTimescalePolicyOp)
                    else "partitioning",
                    ", ".join(n for n in layout_op.names if layout_op.new[n] is not UNCHANGED),
                )
    return PriorityDispatchResult.CONTINUE


def _differences(
    wanted: Mapping[str, Any], state: LayoutState, intervals: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    new: dict[str, Any] = {}
    existing: dict[str, Any] = {}
    for name, value in wanted.items():
        now = state.current.get(name)
        same = (
            (value is None and now is None)
            or (value is not None and now is not None and state.normalized[value] == now)
            if name in intervals
            else value == now
        )
        if not same:
            new[name] = value
            existing[name] = now
    return new, existing


def _propose_layout_changes(autogen_context: AutogenContext, upgrade_ops: UpgradeOps) -> None:
    """Propose the change of layout options that env.py declares; an error where the
    declared layout is not the database's (that conversion is a migration to write)."""
    timescale, partitioned = declared_layout(autogen_context.opts)
    if timescale is None and partitioned is None:
        return
    assert autogen_context.connection is not None
    if timescale is not None:
        wanted: dict[str, Any] = timescale.given()
        intervals = set(wanted)
    else:
        assert partitioned is not None
        wanted = {**PARTITION_DEFAULTS, **partitioned}
        intervals = {"interval", "retention"}
    texts = sorted({v for k, v in wanted.items() if k in intervals and v is not None})
    state = read_layout(autogen_context.connection, texts)
    if state.layout == "missing":
        return  # nothing installed: op.install_audit() carries the options
    where = f"env.py declares hyper_audit={{'{'timescale' if timescale else 'partitioned'}': ...}}"
    if timescale is not None:
        if state.layout != "hypertable":
            if state.layout == "partitioned":
                reason = (
                    "audit.record_version is natively partitioned, which TimescaleDB cannot convert"
                )
            elif state.timescale_installed:
                reason = "audit.record_version is not a hypertable"
            else:
                reason = "the timescaledb extension is not installed in this database"
            raise CommandError(
                f"hyper_audit: {where}, but {reason}. Convert the audit table in a migration "
                f"written by hand (create extension timescaledb, then "
                f"op.convert_audit_to_hypertable(...), which keeps every row), or remove the "
                f"'timescale' options from env.py."
            )
        new, existing = _differences(wanted, state, intervals)
        if new:
            upgrade_ops.ops.append(SetAuditTimescalePolicyOp(new, existing))
        return
    if state.layout != "partitioned":
        raise CommandError(
            f"hyper_audit: {where}, but audit.record_version is "
            f"{'a hypertable' if state.layout == 'hypertable' else 'not partitioned'}. "
            f"Convert the audit table in a migration written by hand "
            f"(op.install_audit(partitioned={{...}}) converts a plain audit table, keeping every "
            f"row), or remove the 'partitioned' options from env.py."
        )
    new, existing = _differences(wanted, state, intervals)
    if new:
        upgrade_ops.ops.append(SetAuditPartitioningOp(new, existing))


def _propose_distribution(autogen_context: AutogenContext, upgrade_ops: UpgradeOps) -> None:
    """op.distribute_audit() where env.py declares ``hyper_audit={"citus": True}`` and the
    installed audit table is not distributed yet; an error where Citus is missing. A
    distributed audit table that env.py does not declare is left alone (undistributing is
    a migration to write by hand)."""
    if not declared_citus(autogen_context.opts):
        return
    assert autogen_context.connection is not None
    citus_installed, distributed = read_citus(autogen_context.connection)
    if not citus_installed:
        raise CommandError(
            "hyper_audit: env.py declares hyper_audit={'citus': True}, but the citus extension "
            "is not installed in this database. Create it (and add the workers) first, or "
            "remove 'citus' from env.py."
        )
    if not distributed:
        upgrade_ops.ops.append(DistributeAuditOp())
        log.info("Detected audit table to distribute over the Citus cluster")
