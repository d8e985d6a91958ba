"""How each audit op is written into a migration file: like a hand-written ``op.`` line.

One renderer per kind of op; :mod:`hyper_audit_alembic.plugin` registers each for its
op classes. Arguments at their defaults are left out, so that generated migrations read
as a person would write them (and as tests/golden/ pins them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext

    from .ops import (
        AdoptAuditOp,
        AlterLayoutOp,
        AlterTrackingOp,
        ConvertAuditToHypertableOp,
        DisableTrackingOp,
        DistributeAuditOp,
        DowngradeAuditOp,
        EnableTrackingOp,
        InstallAuditOp,
        UnadoptAuditOp,
        UninstallAuditOp,
        UpgradeAuditOp,
    )


def directive_call(autogen_context: AutogenContext, name: str, *args: str) -> str:
    """``op.<name>(<args>)``, with the ``op.`` prefix the migration environment uses."""
    prefix = autogen_context.opts.get("alembic_module_prefix") or "op."
    return f"{prefix}{name}({', '.join(args)})"


def render_install(autogen_context: AutogenContext, op: InstallAuditOp) -> str:
    args = [f"timescale={op.timescale.given()!r}"] if op.timescale is not None else []
    args += [f"partitioned={op.partitioned!r}"] if op.partitioned is not None else []
    return directive_call(autogen_context, "install_audit", *args)


def render_uninstall(autogen_context: AutogenContext, op: UninstallAuditOp) -> str:
    args = ["keep_history=True"] if op.keep_history else []
    args += ["drop_history=True"] if op.drop_history else []
    return directive_call(autogen_context, "uninstall_audit", *args)


def render_tracking(
    autogen_context: AutogenContext, op: EnableTrackingOp | DisableTrackingOp
) -> str:
    args = [repr(op.table_name)] + ([f"schema={op.schema!r}"] if op.schema else [])
    if op.sql_function == "enable_tracking":
        args += [f"exclude={op.exclude!r}"] if op.exclude else []
        args += ["skip_unchanged=True"] if op.skip_unchanged else []
        args += ["on_replica=True"] if op.on_replica else []
        args += ["snapshot=True"] if getattr(op, "snapshot", False) else []
    return directive_call(autogen_context, op.sql_function, *args)


def render_alter_tracking(autogen_context: AutogenContext, op: AlterTrackingOp) -> str:
    args = [repr(op.table_name)] + ([f"schema={op.schema!r}"] if op.schema else [])
    args += [f"exclude={op.exclude!r}", f"skip_unchanged={op.skip_unchanged!r}"]
    # on_replica only when either side has it: migrations without it read as before.
    replica = op.on_replica or op.existing_on_replica
    args += [f"on_replica={op.on_replica!r}"] if replica else []
    args += [
        f"existing_exclude={op.existing_exclude!r}",
        f"existing_skip_unchanged={op.existing_skip_unchanged!r}",
    ]
    args += [f"existing_on_replica={op.existing_on_replica!r}"] if replica else []
    return directive_call(autogen_context, "alter_tracking", *args)


def render_alter_layout(autogen_context: AutogenContext, op: AlterLayoutOp) -> str:
    """op.set_audit_timescale_policy() / op.set_audit_partitioning()."""
    return directive_call(autogen_context, op.caller.removeprefix("op."), *op.arguments())


def render_convert(autogen_context: AutogenContext, op: ConvertAuditToHypertableOp) -> str:
    return directive_call(autogen_context, "convert_audit_to_hypertable", *op.arguments())


#: What a downgrade says in place of undoing op.distribute_audit().
KEEP_DISTRIBUTED = (
    "# op.distribute_audit() is not undone: the audit table stays distributed (by hand: "
    "select undistribute_table('audit.record_version'), then op.enable_tracking() again)"
)


def render_distribute(autogen_context: AutogenContext, op: DistributeAuditOp) -> str:
    if op.undoing:
        return KEEP_DISTRIBUTED
    return directive_call(autogen_context, "distribute_audit")


def render_version_change(
    autogen_context: AutogenContext, op: UpgradeAuditOp | DowngradeAuditOp
) -> str:
    commit = ["commit=True"] if getattr(op, "commit", False) else []
    return directive_call(
        autogen_context,
        str(op.to_diff_tuple()[0]),
        f"from_version={op.from_version!r}",
        f"to_version={op.to_version!r}",
        *commit,
    )


def render_adoption(autogen_context: AutogenContext, op: AdoptAuditOp | UnadoptAuditOp) -> str:
    return directive_call(autogen_context, op.to_diff_tuple()[0])
