"""op.pyi is what tools/write_pyi.py writes from the registered operation classes.

As Alembic's own tests/test_stubs.py does for alembic/op.pyi: the stub that mypy and
editors read for ``op.install_audit()`` & co. is generated, and this test fails when the
committed file is stale (change an operation, then run ``python tools/write_pyi.py``).
No database needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import alembic.op

from hyper_audit_alembic.plugin import directives

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "hyper_audit_alembic" / "op.pyi"


def _generated() -> str:
    # A fresh interpreter: the script registers nothing itself; importing alembic (which
    # loads the plugin's entry point) does, as in any user's process.
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "write_pyi.py"), "--stdout"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_committed_op_pyi_is_what_the_script_writes() -> None:
    assert STUB.read_text(encoding="utf-8") == _generated(), (
        "hyper_audit_alembic/op.pyi is stale: run python tools/write_pyi.py"
    )


def test_the_stub_lists_every_registered_directive_and_alembic_has_each() -> None:
    stub = STUB.read_text(encoding="utf-8")
    names = [directive.name for directive in directives()]
    assert names, "the plugin registers no directive"
    for name in names:
        assert f"\ndef {name}(" in stub, name
        assert callable(getattr(alembic.op, name)), name
    defined = [line[4:].split("(")[0] for line in stub.splitlines() if line.startswith("def ")]
    assert defined == names
