"""The audit trail across releases and installs: schema upgrades and adoption.

- ``op.upgrade_audit(from_version=1, to_version=2)`` runs ``sql/steps/<n>.sql`` for each
  version after ``from_version``, then the current functions (``sql/functions/``);
  ``op.downgrade_audit(from_version=2, to_version=1)`` runs ``sql/steps/<n>.down.sql``
  back, then ``sql/released/<to_version>.sql``. Each is the other's reverse. The SQL checks
  the installed version itself (a DO block that refuses with the fix), so offline mode works.
- ``op.adopt_audit()`` takes over an install of the reference design (the supa_audit 0.3
  extension, or hyper_audit, with or without TimescaleDB): ``sql/adopt_prepare.sql``,
  the current install, ``sql/adopt_finish.sql``. Every history row and record id stays;
  every table the reference tracked is tracked by our triggers, in the same transaction.
  Its reverse, ``op.unadopt_audit()``, refuses: the reference's functions and extension are
  gone, and bringing back a copy of a third party's design is not a downgrade we can own.

Autogenerate (compare.py) puts either first in the upgrade, where ``op.install_audit()``
would go, when the database's audit schema is older than :data:`sql.SCHEMA_VERSION` or is
the reference's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic.autogenerate.render import renderers
from alembic.operations import MigrateOperation, Operations

from . import sql
from .ops import AuditOperationError, _emit

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext


def _checked(caller: str, from_version: object, to_version: object, upward: bool) -> None:
    for name, version in (("from_version", from_version), ("to_version", to_version)):
        if isinstance(version, bool) or not isinstance(version, int):
            raise AuditOperationError(
                f"{caller}: {name} must be an audit schema version number (an int), not {version!r}"
            )
        if not 1 <= version <= sql.SCHEMA_VERSION:
            raise AuditOperationError(
                f"{caller}: {name}={version} is not an audit schema version this release of "
                f"hyper_audit_alembic knows (1 to {sql.SCHEMA_VERSION}); a migration written "
                f"for a later release needs that release installed"
            )
    assert isinstance(from_version, int) and isinstance(to_version, int)
    if upward and from_version >= to_version:
        raise AuditOperationError(
            f"{caller}: to_version ({to_version}) must be later than from_version "
            f"({from_version}); op.downgrade_audit() goes back"
        )
    if not upward and from_version <= to_version:
        raise AuditOperationError(
            f"{caller}: to_version ({to_version}) must be earlier than from_version "
            f"({from_version}); op.upgrade_audit() goes forward"
        )


@Operations.register_operation("upgrade_audit")
class UpgradeAuditOp(MigrateOperation):
    """Upgrade the audit schema from one released version to a later one."""

    def __init__(self, from_version: int, to_version: int) -> None:
        _checked("op.upgrade_audit", from_version, to_version, upward=True)
        self.from_version = from_version
        self.to_version = to_version

    @classmethod
    def upgrade_audit(cls, operations: Operations, *, from_version: int, to_version: int) -> None:
        """Upgrade the audit schema from ``from_version`` to ``to_version``.

        Every recorded row stays and stays readable; tracked tables stay tracked. Fails,
        changing nothing, unless the database's audit schema is at ``from_version``.
        """
        operations.invoke(cls(from_version, to_version))

    def statements(self) -> list[str]:
        return sql.upgrade_statements(self.from_version, self.to_version)

    def reverse(self) -> DowngradeAuditOp:
        return DowngradeAuditOp(self.to_version, self.from_version)

    def to_diff_tuple(self) -> tuple[str, int, int]:
        return ("upgrade_audit", self.from_version, self.to_version)


@Operations.register_operation("downgrade_audit")
class DowngradeAuditOp(MigrateOperation):
    """Take the audit schema back to an earlier released version, keeping the history."""

    def __init__(self, from_version: int, to_version: int) -> None:
        _checked("op.downgrade_audit", from_version, to_version, upward=False)
        self.from_version = from_version
        self.to_version = to_version

    @classmethod
    def downgrade_audit(cls, operations: Operations, *, from_version: int, to_version: int) -> None:
        """Take the audit schema from ``from_version`` back to ``to_version``.

        Recorded rows and values stay (columns a later version added keep what they hold);
        tracked tables stay tracked. Fails, changing nothing, unless the database's audit
        schema is at ``from_version``.
        """
        operations.invoke(cls(from_version, to_version))

    def statements(self) -> list[str]:
        return sql.downgrade_statements(self.from_version, self.to_version)

    def reverse(self) -> UpgradeAuditOp:
        return UpgradeAuditOp(self.to_version, self.from_version)

    def to_diff_tuple(self) -> tuple[str, int, int]:
        return ("downgrade_audit", self.from_version, self.to_version)


@Operations.register_operation("adopt_audit")
class AdoptAuditOp(MigrateOperation):
    """Take over an existing supa_audit / hyper_audit install."""

    @classmethod
    def adopt_audit(cls, operations: Operations) -> None:
        """Take over an install of the reference design (supa_audit 0.3, hyper_audit).

        Keeps ``audit.record_version`` with every row and record id, detaches the audit
        objects from the ``supa_audit`` extension (then drops the empty extension), installs
        the current audit schema over them, moves every tracked table from the triggers
        ``audit_i_u_d`` / ``audit_t`` to ours in the same transaction, and only then drops
        the reference's trigger functions. Over a database without such an install it is
        ``op.install_audit()``. It cannot be undone (see ``op.unadopt_audit()``).
        """
        operations.invoke(cls())

    def statements(self) -> list[str]:
        return sql.install_statements()

    def reverse(self) -> UnadoptAuditOp:
        return UnadoptAuditOp()

    def to_diff_tuple(self) -> tuple[str]:
        return ("adopt_audit",)


UNADOPT_REFUSAL = (
    "op.unadopt_audit: the take-over of an existing supa_audit / hyper_audit install "
    "(op.adopt_audit()) cannot be undone: the reference's trigger functions (and its "
    "extension, if it was one) are gone, and the tables it tracked are tracked by "
    "hyper_audit's triggers. The history is complete. To downgrade past this migration and "
    "keep the audit trail as it is, delete this op.unadopt_audit() line from the "
    "migration's downgrade(); to remove the audit trail as well, replace it with "
    "op.uninstall_audit(keep_history=True)."
)


@Operations.register_operation("unadopt_audit")
class UnadoptAuditOp(MigrateOperation):
    """The downgrade of ``op.adopt_audit()``: refuses with what to do instead."""

    @classmethod
    def unadopt_audit(cls, operations: Operations) -> None:
        """Refuse: an adoption cannot be undone. The error says what to write instead."""
        operations.invoke(cls())

    def reverse(self) -> AdoptAuditOp:
        return AdoptAuditOp()

    def to_diff_tuple(self) -> tuple[str]:
        return ("unadopt_audit",)


@Operations.implementation_for(UpgradeAuditOp)
@Operations.implementation_for(DowngradeAuditOp)
@Operations.implementation_for(AdoptAuditOp)
def _run(
    operations: Operations, operation: UpgradeAuditOp | DowngradeAuditOp | AdoptAuditOp
) -> None:
    _emit(operations, operation.statements())


@Operations.implementation_for(UnadoptAuditOp)
def _refuse(operations: Operations, operation: UnadoptAuditOp) -> None:
    raise AuditOperationError(UNADOPT_REFUSAL)


# -- rendering -------------------------------------------------------------------------
from .render import _call  # noqa: E402


@renderers.dispatch_for(UpgradeAuditOp, replace=True)
@renderers.dispatch_for(DowngradeAuditOp, replace=True)
def render_version_change(
    autogen_context: AutogenContext, op: UpgradeAuditOp | DowngradeAuditOp
) -> str:
    name = "upgrade_audit" if isinstance(op, UpgradeAuditOp) else "downgrade_audit"
    return _call(
        autogen_context,
        name,
        f"from_version={op.from_version!r}",
        f"to_version={op.to_version!r}",
    )


@renderers.dispatch_for(AdoptAuditOp, replace=True)
@renderers.dispatch_for(UnadoptAuditOp, replace=True)
def render_adoption(autogen_context: AutogenContext, op: AdoptAuditOp | UnadoptAuditOp) -> str:
    return _call(autogen_context, op.to_diff_tuple()[0])
