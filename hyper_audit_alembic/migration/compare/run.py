"""What one autogenerate run learns once and every comparator of ours shares.

The database's audit state (one set of catalog queries), the flagged tables and their
options, and where ``op.install_audit()`` goes if some table needs it. Kept per
``AutogenContext`` (weakly), so two runs in one process never mix.

Findings are logged at INFO like Alembic's own ("Detected added table 'account'"),
through a logger under ``alembic``, so the ``[logger_alembic]`` of every alembic.ini
shows them.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alembic.util import CommandError
from sqlalchemy import Table

from ..catalog import AuditState, read_audit_state
from ..flag import (
    describe,
    flagged_by,
    flagged_options,
    flagged_snapshot,
    is_flagged,
    owning_mappers,
)
from ..ops import DistributeAuditOp, InstallAuditOp
from ..options import TrackingOptions, declared_citus, declared_install_options

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps

#: The schema of the audit trail's own objects: never compared as the user's.
AUDIT_SCHEMA = "audit"

#: Beside Alembic's own ``alembic.autogenerate.compare.tables``: shown wherever Alembic's are.
log = logging.getLogger("alembic.autogenerate.compare.hyper_audit")


@dataclass
class AutogenerateRun:
    """What one autogenerate run learned, read once and shared by every table."""

    state: AuditState
    default_schema: str
    flagged: dict[tuple[str | None, str], Table]
    described: dict[tuple[str | None, str], str]
    flagged_by: dict[tuple[str | None, str], str]
    #: The options each flagged table's flag asks for.
    options: dict[tuple[str | None, str], TrackingOptions]
    #: The flagged tables whose flag asks for a baseline snapshot (``{"snapshot": True}``).
    snapshot: frozenset[tuple[str | None, str]] = frozenset()
    # Where op.install_audit() goes if a table comparator finds a table to track.
    install_into: UpgradeOps | None = None
    #: op.install_audit()'s layout options, as env.py declares them.
    install_options: dict[str, Any] = field(default_factory=dict)
    #: env.py declares the audit table distributed (hyper_audit={"citus": True}).
    distribute: bool = False
    install_at: int = 0
    install_added: bool = False

    def need_installed(self) -> None:
        """Put op.install_audit() first (once) when the audit schema is not installed."""
        if self.state.installed or self.install_added or self.install_into is None:
            return
        self.install_into.ops.insert(self.install_at, InstallAuditOp(**self.install_options))
        if self.distribute:
            # Before any op.enable_tracking(), which then takes the Citus write path.
            self.install_into.ops.insert(self.install_at + 1, DistributeAuditOp())
        self.install_added = True
        log.info("Detected audit schema install")


_runs: weakref.WeakKeyDictionary[AutogenContext, AutogenerateRun] = weakref.WeakKeyDictionary()


def metadata_tables(autogen_context: AutogenContext) -> list[Table]:
    """The tables of the user's ``target_metadata``."""
    return list(autogen_context.sorted_tables)


def has_run(autogen_context: AutogenContext) -> bool:
    """Whether our comparators have run in this autogenerate run (the plugin is on)."""
    return autogen_context in _runs


def run_of(autogen_context: AutogenContext) -> AutogenerateRun:
    """This autogenerate run's shared findings, read on the first call."""
    found = _runs.get(autogen_context)
    if found is not None:
        return found
    dialect = autogen_context.dialect
    assert dialect is not None
    tables = metadata_tables(autogen_context)
    owners = owning_mappers(tables)
    flagged_tables = [t for t in tables if is_flagged(t, owners.get(t))]
    if dialect.name != "postgresql":
        if flagged_tables:
            names = ", ".join(describe(t, owners.get(t)) for t in flagged_tables)
            raise CommandError(
                f"hyper_audit: {names} flagged for auditing, but the database is "
                f"{dialect.name!r}; the audit trail needs PostgreSQL. Run autogenerate "
                f"against PostgreSQL, or remove the __audited__ flags."
            )
        state = AuditState()
        default_schema = ""
    else:
        assert autogen_context.connection is not None
        state = read_audit_state(autogen_context.connection)
        default_schema = str(dialect.default_schema_name)
    found = AutogenerateRun(
        state=state,
        default_schema=default_schema,
        flagged={(t.schema, t.name): t for t in flagged_tables},
        described={(t.schema, t.name): describe(t, owners.get(t)) for t in flagged_tables},
        flagged_by={(t.schema, t.name): flagged_by(t, owners.get(t)) for t in flagged_tables},
        options={(t.schema, t.name): flagged_options(t, owners.get(t)) for t in flagged_tables},
        snapshot=frozenset(
            (t.schema, t.name) for t in flagged_tables if flagged_snapshot(t, owners.get(t))
        ),
        install_options=declared_install_options(autogen_context.opts),
        distribute=declared_citus(autogen_context.opts),
    )
    _runs[autogen_context] = found
    return found
