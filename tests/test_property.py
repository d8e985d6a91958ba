"""Property test: for generated table shapes and operation sequences, the audit table
equals a model of what happened.

Hypothesis draws a table (key columns of several types, composite keys declared in
another order than the columns, value columns of many types, a generated column, awkward
column names) and then statements one by one against the current model: inserts
(sometimes of a 1 MB value), updates, key changes, deletes, upserts, duplicate keys,
statements rolled back, whole-table updates and truncates.

The model is what the statements themselves report: each returns ``to_jsonb(t)::text``
of the rows it wrote (the old row of a delete), so the audit row's ``record`` /
``old_record`` must equal those texts exactly (jsonb's text form is canonical), and the
record ids must equal the Python computation from the key values the test chose.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest
import sqlalchemy as sa
from audit_helpers import Db, connect, record_id, run_online
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg2 import sql as pgsql

EXAMPLES = 50

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=8,
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
ENUM_LABELS = ["a", "Zoë", "it's", "with space", "東京", ""]


def decimals() -> st.SearchStrategy[Decimal]:
    return st.builds(
        lambda digits, scale: Decimal(digits).scaleb(-scale),
        st.integers(-(10**12), 10**12),
        st.integers(0, 4),
    )


def numeric_text(value: Decimal) -> str:
    return format(value, "f")


@dataclass(frozen=True)
class KeyType:
    sql: str
    values: st.SearchStrategy[Any]
    text: Any  # value -> its text form, as ``to_jsonb(row) ->> column`` gives it


KEY_TYPES = {
    "int": KeyType("integer", st.integers(-(2**31), 2**31 - 1), str),
    "bigint": KeyType("bigint", st.integers(-(2**63), 2**63 - 1), str),
    "text": KeyType("text", TEXT, str),
    "uuid": KeyType("uuid", st.uuids(), str),
    "numeric": KeyType("numeric", decimals(), numeric_text),
}

VALUE_TYPES: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "numeric": ("numeric", decimals()),
    "text": ("text", TEXT),
    "int[]": ("integer[]", st.lists(st.none() | st.integers(-(2**31), 2**31 - 1), max_size=4)),
    "text[]": ("text[]", st.lists(st.none() | TEXT, max_size=3)),
    "json": ("json", JSON.map(psycopg2.extras.Json)),
    "jsonb": ("jsonb", JSON.map(psycopg2.extras.Json)),
    "bytea": ("bytea", st.binary(max_size=16).map(psycopg2.Binary)),
    "enum": ("ENUM", st.sampled_from(ENUM_LABELS)),
    "timestamptz": (
        "timestamptz",
        st.datetimes(
            min_value=dt.datetime(1, 1, 2),
            max_value=dt.datetime(9999, 12, 30),
            timezones=st.just(dt.timezone.utc),
        ),
    ),
    "timestamp": ("timestamp", st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30))),
    "float8": ("double precision", st.floats()),
    "boolean": ("boolean", st.booleans()),
}

COLUMN_NAMES = ["id", "Key Part", 'q"uote', "ключ", "n%s", "x:y", "c0", "c1", "c2", "c3", "c4"]


@dataclass
class Column:
    name: str
    sql_type: str
    values: st.SearchStrategy[Any] | None  # None: generated
    key: KeyType | None = None


@dataclass
class Shape:
    columns: list[Column]  # in table order (attribute numbers)
    primary_key: list[str]  # in declaration order
    big_column: str | None  # a text column that may get a 1 MB value

    @property
    def keys(self) -> list[Column]:
        """The key columns in column-number order: the record id's order."""
        return [c for c in self.columns if c.key is not None]

    @property
    def writable(self) -> list[Column]:
        return [c for c in self.columns if c.values is not None and c.key is None]


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    names = draw(st.permutations(COLUMN_NAMES))
    key_count = draw(st.integers(1, 3))
    columns = [
        Column(name, KEY_TYPES[kind].sql, KEY_TYPES[kind].values, KEY_TYPES[kind])
        for name, kind in zip(
            names, draw(st.lists(st.sampled_from(sorted(KEY_TYPES)), min_size=key_count,
                                 max_size=key_count)), strict=False
        )
    ]  # fmt: skip
    # Each value type as likely as any other: a few of them, in a random order.
    value_kinds = draw(st.permutations(sorted(VALUE_TYPES)))[: draw(st.integers(0, 6))]
    for name, kind in zip(names[key_count:], value_kinds, strict=False):
        sql_type, values = VALUE_TYPES[kind]
        columns.append(Column(name, sql_type, st.none() | values))
    big_column = None
    if draw(st.booleans()):
        big_column = "big ü"
        columns.append(Column(big_column, "text", st.none() | TEXT))
    if draw(st.booleans()):
        columns.append(Column("generated ü", "text", None))
    primary_key = [c.name for c in draw(st.permutations(columns[:key_count]))]
    return Shape(draw(st.permutations(columns)), primary_key, big_column)


