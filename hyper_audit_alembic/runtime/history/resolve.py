"""Which table a history is asked for, and every table oid its audit rows are under.

The caller names a table as a mapped class or object, a Core ``Table`` or a
``"schema.table"`` string (:func:`describe_model`, :func:`parse_table_name`);
:func:`resolve` finds it in the database with its key columns and the oids its audit
rows are recorded under (also those of the table before a dump and restore, see
:mod:`hyper_audit_alembic.runtime.history`), and :func:`key_values` puts the caller's key
in the database's key-column order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session

from ...sqltext import qualified_name
from .model import RecordVersion


@dataclass(frozen=True)
class ModelTable:
    """A table as the caller named it, with its key columns in the caller's order."""

    schema: str | None
    name: str
    key_columns: tuple[str, ...] | None  # None: take the database's key
    attribute_keys: Mapping[str, str]  # mapped attribute key -> column name
    numeric_scales: Mapping[str, int]  # column name -> scale, for Numeric keys
    column_order: Mapping[str, int]  # column name -> position, when the table is gone


@dataclass(frozen=True)
class ResolvedTable:
    """A table resolved against the database, with the oids its history is under."""

    schema: str
    name: str
    current_oid: int | None
    key_columns: tuple[str, ...]  # column-number order, as the triggers use them
    columns: tuple[str, ...]  # all columns, in column-number order (when known)
    own_oids: tuple[int, ...]  # every row under these oids is this table's
    shared_oids: tuple[int, ...]  # only the rows recorded under schema.name are
    #: audit.record_version is a Citus distributed table (op.distribute_audit()).
    distributed: bool = False

    @property
    def oids(self) -> tuple[int, ...]:
        return self.own_oids + self.shared_oids

    def row_filter(self) -> sa.ColumnElement[bool]:
        """The audit rows of this table, by oid (the ``table_oid`` index).

        Rows of an oid that is (now) another relation's count only under this table's
        name; rows of the current oid count unless recorded under the name of another
        relation that exists now (an older table that had the same oid).
        """
        rv = RecordVersion
        ours = sa.and_(rv.table_schema == self.schema, rv.table_name == self.name)
        conditions: list[sa.ColumnElement[bool]] = []
        if self.current_oid is not None:
            relations = _PG_CLASS.join(
                _PG_NAMESPACE, _PG_NAMESPACE.c.oid == _PG_CLASS.c.relnamespace
            )
            other_relation: sa.ColumnElement[bool]
            if self.distributed:
                # Citus joins no local table (pg_class) to a distributed one in a correlated
                # subquery; it runs an uncorrelated one first, then routes the query by
                # table_oid to the one shard that holds this table's rows.
                other_relation = sa.tuple_(rv.table_schema, rv.table_name).in_(
                    sa.select(_PG_NAMESPACE.c.nspname, _PG_CLASS.c.relname).select_from(relations)
                )
            else:
                other_relation = (
                    sa.select(sa.literal(1))
                    .select_from(relations)
                    .where(_PG_CLASS.c.relname == rv.table_name)
                    .where(_PG_NAMESPACE.c.nspname == rv.table_schema)
                    .exists()
                )
            conditions.append(
                sa.and_(rv.table_oid == self.current_oid, sa.or_(ours, ~other_relation))
            )
        old = [oid for oid in self.own_oids if oid != self.current_oid]
        if old:
            conditions.append(rv.table_oid.in_(old))
        if self.shared_oids:
            conditions.append(sa.and_(rv.table_oid.in_(self.shared_oids), ours))
        return sa.or_(*conditions) if conditions else sa.false()


_PG_CLASS = sa.table(
    "pg_class",
    sa.column("oid"),
    sa.column("relname"),
    sa.column("relnamespace"),
    schema="pg_catalog",
)
_PG_NAMESPACE = sa.table(
    "pg_namespace", sa.column("oid"), sa.column("nspname"), schema="pg_catalog"
)

_RESOLVE = sa.text(
    """
    select c.oid::bigint, n.nspname::text, c.relname::text,
        (
            select array_agg(a.attname::text order by a.attnum)
            from pg_catalog.pg_index i
            join pg_catalog.pg_attribute a
                on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
            where i.indrelid = c.oid and i.indisprimary
        ),
        (
            select array_agg(a.attname::text order by a.attnum)
            from pg_catalog.pg_attribute a
            where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        ),
        exists (select from pg_catalog.pg_extension e where e.extname = 'citus')
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where c.oid = pg_catalog.to_regclass(:qualified)
    """
)

