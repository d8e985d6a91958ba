"""Checking the options users give: one validator per kind of option.

Every option reaches us twice, as an argument of an ``op.`` directive (a migration) and
as a declaration autogenerate reads (a model's ``__audited__`` flag, env.py's
``context.configure(hyper_audit={...})``); both go through the one check here, so the
two can never accept different things. Each check raises
:class:`~hyper_audit_alembic.errors.AuditOperationError` (an Alembic ``CommandError``)
with one line naming what was given and what is expected.

- tracking options of a table: ``exclude``, ``skip_unchanged``, ``on_replica``
  (:func:`tracking_options`, :func:`flag_tracking_options`);
- the audit table's layout: TimescaleDB (:class:`TimescaleOptions`) and native
  partitioning (:func:`check_partition_option`, :func:`parse_partitioned`), alone or as
  env.py declares them (:func:`declared_layout`);
- audit schema versions of ``op.upgrade_audit()`` / ``op.downgrade_audit()``
  (:func:`check_version_change`; the numbers are checked by :mod:`hyper_audit_alembic.sql`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from types import EllipsisType
from typing import Any, TypeAlias

from .. import sql
from ..errors import AuditOperationError

# -- tracking options ------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingOptions:
    """A tracked table's options: the columns left out (sorted), skip_unchanged, and
    on_replica (row-level ENABLE ALWAYS triggers, so that a subscriber records too)."""

    exclude: tuple[str, ...] = ()
    skip_unchanged: bool = False
    on_replica: bool = False


NO_OPTIONS = TrackingOptions()

#: The tracking options of a flag's dict: ``__audited__ = {"exclude": [...], ...}``.
OPTION_KEYS = ("exclude", "skip_unchanged", "on_replica")
#: Every key of a flag's dict: the tracking options and ``snapshot`` (a one-off baseline
#: when tracking starts, not an option the triggers keep: :func:`check_snapshot`).
FLAG_KEYS = (*OPTION_KEYS, "snapshot")


def tracking_options(
    exclude: Iterable[str], skip_unchanged: object, on_replica: object, where: str = ""
) -> TrackingOptions:
    """The options of a tracked table, checked: distinct column names sorted, two bools.

    ``where`` names the declaration in the message (``model Account (table account):
    __audited__ = {...}``); an op's own arguments need none.
    """
    prefix = f"hyper_audit: {where}: " if where else "hyper_audit: "
    columns = [] if isinstance(exclude, str) else list(exclude)
    if isinstance(exclude, str) or not all(isinstance(c, str) and c for c in columns):
        raise AuditOperationError(
            f"{prefix}exclude must be a list of column names, not {exclude!r}"
        )
    for name, value in (("skip_unchanged", skip_unchanged), ("on_replica", on_replica)):
        if not isinstance(value, bool):
            raise AuditOperationError(f"{prefix}{name} must be True or False, not {value!r}")
    assert isinstance(skip_unchanged, bool) and isinstance(on_replica, bool)
    return TrackingOptions(tuple(sorted(set(columns))), skip_unchanged, on_replica)


def flag_tracking_options(
    flag: Mapping[Any, Any], where: str, key_columns: set[str], columns: set[str]
) -> TrackingOptions:
    """The options a flag's dict asks for, checked against its table's columns."""
    unknown = sorted(set(map(str, flag)) - set(FLAG_KEYS))
    if unknown:
        raise AuditOperationError(
            f"hyper_audit: {where} has unknown option(s) {', '.join(unknown)}; "
            f"the options are {', '.join(FLAG_KEYS)}"
        )
    options = tracking_options(
        flag.get("exclude", ()),
        flag.get("skip_unchanged", False),
        flag.get("on_replica", False),
        where,
    )
    keys = sorted(set(options.exclude) & key_columns)
    if keys:
        raise AuditOperationError(
            f"hyper_audit: {where} excludes primary-key column(s) {', '.join(keys)}: the audit "
            f"trail identifies each record by its primary key, so they are always recorded. "
            f"Remove them from exclude."
        )
    missing = sorted(set(options.exclude) - columns)
    if missing:
        raise AuditOperationError(
            f"hyper_audit: {where} excludes {', '.join(missing)}, which the table does not "
            f"have (exclude takes column names, as in the database)"
        )
    return options


def check_snapshot(snapshot: object, where: str = "") -> bool:
    """``snapshot``: True or False, as ``op.enable_tracking(..., snapshot=...)`` or a flag's
    ``{"snapshot": ...}`` gives it.

    A baseline taken once, when tracking starts (one SNAPSHOT audit row per row the table
    holds): not a tracking option, so it is never compared with the triggers' options.
    """
    if not isinstance(snapshot, bool):
        prefix = f"hyper_audit: {where}: " if where else "op.enable_tracking: "
        raise AuditOperationError(
            f"{prefix}snapshot must be True (record the rows the table holds as its baseline) "
            f"or False, not {snapshot!r}"
        )
    return snapshot


def flag_snapshot(flag: Mapping[Any, Any], where: str) -> bool:
    """Whether a flag's dict asks for a baseline snapshot: ``{"snapshot": True}``."""
    return check_snapshot(flag.get("snapshot", False), where)


