"""The audit schema as a whole: install, upgrade or adopt, first in the migration.

A schema-level comparator, first in line: it hides the ``audit`` schema (and the
schemas of extensions, where TimescaleDB keeps audit chunks) from Alembic's own table
comparison, keeps the first place of the upgrade for ``op.install_audit()`` (which the
table comparator, :mod:`.tracking`, fills when it finds a table to track and nothing is
installed), and puts ``op.upgrade_audit()`` there when the installed audit schema is
older than :data:`hyper_audit_alembic.sql.SCHEMA_VERSION`, or ``op.adopt_audit()`` when
it is the reference design's (supa_audit / hyper_audit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.operations import MigrateOperation
from alembic.util import CommandError, DispatchPriority, PriorityDispatchResult

from ... import sql
from ..catalog import AuditState
from ..ops import AdoptAuditOp, UpgradeAuditOp
from .run import AUDIT_SCHEMA, log, run_of

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps
    from alembic.runtime.plugins import Plugin


def setup(plugin: Plugin) -> None:
    plugin.add_autogenerate_comparator(
        compare_audit_schema, "schema", "audit", priority=DispatchPriority.FIRST
    )


def compare_audit_schema(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Reserve the first place for op.install_audit(); hide the audit schema.

    Whether the install is needed is decided by the table comparator: exactly when it
    enables tracking of some table (after Alembic's include_schemas, include_name and
    include_object filters had their say), so the two can never disagree.
    """
    run = run_of(autogen_context)
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
