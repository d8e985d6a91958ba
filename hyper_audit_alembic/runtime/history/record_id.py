"""Record ids in Python: the id the audit triggers give a row, computed without the database.

``audit.to_record_id`` (sql/functions/to_record_id.sql) gives each row a stable record
id: the UUID v5 of the table's oid and the primary-key values, each as the text
``to_jsonb(row) ->> column`` gives. :func:`record_id` computes the same id from Python
values, :func:`key_text` the text of one value (tested against PostgreSQL for each type).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import uuid
from decimal import Decimal

#: The UUID namespace of the record ids (the same as supa_audit's and hyper_audit's); the
#: audit SQL (sql/functions/to_record_id.sql) has the same, which a test checks.
RECORD_ID_NAMESPACE = uuid.UUID("fd62bc3d-8d6e-43c2-919c-802ba3762271")


# --------------------------------------------------------------------------------------
# Record ids in Python


def key_text(value: object) -> str:
    """A primary-key value as the audit trigger sees it: ``to_jsonb(row) ->> column``.

    Supported, and tested against PostgreSQL:

    * ``str`` (text, varchar, char, enum labels, citext, ...) as is;
    * ``int`` (smallint, integer, bigint): its decimal digits;
    * ``uuid.UUID``: the lowercase hyphenated form;
    * ``bool``: ``true`` / ``false``;
    * ``decimal.Decimal`` (numeric): without exponent and with the scale the column
      stores, so pass ``Decimal("1.50")`` for a ``numeric(10, 2)`` key of 1.5 (the
      history functions do that themselves for a model's ``Numeric(scale=...)`` column);
    * ``datetime.date``, naive ``datetime.datetime`` (timestamp) and naive
      ``datetime.time``: ISO 8601 with a ``T``, trailing zeros of the fraction dropped;
    * aware ``datetime.datetime`` (timestamptz): converted to UTC and written with
      ``+00:00``, as the audit triggers render timestamptz whatever the writer's
      ``TimeZone`` (audit schema version 3 on; rows an earlier version wrote in a session
      whose time zone was not UTC have ids of that offset's text: pass it as a ``str``);
    * ``float`` (double precision): its shortest exact decimal text, without exponent
      (``149.99``, ``100``, ``0.00001``), as ``extra_float_digits = 1`` gives it through
      jsonb; ``NaN``, ``Infinity``, ``-Infinity``;
    * ``bytes`` (bytea): ``\\x`` and lowercase hex.

    Any other key type (real, interval, arrays, ...) can be passed as the exact text
    PostgreSQL produces for it under the canonical settings (docs/behaviour.md,
    "Canonical values and record ids"), as a ``str``.
    """
    if isinstance(value, enum.Enum):
        raise TypeError(
            f"record id: pass the enum label the database stores as a str, not {value!r}"
        )
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "NaN" if value.is_nan() else str(value)
        return format(value.copy_abs() if value.is_zero() else value, "f")
    if isinstance(value, dt.datetime):
        if value.utcoffset() is not None:
            value = value.astimezone(dt.timezone.utc)
            return _trim_fraction(value.replace(tzinfo=None).isoformat()) + "+00:00"
        return _trim_fraction(value.isoformat())
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        if value.utcoffset() is not None:
            raise TypeError("record id: time with time zone keys are not supported")
        return _trim_fraction(value.isoformat())
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if value is None:
        raise ValueError("record id: a primary-key value cannot be None")
    raise TypeError(
        f"record id: key values of type {type(value).__name__} are not supported; "
        "pass the text PostgreSQL writes for the value (row_to_json(...) ->> column) as a str"
    )


def _float_text(value: float) -> str:
    """A float8 key as ``to_jsonb()`` gives it under ``extra_float_digits = 1``: the shortest
    text that reads back as the same double (Python's ``repr`` has the same digits), read as
    a jsonb number, so written without exponent and without a trailing ``.0``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    text = format(Decimal(repr(value)), "f")
    return text[:-2] if text.endswith(".0") else text


def _trim_fraction(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def record_id(table_oid: int, *key_values: object) -> uuid.UUID:
    """The record id the database gives a row: ``audit.to_record_id`` in Python.

    ``key_values`` are the primary-key values in column-number order (the order of the
    columns in ``CREATE TABLE``), of the types :func:`key_text` lists. The id is the UUID
    v5, in namespace :data:`RECORD_ID_NAMESPACE`, of the jsonb text form of
    ``["<table oid>", "<value 1>", ...]``.

    >>> record_id(16439, 1)
    UUID('57ca384e-f24c-5af5-b361-a057aeac506c')
    """
    if not key_values:
        raise ValueError("record id: at least one primary-key value is needed")
    texts = [str(int(table_oid)), *(key_text(value) for value in key_values)]
    # jsonb's text form: ", " between elements, non-ASCII characters as they are, the
    # same escapes as Python's json for quotes, backslashes and control characters.
    return uuid.uuid5(RECORD_ID_NAMESPACE, json.dumps(texts, ensure_ascii=False))
