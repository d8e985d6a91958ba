"""The Alembic plugin ``hyper_audit``, loaded from the ``alembic.plugins`` entry point.

Entry points are imported while ``import alembic`` runs, before Alembic's autogenerate
package exists: nothing here may import ``alembic.autogenerate`` at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.util import DispatchPriority

if TYPE_CHECKING:
    from alembic.runtime.plugins import Plugin


def setup(plugin: Plugin) -> None:
    """Register the audit operations, their renderers and the comparators."""
    from . import ops, render  # noqa: F401  (registration happens on import)
    from .compare import compare_audit_schema, compare_table_tracking
    from .guard import register_guard

    plugin.add_autogenerate_comparator(
        compare_audit_schema, "schema", "audit", priority=DispatchPriority.FIRST
    )
    plugin.add_autogenerate_comparator(compare_table_tracking, "table", "audit")
    register_guard()
