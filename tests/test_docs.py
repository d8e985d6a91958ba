"""The docs: the performance page's numbers come from the benchmark's results file, the
README keeps its two commands first (CI runs the second), and the site builds strictly.

No database: these run in the quick subset (``pytest -m "not pg"``).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PERFORMANCE_PAGE = ROOT / "docs" / "performance.md"
RESULTS = ROOT / "benchmarks" / "results.md"
HOOK = ROOT / "docs" / "hooks" / "performance.py"

DEMO_COMMAND = "pip install -e . && python -m hyper_audit_alembic demo"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"


def load_hook() -> ModuleType:
    """The hook module as mkdocs loads it: from its file (docs/hooks is not a package)."""
    spec = importlib.util.spec_from_file_location("hyper_audit_docs_performance_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def markdown_tables(text: str) -> list[list[str]]:
    """Every table of a Markdown text (runs of lines starting with ``|``), line by line."""
    tables: list[list[str]] = []
    current: list[str] = []
    in_code = False
    for line in [*text.splitlines(), ""]:
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if not in_code and line.lstrip().startswith("|"):
            current.append(line.strip())
        elif current:
            tables.append(current)
            current = []
    return tables


def rendered_page() -> str:
    return load_hook().render_page(
        PERFORMANCE_PAGE.read_text(encoding="utf-8"), RESULTS.read_text(encoding="utf-8")
    )


# --- The performance page ------------------------------------------------------------------


def test_the_performance_page_holds_no_table_of_its_own() -> None:
    # Numbers copied by hand go stale: the page's source has markers, never a table.
    assert markdown_tables(PERFORMANCE_PAGE.read_text(encoding="utf-8")) == []


def test_the_performance_pages_tables_are_the_results_files() -> None:
    results_tables = markdown_tables(RESULTS.read_text(encoding="utf-8"))
    assert len(results_tables) >= 2
    assert markdown_tables(rendered_page()) == results_tables


def test_every_number_in_the_performance_pages_prose_is_filled_from_the_results() -> None:
    page = rendered_page()
    assert "{{" not in page and "}}" not in page
    assert "benchmark-results" not in page
    # The filled values are the results file's cells: spot-check one of each kind.
    results = RESULTS.read_text(encoding="utf-8")
    plain = re.search(
        r"^\| history of one record among 1,000,000 audit rows \(by index\), plain layout \|"
        r"[^|]*\|[^|]*\| ([^|]+?) \|",
        results,
        re.MULTILINE,
    )
    assert plain is not None
    assert f"  {plain.group(1)}\n  in the plain layout" in page
    run_summary = next(line for line in results.splitlines() if line.startswith("Command:"))
    assert f"> {run_summary}" in page


def test_a_missing_marker_or_table_or_cell_stops_the_build() -> None:
    hook = load_hook()
    results = RESULTS.read_text(encoding="utf-8")
    page = PERFORMANCE_PAGE.read_text(encoding="utf-8")
    with pytest.raises(hook.PerformancePageError, match="has no <!-- benchmark-results"):
        hook.render_page("# Performance\n\nNo numbers.\n", results)
    with pytest.raises(hook.PerformancePageError, match=r"places tables \[1, 3\] of .*\[1, 2, 3\]"):
        hook.render_page(page.replace("<!-- benchmark-results: table 2 -->", ""), results)
    with pytest.raises(hook.PerformancePageError, match="table 9 asked for"):
        hook.render_page(page + "\n<!-- benchmark-results: table 9 -->\n", results)
    with pytest.raises(
        hook.PerformancePageError,
        match="no cell of row 'a row nobody measured' under column 'ours'",
    ):
        hook.render_page(page + "\n{{ cell | a row nobody measured | ours }}\n", results)
    with pytest.raises(hook.PerformancePageError, match="holds no Markdown table"):
        hook.render_page(page, "# Benchmark results\n\nCommand: nothing ran.\n")


# --- The README -----------------------------------------------------------------------------


def test_the_readme_is_short_and_its_two_commands_come_first() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 220
    first_block = re.search(r"^```(\w*)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert first_block is not None and first_block.group(1) == "sh"
    # .ci/run runs the second line of this block, its comment cut off: keep that shape.
    commands = [re.sub(r" *#.*", "", line) for line in first_block.group(2).splitlines()]
    assert commands == [DEMO_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readmes_test_command_and_builds_the_docs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    extraction = (
        "awk '/^```sh/{n++; next} n==1 && /^```/{exit} n==1' README.md | sed -n 2p"
        " | sed 's/ *#.*//'"
    )
    assert extraction in ci
    assert re.search(r"^mkdocs build --strict --site-dir ", ci, re.MULTILINE)


# --- The site -------------------------------------------------------------------------------


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]'; CI installs it)")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    performance = (tmp_path / "performance" / "index.html").read_text(encoding="utf-8")
    assert performance.count("<table>") == len(markdown_tables(RESULTS.read_text(encoding="utf-8")))
    reference = (tmp_path / "reference" / "index.html").read_text(encoding="utf-8")
    for name in (
        "audit_context",
        "history",
        "as_of",
        "table_history",
        "transaction_history",
        "context_history",
        "record_id",
        "RecordVersion",
    ):
        assert f'id="hyper_audit_alembic.{name}"' in reference, name
