"""MkDocs hook: the performance page's numbers come from benchmarks/results.md, never by hand.

``python benchmarks/run.py`` writes ``benchmarks/results.md``: a title, a summary of the
run (paragraphs), Markdown tables of medians and ratios, then sections (``##``) with the
machine and every sample. ``docs/performance.md`` holds prose and markers; this hook
replaces them when the page is built:

- ``<!-- benchmark-results: run -->``: the paragraphs before the results file's first
  table (the command, date, machine and load of the run);
- ``<!-- benchmark-results: table N -->``: the results file's N-th table (from 1), as it
  stands. Every table of the results file must be placed, each once;
- ``{{ cell | ROW | COLUMN }}``: the text of one cell (``0.167 ms``), found by the row's
  first cell and the column's header, exactly as in the results file;
  ``{{ value | ROW | COLUMN }}``: that cell's number alone (``0.167``);
  ``{{ range | ROW; ROW... | COLUMN }}``: the lowest and highest number of those cells
  (``0.97-1.01``, with an en dash), as written in the results file.

A marker or a placeholder that finds nothing (or a table left out) stops the build with an
error naming it, so that a changed results file cannot leave stale or missing numbers.
``tests/test_docs.py`` checks the page's tables against the results file.

The growth part (``python benchmarks/run.py --only growth``, a long run of its own) writes
``benchmarks/results-growth.md``; ``docs/layouts-and-scaling.md`` places it the same way,
with ``<!-- benchmark-results: growth run -->`` and ``<!-- benchmark-results: growth table
N -->``, and its ``{{ ... }}`` placeholders read that file. While that file exists, every
table of it must be placed there, each once; without it the page must have no growth marker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The page the hook fills, relative to the docs folder.
PAGE = "performance.md"
#: The results file, relative to the repository root (the folder of mkdocs.yml).
RESULTS = Path("benchmarks") / "results.md"
#: The growth part's page and results file (the same rules, markers named "growth ...").
GROWTH_PAGE = "layouts-and-scaling.md"
GROWTH_RESULTS = Path("benchmarks") / "results-growth.md"

MARKER = re.compile(r"<!--\s*benchmark-results:\s*(run|table\s+(\d+))\s*-->")
GROWTH_MARKER = re.compile(r"<!--\s*benchmark-results:\s*growth\s+(run|table\s+(\d+))\s*-->")
ANY_MARKER = re.compile(r"<!--\s*benchmark-results\b[^>]*-->")
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
NUMBER = re.compile(r"-?[\d,]*\d(?:\.\d+)?")
PIPE = re.compile(r"(?<!\\)\|")
EN_DASH = "\N{EN DASH}"


class PerformancePageError(Exception):
    """The performance page and the results file do not fit together."""


@dataclass
class Table:
    """One Markdown table of the results file, with the heading it stands under."""

    heading: str
    lines: list[str]
    source: Path = RESULTS
    header: list[str] = field(init=False)
    rows: list[list[str]] = field(init=False)

    def __post_init__(self) -> None:
        cells = [split_row(line) for line in self.lines]
        if len(cells) < 2 or not all(re.fullmatch(r":?-+:?", c) for c in cells[1]):
            raise PerformancePageError(
                f"{self.source}: a table under {self.heading!r} has no header separator line"
            )
        self.header, self.rows = cells[0], cells[2:]

    @property
    def markdown(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Results:
    """What the page may use of the results file: the run's summary and the tables."""

    summary: list[str]
    tables: list[Table]
    page: str = PAGE  # the page that shows them
    source: Path = RESULTS


def split_row(line: str) -> list[str]:
    """The cells of a Markdown table line (``| a | b |``), stripped."""
    return [cell.strip() for cell in PIPE.split(line.strip().strip("|"))]


def parse_results(text: str, page: str = PAGE, source: Path = RESULTS) -> Results:
    """The results file's tables (each with its heading) and the paragraphs before the first."""
    heading = ""
    summary: list[str] = []
    tables: list[Table] = []
    paragraph: list[str] = []
    table: list[str] = []

    def end_block() -> None:
        if paragraph and not tables and not table:
            summary.append(" ".join(paragraph))
        paragraph.clear()
        if table:
            tables.append(Table(heading, list(table), source))
            table.clear()

    in_code = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            end_block()
            in_code = not in_code
            continue
        if in_code:
            continue
        if stripped.startswith("|"):
            if paragraph:
                end_block()
            table.append(stripped)
            continue
        if table:
            end_block()
        if not stripped:
            end_block()
        elif stripped.startswith("#"):
            end_block()
            heading = stripped.lstrip("#").strip()
        else:
            paragraph.append(stripped)
    end_block()
    if not tables:
        raise PerformancePageError(f"{source} holds no Markdown table")
    return Results(summary, tables, page, source)


