"""The audit schema as SQL files, split into statements that Alembic can emit one by one.

The layout (README.md in this folder tells how to change it):

- ``steps/<n>.sql`` turns audit schema version n - 1 into version n: tables, columns,
  indexes, defaults, grants and the recorded version, never a function definition;
  ``steps/<n>.down.sql`` turns version n back into n - 1, keeping every recorded row.
- ``functions/<name>.sql``: the current definition of each function (with its privileges
  and its event trigger), replayed after the steps by every install and every upgrade, in
  the order of :data:`FUNCTIONS`.
- ``indexes.sql``: the lookup indexes for the audit table's layout (plain or hypertable).
- ``released/<n>.sql``: every released version's complete SQL as it was released, frozen.
  Tests start upgrades from it, and a downgrade to version n replays it.

Statements are executed one at a time because drivers that prepare statements
(asyncpg, psycopg 3 with parameters) refuse several commands in one call, and
because offline output reads better with one terminated statement per block. sqlparse
splits them (it knows quoted strings and identifiers, dollar-quoted bodies and both kinds
of comment).

Values chosen at op time go into templates (:func:`filled`), quoted by SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, TypeAlias

from sqlparse import engine
from sqlparse import tokens as token_types
from sqlparse.sql import Token

from ..sqltext import string_literal

#: The audit schema version this release installs (the last of ``steps/``).
SCHEMA_VERSION = 6

#: The versions whose SQL is frozen in ``released/``: installs of them exist. The current
#: version may be one ahead while it is being developed (it is frozen when released).
RELEASED_VERSIONS = (1, 2, 3, 4, 5)

#: The files of ``functions/``, in the order they are created (a SQL-language function is
#: checked when it is created, so what it calls comes first).
FUNCTIONS = (
    "uuid_v5",
    "primary_key_columns",
    "record_id_text_any",
    "record_id_text",
    "to_record_id",
    "record_row_change",
    "record_key_change",
    "record_truncate",
    "citus_row_change",
    "citus_kind",
    "is_tracking_function",
    "records_every_change",
    "trigger_arguments",
    "trigger_argument_list",
    "key_change_function",
    "tracking_trigger_sql",
    "refuse_squatted_trigger_names",
    "last_audit_id",
    "record_column_changes",
    "note_trail_start",
    "enable_tracking_keys",
    "drop_tracking_triggers",
    "disable_tracking",
    "follow_primary_key_changes",
    "refuse_unsafe_json_casts",
    "tracking_options",
    "set_tracking_options",
    "enable_tracking",
    "snapshot_batch",
    "snapshot",
    "current_names",
    "rebuilt_table",
    "table_as_of",
    "table_before",
    "canonical_row_sql",
    "seal_link_text",
    "lock_seal_chain",
    "append_seal_link",
    "segment_state",
    "seal",
    "verify",
    "set_seal_mac",
    "redact",
    "note_expiry",
    "apply_retention",
)


def text_of(name: str) -> str:
    """The text of ``sql/<name>.sql`` (``name`` may hold a folder: ``steps/1``)."""
    return resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


@cache
def statements(name: str) -> tuple[str, ...]:
    """The statements of ``sql/<name>.sql``, without their terminating semicolons."""
    return tuple(split_statements(text_of(name)))


def function_statements() -> list[str]:
    """Every function's current definition, in :data:`FUNCTIONS` order."""
    return [statement for name in FUNCTIONS for statement in statements(f"functions/{name}")]


def released_statements(version: int) -> list[str]:
    """The statements of released version ``version`` as it was released (frozen)."""
    if version not in RELEASED_VERSIONS:
        raise ValueError(
            f"audit schema version {version!r} was not released; the released versions are "
            f"{', '.join(map(str, RELEASED_VERSIONS))}"
        )
    return list(statements(f"released/{version}"))


def schema_files() -> list[str]:
    """The files that make the current version from nothing, in the order they run: every
    step, the indexes, every function. ``released/<n>.sql`` freezes them (:func:`release_text`)."""
    return [
        *(f"steps/{version}" for version in range(1, SCHEMA_VERSION + 1)),
        "indexes",
        *(f"functions/{name}" for name in FUNCTIONS),
    ]


