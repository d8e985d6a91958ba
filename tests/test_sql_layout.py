"""The layout of the SQL files (sql/README.md): each function defined once, released
versions frozen, constants in one place, statements split where PostgreSQL would."""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest
from audit_helpers import NAMESPACE, RELEASED_SHA256, connect, run_online

from hyper_audit_alembic import sql
from hyper_audit_alembic.migration.statements import MANAGED_INDEXES
from hyper_audit_alembic.runtime.history import RECORD_ID_NAMESPACE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli before Python 3.11
    import tomli as tomllib

SQL_ROOT = Path(sql.__file__).parent


def current_files() -> list[Path]:
    """Every SQL file but the frozen released versions."""
    return sorted(path for path in SQL_ROOT.rglob("*.sql") if path.parent != SQL_ROOT / "released")


def test_every_released_version_is_frozen_and_the_current_one_is_released() -> None:
    assert sorted(RELEASED_SHA256) == list(sql.RELEASED_VERSIONS)
    assert sorted(int(p.stem) for p in (SQL_ROOT / "released").glob("*.sql")) == list(
        sql.RELEASED_VERSIONS
    )
    # The current version is released, or the next one while it is being developed.
    assert sql.SCHEMA_VERSION in (max(sql.RELEASED_VERSIONS), max(sql.RELEASED_VERSIONS) + 1)
    steps = sorted(p.name for p in (SQL_ROOT / "steps").glob("*.sql"))
    assert steps == sorted(
        [f"{n}.sql" for n in range(1, sql.SCHEMA_VERSION + 1)]
        + [f"{n}.down.sql" for n in range(2, sql.SCHEMA_VERSION + 1)]
    )


def test_release_text_is_what_an_install_runs_but_the_take_over() -> None:
    install = sql.install_statements()
    prepare, finish = sql.statements("adopt_prepare"), sql.statements("adopt_finish")
    assert install[: len(prepare)] == list(prepare)
    assert install[-len(finish) :] == list(finish)
    assert sql.split_statements(sql.release_text()) == install[len(prepare) : -len(finish)]


def defined_functions(text: str) -> list[str]:
    """The audit functions (and procedures) a SQL text creates (also from inside a DO block)."""
    return [
        part.split("(", 1)[0]
        for statement in sql.split_statements(text)
        for kind in ("function", "procedure")
        for part in statement.split(f"create or replace {kind} audit.")[1:]
    ]


def test_each_function_is_defined_in_exactly_one_file() -> None:
    where: dict[str, set[str]] = {}
    for path in current_files():
        for name in defined_functions(path.read_text(encoding="utf-8")):
            where.setdefault(name, set()).add(str(path.relative_to(SQL_ROOT)))
    repeated = {name: files for name, files in where.items() if len(files) > 1}
    assert repeated == {}
    for name in sql.FUNCTIONS:
        assert where[name] == {f"functions/{name}.sql"}
    # Only the partitioned layout's own functions live outside functions/.
    assert sorted(n for n, files in where.items() if files != {f"functions/{n}.sql"}) == [
        "create_partition",
        "ensure_partitions",
        "maintain_partitions",
        "partition_bucket",
        "partitions",
    ]


def test_functions_lists_each_file_of_functions_once() -> None:
    files = sorted(p.stem for p in (SQL_ROOT / "functions").glob("*.sql"))
    assert sorted(sql.FUNCTIONS) == files
    assert len(set(sql.FUNCTIONS)) == len(sql.FUNCTIONS)


def test_no_step_defines_a_function() -> None:
    for path in (SQL_ROOT / "steps").glob("*.sql"):
        text = path.read_text(encoding="utf-8")
        assert "create or replace function" not in text, path.name
        assert "create or replace procedure" not in text, path.name


def test_the_record_id_namespace_is_the_one_python_uses() -> None:
    found = {
        uuid.UUID(text)
        for path in current_files()
        for text in re.findall(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            path.read_text(encoding="utf-8"),
        )
    }
    assert found == {RECORD_ID_NAMESPACE} == {NAMESPACE}


def test_the_check_constraints_are_written_once() -> None:
    where = [
        str(path.relative_to(SQL_ROOT))
        for path in current_files()
        if "record_version_old_record_when_old" in path.read_text(encoding="utf-8")
    ]
    assert where == ["steps/1.sql"]