# -- audit schema versions -------------------------------------------------------------


def check_commit(commit: object) -> bool:
    """``op.upgrade_audit(..., commit=...)``: True or False."""
    if not isinstance(commit, bool):
        raise AuditOperationError(
            f"op.upgrade_audit: commit must be True (commit the upgrade before the operations "
            f"after it) or False, not {commit!r}"
        )
    return commit


def check_version_change(
    caller: str, from_version: object, to_version: object, upward: bool
) -> None:
    """The versions of ``op.upgrade_audit()`` (``upward``) or ``op.downgrade_audit()``."""
    problem = sql.version_problem(from_version, to_version, upward=upward, same_allowed=False)
    if problem is None:
        return
    if problem.kind == "not_int":
        raise AuditOperationError(
            f"{caller}: {problem.name} must be an audit schema version number (an int), "
            f"not {problem.value!r}"
        )
    if problem.kind == "unknown":
        raise AuditOperationError(
            f"{caller}: {problem.name}={problem.value} is not an audit schema version this "
            f"release of hyper_audit_alembic knows (1 to {sql.SCHEMA_VERSION}); a migration "
            f"written for a later release needs that release installed"
        )
    if upward:
        raise AuditOperationError(
            f"{caller}: to_version ({to_version}) must be later than from_version "
            f"({from_version}); op.downgrade_audit() goes back"
        )
    raise AuditOperationError(
        f"{caller}: to_version ({to_version}) must be earlier than from_version "
        f"({from_version}); op.upgrade_audit() goes forward"
    )


# -- the audit table's layout ----------------------------------------------------------

#: The value of an option that an operation leaves as it is: ``...`` (Alembic writes the
#: defaults of op directives into generated code, so the sentinel must be a builtin).
UNCHANGED: EllipsisType = ...

#: An interval option: text such as '30 days', None (no policy), or UNCHANGED.
IntervalOption: TypeAlias = "str | EllipsisType | None"

# Interval text as PostgreSQL reads it ('7 days', '1 month', '1 year 6 months', 'P1M').
# Nothing that could end a quoted literal or a dollar-quoted body, no '%' and no ':'.
_INTERVAL_TEXT = re.compile(r"[0-9A-Za-z][0-9A-Za-z. ]*")


def check_interval(value: object, caller: str, name: str) -> str:
    if not isinstance(value, str) or not _INTERVAL_TEXT.fullmatch(value.strip()):
        raise AuditOperationError(
            f"{caller}: {name} must be an interval written as text, such as '30 days' or "
            f"'1 month', not {value!r}"
        )
    return value


