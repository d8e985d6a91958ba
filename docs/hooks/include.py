"""MkDocs hook: ``<!-- include: PATH -->`` puts a Markdown file of the repository into a page.

A file that must stay where it is (``hyper_audit_alembic/sql/README.md`` ships with the
package, next to the SQL it describes) is shown on the site without a copy that could go
stale. PATH is relative to the repository root (the folder of mkdocs.yml); the file's
headings are moved two levels down, to sit under the page's ``##`` section. A missing
file stops the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

INCLUDE = re.compile(r"^<!--\s*include:\s*(\S+)\s*-->$", re.MULTILINE)
HEADING_LEVELS_DOWN = 2


def demote_headings(text: str, levels: int) -> str:
    """``# Title`` -> ``### Title`` outside fenced code blocks."""
    lines = []
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            line = "#" * levels + line
        lines.append(line)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["config_file_path"]).parent

    def include(match: re.Match[str]) -> str:
        path = root / match.group(1)
        if not path.is_file():
            from mkdocs.exceptions import PluginError

            raise PluginError(f"{page.file.src_uri}: included file {match.group(1)} not found")
        return demote_headings(path.read_text(encoding="utf-8"), HEADING_LEVELS_DOWN)

    return INCLUDE.sub(include, markdown)