# Every oid in the audit table, by a skip scan of the table_oid index (one index probe
# per oid), with the names on its first and its last audit row in that index (the range
# condition keeps the backward scan: with "= oid" the planner drops the ORDER BY).
_OIDS = sa.text(
    """
    with recursive oids (table_oid) as (
        select min(table_oid) from audit.record_version
        union all
        select (
            select min(r.table_oid) from audit.record_version r
            where r.table_oid > oids.table_oid
        )
        from oids
        where oids.table_oid is not null
    )
    select
        o.table_oid::bigint,
        exists (select from pg_catalog.pg_class c where c.oid = o.table_oid),
        first_row.table_schema::text, first_row.table_name::text,
        last_row.table_schema::text, last_row.table_name::text
    from oids o
    cross join lateral (
        select r.table_schema, r.table_name from audit.record_version r
        where r.table_oid >= o.table_oid and r.table_oid <= o.table_oid
        order by r.table_oid
        limit 1
    ) first_row
    cross join lateral (
        select r.table_schema, r.table_name from audit.record_version r
        where r.table_oid >= o.table_oid and r.table_oid <= o.table_oid
        order by r.table_oid desc
        limit 1
    ) last_row
    where o.table_oid is not null
    """
)


# Whether audit.record_version is a Citus distributed table (asked only where the citus
# extension is installed: pg_dist_partition exists only then).
_CITUS_EXTENSION = sa.text(
    "select exists (select from pg_catalog.pg_extension e where e.extname = 'citus')"
)
_DISTRIBUTED = sa.text(
    "select exists (select from pg_catalog.pg_dist_partition p"
    " where p.logicalrelid = pg_catalog.to_regclass('audit.record_version'))"
)

# The oids of a distributed audit table (Citus plans no recursive CTE over it), with the
# names of each oid's first and last audit row by id: grouped by the distribution column,
# so each shard answers for its own oids, but every audit row is read. Used only for a table
# that no longer exists; an existing table's history is its current oid's, on one shard.
_OIDS_DISTRIBUTED = sa.text(
    """
    select
        r.table_oid::bigint,
        exists (select from pg_catalog.pg_class c where c.oid = r.table_oid),
        (pg_catalog.array_agg(r.table_schema::text order by r.id))[1],
        (pg_catalog.array_agg(r.table_name::text order by r.id))[1],
        (pg_catalog.array_agg(r.table_schema::text order by r.id desc))[1],
        (pg_catalog.array_agg(r.table_name::text order by r.id desc))[1]
    from audit.record_version r
    group by r.table_oid
    """
)


def describe_model(model: object) -> ModelTable:
    """A mapped class, a mapper, a Core ``Table`` or a ``"schema.table"`` string."""
    if isinstance(model, str):
        schema, name = parse_table_name(model)
        return ModelTable(schema, name, None, {}, {}, {})
    if isinstance(model, sa.Table):
        return _from_table(model, [c.name for c in model.primary_key.columns], {})
    mapper = model if isinstance(model, Mapper) else sa.inspect(model, raiseerr=False)
    if not isinstance(mapper, Mapper):
        raise TypeError(
            f"history: {model!r} is not a mapped class, a Table or a table name; pass "
            "history(session, obj) for an object"
        )
    table = mapper.local_table
    if not isinstance(table, sa.Table):
        raise TypeError(f"history: {mapper.class_.__name__} is not mapped to a table")
    table_key = list(table.primary_key.columns)
    names: list[str] = []
    for position, column in enumerate(mapper.primary_key):
        if column.table is table:
            names.append(column.name)
        elif len(table_key) == len(mapper.primary_key):  # joined inheritance
            names.append(table_key[position].name)
        else:
            raise TypeError(f"history: cannot match the key of {mapper.class_.__name__}")
    attributes = {
        prop.key: prop.columns[0].name
        for prop in mapper.column_attrs
        if prop.columns
        and isinstance(prop.columns[0], sa.Column)
        and prop.columns[0].table is table
    }
    return _from_table(table, names, attributes)


def _from_table(table: sa.Table, key: list[str], attributes: Mapping[str, str]) -> ModelTable:
    scales = {
        column.name: column.type.scale
        for column in table.columns
        if isinstance(column.type, sa.Numeric)
        and not isinstance(column.type, sa.Float)
        and column.type.scale is not None
    }
    order = {column.name: position for position, column in enumerate(table.columns)}
    return ModelTable(table.schema, table.name, tuple(key), attributes, scales, order)


