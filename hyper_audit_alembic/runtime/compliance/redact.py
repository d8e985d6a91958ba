"""Erasing values from the trail, audited: :func:`redact`, over ``audit.redact()``.

``audit.redact(table, key, columns, reason)`` removes the values of ``columns`` (None: the
whole row image) from every audit row of one record, following its key changes, gives
the seal chain a redaction link (so verification still passes, and reports it) and
writes a REDACT audit row saying who, why and which columns. This module turns a mapped
class (or ``Table``, or ``"schema.table"`` name) and a primary key into the arguments the
SQL takes: the key as the audit rows record it (``{"id": 7}``: column names, values as
the trigger wrote them) and column names (an attribute's key maps to its column's name).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session

from ...sqltext import qualified_name
from ..history.model import RecordVersion
from ..history.record_id import key_text
from ..history.resolve import ModelTable, ResolvedTable, describe_model, key_values, resolve
from .functions import require_function


@dataclass(frozen=True)
class RedactResult:
    """What a redaction did."""

    #: The link of the seal chain that records it (``audit.seal_log``).
    link_id: int
    #: How many audit rows had values erased.
    rows_redacted: int
    #: The table (``schema.table``) and the record's key, by column name.
    table: str
    key: dict[str, Any]
    #: The columns whose values were erased; None: the whole row image.
    columns: tuple[str, ...] | None


_REDACT = sa.text(
    "select r.redaction_link, r.rows_redacted from audit.redact("
    "cast(:target as regclass), cast(:key as jsonb), cast(:columns as text[]), :reason) as r"
)


def _model_name(model: object, table: ModelTable) -> str:
    if isinstance(model, type):
        return model.__name__
    if isinstance(model, Mapper):
        return model.class_.__name__
    return qualified_name(table.name, table.schema)


def redact(
    session: Session,
    model: object,
    pk: object,
    *,
    columns: Sequence[str] | None = None,
    reason: str,
) -> RedactResult:
    """Erase one record's values from every version of it in the audit trail.

    ``model``: a mapped class, a Core ``Table`` or a ``"schema.table"`` name; ``pk``: the
    record's primary key as :func:`~hyper_audit_alembic.history` takes it (a value, a
    tuple, or a dict by attribute or column name). ``columns``: the columns to erase, by
    attribute or column name (None: the whole row image). ``reason``: why, recorded in
    the REDACT audit row with the actor (``audit_context``) and the columns.

    Needs EXECUTE on ``audit.redact`` (granted to nobody by default: grant it to the role
    that handles erasure requests). Runs in the caller's transaction: the caller commits.
    The erased values stay in the table's dead tuples until VACUUM, and in WAL and backups
    (see the compliance documentation).

    With asyncio: ``await async_session.run_sync(redact, Model, pk, reason="...")``.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(
            "redact: give the reason (reason='erasure request #123'): the REDACT audit row "
            "records why"
        )
    if isinstance(columns, str):
        raise TypeError(f"redact: columns must be a list of names, e.g. [{columns!r}]")
    described = describe_model(model)
    shown = _model_name(model, described)
    session.flush()
    target = resolve(session, described, with_oids=False)
    if target.current_oid is None:
        raise ValueError(
            f"redact: no such table: {qualified_name(described.name, described.schema)} "
            "(audit.redact() finds the record through the table as it is now)"
        )
    if not isinstance(model, (type, Mapper)):
        shown = qualified_name(target.name, target.schema)
    require_function(session, "audit.redact(regclass, jsonb, text[], text)", "redact")
    try:
        values = key_values(described, target, pk)
    except ValueError as error:  # the history API's message, said of redact
        raise ValueError(str(error).replace("history: ", "redact: ", 1)) from None
    key = dict(zip(target.key_columns, values, strict=True))
    key_json = _key_as_recorded(key)
    names = None if columns is None else _column_names(described, target, shown, columns)
    link_id, rows = session.execute(
        _REDACT,
        {
            "target": qualified_name(target.name, target.schema),
            "key": key_json,
            "columns": None if names is None else list(names),
            "reason": reason,
        },
    ).one()
    _expire_audit_rows(session)
    return RedactResult(int(link_id), int(rows), f"{target.schema}.{target.name}", key, names)


def _key_as_recorded(key: dict[str, object]) -> str:
    """The key as a jsonb object the way the trigger's ``to_jsonb(row)`` records it: each
    value's text is the trigger's (``key_text``: numeric scale, UTC times, ...), a number
    or a boolean as JSON's, anything else a JSON string."""
    parts = []
    for name, value in key.items():
        text = key_text(value)
        is_number = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
        if isinstance(value, Decimal):
            is_number = value.is_finite()
        shown = text if is_number else json.dumps(text, ensure_ascii=False)
        parts.append(f"{json.dumps(name, ensure_ascii=False)}: {shown}")
    return "{" + ", ".join(parts) + "}"


def _column_names(
    described: ModelTable, target: ResolvedTable, shown: str, columns: Sequence[str]
) -> tuple[str, ...]:
    """Column names for the caller's names (an attribute's key maps to its column); a name
    that is not a column of the table now is refused (older names of a renamed column are
    ``audit.redact``'s to follow)."""
    names: list[str] = []
    for given in columns:
        if not isinstance(given, str):
            raise TypeError(f"redact: a column name must be a string, got {given!r}")
        name = described.attribute_keys.get(given, given)
        if name not in target.columns:
            raise ValueError(
                f"redact: {shown} has no column {given!r} (its columns: "
                f"{', '.join(target.columns)})"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(
            f"redact: columns is empty for {shown}: name the columns to erase, or pass "
            "columns=None for the whole row image"
        )
    return tuple(names)


def _expire_audit_rows(session: Session) -> None:
    """Audit rows the session loaded may hold the erased values: expire them, so nothing
    shows them again (a later read loads them as the database has them now)."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, RecordVersion):
            session.expire(obj)
