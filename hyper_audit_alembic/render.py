"""How each audit op is written into a migration: like a hand-written line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext


def _call(autogen_context: AutogenContext, name: str, *args: str) -> str:
    prefix = autogen_context.opts.get("alembic_module_prefix") or "op."
    return f"{prefix}{name}({', '.join(args)})"


# After _call: when this module is the first of ours a program imports, importing alembic
# runs the plugin's setup(), which loads layouts.py and lifecycle.py, which take _call
# from this module while it is half-loaded.
from alembic.autogenerate.render import renderers  # noqa: E402

from .ops import (  # noqa: E402
    AlterTrackingOp,
    DisableTrackingOp,
    EnableTrackingOp,
    InstallAuditOp,
    UninstallAuditOp,
)


@renderers.dispatch_for(InstallAuditOp, replace=True)
def render_install(autogen_context: AutogenContext, op: InstallAuditOp) -> str:
    args = [f"timescale={op.timescale.given()!r}"] if op.timescale is not None else []
    args += [f"partitioned={op.partitioned!r}"] if op.partitioned is not None else []
    return _call(autogen_context, "install_audit", *args)


@renderers.dispatch_for(UninstallAuditOp, replace=True)
def render_uninstall(autogen_context: AutogenContext, op: UninstallAuditOp) -> str:
    args = ["keep_history=True"] if op.keep_history else []
    args += ["drop_history=True"] if op.drop_history else []
    return _call(autogen_context, "uninstall_audit", *args)


@renderers.dispatch_for(EnableTrackingOp, replace=True)
@renderers.dispatch_for(DisableTrackingOp, replace=True)
def render_tracking(
    autogen_context: AutogenContext, op: EnableTrackingOp | DisableTrackingOp
) -> str:
    args = [repr(op.table_name)] + ([f"schema={op.schema!r}"] if op.schema else [])
    if isinstance(op, EnableTrackingOp):
        args += [f"exclude={op.exclude!r}"] if op.exclude else []
        args += ["skip_unchanged=True"] if op.skip_unchanged else []
        args += ["on_replica=True"] if op.on_replica else []
    return _call(autogen_context, op.sql_function, *args)


@renderers.dispatch_for(AlterTrackingOp, replace=True)
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
    return _call(autogen_context, "alter_tracking", *args)