@dataclass(frozen=True)
class TimescaleOptions:
    """TimescaleDB options; UNCHANGED ones are left as they are (not managed)."""

    chunk_interval: IntervalOption = UNCHANGED
    compress_after: IntervalOption = UNCHANGED
    retention: IntervalOption = UNCHANGED

    @classmethod
    def parse(cls, value: object, caller: str) -> TimescaleOptions:
        if value is True:
            value = {}
        if not isinstance(value, Mapping):
            raise AuditOperationError(
                f"{caller}: timescale= takes a dict of chunk_interval, compress_after and "
                f"retention, not {value!r}"
            )
        return cls.checked(caller, **value)

    @classmethod
    def checked(cls, caller: str, **values: object) -> TimescaleOptions:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise AuditOperationError(
                f"{caller}: unknown TimescaleDB option {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(known)}"
            )
        for name, value in values.items():
            if value is UNCHANGED:
                continue
            if value is None:
                if name == "chunk_interval":
                    raise AuditOperationError(
                        f"{caller}: chunk_interval cannot be None; a hypertable always has one"
                    )
                continue
            check_interval(value, caller, name)
        return cls(**values)  # type: ignore[arg-type]

    def given(self) -> dict[str, str | None]:
        """The options that are set, as keyword arguments."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not UNCHANGED
        }

    def placeholders(self) -> dict[str, str | bool | None]:
        values: dict[str, str | bool | None] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f"set_{f.name}"] = value is not UNCHANGED
            values[f.name] = None if value is UNCHANGED else value
        return values


PARTITION_DEFAULTS: dict[str, Any] = {
    "interval": "1 month",
    "premake": 3,
    "retention": None,
    "retention_action": "detach",
}


def check_partition_option(caller: str, name: str, value: object) -> None:
    if name not in PARTITION_DEFAULTS:
        raise AuditOperationError(
            f"{caller}: unknown partitioning option {name!r}; the options are "
            f"{', '.join(PARTITION_DEFAULTS)}"
        )
    if name == "interval":
        check_interval(value, caller, name)
    elif name == "retention":
        if value is not None:
            check_interval(value, caller, name)
    elif name == "premake":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise AuditOperationError(
                f"{caller}: premake (how many partitions to create ahead) must be an int of 0 "
                f"or more, not {value!r}"
            )
    elif value not in ("detach", "drop"):
        raise AuditOperationError(
            f"{caller}: retention_action must be 'detach' (keep old partitions as tables of "
            f"their own) or 'drop' (delete them), not {value!r}"
        )


def parse_partitioned(value: object, caller: str) -> dict[str, Any]:
    """The partitioning options as given (a dict; True for the defaults), checked."""
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise AuditOperationError(
            f"{caller}: partitioned= takes a dict of {', '.join(PARTITION_DEFAULTS)} (or True "
            f"for the defaults), not {value!r}"
        )
    for name, option in value.items():
        check_partition_option(caller, name, option)
    return dict(value)


def install_options(
    timescale: object, partitioned: object
) -> tuple[TimescaleOptions | None, dict[str, Any] | None]:
    caller = "op.install_audit"
    if timescale not in (None, False) and partitioned not in (None, False):
        raise AuditOperationError(
            f"{caller}: choose timescale= or partitioned=, not both: TimescaleDB partitions "
            f"the audit table itself"
        )
    return (
        None if timescale in (None, False) else TimescaleOptions.parse(timescale, caller),
        None if partitioned in (None, False) else parse_partitioned(partitioned, caller),
    )


# -- as env.py declares it ------------------------------------------------------------

CONFIG_KEY = "hyper_audit"


def declared_layout(
    opts: Mapping[str, Any],
) -> tuple[TimescaleOptions | None, dict[str, Any] | None]:
    """The layout env.py declares: ``context.configure(hyper_audit={...})``."""
    declared = opts.get(CONFIG_KEY)
    if declared is None:
        return None, None
    where = f"context.configure({CONFIG_KEY}=...)"
    if not isinstance(declared, Mapping):
        raise AuditOperationError(
            f"hyper_audit: {where} takes a dict such as {{'timescale': {{...}}}} or "
            f"{{'partitioned': {{...}}}}, not {declared!r}"
        )
    unknown = sorted(set(declared) - {"timescale", "partitioned", "citus"})
    if unknown:
        raise AuditOperationError(
            f"hyper_audit: unknown key {', '.join(map(repr, unknown))} in {where}; "
            f"the keys are 'timescale', 'partitioned' and 'citus'"
        )
    try:
        return install_options(declared.get("timescale"), declared.get("partitioned"))
    except AuditOperationError as exc:
        raise AuditOperationError(
            str(exc).replace("op.install_audit", f"hyper_audit: {where}")
        ) from exc


def declared_citus(opts: Mapping[str, Any]) -> bool:
    """Whether env.py declares the audit table distributed over a Citus cluster:
    ``context.configure(hyper_audit={"citus": True})`` (op.distribute_audit())."""
    timescale, _ = declared_layout(opts)  # checks the keys
    declared = opts.get(CONFIG_KEY) or {}
    citus = declared.get("citus", False)
    if not isinstance(citus, bool):
        raise AuditOperationError(
            f"hyper_audit: context.configure({CONFIG_KEY}={{'citus': ...}}) takes True or "
            f"False, not {citus!r}"
        )
    if citus and timescale is not None:
        raise AuditOperationError(
            f"hyper_audit: context.configure({CONFIG_KEY}=...) declares both 'citus' and "
            f"'timescale': Citus cannot distribute a hypertable; keep one of them"
        )
    return citus


def declared_install_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the op.install_audit() that autogenerate writes."""
    timescale, partitioned = declared_layout(opts)
    if timescale is not None:
        return {"timescale": timescale.given()}
    if partitioned is not None:
        return {"partitioned": partitioned}
    return {}