@dataclass
class Model:
    """The expected table content (jsonb text and key texts per key) and audit rows."""

    rows: dict[tuple[Any, ...], tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    audit: list[tuple[Any, ...]] = field(default_factory=list)


class Runner:
    def __init__(self, db: Db, shape: Shape, schema: str) -> None:
        self.db = db
        self.shape = shape
        self.schema = schema
        self.table = pgsql.Identifier(schema, "t")
        self.model = Model()
        self.oid = 0

    def create(self) -> None:
        shape, schema = self.shape, pgsql.Identifier(self.schema)
        enum = pgsql.Identifier(self.schema, "Mood ü")
        self.db.run(pgsql.SQL("create schema {}").format(schema))
        self.db.run(
            pgsql.SQL("create type {} as enum ({})").format(
                enum, pgsql.SQL(", ").join(map(pgsql.Literal, ENUM_LABELS))
            )
        )
        first_key = pgsql.Identifier(shape.keys[0].name)
        definitions = []
        for column in shape.columns:
            sql_type = pgsql.SQL(column.sql_type) if column.sql_type != "ENUM" else enum
            if column.values is None:
                definitions.append(
                    pgsql.SQL("{} text generated always as ({}::text || '!') stored").format(
                        pgsql.Identifier(column.name), first_key
                    )
                )
            else:
                definitions.append(
                    pgsql.SQL("{} {}").format(pgsql.Identifier(column.name), sql_type)
                )
        definitions.append(
            pgsql.SQL("primary key ({})").format(
                pgsql.SQL(", ").join(map(pgsql.Identifier, shape.primary_key))
            )
        )
        self.db.run(
            pgsql.SQL("create table {} ({})").format(self.table, pgsql.SQL(", ").join(definitions))
        )
        qualified = self.table.as_string(self.db.conn)
        self.db.run("select audit.enable_tracking(%s)", [qualified])
        self.oid = self.db.oid(qualified)

    # -- SQL pieces ----------------------------------------------------------------------

    def _value(self, column: Column, value: Any) -> pgsql.Composable:
        """A literal of the column's type (no driver placeholders: names hold '%')."""
        if column.sql_type == "ENUM":
            sql_type: pgsql.Composable = pgsql.Identifier(self.schema, "Mood ü")
        else:
            sql_type = pgsql.SQL(column.sql_type)
        return pgsql.SQL("({})::{}").format(pgsql.Literal(value), sql_type)

    def _key_match(self, key: tuple[Any, ...]) -> pgsql.Composable:
        return pgsql.SQL(" and ").join(
            pgsql.SQL("{} = {}").format(pgsql.Identifier(c.name), self._value(c, v))
            for c, v in zip(self.shape.keys, key, strict=True)
        )

    def _returning(self) -> pgsql.Composable:
        keys = pgsql.SQL(", ").join(pgsql.Identifier(c.name) for c in self.shape.keys)
        return pgsql.SQL(" returning to_jsonb(t)::text, {}").format(keys)

    def execute(self, statement: pgsql.Composable) -> list[tuple[Any, ...]]:
        with self.db.conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    # -- the model -----------------------------------------------------------------------

    def ids(self, key_texts: tuple[str, ...] | None) -> uuid.UUID | None:
        return None if key_texts is None else record_id(self.oid, *key_texts)

    def expect(self, op: str, new: Any, old: Any) -> None:
        self.model.audit.append(
            (op, self.ids(new and new[1]), self.ids(old and old[1]), new and new[0], old and old[0])
        )

    def key_texts(self, key: tuple[Any, ...]) -> tuple[str, ...]:
        return tuple(c.key.text(v) for c, v in zip(self.shape.keys, key, strict=True))  # type: ignore[union-attr]

    # -- the operations ------------------------------------------------------------------

    def insert(self, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        columns = [*self.shape.keys, *(c for c in self.shape.writable if c.name in values)]
        params = [*key, *(values[c.name] for c in columns[len(key) :])]
        statement = (
            pgsql.SQL("insert into {} as t ({}) values ({})").format(
                self.table,
                pgsql.SQL(", ").join(pgsql.Identifier(c.name) for c in columns),
                pgsql.SQL(", ").join(
                    self._value(c, v) for c, v in zip(columns, params, strict=True)
                ),
            )
            + self._returning()
        )
        if key in self.model.rows:
            self.expect_failure(statement, "23505")
            return
        ((new, *_),) = self.execute(statement)
        self.model.rows[key] = (new, self.key_texts(key))
        self.expect("INSERT", self.model.rows[key], None)

    def upsert(self, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        writable = [c for c in self.shape.writable if c.name in values]
        columns = [*self.shape.keys, *writable]
        params = [*key, *(values[c.name] for c in writable)]
        action = (
            pgsql.SQL("do update set {}").format(
                pgsql.SQL(", ").join(
                    pgsql.SQL("{0} = excluded.{0}").format(pgsql.Identifier(c.name))
                    for c in writable
                )
            )
            if writable
            else pgsql.SQL("do nothing")
        )
        statement = (
            pgsql.SQL("insert into {} as t ({}) values ({}) on conflict ({}) {}").format(
                self.table,
                pgsql.SQL(", ").join(pgsql.Identifier(c.name) for c in columns),
                pgsql.SQL(", ").join(
                    self._value(c, v) for c, v in zip(columns, params, strict=True)
                ),
                pgsql.SQL(", ").join(map(pgsql.Identifier, self.shape.primary_key)),
                action,
            )
            + self._returning()
        )
        found = self.execute(statement)
        old = self.model.rows.get(key)
        if old is None:
            ((new, *_),) = found
            self.model.rows[key] = (new, self.key_texts(key))
            self.expect("INSERT", self.model.rows[key], None)
        elif writable:
            ((new, *_),) = found
            self.model.rows[key] = (new, old[1])  # the key keeps its stored form
            self.expect("UPDATE", self.model.rows[key], old)
        else:
            assert found == []

    def update(
        self, key: tuple[Any, ...], values: dict[str, Any], new_key: tuple[Any, ...] | None
    ) -> None:
        assignments = [(c, values[c.name]) for c in self.shape.writable if c.name in values]
        if new_key is not None:
            assignments += list(zip(self.shape.keys, new_key, strict=True))
        if not assignments:
            return
        statement = (
            pgsql.SQL("update {} as t set {} where ").format(
                self.table,
                pgsql.SQL(", ").join(
                    pgsql.SQL("{} = {}").format(pgsql.Identifier(c.name), self._value(c, v))
                    for c, v in assignments
                ),
            )
            + self._key_match(key)
            + self._returning()
        )
        old = self.model.rows[key]
        if new_key is not None and new_key != key and new_key in self.model.rows:
            self.expect_failure(statement, "23505")
            return
        ((new, *returned_key),) = self.execute(statement)
        del self.model.rows[key]
        texts = old[1] if new_key is None else self.key_texts(new_key)
        self.model.rows[tuple(returned_key)] = (new, texts)
        self.expect("UPDATE", (new, texts), old)

    def update_all(self, column: Column, value: Any) -> None:
        statement = (
            pgsql.SQL("update {} as t set {} = {}").format(
                self.table, pgsql.Identifier(column.name), self._value(column, value)
            )
            + self._returning()
        )
        # The rows come back in the order they were written, which is the audit's order.
        for new, *returned_key in self.execute(statement):
            key = tuple(returned_key)
            old = self.model.rows[key]
            self.model.rows[key] = (new, old[1])
            self.expect("UPDATE", self.model.rows[key], old)

    def delete(self, key: tuple[Any, ...]) -> None:
        statement = pgsql.SQL("delete from {} as t where ").format(self.table)
        ((old_text, *_),) = self.execute(statement + self._key_match(key) + self._returning())
        old = self.model.rows.pop(key)
        assert old_text == old[0]
        self.expect("DELETE", None, old)

    def truncate(self) -> None:
        self.execute(pgsql.SQL("truncate {}").format(self.table))
        self.model.rows.clear()
        self.model.audit.append(("TRUNCATE", None, None, None, None))

    def rolled_back(self, key: tuple[Any, ...], values: dict[str, Any]) -> None:
        """Changes in a transaction that is rolled back: no audit row."""
        saved = Model(dict(self.model.rows), list(self.model.audit))
        self.db.conn.autocommit = False
        try:
            self.upsert(key, values)
            if self.model.rows:
                self.delete(next(iter(self.model.rows)))
            self.truncate()
        finally:
            self.db.conn.rollback()
            self.db.conn.autocommit = True
        self.model = saved

    def expect_failure(self, statement: pgsql.Composable, code: str) -> None:
        error = self.db.error(statement)  # type: ignore[arg-type]
        assert error.pgcode == code, error

    # -- the check -----------------------------------------------------------------------

    def audit_rows(self) -> list[tuple[Any, ...]]:
        rows = self.db.rows(
            "select op::text, record_id, old_record_id, record::text, old_record::text,"
            " table_oid::bigint, table_schema::text, table_name::text"
            " from audit.record_version order by id"
        )
        for row in rows:
            assert row[5:] == (self.oid, self.schema, "t")
        return [(op, rid, old, rec, old_rec) for op, rid, old, rec, old_rec, *_ in rows]


@pytest.fixture(scope="module")
def property_db(pg_server: Any) -> Iterator[tuple[Db, sa.Engine]]:
    """One database for every example (each example gets its own schema)."""
    name = f"property_{uuid.uuid4().hex[:12]}"
    assert pg_server.psql("postgres", "-c", f"create database {name}").returncode == 0
    engine = sa.create_engine(pg_server.url(name))
    run_online(engine, lambda op: op.install_audit())
    with connect(pg_server.url(name)) as db:
        psycopg2.extras.register_uuid(conn_or_curs=db.conn)
        yield db, engine
    engine.dispose()
    assert pg_server.psql("postgres", "-c", f"drop database {name}").returncode == 0


counter = iter(range(10**9))


def values_for(data: st.DataObject, shape: Shape, partial: bool) -> dict[str, Any]:
    values = {}
    for column in shape.writable:
        if partial and not data.draw(st.booleans()):
            continue
        assert column.values is not None
        values[column.name] = data.draw(column.values)
    return values


def with_big_value(shape: Shape, values: dict[str, Any]) -> dict[str, Any]:
    assert shape.big_column is not None
    event("a 1 MB value")
    return {**values, shape.big_column: "ü" + "x" * 1_000_000}  # toasted: a 1 MB record


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays deterministic
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)  # fmt: skip
@given(shape=shapes(), data=st.data())
def test_audit_equals_the_model(
    property_db: tuple[Db, sa.Engine], shape: Shape, data: st.DataObject
) -> None:
    db, _ = property_db
    db.run("truncate audit.record_version")
    runner = Runner(db, shape, f"p{next(counter)}")
    runner.create()
    event(f"key columns: {len(shape.keys)}")
    for column in shape.columns:
        event(f"column type: {column.sql_type if column.values is not None else 'generated'}")
    try:
        new_key = st.tuples(*(c.values for c in shape.keys))  # type: ignore[misc]
        for _ in range(data.draw(st.integers(1, 15))):
            rows = list(runner.model.rows)
            existing = st.sampled_from(rows) if rows else new_key
            action = data.draw(
                st.sampled_from(
                    ["insert", "insert", "upsert", "update", "update key", "delete",
                     "update all", "rolled back", "truncate", "1 MB"]
                )
            )  # fmt: skip
            event(f"statement: {action}")
            if action == "insert":
                key = data.draw(existing if data.draw(st.integers(0, 4)) == 0 else new_key)
                runner.insert(key, values_for(data, shape, partial=True))
            elif action == "upsert":
                key = data.draw(existing | new_key)
                runner.upsert(key, values_for(data, shape, partial=True))
            elif action == "update" and rows:
                runner.update(data.draw(existing), values_for(data, shape, partial=True), None)
            elif action == "update key" and rows:
                target = data.draw(existing | new_key)
                runner.update(data.draw(existing), values_for(data, shape, partial=True), target)
            elif action == "delete" and rows:
                runner.delete(data.draw(existing))
            elif action == "update all" and shape.writable:
                column = data.draw(st.sampled_from(shape.writable))
                assert column.values is not None
                runner.update_all(column, data.draw(column.values))
            elif action == "rolled back":
                runner.rolled_back(data.draw(new_key), values_for(data, shape, partial=False))
            elif action == "truncate":
                runner.truncate()
            elif action == "1 MB" and shape.big_column:
                values = with_big_value(shape, values_for(data, shape, partial=True))
                if rows and data.draw(st.booleans()):
                    runner.update(data.draw(existing), values, None)
                else:
                    runner.upsert(data.draw(new_key), values)
        assert runner.audit_rows() == runner.model.audit
        live = {
            tuple(key): text
            for text, *key in runner.execute(
                pgsql.SQL("select to_jsonb(t)::text, {} from {} as t").format(
                    pgsql.SQL(", ").join(pgsql.Identifier(c.name) for c in shape.keys),
                    runner.table,
                )
            )
        }
        assert live == {key: text for key, (text, _) in runner.model.rows.items()}
    finally:
        db.run(pgsql.SQL("drop schema {} cascade").format(pgsql.Identifier(runner.schema)))


def test_the_record_text_forms_the_model_relies_on() -> None:
    # A key's text is what to_jsonb(row) ->> column gives: numeric keeps its scale.
    assert numeric_text(Decimal(150).scaleb(-2)) == "1.50"
    assert numeric_text(Decimal(0).scaleb(-3)) == "0.000"
    assert json.dumps(["1", "ü"], ensure_ascii=False) == '["1", "ü"]'
