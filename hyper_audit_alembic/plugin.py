"""The Alembic plugin ``hyper_audit`` (the ``alembic.plugins`` entry point): registration.

Everything Alembic is told about us is registered here, in one place: each ``op.``
directive with its operation class, its implementation and its renderer
(:func:`directives`), and the autogenerate comparators (each compare module's
``setup()``, in the order they must run).

Alembic imports its entry points, and runs :func:`setup`, while ``import alembic`` is
under way. So nothing here imports alembic, or a module of ours that does, at module
level; setup() imports them when it runs. The migration modules it imports never see a
half-loaded module of ours: the ``migration`` package imports alembic before any of its
modules (so a program whose first import is one of them has setup() run before that
module starts), and the modules outside it that setup() reaches (``errors``, ``sql``,
``sqltext``, ``adapters``) do not import alembic at module level.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.operations import MigrateOperation
    from alembic.runtime.plugins import Plugin


@dataclass(frozen=True)
class Directive:
    """One ``op.<name>()`` directive: its operation class, how it runs, how it is written."""

    name: str
    operation: type[MigrateOperation]
    implementation: Callable[..., None]
    renderer: Callable[..., str]


def directives() -> list[Directive]:
    """Every ``op.`` directive the plugin adds, in the order ``op.pyi`` lists them."""
    from .migration import ops, render, toimpl

    run = toimpl.run_statements
    return [
        Directive("install_audit", ops.InstallAuditOp, run, render.render_install),
        Directive("uninstall_audit", ops.UninstallAuditOp, run, render.render_uninstall),
        Directive(
            "upgrade_audit", ops.UpgradeAuditOp, toimpl.run_upgrade, render.render_version_change
        ),
        Directive("downgrade_audit", ops.DowngradeAuditOp, run, render.render_version_change),
        Directive("adopt_audit", ops.AdoptAuditOp, run, render.render_adoption),
        Directive(
            "unadopt_audit", ops.UnadoptAuditOp, toimpl.refuse_unadopt, render.render_adoption
        ),
        Directive("enable_tracking", ops.EnableTrackingOp, run, render.render_tracking),
        Directive("alter_tracking", ops.AlterTrackingOp, run, render.render_alter_tracking),
        Directive("disable_tracking", ops.DisableTrackingOp, run, render.render_tracking),
        Directive(
            "set_audit_timescale_policy",
            ops.SetAuditTimescalePolicyOp,
            run,
            render.render_alter_layout,
        ),
        Directive(
            "set_audit_partitioning", ops.SetAuditPartitioningOp, run, render.render_alter_layout
        ),
        Directive(
            "convert_audit_to_hypertable",
            ops.ConvertAuditToHypertableOp,
            run,
            render.render_convert,
        ),
        Directive("distribute_audit", ops.DistributeAuditOp, run, render.render_distribute),
    ]


def register_directives() -> None:
    """Make each directive an ``op.`` function, with its implementation and renderer.

    Autogenerate's :class:`~hyper_audit_alembic.migration.ops.ResyncTrackingOp` is an
    ``EnableTrackingOp``: Alembic finds its implementation and renderer by its class's MRO.
    """
    from alembic.autogenerate.render import renderers
    from alembic.operations import Operations

    for directive in directives():
        Operations.register_operation(directive.name)(directive.operation)
        Operations.implementation_for(directive.operation, replace=True)(directive.implementation)
        renderers.dispatch_for(directive.operation, replace=True)(directive.renderer)


def setup(plugin: Plugin) -> None:
    """Register the audit operations, their renderers and the comparators."""
    from .adapters import add_default_autogenerate_plugin
    from .migration.compare import guard, layout, lifecycle, placement, tracking

    register_directives()
    for compare_module in (lifecycle, layout, tracking, placement):
        compare_module.setup(plugin)
    add_default_autogenerate_plugin(guard.GUARD_NAME, guard.setup)


class _PluginModule(ModuleType):
    """This module, which is also a collection holding itself.

    Alembic 1.18 and 1.19 iterate what the ``alembic.plugins`` entry point loads, as a
    collection of plugin modules; from 1.20 on it takes a module (and warns of a
    collection). This module is both, so one entry point serves every version.
    """

    def __iter__(self) -> Iterator[ModuleType]:
        yield self


sys.modules[__name__].__class__ = _PluginModule

__all__ = ["Directive", "directives", "register_directives", "setup"]
