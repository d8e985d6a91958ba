"""The facts printed with every result: the machine, the server's settings, the package.

Numbers from a shared or small machine only mean something next to what it was (cores,
load at start and end, filesystem) and what ran (server settings that matter for write
cost, library versions, the commit and a digest of the SQL measured).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
from pathlib import Path

from benchmarks.server import connect, scalar
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[1]

SERVER_SETTINGS = (
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "wal_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "work_mem",
    "maintenance_work_mem",
    "jit",
    "autovacuum",
)

Facts = list[tuple[str, str]]


def load_average(when: str) -> Facts:
    """The 1-minute load average now, as a fact named for `when` ("start" or "end")."""
    with contextlib.suppress(OSError):
        value = Path("/proc/loadavg").read_text().split()[0]
        return [(f"1-minute load average at {when}", value)]
    return []


def machine_facts() -> Facts:
    facts: Facts = []
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    facts.append(("CPU", f"{model}, {usable} cores usable ({os.cpu_count()} online)"))
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    facts.append(("memory", memory))
    facts.append(("OS", f"{platform.system()} {platform.release()}"))
    facts += load_average("start")
    return facts


def software_facts() -> Facts:
    import alembic
    import psycopg2  # type: ignore[import-untyped]
    import sqlalchemy

    facts = [
        ("Python", platform.python_version()),
        (
            "SQLAlchemy / Alembic / psycopg2",
            f"{sqlalchemy.__version__} / {alembic.__version__} / {psycopg2.__version__.split()[0]}",
        ),
    ]
    sql_dir = ROOT / "hyper_audit_alembic" / "sql"
    digest = hashlib.sha256(
        b"".join(f.read_bytes() for f in sorted(sql_dir.glob("*.sql")))
    ).hexdigest()[:12]
    revision = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "hyper_audit_alembic/sql"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        revision = head + (" + uncommitted changes in hyper_audit_alembic/sql" if dirty else "")
    facts.append(("package", f"commit {revision}; sql/*.sql sha256 {digest}"))
    return facts


def server_facts(server: ThrowawayPostgres) -> Facts:
    with contextlib.closing(connect(server, "postgres")) as conn:
        facts = [("server", scalar(conn, "select version()"))]
        for name in SERVER_SETTINGS:
            facts.append((name, scalar(conn, "select current_setting(%s)", (name,))))
    fs = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        out = (
            subprocess.run(
                ["df", "-T", str(server.data_dir)], capture_output=True, text=True, check=True
            )
            .stdout.splitlines()[1]
            .split()
        )
        fs = f"{out[1]} ({out[0]})"
    facts.append(("data directory filesystem", fs))
    return facts
