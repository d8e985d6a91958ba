"""Fail loudly when models are flagged but the ``hyper_audit`` comparator is off.

Plugin comparators only run when env.py names the plugin in
``autogenerate_plugins``. Without this guard a user who forgot that would find out
months later that nothing was audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Alembic is imported in the functions: this module may be the first of ours a program
# imports, and the plugin's setup() (which Alembic runs as it is imported) needs it whole.
if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps
    from alembic.util import PriorityDispatchResult

PLUGIN_NAME = "hyper_audit"
DEFAULT_PLUGINS = ["alembic.autogenerate.*"]
GUARD_PLUGIN_NAME = "alembic.autogenerate.hyper_audit_guard"


def _enabled(patterns: list[str]) -> bool:
    from alembic.runtime.plugins import _make_re

    included = [p for p in patterns if not p.startswith("~")]
    excluded = [p[1:] for p in patterns if p.startswith("~")]
    return any(_make_re(p).match(PLUGIN_NAME) for p in included) and not any(
        _make_re(p).match(PLUGIN_NAME) for p in excluded
    )


def check_plugin_enabled(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps
) -> PriorityDispatchResult:
    from alembic.util import CommandError, PriorityDispatchResult

    from .compare import _metadata_tables
    from .flag import describe, is_flagged, owning_mappers

    patterns = autogen_context.migration_context.opts.get("autogenerate_plugins", DEFAULT_PLUGINS)
    if _enabled(list(patterns)):
        return PriorityDispatchResult.CONTINUE
    tables = _metadata_tables(autogen_context)
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


def register_guard() -> None:
    """Register the guard as a plugin inside Alembic's default ``alembic.autogenerate.*``.

    Every env.py that keeps Alembic's own comparisons therefore runs it, whether or
    not it names ``hyper_audit``.
    """
    from alembic.runtime.plugins import Plugin, _all_plugins
    from alembic.util import DispatchPriority

    if GUARD_PLUGIN_NAME not in _all_plugins:
        guard = Plugin(GUARD_PLUGIN_NAME)
        guard.add_autogenerate_comparator(
            check_plugin_enabled, "autogenerate", priority=DispatchPriority.FIRST
        )