def find_cell(results: Results, row: str, column: str) -> str:
    """The one cell of ``row`` (its first cell) under ``column`` (its header), anywhere."""
    found = [
        cells[table.header.index(column)]
        for table in results.tables
        if column in table.header
        for cells in table.rows
        if cells[0] == row and len(cells) == len(table.header)
    ]
    if len(found) != 1:
        problem = "no" if not found else f"{len(found)}"
        raise PerformancePageError(
            f"{results.page}: {problem} cell of row {row!r} under column {column!r} in "
            f"{results.source}"
        )
    return found[0]


def number_of(cell: str, row: str, column: str, page: str = PAGE) -> str:
    """The number a cell starts with, as written (``1,862 tps`` -> ``1,862``)."""
    match = NUMBER.search(cell)
    if match is None:
        raise PerformancePageError(
            f"{page}: the cell of row {row!r} under column {column!r} holds no number: {cell!r}"
        )
    return match.group()


def fill_placeholder(results: Results, spec: str) -> str:
    """The text of one ``{{ kind | rows | column }}`` placeholder."""
    parts = [part.strip() for part in spec.split("|")]
    if len(parts) != 3 or parts[0] not in ("cell", "value", "range"):
        raise PerformancePageError(
            f"{results.page}: placeholder {{{{{spec}}}}} is not "
            "{{ cell|value|range | ROW | COLUMN }}"
        )
    kind, rows, column = parts
    if kind == "cell":
        return find_cell(results, rows, column)
    if kind == "value":
        return number_of(find_cell(results, rows, column), rows, column, results.page)
    numbers = [
        number_of(find_cell(results, row.strip(), column), row.strip(), column, results.page)
        for row in rows.split(";")
    ]
    ordered = sorted(numbers, key=lambda n: float(n.replace(",", "")))
    low, high = ordered[0], ordered[-1]
    return low if low == high else f"{low}{EN_DASH}{high}"


def render_page(page: str, results_text: str, growth: bool = False) -> str:
    """The performance page with every marker and placeholder filled from the results.

    With `growth`, the growth page from the growth results (its markers say "growth").
    """
    name, source = (GROWTH_PAGE, GROWTH_RESULTS) if growth else (PAGE, RESULTS)
    marker = GROWTH_MARKER if growth else MARKER
    kind = "growth " if growth else ""
    results = parse_results(results_text, name, source)
    placed: list[int] = []

    def fill_marker(match: re.Match[str]) -> str:
        if match.group(1) == "run":
            if not results.summary:
                raise PerformancePageError(f"{source} has no summary of the run")
            return "\n\n".join(f"> {paragraph}" for paragraph in results.summary)
        number = int(match.group(2))
        if not 1 <= number <= len(results.tables):
            raise PerformancePageError(
                f"{name}: {kind}table {number} asked for; {source} has {len(results.tables)}"
            )
        placed.append(number)
        return results.tables[number - 1].markdown

    if not marker.search(page):
        raise PerformancePageError(
            f"{name} has no <!-- benchmark-results: {kind}table N --> marker"
        )
    filled = marker.sub(fill_marker, page)
    leftover = ANY_MARKER.search(filled)
    if leftover:
        raise PerformancePageError(f"{name}: marker not understood: {leftover.group()}")
    wanted = list(range(1, len(results.tables) + 1))
    if sorted(placed) != wanted:
        raise PerformancePageError(
            f"{name} places tables {sorted(placed)} of {source}; it must place each of"
            f" {wanted} once"
        )
    return PLACEHOLDER.sub(lambda match: fill_placeholder(results, match.group(1)), filled)


def render_growth_page(page: str, results_text: str | None) -> str:
    """The growth page filled from the growth results; without them (None), as it is, if it
    asks for none."""
    if results_text is None:
        asked = ANY_MARKER.search(page)
        if asked:
            raise PerformancePageError(
                f"{GROWTH_PAGE}: {asked.group()} but {GROWTH_RESULTS} does not exist "
                "(python benchmarks/run.py --only growth writes it)"
            )
        return page
    return render_page(page, results_text, growth=True)


# --- MkDocs events -------------------------------------------------------------------------


def _fail(error: PerformancePageError) -> Exception:
    from mkdocs.exceptions import PluginError

    return PluginError(f"performance page: {error}")


def on_files(files: Any, config: Any) -> Any:
    """Refuse a build without the performance page (the hook would silently do nothing)."""
    if files.get_file_from_path(PAGE) is None:
        raise _fail(PerformancePageError(f"{PAGE} is missing from {config['docs_dir']}"))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == GROWTH_PAGE:
        growth_path = Path(config["config_file_path"]).parent / GROWTH_RESULTS
        text = growth_path.read_text(encoding="utf-8") if growth_path.exists() else None
        try:
            return render_growth_page(markdown, text)
        except PerformancePageError as error:
            raise _fail(error) from error
    if page.file.src_uri != PAGE:
        return markdown
    results_path = Path(config["config_file_path"]).parent / RESULTS
    try:
        return render_page(markdown, results_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise _fail(PerformancePageError(f"{RESULTS} not found ({error})")) from error
    except PerformancePageError as error:
        raise _fail(error) from error
