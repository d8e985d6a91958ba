"""The audit schema as SQL files, split into statements that Alembic can emit one by one.

Statements are executed one at a time because drivers that prepare statements
(asyncpg, psycopg 3 with parameters) refuse several commands in one call, and
because offline output reads better with one terminated statement per block.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

#: The audit schema version this release installs: ``install.sql`` creates version 1,
#: ``upgrade_to_<n>.sql`` turns version n - 1 into version n, ``downgrade_to_<n>.sql`` back.
SCHEMA_VERSION = 2


@cache
def statements(name: str) -> tuple[str, ...]:
    """The statements of ``sql/<name>.sql``, without their terminating semicolons."""
    text = resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return tuple(split_statements(text))


def install_statements() -> list[str]:
    """Install the current version: ``install.sql`` (version 1), then every upgrade.

    Idempotent: over an existing audit schema (of any version up to this one) the recorded
    history stays and the schema ends at :data:`SCHEMA_VERSION`. Over an install of the
    reference design (supa_audit / hyper_audit) it takes that over: ``adopt_prepare.sql``
    first and ``adopt_finish.sql`` last, which find nothing to do anywhere else.
    """
    return [
        *statements("adopt_prepare"),
        *statements("install"),
        *upgrade_statements(1, SCHEMA_VERSION),
        *statements("adopt_finish"),
    ]


def upgrade_statements(from_version: int, to_version: int) -> list[str]:
    """Turn audit schema ``from_version`` into ``to_version`` (later; equal: nothing)."""
    _check_versions(from_version, to_version, to_version >= from_version, "upgrade")
    return [
        statement
        for version in range(from_version + 1, to_version + 1)
        for statement in statements(f"upgrade_to_{version}")
    ]


def downgrade_statements(from_version: int, to_version: int) -> list[str]:
    """Turn audit schema ``from_version`` back into ``to_version``, keeping recorded data.

    Ending at version 1 re-runs ``install.sql`` (idempotent), which restores the version-1
    function definitions and records version 1.
    """
    _check_versions(from_version, to_version, to_version <= from_version, "downgrade")
    found = [
        statement
        for version in range(from_version - 1, to_version - 1, -1)
        for statement in statements(f"downgrade_to_{version}")
    ]
    if found and to_version == 1:
        found += statements("install")
    return found


def _check_versions(from_version: int, to_version: int, ordered: bool, what: str) -> None:
    for version in (from_version, to_version):
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not 1 <= version <= SCHEMA_VERSION
        ):
            raise ValueError(
                f"audit schema {what}: versions go from 1 to {SCHEMA_VERSION}, not {version!r}"
            )
    if not ordered:
        other = "a downgrade" if what == "upgrade" else "an upgrade"
        raise ValueError(
            f"audit schema {what}: cannot go from version {from_version} to {to_version}; "
            f"that is {other}"
        )


def split_statements(text: str) -> list[str]:
    """Split SQL text at top-level semicolons.

    Knows single-quoted strings, quoted identifiers, dollar-quoted bodies and comments,
    which is all our files use.
    """
    found: list[str] = []
    start = i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = length if end < 0 else end + 1
        elif char in ("'", '"'):
            end = text.find(char, i + 1)
            while end >= 0 and text.startswith(char * 2, end):
                end = text.find(char, end + 2)
            if end < 0:
                raise ValueError("unterminated quote in SQL text")
            i = end + 1
        elif char == "$":
            tag_end = text.find("$", i + 1)
            tag = text[i : tag_end + 1]
            if tag_end > 0 and (tag == "$$" or tag[1:-1].isidentifier()):
                end = text.find(tag, tag_end + 1)
                if end < 0:
                    raise ValueError(f"unterminated {tag} body in SQL text")
                i = end + len(tag)
            else:
                i += 1
        elif char == ";":
            found.append(text[start:i])
            start = i = i + 1
        else:
            i += 1
    found.append(text[start:])
    return [stmt for stmt in (_strip_comments(s) for s in found) if stmt]


def _strip_comments(statement: str) -> str:
    """Drop the comment lines and blank lines that lead a statement."""
    lines = statement.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()
