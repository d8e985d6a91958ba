"""Single-row INSERT, UPDATE by key and DELETE by key through pgbench, 1 and 2 clients.

pgbench (from the server's bin directory) gives the throughput of many short
transactions, each a commit with fsync: what a per-row trigger costs an OLTP
application. Simple query protocol, fixed duration, one statement per transaction.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import comparison_row
from benchmarks.results import BenchmarkError, Results, log, timed
from benchmarks.server import Connection, scalar
from benchmarks.variants import AUDIT_TABLE, DATABASES, VARIANTS, audit_count, reset_table, rotated
from benchmarks.workloads import Run, Workload
from hyper_audit_alembic.devtools.throwaway_postgres import ThrowawayPostgres

UPDATE_TABLE_ROWS = 100_000
DELETE_ROWS_PER_SECOND = 40_000  # rows prefilled per second of a DELETE run (per run)

PGBENCH_SCRIPTS = {
    "insert": (
        "\\set a random(1, 100000)\n"
        "insert into public.bench (account_id, status, note, amount) "
        "values (:a, 'new', 'a short note about this row', :a);\n"
    ),
    "update": (
        f"\\set id random(1, {UPDATE_TABLE_ROWS})\n"
        "update public.bench set amount = amount + 1, status = 'updated', updated_at = now() "
        "where id = :id;\n"
    ),
    # One key per transaction from a sequence: an InitPlan, so the delete is by index.
    "delete": "delete from public.bench where id = (select nextval('public.bench_delete_seq'));\n",
}
PGBENCH_TITLES = {
    "insert": "single-row INSERT",
    "update": "single-row UPDATE by key",
    "delete": "single-row DELETE by key",
}
PGBENCH_OP = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}
CLIENTS = (1, 2)


@dataclass
class PgbenchRun:
    tps: float
    processed: int


def run_pgbench(
    server: ThrowawayPostgres, dbname: str, script: Path, clients: int, seconds: int
) -> PgbenchRun:
    assert server.bin_dir is not None
    pgbench = server.bin_dir / "pgbench"
    if not pgbench.exists():
        found = shutil.which("pgbench")
        if not found:
            raise BenchmarkError(f"pgbench not found in {server.bin_dir} nor on PATH")
        pgbench = Path(found)
    command = [
        str(pgbench), "--no-vacuum", "-h", server.host, "-p", str(server.port),
        "-U", server.user, "-c", str(clients), "-j", str(clients),
        "-T", str(seconds), "-f", str(script), dbname,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchmarkError(f"pgbench failed ({done.returncode}): {done.stderr}{done.stdout}")
    tps = re.search(r"^tps = ([0-9.]+)", done.stdout, re.M)
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    if not tps or not processed:
        raise BenchmarkError(f"cannot read pgbench's output:\n{done.stdout}")
    return PgbenchRun(float(tps.group(1)), int(processed.group(1)))


def pgbench_prefill(workload: str, seconds: int) -> int:
    if workload == "update":
        return UPDATE_TABLE_ROWS
    if workload == "delete":
        return seconds * DELETE_ROWS_PER_SECOND
    return 0


def check_pgbench(
    results: Results,
    conn: Connection,
    variant: str,
    workload: str,
    clients: int,
    prefill: int,
    run: PgbenchRun,
) -> None:
    label = f"{PGBENCH_TITLES[workload]}, {clients} client(s), {variant}"
    remaining = int(scalar(conn, "select count(*) from public.bench"))
    if workload == "insert":
        changed = remaining
    elif workload == "delete":
        changed = prefill - remaining
        if remaining == 0:
            results.problem(
                f"{label}: all {prefill:,} prefilled rows were deleted; the "
                f"measured rate is too high (raise DELETE_ROWS_PER_SECOND)"
            )
    else:
        changed = run.processed
    if changed != run.processed:
        results.problem(f"{label}: {run.processed} transactions but {changed} rows changed")
    if variant in AUDIT_TABLE:
        matching, total = audit_count(conn, variant, PGBENCH_OP[workload])
        if matching != run.processed or total != run.processed:
            results.problem(
                f"{label}: {run.processed} transactions but {total} audit rows "
                f"({matching} {PGBENCH_OP[workload]})"
            )


def bench_pgbench(run: Run) -> None:
    server, conns, results = run.server, run.conns, run.results
    repeat, seconds = run.repeat, run.duration
    scripts = {}
    for workload, text in PGBENCH_SCRIPTS.items():
        scripts[workload] = run.workdir / f"{workload}.sql"
        scripts[workload].write_text(text)

    log("pgbench warm-up (1 s per workload and variant, not measured)")
    for workload in PGBENCH_SCRIPTS:
        for variant in VARIANTS:
            reset_table(conns[variant], variant, pgbench_prefill(workload, 1))
            run_pgbench(server, DATABASES[variant], scripts[workload], 1, 1)

    for rep in range(repeat):
        for workload in PGBENCH_SCRIPTS:
            for clients in CLIENTS:
                key = f"pgbench_{workload}_{clients}"
                line = []
                for variant in rotated(rep):
                    conn = conns[variant]
                    prefill = pgbench_prefill(workload, seconds)
                    reset_table(conn, variant, prefill)
                    done = run_pgbench(
                        server, DATABASES[variant], scripts[workload], clients, seconds
                    )
                    check_pgbench(results, conn, variant, workload, clients, prefill, done)
                    results.add(key, variant, done.tps)
                    line.append(f"{variant} {done.tps:,.0f}")
                log(
                    f"  [{rep + 1}/{repeat}] {PGBENCH_TITLES[workload]}, {clients} client(s): "
                    f"{', '.join(line)} tps"
                )


def measure(run: Run) -> None:
    timed(
        f"pgbench: {run.duration} s per run, {run.repeat} repetition(s)",
        lambda: bench_pgbench(run),
    )


def table_rows(results: Results) -> list[str]:
    found = [
        comparison_row(
            results,
            f"pgbench_{workload}_{clients}",
            f"{PGBENCH_TITLES[workload]}, pgbench, {clients} client{'s' if clients > 1 else ''}",
            "tps",
        )
        for workload in PGBENCH_SCRIPTS
        for clients in CLIENTS
    ]
    return [row for row in found if row is not None]


WORKLOAD = Workload("pgbench", measure, needs_variants=True, table_rows=table_rows)
