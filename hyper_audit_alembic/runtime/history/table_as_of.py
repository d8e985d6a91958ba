"""A whole table as it stood at a time, rebuilt from its audit trail: :func:`table_as_of`.

The rebuilding is the SQL function ``audit.table_as_of(regclass, timestamptz)`` (audit
schema version 4): per record the last version with ``ts <= when`` (by audit id),
deletes, key changes and TRUNCATE applied, columns renamed since mapped to today's names
and the values of columns dropped since returned apart. This module types the values:
each recorded row goes through the table's row type (``jsonb_populate_record``), so the
driver returns ints, Decimals, datetimes ... as for a ``select`` of the table today, and
a mapped class's or Core ``Table``'s column types then convert them as they would for a
query of the model (enums, UUIDs, custom types).

Where the trail cannot rebuild the table (no snapshot, or ``when`` before the trail was
complete, or the table not tracked now; SQLSTATE HA001) it raises
:class:`~hyper_audit_alembic.errors.IncompleteTrailError` with the fix, rather than
returning a partial table.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, class_mapper

from ...errors import IncompleteTrailError
from ...sqltext import qualified_name, quote_identifier
from .resolve import describe_model

#: The SQLSTATE ``audit.table_as_of`` raises where the trail is not complete.
INCOMPLETE_TRAIL = "HA001"


@dataclass(frozen=True)
class PastRow:
    """One row of a table as it stood at a time.

    ``values``: its recorded columns under today's names, typed like the table's (columns
    not recorded are absent: excluded ones, and those added after the row's last change).
    ``dropped``: the values of columns dropped since, under the name each had when it was
    dropped, as the audit row stored them (JSON values); empty when none. ``record_id`` is
    the record's id in the trail, ``version_id`` the audit row the values come from.
    """

    values: dict[str, Any]
    record_id: uuid.UUID
    version_id: int
    dropped: dict[str, Any] = field(default_factory=dict)


_ROWS = """
select s.record_id, s.version_id, s.record, s.dropped{typed}
from audit.table_as_of(cast(:target as regclass), :when) as s{populate}
order by s.version_id
"""


def table_as_of(session: Session, model: object, when: dt.datetime) -> list[PastRow]:
    """The rows of a tracked table as they stood at ``when``, rebuilt from the trail.

    ``model``: a mapped class, a Core ``Table`` or a ``"schema.table"`` name. Rows are in
    the order of the table's primary key. A change counts from the start of its
    transaction (``ts <= when``, like :func:`as_of`). Needs a complete trail: a table
    tracked while empty, or one whose baseline was taken
    (``op.enable_tracking(..., snapshot=True)``, ``call audit.snapshot('t')``), and only
    from then on; elsewhere :class:`~hyper_audit_alembic.errors.IncompleteTrailError`.
    Columns renamed since come under their new name; values of columns dropped since are
    in each row's ``dropped`` (never silently left out). Runs in a savepoint, so a
    refusal leaves the session's transaction usable.

    With asyncio: ``await async_session.run_sync(table_as_of, Model, when)``.
    """
    if not isinstance(when, dt.datetime) or when.utcoffset() is None:
        raise ValueError(
            "table_as_of: pass a timezone-aware datetime (audit times are timestamptz), "
            f"got {when!r}"
        )
    table = describe_model(model)
    target = qualified_name(table.name, table.schema)
    model_types = _column_types(model)
    columns = _current_columns(session, target)
    if not columns:
        raise ValueError(f"table_as_of: no such table: {target}")
    with session.begin_nested():
        try:
            found = _read(session, target, when, columns, model_types)
        except sa.exc.DBAPIError as error:
            orig = error.orig
            if (getattr(orig, "pgcode", None) or getattr(orig, "sqlstate", None)) == (
                INCOMPLETE_TRAIL
            ):
                raise IncompleteTrailError(_one_line(error)) from None
            raise
    return sorted(found, key=_key_order(session, target))


def _column_types(model: object) -> Mapping[str, sa.types.TypeEngine[Any]]:
    """The column types the caller's model declares (none for a table name)."""
    if isinstance(model, str):
        return {}
    if isinstance(model, sa.Table):
        return {column.name: column.type for column in model.columns}
    if isinstance(model, type):
        return {column.name: column.type for column in class_mapper(model).local_table.columns}
    return {}


_COLUMNS = sa.text(
    """
    select a.attname::text from pg_catalog.pg_attribute a
    where a.attrelid = pg_catalog.to_regclass(:target) and a.attnum > 0 and not a.attisdropped
    order by a.attnum
    """
)


def _current_columns(session: Session, target: str) -> list[str]:
    return list(session.scalars(_COLUMNS, {"target": target}))


def _read(
    session: Session,
    target: str,
    when: dt.datetime,
    columns: list[str],
    model_types: Mapping[str, sa.types.TypeEngine[Any]],
) -> list[PastRow]:
    """The rebuilt rows, typed through the table's row type. The typed columns are
    selected under positional labels (c0, c1 ...): any column name is safe."""
    typed = "".join(f", r.{quote_identifier(name)} as c{n}" for n, name in enumerate(columns))
    populate = (
        f" cross join lateral pg_catalog.jsonb_populate_record(cast(null as {target}), s.record)"
        " as r"
    )
    statement = sa.text(_ROWS.format(typed=typed, populate=populate)).columns(
        sa.column("record_id", sa.Uuid()),
        sa.column("version_id", sa.BigInteger()),
        sa.column("record", sa.dialects.postgresql.JSONB()),
        sa.column("dropped", sa.dialects.postgresql.JSONB()),
        *(
            sa.column(f"c{n}", model_types.get(name, sa.types.NULLTYPE))
            for n, name in enumerate(columns)
        ),
    )
    rows: list[PastRow] = []
    for record_id, version_id, record, dropped, *values in session.execute(
        statement, {"target": target, "when": when}
    ):
        recorded = record or {}
        rows.append(
            PastRow(
                values={
                    name: value
                    for name, value in zip(columns, values, strict=True)
                    if name in recorded
                },
                record_id=record_id,
                version_id=version_id,
                dropped=dict(dropped or {}),
            )
        )
    return rows


_KEY = sa.text(
    """
    select array_agg(a.attname::text order by a.attnum)
    from pg_catalog.pg_index i
    join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
    where i.indrelid = pg_catalog.to_regclass(:target) and i.indisprimary
    """
)


def _key_order(session: Session, target: str) -> Any:
    """Sort rows by the table's primary key (a missing key value sorts last)."""
    key = session.scalar(_KEY, {"target": target}) or []

    def order(row: PastRow) -> tuple[Any, ...]:
        values = [(row.values.get(name) is None, row.values.get(name)) for name in key]
        return (*values, row.version_id)

    return order


def _one_line(error: sa.exc.DBAPIError) -> str:
    """The refusal as one line: what ``audit.table_as_of`` said, and its fix."""
    diag = getattr(error.orig, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(error.orig).strip().splitlines()[0]
    hint = getattr(diag, "message_hint", None)
    text = primary.removeprefix("audit.")
    return f"{text}. {hint}" if hint else text