def release_text() -> str:
    """The complete SQL of the current version, to freeze as ``released/<n>.sql`` when it is
    released (sql/README.md)."""
    return "\n".join(text_of(name) for name in schema_files())


def install_statements() -> list[str]:
    """Install the current version: every step, the indexes, then every function.

    Idempotent: over an existing audit schema (of any version up to this one) the recorded
    history stays and the schema ends at :data:`SCHEMA_VERSION`. Over an install of the
    reference design (supa_audit / hyper_audit) it takes that over: ``adopt_prepare.sql``
    first and ``adopt_finish.sql`` last, which find nothing to do anywhere else.
    """
    return [
        *statements("adopt_prepare"),
        *(statement for name in schema_files() for statement in statements(name)),
        *statements("adopt_finish"),
    ]


def upgrade_statements(from_version: int, to_version: int) -> list[str]:
    """Turn audit schema ``from_version`` into ``to_version`` (later; equal: nothing).

    The steps after ``from_version``, then the current functions.
    """
    _check_versions(from_version, to_version, "upgrade")
    if from_version == to_version:
        return []
    if to_version != SCHEMA_VERSION:
        # The functions of an intermediate version are those it was released with.
        return [*_steps(from_version, to_version), *released_statements(to_version)]
    return [*_steps(from_version, to_version), *function_statements()]


def downgrade_statements(from_version: int, to_version: int) -> list[str]:
    """Turn audit schema ``from_version`` back into ``to_version``, keeping recorded data.

    The downgrade steps, then ``released/<to_version>.sql`` (idempotent), which restores
    that version's function definitions and records its number.
    """
    _check_versions(from_version, to_version, "downgrade")
    if from_version == to_version:
        return []
    return [
        *_down_steps(from_version, to_version),
        *released_statements(to_version),
        *(
            each
            for version in range(from_version, to_version, -1)
            for name in _AFTER_DOWNGRADE.get(version, ())
            for each in statements(name)
        ),
    ]


def _steps(from_version: int, to_version: int) -> list[str]:
    """Each step after ``from_version`` up to ``to_version``, after its version guard (an
    install runs the step files alone: from step 1 on, each finds the version it expects)."""
    return [
        statement
        for version in range(from_version + 1, to_version + 1)
        for statement in (_guard("upgrade", version, version - 1), *statements(f"steps/{version}"))
    ]


def _down_steps(from_version: int, to_version: int) -> list[str]:
    """Each downgrade step from ``from_version`` back to ``to_version``, after its guard."""
    return [
        statement
        for version in range(from_version, to_version, -1)
        for statement in (
            _guard("downgrade", version - 1, version),
            *statements(f"steps/{version}.down"),
            *(each for name in _AFTER_DOWN_STEP.get(version, ()) for each in statements(name)),
        )
    ]


#: What a downgrade step needs run after it, from a file another operation shares: version
#: 5's retention job back to TimescaleDB's policy (uninstall_audit runs it too).
_AFTER_DOWN_STEP: dict[int, tuple[str, ...]] = {5: ("retention_to_policy",)}

#: What a downgrade through a version runs at its very end, after the released functions
#: of the version it goes to replaced the newer ones: version 6's Citus functions, which
#: the newer functions name until then.
_AFTER_DOWNGRADE: dict[int, tuple[str, ...]] = {6: ("citus_remove",)}


def _guard(direction: str, target: int, expected: int) -> str:
    return filled("version_guard", {"direction": direction, "target": target, "expected": expected})


@dataclass(frozen=True)
class VersionProblem:
    """What is wrong with a change of audit schema version: the one check of version
    numbers, which the SQL functions here and the ``op.upgrade_audit()`` /
    ``op.downgrade_audit()`` operations share (each words the problem for its caller)."""

    #: 'not_int': a version is not an int; 'unknown': not a version this release knows;
    #: 'order': the versions go the other way.
    kind: Literal["not_int", "unknown", "order"]
    #: The argument at fault ('from_version' or 'to_version'), its value.
    name: str = ""
    value: object = None


