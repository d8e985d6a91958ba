"""The only place hyper_audit_alembic reaches past the public APIs of SQLAlchemy and Alembic.

Each function here does one thing that no public API offers, and says why it is needed
and what it relies on. tests/test_adapters.py checks each against the installed
versions, and CI runs it on the oldest (pyproject's lower bounds) and the newest
releases, so a release that changes one of them fails there, not in a user's migration.

Nothing here imports alembic at module level: the runtime side (``audit_context``)
uses this module too, and an application must be able to use it without loading Alembic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper

if TYPE_CHECKING:
    from alembic.runtime.plugins import Plugin

#: Alembic's own comparisons are plugins named ``alembic.autogenerate.<name>``; an
#: env.py that keeps them (``autogenerate_plugins=["alembic.autogenerate.*", ...]``,
#: Alembic's default) runs every plugin under this prefix.
DEFAULT_AUTOGENERATE_PREFIX = "alembic.autogenerate."


def all_mappers() -> Iterator[Mapper[object]]:
    """Every ORM mapper of every registry in the process.

    Why: autogenerate hands us the user's ``MetaData``, not their declarative base, and a
    ``Table`` does not know the classes mapped to it; the ``__audited__`` flag lives on
    those classes. SQLAlchemy keeps every registry in a module-level weak set
    (``sqlalchemy.orm.mapperlib._all_registries()``, private, in 2.0 and 2.1) and has no
    public way to list them. Listening for mapper events instead would miss the models
    imported before the plugin, and the models are often imported first.
    """
    from sqlalchemy.orm import mapperlib

    for registry in mapperlib._all_registries():
        yield from registry.mappers


def isolation_level_on_connect(dialect: Dialect) -> str | None:
    """The isolation level ``create_engine(..., isolation_level=...)`` gave the engine.

    Why: ``audit_context`` refuses a connection in AUTOCOMMIT mode (no transaction can
    carry the actor). ``get_execution_options()`` shows a level set with
    ``execution_options(isolation_level=...)`` but not one given to ``create_engine``,
    which SQLAlchemy keeps on the dialect (``_on_connect_isolation_level``, private, in
    2.0 and 2.1); ``Connection.get_isolation_level()`` asks the server, which never
    reports AUTOCOMMIT (it is a driver setting), and needs a connection.
    """
    level = getattr(dialect, "_on_connect_isolation_level", None)
    return None if level is None else str(level)


def add_default_autogenerate_plugin(name: str, setup: Callable[[Plugin], None]) -> None:
    """Register a plugin that runs wherever Alembic's own comparisons run.

    Why: the guard that refuses flagged models when the ``hyper_audit`` plugin is off
    must run exactly when the user did not enable our plugin, so it cannot be part of it.
    Alembic's public ``Plugin`` class registers it, but under a name in Alembic's own
    namespace (``alembic.autogenerate.<name>``): that is what the default
    ``autogenerate_plugins`` pattern ``alembic.autogenerate.*`` matches. Registering twice
    (Alembic refuses a second plugin of the same name) does nothing.
    """
    from alembic.runtime.plugins import Plugin

    full_name = DEFAULT_AUTOGENERATE_PREFIX + name
    try:
        plugin = Plugin(full_name)
    except ValueError:  # "A plugin named ... is already registered"
        return
    setup(plugin)
