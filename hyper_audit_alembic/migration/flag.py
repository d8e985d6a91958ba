"""Which tables the user flagged for auditing, and with which options.

A declarative class flags its table with ``__audited__ = True`` (inherited from mixins
and abstract bases, switched off again with ``__audited__ = False``); a Core table with
``Table(..., info={"audited": True})``. Mappers are looked up when autogenerate runs,
so it does not matter whether the models or the plugin were imported first.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Table
from sqlalchemy.orm import Mapper

from ..adapters import all_mappers
from .options import NO_OPTIONS, TrackingOptions, flag_snapshot, flag_tracking_options

FLAG_ATTRIBUTE = "__audited__"
INFO_KEY = "audited"


def owning_mappers(tables: Iterable[Table]) -> dict[Table, Mapper[object]]:
    """The mapper that owns each table: the one whose own table it is.

    Single-table-inheritance subclasses share their parent's table and do not own it.
    """
    wanted = set(tables)
    owners: dict[Table, Mapper[object]] = {}
    for mapper in all_mappers():
        table = mapper.local_table
        if table not in wanted or table in owners:
            continue
        if mapper.inherits is not None and mapper.inherits.local_table is table:
            continue
        owners[table] = mapper
    return owners


def _model_flags(table: Table, owner: Mapper[object] | None) -> list[object]:
    """The ``__audited__`` values set for the classes whose rows live in ``table``.

    That is the owning class and its single-table-inheritance subclasses.
    """
    if owner is None:
        return []
    flags = (
        getattr(mapper.class_, FLAG_ATTRIBUTE, None)
        for mapper in owner.self_and_descendants
        if mapper.local_table is table
    )
    return [flag for flag in flags if flag is not None]


def is_flagged(table: Table, owner: Mapper[object] | None) -> bool:
    """Whether the table is to be audited: the models' flags first, then ``Table.info``.

    Tracking is per table: a single-table-inheritance subclass flagged
    ``__audited__ = True`` tracks the whole shared table (rather than silently nothing),
    and one flagged ``False`` cannot opt out of a table its parent tracks.
    """
    flags = _model_flags(table, owner)
    if flags:
        return any(_is_on(flag) for flag in flags)
    return _is_on(table.info.get(INFO_KEY, False))


def _is_on(flag: object) -> bool:
    # A dict of options flags the table, also an empty one.
    return isinstance(flag, dict) or bool(flag)


def flagged_options(table: Table, owner: Mapper[object] | None) -> TrackingOptions:
    """The options the flag asks for: ``{"exclude": [...], "skip_unchanged": True,
    "on_replica": True}``.

    A flag that is ``True`` asks for none. The first dict among the models' flags (the
    owning class first), else ``Table.info``'s.
    """
    flags = _model_flags(table, owner) or [table.info.get(INFO_KEY, False)]
    found = next((flag for flag in flags if isinstance(flag, dict)), None)
    if found is None:
        return NO_OPTIONS
    return flag_tracking_options(
        found,
        f"{describe(table, owner)}: {flagged_by(table, owner)}",
        key_columns={column.name for column in table.primary_key.columns},
        columns={column.name for column in table.columns},
    )


def flagged_snapshot(table: Table, owner: Mapper[object] | None) -> bool:
    """Whether the flag asks for a baseline snapshot when tracking starts:
    ``{"snapshot": True}`` (the same dict :func:`flagged_options` reads)."""
    flags = _model_flags(table, owner) or [table.info.get(INFO_KEY, False)]
    found = next((flag for flag in flags if isinstance(flag, dict)), None)
    if found is None:
        return False
    return flag_snapshot(found, f"{describe(table, owner)}: {flagged_by(table, owner)}")


def flagged_by(table: Table, owner: Mapper[object] | None) -> str:
    """How the user flagged the table, as they wrote it (for error messages)."""
    flags = _model_flags(table, owner)
    if flags:
        shown = next((flag for flag in flags if isinstance(flag, dict)), True)
        return f"{FLAG_ATTRIBUTE} = {shown!r}"
    flag = table.info.get(INFO_KEY)
    return f"info={{{INFO_KEY!r}: {flag if isinstance(flag, dict) else True!r}}}"


def describe(table: Table, owner: Mapper[object] | None) -> str:
    """How an error message names the table: the model and the table."""
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    if owner is not None:
        return f"model {owner.class_.__name__} (table {name})"
    return f"table {name}"
