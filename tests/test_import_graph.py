"""The package has no import cycle, keeps its layers apart, and any module can come first.

- Every module, imported alone as the first import of a fresh interpreter, loads; where
  it loads Alembic, ``alembic.op`` afterwards has every audit directive. Alembic runs our
  plugin's setup() while alembic is imported, so this is the case where setup() could
  meet a half-loaded module of ours.
- The graph of the package's own imports (module level and inside functions: a lazy
  import must not hide a cycle; only ``if TYPE_CHECKING:`` imports are left out) has no
  cycle.
- The runtime side never imports the migration side, the developer tools or the command
  line, and the migration side never imports the runtime side, the tools or the command
  line; nothing but ``__main__`` imports the command line; the plugin's entry point
  imports nothing at module level that would import alembic.

No database needed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import hyper_audit_alembic
from hyper_audit_alembic.plugin import directives

PACKAGE_DIR = Path(hyper_audit_alembic.__file__).resolve().parent
PACKAGE = "hyper_audit_alembic"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE_DIR.rglob("*.py"))
    if "__pycache__" not in path.parts
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, type_checking: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement, anywhere in the tree, with whether it is TYPE_CHECKING-only."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), type_checking=True)
            for child in node.orelse:
                yield from _imports(
                    ast.Module(body=[child], type_ignores=[]), type_checking=type_checking
                )
        else:
            yield from _imports(node, type_checking=type_checking)


def _targets(module: str, node: ast.stmt) -> set[str]:
    """The modules of the package that one import statement imports."""
    found: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == PACKAGE:
                found.add(alias.name)
        return found
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        is_package = MODULES[module].name == "__init__.py"
        base = module.split(".")
        if not is_package:
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] != PACKAGE:
        return found
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        found.add(submodule if submodule in MODULES else source)
    return found


def _edges(*, with_type_checking: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, type_checking in _imports(tree, type_checking=False):
            if type_checking and not with_type_checking:
                continue
            graph[module] |= _targets(module, node) - {module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_the_graph_finds_the_imports_it_should() -> None:
    # The parser itself: known edges of each kind (module level, relative from a package,
    # inside a function) are found, so that an empty graph cannot pass for an acyclic one.
    graph = _edges(with_type_checking=False)
    assert "hyper_audit_alembic.runtime.context" in graph[PACKAGE]
    assert "hyper_audit_alembic.errors" in graph["hyper_audit_alembic.migration.ops"]
    assert "hyper_audit_alembic.migration.statements" in graph["hyper_audit_alembic.migration.ops"]
    assert "hyper_audit_alembic.migration.ops" in graph["hyper_audit_alembic.plugin"]  # lazy
    assert "hyper_audit_alembic.devtools.demo" in graph["hyper_audit_alembic.cli"]  # lazy
    with_types = _edges(with_type_checking=True)
    assert "hyper_audit_alembic.migration.ops" in with_types["hyper_audit_alembic.migration.render"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    cycle = _cycle(_edges(with_type_checking=False))
    assert cycle is None, " -> ".join(cycle or [])


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("runtime", {"migration", "devtools", "cli", "plugin"}),
        ("migration", {"runtime", "devtools", "cli"}),
    ],
)
def test_layers(layer: str, forbidden: set[str]) -> None:
    graph = _edges(with_type_checking=True)
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _layer(module) == layer
        for target in targets
        if _layer(target) in forbidden
    )
    assert not wrong, wrong


def test_only_main_imports_the_command_line() -> None:
    graph = _edges(with_type_checking=True)
    importers = sorted(m for m, targets in graph.items() if "hyper_audit_alembic.cli" in targets)
    assert importers == ["hyper_audit_alembic.__main__"]


def test_the_entry_point_imports_nothing_that_loads_alembic_at_module_level() -> None:
    # Alembic imports the entry point while `import alembic` runs.
    tree = ast.parse(MODULES["hyper_audit_alembic.plugin"].read_text(encoding="utf-8"))
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [
        alias.name if isinstance(node, ast.Import) else (node.module or "")
        for node in top_level
        for alias in node.names
    ]
    assert names and all(name.split(".")[0] in sys.stdlib_module_names for name in names), names


FIRST_IMPORT = """
import importlib, sys
importlib.import_module({module!r})
if "alembic" in sys.modules:
    from alembic import op
    missing = [name for name in {names!r} if not callable(getattr(op, name, None))]
    assert not missing, f"alembic.op lacks {{missing}}"
    print("alembic")
"""


def _import_first(module: str) -> tuple[str, subprocess.CompletedProcess[str]]:
    code = FIRST_IMPORT.format(module=module, names=[d.name for d in directives()])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE_DIR.parent
    )
    return module, done


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    # __main__ runs the command line when imported: `python -m` runs it in other tests.
    modules = sorted(m for m in MODULES if not m.endswith("__main__"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(_import_first, modules))
    failed = {
        m: done.stderr.strip().splitlines()[-1:] for m, done in results.items() if done.returncode
    }
    assert not failed, failed
    loaded_alembic = {m for m, done in results.items() if done.stdout.strip() == "alembic"}
    # Those that load alembic were checked for the directives: the migration side, the
    # stub module and the command line among them; the runtime API loads no Alembic.
    assert {
        "hyper_audit_alembic.migration.ops",
        "hyper_audit_alembic.migration.options",
        "hyper_audit_alembic.migration.compare.tracking",
        "hyper_audit_alembic.op",
        "hyper_audit_alembic.cli",
    } <= loaded_alembic
    assert not loaded_alembic & {PACKAGE, "hyper_audit_alembic.runtime.history"}


def test_the_error_class_asked_for_first_is_the_one_the_operations_raise() -> None:
    # errors makes AuditOperationError on first use, which imports alembic, which runs
    # the plugin's setup(), which imports the operations, which ask for it again.
    code = (
        "from hyper_audit_alembic.errors import AuditOperationError\n"
        "from alembic import op\n"
        "from alembic.util import CommandError\n"
        "from hyper_audit_alembic.migration import ops\n"
        "assert ops.AuditOperationError is AuditOperationError\n"
        "assert issubclass(AuditOperationError, CommandError) and callable(op.install_audit)\n"
        "try:\n"
        "    ops.UninstallAuditOp(keep_history=True, drop_history=True)\n"
        "except AuditOperationError as error:\n"
        "    print(type(error).__module__, type(error).__qualname__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hyper_audit_alembic.errors AuditOperationError\n"
