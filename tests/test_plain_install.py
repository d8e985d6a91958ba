"""What a user gets from a plain ``pip install``: no extras, so no greenlet.

SQLAlchemy 2.1 no longer installs greenlet, and its asyncio extension refuses to load
without it -- but only on the first import in a process (a second one succeeds), so this
test process, which has greenlet anyway, proves nothing. Here a fresh virtualenv holds
the package built as a wheel and what pip installs with it, and every check runs in a
fresh interpreter of that virtualenv.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import PlainInstall, run_quietly

# Each test builds or runs a fresh virtualenv holding the wheel: slow, so in the pg set.
pytestmark = pytest.mark.pg

REPO = Path(__file__).resolve().parents[1]
#: Every module and package of ours (``__main__`` is run, not imported).
MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for path in (REPO / "hyper_audit_alembic").rglob("*.py")
    if path.stem != "__main__"
)


def test_the_build_warns_of_nothing(plain_install: PlainInstall) -> None:
    # Python warnings (SetuptoolsDeprecationWarning, setuptools' "_Warning: Package ... is
    # absent from the `packages` configuration"); distutils' lowercase "warning: ...
    # byte-compiling is disabled" only reflects PYTHONDONTWRITEBYTECODE.
    warnings = re.findall(r"^.*\w*Warning\b.*$", plain_install.build_output, re.M)
    assert warnings == []


def test_every_template_folder_ships_in_the_wheel(plain_install: PlainInstall) -> None:
    templates = REPO / "migrations_templates"
    in_checkout = sorted(
        "hyper_audit_alembic/migrations_templates/" + path.relative_to(templates).as_posix()
        for path in templates.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    with zipfile.ZipFile(plain_install.wheel) as wheel:
        in_wheel = sorted(
            name
            for name in wheel.namelist()
            if name.startswith("hyper_audit_alembic/migrations_templates/")
        )
    assert in_wheel == in_checkout
    assert "hyper_audit_alembic/migrations_templates/hyper_audit/env.py" in in_wheel


def _python(python: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    # From a directory of its own, so the checkout is not on the path: the installed wheel.
    return run_quietly([str(python), "-c", textwrap.dedent(script), *args], cwd=python.parents[2])


def test_the_plain_install_has_no_greenlet(plain_python: Path) -> None:
    found = _python(
        plain_python,
        """
        import importlib.util, sys
        import hyper_audit_alembic, sqlalchemy
        print(importlib.util.find_spec("greenlet") is None, hyper_audit_alembic.__file__)
        """,
    )
    assert found.returncode == 0, found.stderr
    absent, location = found.stdout.split()
    assert absent == "True"
    assert Path(location).is_relative_to(plain_python.parents[1])


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_first_in_a_fresh_interpreter(
    plain_python: Path, module: str
) -> None:
    # Importing one of ours first imports alembic, whose plugin entry point imports ours.
    imported = _python(plain_python, f"import {module}")
    assert (imported.returncode, imported.stderr) == (0, "")


SCRIPT = """
    import json, sys

    import sqlalchemy as sa
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    from hyper_audit_alembic import audit_context, history


    class Base(DeclarativeBase):
        pass


    class Account(Base):
        __tablename__ = "account"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]


    engine = sa.create_engine(sys.argv[1])
    with engine.begin() as connection:
        op = Operations(MigrationContext.configure(connection))  # the plugin's ops
        op.install_audit()
        Base.metadata.create_all(connection)
        op.enable_tracking("account")
    with Session(engine) as session:
        with audit_context(session, actor="user:1", request_id="r1"):
            session.add(Account(id=1, name="a"))
            session.commit()
        rows = history(session, Account, 1)
        print(json.dumps([[v.op, v.actor, v.context, v.record] for v in rows]))
    print("asyncio loaded:", "sqlalchemy.ext.asyncio" in sys.modules)
"""


def test_audit_context_and_history_without_greenlet(plain_python: Path, db_url: str) -> None:
    # db_url: a database of the throwaway server the test session started.
    ran = _python(plain_python, SCRIPT, db_url)
    assert ran.returncode == 0, ran.stderr
    rows, loaded = ran.stdout.splitlines()
    assert json.loads(rows) == [
        ["INSERT", "user:1", {"request_id": "r1"}, {"id": 1, "name": "a"}]
    ]
    assert loaded == "asyncio loaded: False"
