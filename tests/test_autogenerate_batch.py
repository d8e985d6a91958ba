"""``render_as_batch=True``: the audit operations stay out of the batch blocks.

Alembic renders a table's ``ModifyTableOps`` as a ``with op.batch_alter_table(...)``
block under ``render_as_batch``; an ``op.enable_tracking`` in there would run inside
the batch (before its ``alter_column``, on SQLite-style recreations, after the table was
copied ...). The audit operations are written at the top level of upgrade() and
downgrade(), after the table's block or before its drop, whatever ``render_as_batch`` says.
Each migration is applied, undone and applied again on the real server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic_project import Project, migration_body

MODELS = """
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass

"""
ACCOUNT = """
class Account(Base):
    __tablename__ = "account"
    __audited__ = {audited}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[{name_type}]
"""


def account(audited: bool = True, name_type: str = "str") -> str:
    return MODELS + ACCOUNT.format(audited=audited, name_type=name_type)


def last_revision(tmp_path: Path, db_url: str, batch: bool, *steps: str) -> str:
    """Autogenerate and apply a migration for each step of the models; the last one's text."""
    project = Project.create(tmp_path, db_url)
    if batch:
        project.edit_env(
            "    target_metadata=target_metadata,\n",
            "    target_metadata=target_metadata,\n    render_as_batch=True,\n",
        )
    for models in steps:
        project.set_models(models)
        text = project.revision()
        project.upgrade()
    project.downgrade("-1")
    project.upgrade()
    assert project.check() == "No new upgrade operations detected.\n"
    return text


def tracked(db_url: str) -> list[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            return list(
                connection.exec_driver_sql(
                    "select distinct c.relname from pg_trigger t "
                    "join pg_class c on c.oid = t.tgrelid "
                    "where t.tgfoid = to_regprocedure('audit.record_row_change()') order by 1"
                ).scalars()
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "plain"])
def test_a_new_flagged_table(tmp_path: Path, db_url: str, batch: bool) -> None:
    text = last_revision(tmp_path, db_url, batch, account())
    assert migration_body(text, "upgrade") == [
        "op.install_audit()",
        "op.create_table('account',",
        "sa.Column('id', sa.Integer(), nullable=False),",
        "sa.Column('name', sa.String(), nullable=False),",
        "sa.PrimaryKeyConstraint('id')",
        ")",
        "op.enable_tracking('account')",
    ]
    assert migration_body(text, "downgrade") == [
        "op.disable_tracking('account')",
        "op.drop_table('account')",
        "op.uninstall_audit(keep_history=True)",
    ]
    assert tracked(db_url) == ["account"]


ALTERED = {
    True: [
        "with op.batch_alter_table('account', schema=None) as batch_op:",
        "    batch_op.alter_column('name',",
        "           existing_type=sa.VARCHAR(),",
        "           nullable={nullable})",
    ],
    False: [
        "op.alter_column('account', 'name',",
        "           existing_type=sa.VARCHAR(),",
        "           nullable={nullable})",
    ],
}


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "plain"])
def test_flagging_a_table_that_is_altered_in_the_same_revision(
    tmp_path: Path, db_url: str, batch: bool
) -> None:
    text = last_revision(
        tmp_path, db_url, batch, account(audited=False), account(name_type="str | None")
    )
    altered = "\n".join(ALTERED[batch])
    assert migration_body(text, "upgrade") == [
        "op.install_audit()",
        *altered.format(nullable=True).splitlines(),
        "op.enable_tracking('account')",  # after the table's block, outside it
    ]
    assert migration_body(text, "downgrade") == [
        "op.disable_tracking('account')",  # before the table's block, outside it
        *altered.format(nullable=False).splitlines(),
        "op.uninstall_audit(keep_history=True)",
    ]
    assert tracked(db_url) == ["account"]


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "plain"])
def test_a_tracked_table_dropped(tmp_path: Path, db_url: str, batch: bool) -> None:
    text = last_revision(tmp_path, db_url, batch, account(), MODELS)
    assert migration_body(text, "upgrade") == [
        "op.disable_tracking('account')",
        "op.drop_table('account')",
    ]
    assert migration_body(text, "downgrade") == [
        "op.create_table('account',",
        "sa.Column('id', sa.INTEGER(), autoincrement=True, nullable=False),",
        "sa.Column('name', sa.VARCHAR(), autoincrement=False, nullable=False),",
        "sa.PrimaryKeyConstraint('id', name=op.f('account_pkey'))",
        ")",
        "op.enable_tracking('account')",
    ]
    assert tracked(db_url) == []
