"""Autogenerate comparison: the flagged tables against the database's audit state.

A schema-level comparator (first in line) installs the audit schema when needed and
hides the ``audit`` schema from Alembic's own table comparison; a table-level
comparator places ``enable_tracking`` right after its ``create_table`` and
``disable_tracking`` right before its ``drop_table``, so downgrades mirror correctly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alembic.util import CommandError, PriorityDispatchResult
from sqlalchemy import Table

from .catalog import AuditState, read_audit_state
from .flag import describe, is_flagged, owning_mappers
from .ops import DisableTrackingOp, EnableTrackingOp, InstallAuditOp

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import ModifyTableOps, UpgradeOps

AUDIT_SCHEMA = "audit"
PLUGIN_NAME = "hyper_audit"


@dataclass
class _Run:
    """What one autogenerate run learned, read once and shared by every table."""

    state: AuditState
    default_schema: str
    flagged: dict[tuple[str | None, str], Table]
    described: dict[tuple[str | None, str], str]


_runs: weakref.WeakKeyDictionary[AutogenContext, _Run] = weakref.WeakKeyDictionary()


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
    )
    _runs[autogen_context] = found
    return found


def _included(autogen_context: AutogenContext, table: Table, schemas: set[str | None]) -> bool:
    default = autogen_context.dialect.default_schema_name if autogen_context.dialect else None
    schema = None if table.schema == default else table.schema
    return (
        schema in schemas
        and autogen_context.run_name_filters(table.name, "table", {"schema_name": schema})
        and autogen_context.run_object_filters(table, table.name, "table", False, None)
    )


def compare_audit_schema(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Install the audit schema first when a flagged table needs it."""
    # The audit schema's own objects are ours: never compared, never dropped.
    schemas.discard(AUDIT_SCHEMA)
    run = _run(autogen_context)
    wanted = [t for t in run.flagged.values() if _included(autogen_context, t, schemas)]
    if wanted and not run.state.installed:
        upgrade_ops.ops.append(InstallAuditOp())
    return PriorityDispatchResult.CONTINUE


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
    tracked = run.state.is_tracked(real_schema, tname)
    wanted = (
        metadata_table is not None and (metadata_table.schema, metadata_table.name) in run.flagged
    )
    if wanted and not tracked:
        assert metadata_table is not None
        if not metadata_table.primary_key.columns:
            described = run.described[(metadata_table.schema, metadata_table.name)]
            raise CommandError(
                f"hyper_audit: {described} is flagged for auditing but has no primary key. "
                f"The audit trail identifies each record by its primary key: add one "
                f"(primary_key=True on its id column), or remove the __audited__ flag."
            )
        modify_table_ops.ops.append(EnableTrackingOp(tname, schema=schema))
    elif tracked and not wanted:
        modify_table_ops.ops.append(DisableTrackingOp(tname, schema=schema))
    return PriorityDispatchResult.CONTINUE