def version_problem(
    from_version: object, to_version: object, *, upward: bool, same_allowed: bool
) -> VersionProblem | None:
    """None when going from ``from_version`` to ``to_version`` is a change of version this
    release has SQL for, in the direction ``upward`` says (equal versions only when
    ``same_allowed``); else the first problem found."""
    for name, version in (("from_version", from_version), ("to_version", to_version)):
        if isinstance(version, bool) or not isinstance(version, int):
            return VersionProblem("not_int", name, version)
        if not 1 <= version <= SCHEMA_VERSION:
            return VersionProblem("unknown", name, version)
    assert isinstance(from_version, int) and isinstance(to_version, int)
    if from_version == to_version:
        return None if same_allowed else VersionProblem("order")
    if (to_version > from_version) != upward:
        return VersionProblem("order")
    return None


def _check_versions(from_version: int, to_version: int, what: str) -> None:
    problem = version_problem(from_version, to_version, upward=what == "upgrade", same_allowed=True)
    if problem is None:
        return
    if problem.kind != "order":
        raise ValueError(
            f"audit schema {what}: versions go from 1 to {SCHEMA_VERSION}, not {problem.value!r}"
        )
    other = "a downgrade" if what == "upgrade" else "an upgrade"
    raise ValueError(
        f"audit schema {what}: cannot go from version {from_version} to {to_version}; "
        f"that is {other}"
    )


# -- splitting -------------------------------------------------------------------------


def _around(token: Token) -> bool:
    """Whitespace or a comment: left out around a statement."""
    return bool(token.is_whitespace or token.ttype in token_types.Comment)


def split_statements(text: str) -> list[str]:
    """Split SQL text into its statements, each without the comments around it and
    without its terminating semicolon (sqlparse finds where each statement ends)."""
    found: list[str] = []
    for statement in engine.FilterStack().run(text):  # type: ignore[no-untyped-call]
        parts = list(statement.flatten())
        while parts and _around(parts[0]):
            parts.pop(0)
        while parts and _around(parts[-1]):
            parts.pop()
        if parts and parts[-1].match(token_types.Punctuation, ";"):
            parts.pop()
        while parts and _around(parts[-1]):
            parts.pop()
        if parts:
            found.append("".join(part.value for part in parts))
    return found


# -- templates -------------------------------------------------------------------------

#: A value an operation puts into a template: text, a number, a flag, a list of names, or
#: None (SQL null).
Value: TypeAlias = "str | int | bool | Sequence[str] | None"

#: The tag of a template's dollar-quoted body; another is chosen when a value holds it.
BODY_TAG = "hyper_audit"


def literal(value: Value) -> str:
    """``value`` as a SQL literal; text is quoted by SQLAlchemy's PostgreSQL dialect."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return string_literal(value)
    return "array[" + ", ".join(string_literal(item) for item in value) + "]::text[]"


def filled(name: str, values: Mapping[str, Value]) -> str:
    """The one statement of the template ``sql/<name>.sql`` with its values in place.

    A template is a DO block whose body is dollar-quoted with the tag ``$hyper_audit$`` and
    whose values are written ``:'name'``, each once (it reads like psql's quoted variable).
    Each value becomes a SQL literal (:func:`literal`); when one holds the body's tag,
    another tag (``$hyper_audit_1$`` ...) quotes the body, so no value can end it early.
    """
    (template,) = statements(name)
    if template.count(":'") != len(values):
        raise AssertionError(f"sql/{name}.sql does not have exactly the placeholders {values}")
    literals = {key: literal(value) for key, value in values.items()}
    tag, number = BODY_TAG, 0
    while any(f"${tag}" in text for text in literals.values()):
        number += 1
        tag = f"{BODY_TAG}_{number}"
    if template.count(f"${BODY_TAG}$") != 2:
        raise AssertionError(f"sql/{name}.sql: the body must be quoted by ${BODY_TAG}$")
    template = template.replace(f"${BODY_TAG}$", f"${tag}$")
    for key, text in literals.items():
        placeholder = f":'{key}'"
        if template.count(placeholder) != 1:
            raise AssertionError(f"sql/{name}.sql: placeholder {placeholder} is not there once")
        template = template.replace(placeholder, text)
    return template
