"""The docs: the performance page's numbers come from the benchmark's results file, the
README keeps its two commands first (CI runs the second), the site builds strictly, and
the compliance page's re-verification recipe recomputes the hashes the database stores.

No database but for the recipe (marked ``pg`` through its fixture): the rest run in the
quick subset (``pytest -m "not pg"``).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa
from audit_helpers import connect, run_online

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres, find_bin_dir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PERFORMANCE_PAGE = ROOT / "docs" / "performance.md"
RESULTS = ROOT / "benchmarks" / "results.md"
HOOK = ROOT / "docs" / "hooks" / "performance.py"
COMPLIANCE_PAGE = ROOT / "docs" / "compliance.md"

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
    count = len(markdown_tables(results))
    placed = ", ".join(str(n) for n in range(1, count + 1) if n != 2)
    every = ", ".join(str(n) for n in range(1, count + 1))
    with pytest.raises(
        hook.PerformancePageError, match=rf"places tables \[{placed}\] of .*\[{every}\]"
    ):
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


# --- The compliance page's recipe -----------------------------------------------------------


def recipe(variable: str) -> str:
    """The compliance page's ``sh`` block that sets ``variable`` (SEGMENT or LINK)."""
    text = COMPLIANCE_PAGE.read_text(encoding="utf-8")
    blocks = [
        block
        for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
        if re.search(rf"^{variable}=\d+ ", block, re.MULTILINE)
    ]
    assert len(blocks) == 1, f"docs/compliance.md: {len(blocks)} recipes set {variable}"
    return blocks[0]


def run_recipe(block: str, variable: str, value: int, env: dict[str, str], cwd: Path) -> str:
    script = re.sub(rf"^{variable}=\d+", f"{variable}={value}", block, flags=re.MULTILINE)
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_compliance_recipe_recomputes_every_segment_and_link(
    pg_server: ThrowawayPostgres, db_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    """An auditor's psql + sha256sum + openssl recipe, run as the page prints it, finds the
    hashes the database stored and audit.verify() recomputes: a segment's (redacted or
    not), each link's chain hash, and a keyed seal's mac."""
    for tool in ("bash", "sha256sum", "xxd", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the recipe of docs/compliance.md needs it")
    key = os.urandom(32)
    (tmp_path / "seal.key").write_bytes(key)
    with connect(db_url) as db:
        db.run(
            "create table account (id int primary key, name text, email text, note text,"
            " amount numeric)"
        )
        run_online(engine, lambda op: (op.install_audit(), op.enable_tracking("account")))
        # Values whose canonical text needs escapes, non-ASCII and exact numbers.
        db.run(
            "insert into account values"
            " (1, 'Foo', 'foo@example.com', E'\u03b1 \"q\"\\n\\\\ \\t\\x01', 1.50),"
            " (7, 'Ann', 'ann@example.com', null, 1e3)"
        )
        db.run("update account set name = 'Bar' where id = 1")
        db.run("update account set id = 8 where id = 7")
        assert db.one("select link_id from audit.seal()") == 1
        db.run(
            "select * from audit.redact('public.account', '{\"id\": 8}', array['email'],"
            " 'erasure request #12')"
        )
        db.run("insert into account values (9, 'Zed', 'z@example.com', repeat('x', 5000), 0)")
        link, chain_hash = db.rows("select link_id, chain_hash from audit.seal()")[0]
        assert link == 3
        db.run(
            "select audit.set_seal_mac(%s, %s)",
            [link, hmac.new(key, bytes(chain_hash), hashlib.sha256).digest()],
        )
        segments = db.rows("select segment_id, row_count from audit.seal_segment order by 1")
        verified = {
            link_id: bytes(recomputed).hex()
            for link_id, status, recomputed in db.rows(
                "select link_id, status, chain_hash from audit.verify() where link_id is not null"
            )
            if status in ("ok", "redacted")
        }
        dbname = str(db.conn.info.dbname)
    assert sorted(verified) == [1, 2, 3]
    assert [rows for _, rows in segments] == [4, 2]
    bin_dir = pg_server.bin_dir or find_bin_dir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": pg_server.host,
        "PGPORT": str(pg_server.port),
        "PGUSER": pg_server.user,
        "PGDATABASE": dbname,
    }
    for segment_id, row_count in segments:
        found, computed, expected = run_recipe(
            recipe("SEGMENT"), "SEGMENT", segment_id, env, tmp_path
        ).split()
        assert (int(found), computed) == (row_count, expected), f"segment {segment_id}"
    for link_id, recomputed in verified.items():
        lines = run_recipe(recipe("LINK"), "LINK", link_id, env, tmp_path).split("\n")
        computed, stored, keyed, mac = lines[:4]
        assert computed == stored == recomputed, f"link {link_id}"
        expected_mac = hmac.new(key, bytes.fromhex(computed), hashlib.sha256).hexdigest()
        assert keyed == expected_mac
        assert mac == (expected_mac if link_id == 3 else ""), f"link {link_id}"
