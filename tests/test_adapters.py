"""The private APIs of SQLAlchemy and Alembic that hyper_audit_alembic relies on still work.

Each function of hyper_audit_alembic/adapters.py, checked against the installed
SQLAlchemy and Alembic, which are within pyproject's bounds: CI runs this on the oldest
supported versions (the lower bounds) and on the newest releases, so a release that
changes one of them fails here first. No database needed.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import sqlalchemy as sa
from alembic.runtime.plugins import Plugin, _all_plugins
from alembic.util import PriorityDispatcher
from packaging.requirements import Requirement
from packaging.version import Version
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

from hyper_audit_alembic.adapters import (
    DEFAULT_AUTOGENERATE_PREFIX,
    add_default_autogenerate_plugin,
    all_mappers,
    isolation_level_on_connect,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli before Python 3.11
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_the_installed_versions_are_supported_ones() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    wanted = {Requirement(text).name: Requirement(text) for text in dependencies}
    for name in ("alembic", "sqlalchemy"):
        assert Version(version(name)) in wanted[name].specifier, (name, version(name))


def test_all_mappers_finds_the_mappers_of_every_registry() -> None:
    class Base(DeclarativeBase):
        pass

    class Thing(Base):
        __tablename__ = "adapter_thing"
        id: Mapped[int] = mapped_column(primary_key=True)

    imperative = registry()
    table = sa.Table(
        "adapter_other", imperative.metadata, sa.Column("id", sa.Integer, primary_key=True)
    )

    class Other:
        pass

    imperative.map_imperatively(Other, table)
    found = {mapper.class_ for mapper in all_mappers()}
    assert {Thing, Other} <= found


def test_isolation_level_on_connect_is_the_one_create_engine_was_given() -> None:
    autocommit = sa.create_engine("postgresql+psycopg2://", isolation_level="AUTOCOMMIT")
    default = sa.create_engine("postgresql+psycopg2://")
    assert isolation_level_on_connect(autocommit.dialect) == "AUTOCOMMIT"
    assert isolation_level_on_connect(default.dialect) is None
    # An execution option is not on the dialect (audit_context reads that one publicly).
    assert (
        isolation_level_on_connect(default.execution_options(isolation_level="AUTOCOMMIT").dialect)
        is None
    )


def test_a_default_autogenerate_plugin_runs_under_alembics_default_pattern() -> None:
    calls: list[str] = []

    def setup(plugin: Plugin) -> None:
        plugin.add_autogenerate_comparator(
            lambda value: calls.append(value), "hyper_audit_adapter_test"
        )

    name = "hyper_audit_adapter_test"
    try:
        add_default_autogenerate_plugin(name, setup)
        add_default_autogenerate_plugin(name, setup)  # a second time: nothing
        comparators = PriorityDispatcher()
        Plugin.populate_autogenerate_priority_dispatch(comparators, ["alembic.autogenerate.*"])
        comparators.dispatch("hyper_audit_adapter_test")("ran")
        assert calls == ["ran"]
        excluded = PriorityDispatcher()
        Plugin.populate_autogenerate_priority_dispatch(
            excluded, ["alembic.autogenerate.*", f"~{DEFAULT_AUTOGENERATE_PREFIX}{name}"]
        )
        excluded.dispatch("hyper_audit_adapter_test")("excluded")
        assert calls == ["ran"]
    finally:
        _all_plugins[DEFAULT_AUTOGENERATE_PREFIX + name].remove()


def test_the_guard_is_registered_where_alembics_own_comparisons_are() -> None:
    from hyper_audit_alembic.migration.compare.guard import GUARD_PLUGIN_NAME

    assert GUARD_PLUGIN_NAME.startswith(DEFAULT_AUTOGENERATE_PREFIX)
    assert GUARD_PLUGIN_NAME in _all_plugins
