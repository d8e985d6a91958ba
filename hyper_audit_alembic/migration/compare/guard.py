"""Fail loudly when models are flagged but the ``hyper_audit`` comparators are off.

Plugin comparators only run when env.py names the plugin in ``autogenerate_plugins``.
Without this guard a user who forgot that would find out months later that nothing was
audited. The guard is a plugin of its own, registered where Alembic's own comparisons
are (``alembic.autogenerate.hyper_audit_guard``, see
:func:`hyper_audit_alembic.adapters.add_default_autogenerate_plugin`), so every env.py
that keeps them runs it. Last at the schema level, it knows whether our comparators ran
in this autogenerate run (:func:`.run.has_run`): if not, and some model is flagged, the
plugin is off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.util import CommandError, DispatchPriority, PriorityDispatchResult

from ..flag import describe, is_flagged, owning_mappers
from .run import has_run, metadata_tables

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps
    from alembic.runtime.plugins import Plugin

#: The name of our plugin, as env.py enables it (the ``alembic.plugins`` entry point's).
PLUGIN_NAME = "hyper_audit"
#: The guard's own plugin, under Alembic's ``alembic.autogenerate.`` (excluded with ``~``).
GUARD_NAME = "hyper_audit_guard"
GUARD_PLUGIN_NAME = f"alembic.autogenerate.{GUARD_NAME}"


def setup(plugin: Plugin) -> None:
    plugin.add_autogenerate_comparator(
        check_plugin_enabled, "schema", priority=DispatchPriority.LAST
    )


def check_plugin_enabled(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[str | None]
) -> PriorityDispatchResult:
    """Refuse flagged models in an autogenerate run our comparators were not part of."""
    if has_run(autogen_context):
        return PriorityDispatchResult.CONTINUE
    tables = metadata_tables(autogen_context)
    owners = owning_mappers(tables)
    flagged = [describe(t, owners.get(t)) for t in tables if is_flagged(t, owners.get(t))]
    if flagged:
        raise CommandError(
            f"hyper_audit: {', '.join(flagged)} flagged for auditing, but the "
            f"'{PLUGIN_NAME}' autogenerate plugin is not enabled, so no audit operations "
            f"would be generated. In env.py, pass "
            f"autogenerate_plugins=['alembic.autogenerate.*', '{PLUGIN_NAME}'] to "
            f"context.configure() (the hyper_audit template does)."
        )
    return PriorityDispatchResult.CONTINUE