# -- splitting and templates --------------------------------------------------------------


def test_split_knows_comments_quotes_and_dollar_quoted_bodies() -> None:
    text = """
-- a comment; with a semicolon
select 1 /* a ; b ' */ as one;
/* a block comment ; */ do $f$ begin perform ';'; end $f$;
select $x$;$x$, 'it''s;', "a;b" from t -- trailing; comment
;
do $$ declare c text := $c$;$c$; begin end $$
"""
    assert sql.split_statements(text) == [
        "select 1 /* a ; b ' */ as one",
        "do $f$ begin perform ';'; end $f$",
        """select $x$;$x$, 'it''s;', "a;b" from t""",
        "do $$ declare c text := $c$;$c$; begin end $$",
    ]


def test_filled_quotes_each_value_once_and_checks_the_placeholders() -> None:
    statement = sql.filled("untrack_table", {"target": "a'b"})
    assert "    target constant text := 'a''b';\n" in statement
    with pytest.raises(AssertionError) as extra:
        sql.filled("untrack_table", {"target": "a", "other": 1})
    assert str(extra.value) == (
        "sql/untrack_table.sql does not have exactly the placeholders {'target': 'a', 'other': 1}"
    )
    with pytest.raises(AssertionError) as misspelt:
        sql.filled("untrack_table", {"tar": "a"})
    assert str(misspelt.value) == "sql/untrack_table.sql: placeholder :'tar' is not there once"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        ("7 days", "'7 days'"),
        ("it's", "'it''s'"),
        (["a", "b'c"], "array['a', 'b''c']::text[]"),
        ([], "array[]::text[]"),
    ],
)
def test_literal(value: sql.Value, literal: str) -> None:
    assert sql.literal(value) == literal


# -- against the database -----------------------------------------------------------------


def test_managed_indexes_are_the_lookup_indexes_of_a_plain_install(engine, db_url: str) -> None:  # type: ignore[no-untyped-def]
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        indexes = db.rows(
            "select c.relname::text from pg_index i join pg_class c on c.oid = i.indexrelid"
            " where i.indrelid = 'audit.record_version'::regclass"
            " and not exists (select from pg_constraint k where k.conindid = i.indexrelid)"
            " order by 1"
        )
    # Version 2's index of transaction ids is not made composite: it stays as it is.
    assert [name for (name,) in indexes] == sorted(
        [*MANAGED_INDEXES, "record_version_transaction_id"]
    )


def test_released_version_1_replayed_over_an_install_keeps_everything(engine, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """A downgrade ends by replaying released/1.sql over version 2's schema (after the
    steps back from the current version)."""
    run_online(engine, lambda op: op.install_audit())
    with connect(db_url) as db:
        db.run("create table t (id int primary key)")
        db.run("select audit.enable_tracking('t')")
        db.run("insert into t values (1)")
    run_online(engine, lambda op: op.downgrade_audit(from_version=sql.SCHEMA_VERSION, to_version=1))
    with connect(db_url) as db:
        assert db.one("select version from audit.schema_version") == 1
        assert db.one("select count(*) from audit.record_version") == 1
        db.run("insert into t values (2)")
        assert db.one("select count(*) from audit.record_version") == 2


def test_an_upgrade_to_an_earlier_version_ends_with_its_released_functions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A migration written for version 2 keeps making version 2 once a later one exists:
    its steps, then the functions version 2 was released with (not the current ones)."""
    monkeypatch.setattr(sql, "SCHEMA_VERSION", 3)
    guard = sql.filled("version_guard", {"direction": "upgrade", "target": 2, "expected": 1})
    assert sql.upgrade_statements(1, 2) == [
        guard,
        *sql.statements("steps/2"),
        *sql.released_statements(2),
    ]


def test_the_wheel_ships_every_sql_file() -> None:
    """pyproject's package data names each folder of sql/ (a new folder must be added)."""
    pyproject = tomllib.loads((SQL_ROOT.parents[1] / "pyproject.toml").read_text("utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["hyper_audit_alembic.sql"]
    shipped = {path for pattern in patterns for path in SQL_ROOT.glob(pattern)}
    files = {p for p in SQL_ROOT.rglob("*") if p.is_file() and p.suffix in (".sql", ".md")}
    assert files
    assert sorted(str(p.relative_to(SQL_ROOT)) for p in files - shipped) == []
