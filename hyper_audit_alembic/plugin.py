"""The Alembic plugin ``hyper_audit``, loaded from the ``alembic.plugins`` entry point.

Entry points are imported while ``import alembic`` runs, before Alembic's autogenerate
package exists: nothing here imports alembic at module level. That also lets any of our
modules be the first one a program imports: one that imports alembic at its top is
half-loaded while Alembic runs setup(), so setup() takes from our modules only what they
define before they import alembic (see render.py, guard.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.runtime.plugins import Plugin
    from alembic.util import PriorityDispatchResult


def _compare_audit_schema(*args: Any) -> PriorityDispatchResult:
    from .compare import compare_audit_schema

    return compare_audit_schema(*args)


def _compare_table_tracking(*args: Any) -> PriorityDispatchResult:
    from .compare import compare_table_tracking

    return compare_table_tracking(*args)


def _place_tracking_ops(*args: Any) -> PriorityDispatchResult:
    from .compare import place_tracking_ops

    return place_tracking_ops(*args)


def setup(plugin: Plugin) -> None:
    """Register the audit operations, their renderers and the comparators.

    A user's own ``import hyper_audit_alembic.ops`` can be what imports alembic and so
    runs this setup while ops is half-loaded: ops then registers everything itself when
    it finishes, and the comparators import what they need when autogenerate calls them.
    """
    from alembic.util import DispatchPriority

    if "hyper_audit_alembic.ops" not in sys.modules:
        from . import ops  # noqa: F401  (registers the ops and, at its end, their renderers)
    from .guard import register_guard

    plugin.add_autogenerate_comparator(
        _compare_audit_schema, "schema", "audit", priority=DispatchPriority.FIRST
    )
    plugin.add_autogenerate_comparator(_compare_table_tracking, "table", "audit")
    plugin.add_autogenerate_comparator(
        _place_tracking_ops, "schema", "audit", priority=DispatchPriority.LAST
    )
    register_guard()


class _PluginModule(ModuleType):
    """This module, which is also a collection holding itself.

    Alembic 1.18 and 1.19 iterate what the ``alembic.plugins`` entry point loads, as a
    collection of plugin modules; from 1.20 on it takes a module (and warns of a
    collection). This module is both, so one entry point serves every version.
    """

    def __iter__(self) -> Iterator[ModuleType]:
        yield self


sys.modules[__name__].__class__ = _PluginModule
