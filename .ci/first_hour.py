"""What a new user does in the first hour, run with nothing but an installed wheel.

CI runs this with the interpreter of a fresh virtualenv that holds only the built wheel
(no test extras: no greenlet, no psycopg 3), once as root and once as an ordinary user,
from an empty directory. It follows the README's walk: ``init`` a project, flag a model,
autogenerate, upgrade, ``alembic check``, write inside ``audit_context``, read ``history()``
and the ``history`` CLI, with a plain ``postgresql://`` URL. Any deviation exits non-zero
with the reason; every step runs in a fresh interpreter of that virtualenv, as a user's
shell would start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

BIN = Path(sys.executable).parent

MODELS = '''
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "account"
    __audited__ = True
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
'''

WRITE_AND_READ = '''
import json, os, sys
import sqlalchemy as sa
from sqlalchemy.orm import Session
from hyper_audit_alembic import audit_context, history
from hyper_audit_alembic.urls import engine_url
from models import Account

# A plain postgresql:// URL, with the driver a plain install has (README: Install).
engine = sa.create_engine(engine_url(os.environ["DATABASE_URL"]))
with Session(engine) as session:
    with audit_context(session, actor="user:42", request_id="r-1"):
        session.add(Account(id=1, name="Foo"))
        session.commit()
    with audit_context(session, actor="user:7", request_id="r-2"):
        session.get(Account, 1).name = "Bar"
        session.commit()
    rows = [
        [v.op.value, v.actor, v.context, v.record, v.old_record]
        for v in history(session, Account, 1)
    ]
print(json.dumps(rows))
'''


def run(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"first hour: {' '.join(args)} failed ({done.returncode}):\n"
                 f"{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def expect(what: str, found: object, wanted: object) -> None:
    if found != wanted:
        sys.exit(f"first hour: {what}: expected {wanted!r}, found {found!r}")


def main() -> None:
    if any(
        subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True).returncode
        == 0
        for name in ("greenlet", "psycopg", "pytest")
    ):
        sys.exit("first hour: this virtualenv must hold only the wheel (found test extras)")
    with ThrowawayPostgres() as server, tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch)
        url = server.url().replace("postgresql+psycopg2://", "postgresql://")
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(project)}
        (project / "models.py").write_text(MODELS)
        run(str(BIN / "hyper-audit-alembic"), "init", "migrations", cwd=project, env=env)
        ini = project / "alembic.ini"
        metadata = "target_metadata = models:Base.metadata"
        ini.write_text(ini.read_text().replace("target_metadata =", metadata, 1))
        alembic = str(BIN / "alembic")
        run(alembic, "revision", "--autogenerate", "-m", "accounts", cwd=project, env=env)
        (migration,) = (project / "migrations" / "versions").glob("*.py")
        text = migration.read_text()
        for line in ("op.install_audit()", "op.enable_tracking('account')"):
            if line not in text:
                sys.exit(f"first hour: the generated migration lacks {line}:\n{text}")
        run(alembic, "upgrade", "head", cwd=project, env=env)
        checked = run(alembic, "check", cwd=project, env=env)
        if "No new upgrade operations detected." not in checked:
            sys.exit(f"first hour: alembic check after upgrade:\n{checked}")
        (project / "write_and_read.py").write_text(textwrap.dedent(WRITE_AND_READ))
        out = run(sys.executable, "write_and_read.py", cwd=project, env=env)
        expect(
            "history(session, Account, 1)",
            json.loads(out.strip().splitlines()[-1]),
            [
                ["INSERT", "user:42", {"request_id": "r-1"}, {"id": 1, "name": "Foo"}, None],
                ["UPDATE", "user:7", {"request_id": "r-2"}, {"id": 1, "name": "Bar"},
                 {"id": 1, "name": "Foo"}],
            ],
        )
        shown = run(
            str(BIN / "hyper-audit-alembic"), "history", "--url", url, "account", "1",
            cwd=project, env=env,
        )
        for part in ("2 changes", 'name: "Foo" -> "Bar"', "user:42"):
            if part not in shown:
                sys.exit(f"first hour: the history CLI output lacks {part!r}:\n{shown}")
    print("first hour: init, autogenerate, upgrade, check, audit_context, history: as documented")


if __name__ == "__main__":
    main()