def parse_table_name(text: str) -> tuple[str | None, str]:
    """``'schema.table'``, ``'"My Schema"."My Table"'`` or ``'table'``, as PostgreSQL reads it.

    Unquoted parts are folded to lower case, quoted ones kept (``""`` is a quote).
    """
    parts: list[str] = []
    i = 0
    while True:
        if i < len(text) and text[i] == '"':
            part = []
            i += 1
            while True:
                end = text.find('"', i)
                if end < 0:
                    raise ValueError(f"unterminated quoted name in {text!r}")
                part.append(text[i:end])
                if text.startswith('""', end):
                    part.append('"')
                    i = end + 2
                else:
                    i = end + 1
                    break
            parts.append("".join(part))
        else:
            end = text.find(".", i)
            end = len(text) if end < 0 else end
            raw = text[i:end].strip()
            if not raw or '"' in raw:
                raise ValueError(f"not a table name: {text!r}")
            parts.append("".join(c.lower() if "A" <= c <= "Z" else c for c in raw))
            i = end
        if i == len(text):
            break
        if text[i] != ".":
            raise ValueError(f"not a table name: {text!r}")
        i += 1
    if len(parts) > 2:
        raise ValueError(f"not a table name (schema.table at most): {text!r}")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def resolve(session: Session, table: ModelTable, *, with_oids: bool = True) -> ResolvedTable:
    """The table's oid, key columns and every oid its audit rows are under.

    ``with_oids=False``: the catalog only (no oids but the current one), for a caller
    that may not read ``audit.record_version`` (``redact()``'s role need not).
    """
    found = session.execute(
        _RESOLVE, {"qualified": qualified_name(table.name, table.schema)}
    ).one_or_none()
    if found is not None:
        current_oid, schema, name, key, all_columns, citus = found
        key_columns = tuple(key or ())
        columns = tuple(all_columns or ())
    else:
        citus = session.execute(_CITUS_EXTENSION).scalar()
        current_oid = None
        columns = tuple(sorted(table.column_order, key=table.column_order.__getitem__))
        name = table.name
        schema = table.schema or session.execute(sa.text("select current_schema()")).scalar()
        if table.key_columns is None:
            key_columns = ()
        else:  # the table is gone: column order as the model declares it
            key_columns = tuple(
                sorted(table.key_columns, key=lambda c: table.column_order.get(c, 0))
            )
    own: list[int] = [] if current_oid is None else [current_oid]
    shared: list[int] = []
    oids_query = _OIDS
    distributed = bool(citus) and bool(session.execute(_DISTRIBUTED).scalar())
    if with_oids and distributed:
        # A distributed audit table (op.distribute_audit()): an existing table's history
        # is its current oid's, so that each lookup goes to the one shard holding it
        # (rows under an oid from before a dump and restore are not followed there).
        oids_query = _OIDS_DISTRIBUTED
        with_oids = current_oid is None
    found_oids = session.execute(oids_query) if with_oids else ()
    for oid, live, first_schema, first_name, last_schema, last_name in found_oids:
        if oid == current_oid:
            continue
        if (first_schema, first_name) == (schema, name) or (last_schema, last_name) == (
            schema,
            name,
        ):
            (shared if live else own).append(oid)
    return ResolvedTable(
        str(schema),
        name,
        current_oid,
        key_columns,
        columns,
        tuple(own),
        tuple(shared),
        distributed,
    )


def key_values(table: ModelTable, target: ResolvedTable, pk: object) -> tuple[object, ...]:
    """The caller's key (scalar, tuple or dict) in the database's key-column order."""
    caller_order = table.key_columns if table.key_columns is not None else target.key_columns
    if isinstance(pk, Mapping):
        by_column = {table.attribute_keys.get(k, k): v for k, v in pk.items()}
        wanted = set(caller_order or target.key_columns)
        if not wanted:
            raise ValueError(
                f"history: {target.schema}.{target.name} does not exist, so its key columns "
                "are unknown: pass the key as a value or a tuple in column order"
            )
        if set(by_column) != wanted:
            raise ValueError(
                f"history: the key of {target.schema}.{target.name} is "
                f"({', '.join(sorted(wanted))}), got ({', '.join(sorted(map(str, pk)))})"
            )
    else:
        values = tuple(pk) if isinstance(pk, (tuple, list)) else (pk,)
        if not caller_order:
            caller_order = tuple(f"#{i}" for i in range(len(values)))
        if len(values) != len(caller_order):
            raise ValueError(
                f"history: the key of {target.schema}.{target.name} has {len(caller_order)} "
                f"column(s) ({', '.join(caller_order)}), got {len(values)} value(s)"
            )
        by_column = dict(zip(caller_order, values, strict=True))
    db_order = target.key_columns or tuple(by_column)
    if set(db_order) != set(by_column):
        raise ValueError(
            f"history: the primary key of {target.schema}.{target.name} in the database is "
            f"({', '.join(db_order)}), the model's is ({', '.join(by_column)})"
        )
    return tuple(_normalize(by_column[c], table.numeric_scales.get(c)) for c in db_order)


def _normalize(value: object, scale: int | None) -> object:
    if scale is not None and isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return Decimal(value).quantize(Decimal(1).scaleb(-scale))
    return value


def identity_of(obj: object) -> tuple[object, tuple[object, ...]]:
    state = sa.inspect(obj, raiseerr=False)
    mapper = getattr(state, "mapper", None)
    if state is None or not isinstance(mapper, Mapper) or not hasattr(state, "identity"):
        raise TypeError(
            f"history: {obj!r} is not a mapped object; pass history(session, Model, pk)"
        )
    identity = state.identity
    if identity is None:
        identity = tuple(mapper.primary_key_from_instance(obj))
    if any(value is None for value in identity):
        raise ValueError(f"history: {obj!r} has no primary key yet")
    return mapper, tuple(identity)
