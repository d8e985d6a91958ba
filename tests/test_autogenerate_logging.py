"""``alembic revision --autogenerate`` reports the audit findings like Alembic's own.

Alembic logs each finding at INFO ("Detected added table 'account'") through loggers
under ``alembic``, which the ``[logger_alembic]`` of every alembic.ini shows. The audit
findings go through ``alembic.autogenerate.compare.hyper_audit`` the same way. The
command runs as a user runs it: the ``alembic`` command in a subprocess, whose log
output (stderr) is compared line by line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic_project import Project

from hyper_audit_alembic import sql

OURS = "INFO  [alembic.autogenerate.compare.hyper_audit] "
TABLES = "INFO  [alembic.autogenerate.compare.tables] "

MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass

"""


def model(name: str, audited: object = True) -> str:
    return f"""
class {name.title()}(Base):
    __tablename__ = "{name}"
    __audited__ = {audited!r}

    id: Mapped[int] = mapped_column(primary_key=True)
    secret: Mapped[str]
"""


def autogenerate_log(project: Project) -> list[str]:
    """The comparison's INFO lines ``alembic revision --autogenerate`` writes in the project.

    Alembic's other INFO lines (the migration context, the plugins it sets up) vary with
    its version and are left out.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    ran = subprocess.run(
        [sys.executable, "-m", "alembic", "revision", "--autogenerate", "-m", "change"],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    return [
        line
        for line in ran.stderr.splitlines()
        if line.startswith("INFO  [alembic.autogenerate.")
    ]


PLUGINS_LINE = '    autogenerate_plugins=["alembic.autogenerate.*", "hyper_audit"],\n'


def test_the_audit_findings_are_logged_like_alembics(tmp_path: Path, db_url: str) -> None:
    project = Project.create(tmp_path, db_url, MODELS + model("account"))
    project.edit_env(
        PLUGINS_LINE, PLUGINS_LINE + '    hyper_audit={"partitioned": {"premake": 1}},\n'
    )
    assert autogenerate_log(project) == [
        TABLES + "Detected added table 'account'",
        OURS + "Detected audit schema install",
        OURS + "Detected tracking enabled for table 'account'",
    ]
    project.upgrade()

    project.set_models(MODELS + model("account") + model("item") + model("note"))
    # Alembic finds added tables in no particular order.
    assert sorted(autogenerate_log(project)) == sorted(
        [
                TABLES + "Detected added table 'item'",
            OURS + "Detected tracking enabled for table 'item'",
            TABLES + "Detected added table 'note'",
            OURS + "Detected tracking enabled for table 'note'",
        ]
    )
    project.upgrade()

    # account goes, item's options change, note's flag goes; and the partitioning.
    project.set_models(MODELS + model("item", {"exclude": ["secret"]}) + model("note", False))
    project.edit_env('{"premake": 1}', '{"premake": 2, "retention": "3 years"}')
    assert autogenerate_log(project) == [
        OURS + "Detected audit partitioning options changed: premake, retention",
        OURS + "Detected tracking disabled for table 'account'",
        TABLES + "Detected removed table 'account'",
        OURS + "Detected tracking options changed for table 'item'",
        OURS + "Detected tracking disabled for table 'note'",
    ]
    project.upgrade()
    assert autogenerate_log(project) == []  # nothing left to find


def test_the_audit_schema_upgrade_is_logged(tmp_path: Path, db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as connection:
            operations = Operations(MigrationContext.configure(connection))
            operations.install_audit()  # type: ignore[attr-defined]
            operations.downgrade_audit(  # type: ignore[attr-defined]
                from_version=sql.SCHEMA_VERSION, to_version=1
            )
    finally:
        engine.dispose()
    project = Project.create(tmp_path, db_url, MODELS + model("account"))
    assert autogenerate_log(project) == [
        OURS + f"Detected audit schema upgrade from version 1 to {sql.SCHEMA_VERSION}",
        TABLES + "Detected added table 'account'",
        OURS + "Detected tracking enabled for table 'account'",
    ]
