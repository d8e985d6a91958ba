"""The exact SQL the operations emit, against golden files in tests/golden/.

Offline output (``alembic upgrade --sql``) is what users review and apply with psql: it must
stay byte-for-byte the same from run to run and change only when the SQL files change. Each
golden file is a whole offline script (or one op's statement). After a deliberate change of
the SQL, regenerate them and review the diff:

    HYPER_AUDIT_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden.py

The test then rewrites the files and fails, so that a regeneration is never mistaken for a pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import offline_sql

from hyper_audit_alembic.migration import ops as audit_ops

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("HYPER_AUDIT_REGENERATE_GOLDEN") == "1"

#: Table names that hold what could end a literal, a dollar-quoted body or a placeholder.
WEIRD_TABLE = 'we"ird %s :x $hyper_audit$'
WEIRD_SCHEMA = "O'Brien"

SCRIPTS: dict[str, Callable[[], str]] = {
    "install_plain": lambda: offline_sql(lambda op: op.install_audit()),
    "install_partitioned": lambda: offline_sql(
        lambda op: op.install_audit(partitioned={"interval": "7 days", "premake": 2})
    ),
    "install_timescale": lambda: offline_sql(
        lambda op: op.install_audit(
            timescale={"chunk_interval": "7 days", "compress_after": "30 days"}
        )
    ),
    "upgrade_1_to_2": lambda: offline_sql(
        lambda op: op.upgrade_audit(from_version=1, to_version=2)
    ),
    "downgrade_2_to_1": lambda: offline_sql(
        lambda op: op.downgrade_audit(from_version=2, to_version=1)
    ),
    "upgrade_2_to_3": lambda: offline_sql(
        lambda op: op.upgrade_audit(from_version=2, to_version=3)
    ),
    "downgrade_3_to_2": lambda: offline_sql(
        lambda op: op.downgrade_audit(from_version=3, to_version=2)
    ),
    "upgrade_3_to_4": lambda: offline_sql(
        lambda op: op.upgrade_audit(from_version=3, to_version=4)
    ),
    "downgrade_4_to_3": lambda: offline_sql(
        lambda op: op.downgrade_audit(from_version=4, to_version=3)
    ),
    "upgrade_5_to_6": lambda: offline_sql(
        lambda op: op.upgrade_audit(from_version=5, to_version=6)
    ),
    "downgrade_6_to_5": lambda: offline_sql(
        lambda op: op.downgrade_audit(from_version=6, to_version=5)
    ),
    "set_audit_partitioning": lambda: offline_sql(
        lambda op: op.set_audit_partitioning(premake=5, retention=None)
    ),
    "convert_audit_to_hypertable": lambda: offline_sql(
        lambda op: op.convert_audit_to_hypertable(chunk_interval="1 day")
    ),
    "enable_tracking_weird_name": lambda: audit_ops.EnableTrackingOp(
        WEIRD_TABLE, schema=WEIRD_SCHEMA
    ).statement(None),  # type: ignore[arg-type]
    "alter_tracking_options": lambda: audit_ops.AlterTrackingOp(
        "account", exclude=["secret", "note"], skip_unchanged=True
    ).statement(None),  # type: ignore[arg-type]
    "disable_tracking": lambda: audit_ops.DisableTrackingOp("account").statement(None),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_emitted_sql_matches_its_golden_file(name: str) -> None:
    emitted = SCRIPTS[name]()
    assert emitted == SCRIPTS[name](), "the emitted SQL differs from run to run"
    path = GOLDEN / f"{name}.sql"
    if REGENERATE:
        path.write_text(emitted, encoding="utf-8")
        pytest.fail(f"regenerated {path.name}: review the diff, then run without the variable")
    assert path.exists(), f"no golden file {path.name}; regenerate (see this module's docstring)"
    assert emitted == path.read_text(encoding="utf-8")


def test_every_golden_file_is_checked() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.sql")) == sorted(SCRIPTS)


def test_the_weird_name_is_a_literal_and_picks_another_body_tag() -> None:
    statement: Any = SCRIPTS["enable_tracking_weird_name"]()
    assert statement.startswith("do $hyper_audit_1$\n")
    assert statement.endswith("\n$hyper_audit_1$")
    assert '    target constant text := \'"O\'\'Brien"."we""ird %s :x $hyper_audit$"\';\n' in (
        statement
    )
