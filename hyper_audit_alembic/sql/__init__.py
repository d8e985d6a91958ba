"""The audit schema as SQL files, split into statements that Alembic can emit one by one.

Statements are executed one at a time because drivers that prepare statements
(asyncpg, psycopg 3 with parameters) refuse several commands in one call, and
because offline output reads better with one terminated statement per block.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

#: The audit schema version that ``install.sql`` creates.
SCHEMA_VERSION = 1


@cache
def statements(name: str) -> tuple[str, ...]:
    """The statements of ``sql/<name>.sql``, without their terminating semicolons."""
    text = resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return tuple(split_statements(text))


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
