"""Which tables are flagged: ``__audited__`` on models, ``info={"audited": True}`` on tables.

Each case is checked the way a user sees it: the tracking lines autogenerate writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import sqlalchemy as sa
from alembic_project import autogenerate
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def tracking_lines(engine: sa.Engine, metadata: sa.MetaData) -> list[str]:
    with engine.begin() as connection:
        upgrade, _ = autogenerate(connection, metadata)
    return [line for line in upgrade if line.startswith(("op.enable", "op.install"))]


def test_flag_on_class_mixin_and_abstract_base_with_opt_out(engine: sa.Engine) -> None:
    class Base(DeclarativeBase):
        pass

    class AuditedMixin:
        __audited__ = True

    class AuditedBase(Base):
        __abstract__ = True
        __audited__ = True

        id: Mapped[int] = mapped_column(primary_key=True)

    class Direct(Base):
        __tablename__ = "direct"
        __audited__ = True

        id: Mapped[int] = mapped_column(primary_key=True)

    class FromMixin(AuditedMixin, Base):
        __tablename__ = "from_mixin"

        id: Mapped[int] = mapped_column(primary_key=True)

    class FromAbstract(AuditedBase):
        __tablename__ = "from_abstract"

    class OptedOut(AuditedBase):
        __tablename__ = "opted_out"
        __audited__ = False

    class MixinOptedOut(AuditedMixin, Base):
        __tablename__ = "mixin_opted_out"
        __audited__ = False

        id: Mapped[int] = mapped_column(primary_key=True)

    class Plain(Base):
        __tablename__ = "plain"

        id: Mapped[int] = mapped_column(primary_key=True)

    assert tracking_lines(engine, Base.metadata) == [
        "op.install_audit()",
        "op.enable_tracking('direct')",
        "op.enable_tracking('from_abstract')",
        "op.enable_tracking('from_mixin')",
    ]


def test_joined_table_inheritance(engine: sa.Engine) -> None:
    class Base(DeclarativeBase):
        pass

    class Party(Base):
        __tablename__ = "party"
        __audited__ = True

        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str]
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "party"}

    class Person(Party):
        """Inherits the flag: its own table is tracked too."""

        __tablename__ = "person"

        id: Mapped[int] = mapped_column(sa.ForeignKey("party.id"), primary_key=True)
        __mapper_args__ = {"polymorphic_identity": "person"}

    class Robot(Party):
        __tablename__ = "robot"
        __audited__ = False

        id: Mapped[int] = mapped_column(sa.ForeignKey("party.id"), primary_key=True)
        __mapper_args__ = {"polymorphic_identity": "robot"}

    class Thing(Base):
        __tablename__ = "thing"

        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str]
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "thing"}

    class Gadget(Thing):
        """Flagged below an unflagged parent: only its own table."""

        __tablename__ = "gadget"
        __audited__ = True

        id: Mapped[int] = mapped_column(sa.ForeignKey("thing.id"), primary_key=True)
        __mapper_args__ = {"polymorphic_identity": "gadget"}

    assert tracking_lines(engine, Base.metadata) == [
        "op.install_audit()",
        "op.enable_tracking('party')",
        "op.enable_tracking('gadget')",
        "op.enable_tracking('person')",
    ]


def test_single_table_inheritance_tracks_the_one_table(engine: sa.Engine) -> None:
    class Base(DeclarativeBase):
        pass

    class Payment(Base):
        __tablename__ = "payment"
        __audited__ = True

        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str]
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "payment"}

    class CardPayment(Payment):
        __mapper_args__ = {"polymorphic_identity": "card"}

    class CashPayment(Payment):
        __audited__ = False  # cannot opt out of the table it shares
        __mapper_args__ = {"polymorphic_identity": "cash"}

    class Order(Base):
        __tablename__ = "order"

        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str]
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "order"}

    class RushOrder(Order):
        """Flagged on a subclass only: its rows are in "order", so that table is tracked."""

        __audited__ = True
        __mapper_args__ = {"polymorphic_identity": "rush"}

    assert tracking_lines(engine, Base.metadata) == [
        "op.install_audit()",
        "op.enable_tracking('order')",
        "op.enable_tracking('payment')",
    ]


def test_core_tables_and_table_info_under_a_model(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "ledger", metadata, sa.Column("id", sa.Integer, primary_key=True), info={"audited": True}
    )
    sa.Table("scratch", metadata, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "scratch2",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        info={"audited": False},
    )

    class Base(DeclarativeBase):
        pass

    class ViaInfo(Base):
        __tablename__ = "via_info"
        __table_args__ = {"info": {"audited": True}}

        id: Mapped[int] = mapped_column(primary_key=True)

    class ModelWins(Base):
        __tablename__ = "model_wins"
        __table_args__ = {"info": {"audited": True}}
        __audited__ = False

        id: Mapped[int] = mapped_column(primary_key=True)

    assert tracking_lines(engine, metadata) == [
        "op.install_audit()",
        "op.enable_tracking('ledger')",
    ]
    assert tracking_lines(engine, Base.metadata) == [
        "op.install_audit()",
        "op.enable_tracking('via_info')",
    ]


IMPORT_ORDER = textwrap.dedent(
    """
    import sys

    order, url = sys.argv[1:]


    def define_models():
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        class Base(DeclarativeBase):
            pass

        class Audited:
            __audited__ = True

        class Account(Audited, Base):
            __tablename__ = "account"

            id: Mapped[int] = mapped_column(primary_key=True)

        return Base, Account


    if order == "models-first":
        Base, Account = define_models()
        assert "alembic" not in sys.modules and "hyper_audit_alembic" not in sys.modules
        import alembic
    else:
        import alembic
        import hyper_audit_alembic.plugin

        Base, Account = define_models()

    import sqlalchemy as sa
    from alembic.autogenerate import produce_migrations, render_python_code
    from alembic.migration import MigrationContext

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "target_metadata": Base.metadata,
                "autogenerate_plugins": ["alembic.autogenerate.*", "hyper_audit"],
            },
        )
        script = produce_migrations(context, Base.metadata)
        for line in render_python_code(script.upgrade_ops).splitlines():
            if "audit" in line or "tracking" in line:
                print(line.strip())
    """
)


def test_discovery_does_not_depend_on_import_order(db_url: str) -> None:
    for order in ("models-first", "plugin-first"):
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_ORDER, order, db_url],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "op.install_audit()",
            "op.enable_tracking('account')",
        ], order
