"""Which tables the user flagged for auditing.

A declarative class flags its table with ``__audited__ = True`` (inherited from mixins
and abstract bases, switched off again with ``__audited__ = False``); a Core table with
``Table(..., info={"audited": True})``. Mappers are looked up when autogenerate runs,
so it does not matter whether the models or the plugin were imported first.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Table
from sqlalchemy.orm import Mapper

FLAG_ATTRIBUTE = "__audited__"
INFO_KEY = "audited"


def _all_mappers() -> Iterable[Mapper[object]]:
    # SQLAlchemy keeps every registry in a weak set; this is the one place that reads it.
    from sqlalchemy.orm import mapperlib

    for registry in mapperlib._all_registries():
        yield from registry.mappers


def owning_mappers(tables: Iterable[Table]) -> dict[Table, Mapper[object]]:
    """The mapper that owns each table: the one whose own table it is.

    Single-table-inheritance subclasses share their parent's table and do not own it.
    """
    wanted = set(tables)
    owners: dict[Table, Mapper[object]] = {}
    for mapper in _all_mappers():
        table = mapper.local_table
        if table not in wanted or table in owners:
            continue
        if mapper.inherits is not None and mapper.inherits.local_table is table:
            continue
        owners[table] = mapper
    return owners


def is_flagged(table: Table, owner: Mapper[object] | None) -> bool:
    """Whether the table is to be audited: the model's flag first, then ``Table.info``."""
    if owner is not None:
        flag = getattr(owner.class_, FLAG_ATTRIBUTE, None)
        if flag is not None:
            return bool(flag)
    return bool(table.info.get(INFO_KEY, False))


def describe(table: Table, owner: Mapper[object] | None) -> str:
    """How an error message names the table: the model and the table."""
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    if owner is not None:
        return f"model {owner.class_.__name__} (table {name})"
    return f"table {name}"
